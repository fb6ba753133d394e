"""Composed shard folders for the consumer tests (loader, export, ecosystem).

`compose_folder` runs the real `compose` command on three marked corpora (MMDU-45k-shaped,
LLaVA, EXMODD; see tests/corpus.py), so every image of the output can be checked against the
marker words its references carry. `write_folder` builds a small folder by hand, for samples
the engine would never write (to test how consumers refuse them).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

import cli
from compose.shard_index import write_index, write_manifest
from compose.shards import SampleRecord, image_member, write_shard
from tests.corpus import Corpus, marked_refs, write_exmodd, write_llava, write_mmdu45k


@dataclass(frozen=True, slots=True)
class Composed:
    out: Path
    corpora: tuple[Corpus, ...]

    @property
    def marker_of_sha(self) -> dict[str, str]:
        markers: dict[str, str] = {}
        for corpus in self.corpora:
            markers.update(corpus.marker_of_sha)
        return markers


def corpora(root: Path) -> tuple[Corpus, ...]:
    folders = [root / name for name in ("m45", "llava", "exmodd")]
    for folder in folders:
        folder.mkdir(parents=True)
    return (
        write_mmdu45k(folders[0], 60, seed=11, zip=True),
        write_llava(folders[1], 60, seed=12),
        write_exmodd(folders[2], 60, seed=13),
    )


def compose_folder(
    root: Path, *, style: str = "mmdu", shard_size: int = 3, sources: tuple[Corpus, ...] = ()
) -> Composed:
    """Run `compose` (2k-token samples, 12 images at most) and return the output folder."""
    sources = sources or corpora(root / "corpora")
    args = []
    for corpus in sources:
        args += ["--source", str(corpus.source), "--images", str(corpus.images)]
    args += [
        "--tokens", "2k", "--tolerance", "0.5", "--max-images", "12",
        "--image-tokens", "fixed:64", "--shard-size", str(shard_size), "--style", style,
        "--workers", "1", "--out", str(root / f"out-{style}"), "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(cli.app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return Composed(out=root / f"out-{style}", corpora=sources)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_references(canonical: list[str], blobs: list[bytes], marker_of_sha: dict) -> int:
    """Every marked tag or mention names the image whose bytes carry that marker; returns how
    many references were checked."""
    checked = 0
    for text in canonical:
        for number, marker in marked_refs(text):
            assert number is not None, f"a placeholder in canonical text: {text[:80]!r}"
            assert marker_of_sha[sha256(blobs[number - 1])] == marker
            checked += 1
    return checked


def png(seed: int, size: int = 24) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def write_folder(out: Path, samples: list[tuple[str, str, list[dict], list[bytes]]]) -> Path:
    """A composed folder of one shard from `(key, style, messages, png images)`, by hand."""
    records, rows = [], []
    for key, style, messages, blobs in sorted(samples):
        images = [
            {
                "number": n,
                "member": image_member(key, n, len(blobs), "png"),
                "sha256": sha256(blob),
                "width": 24,
                "height": 24,
                "format": "PNG",
            }
            for n, blob in enumerate(blobs, 1)
        ]
        document = {"key": key, "style": style, "messages": messages, "images": images}
        records.append(
            SampleRecord(
                key=key,
                sample_json=json.dumps(document).encode(),
                images=tuple(("png", blob) for blob in blobs),
            )
        )
        rows.append({"key": key, "images": len(blobs)})
    stats = write_shard(out, "shard", 0, records)
    write_manifest(out, rows, stats=[stats])
    write_index(out, [stats], name="shard")
    return out
