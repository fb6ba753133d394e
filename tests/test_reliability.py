"""The bad-input matrix: its harness, and the checks over the whole matrix.

Every defect of `tests/test_hostile_*.py` is fed between good records (two before, two after)
through `compose.catalog.ingest`, the way a user's run meets it, and must end as one documented
reject reason naming the file and the record, with every good record in the catalog, in order.
Structural damage (a record cut short) may leave fragments: each is a `bad_json` reject.

This module holds the shared pieces (images, stores, good records, layouts, `ingest_sandwich`)
and the checks that span the matrix: its size against docs/reliability.md, and a whole hostile
corpus taken through ingest, compose and `compose validate`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from typer.testing import CliRunner

import cli
from compose.catalog import Catalog, IngestConfig, SourceSpec, ingest
from compose.model import REJECT_REASONS
from compose.shard_reader import read_members
from compose.sources import Limits
from compose.validate import validate_output

DOC = Path(__file__).parent.parent / "docs" / "reliability.md"
FORMATS = ("mmdu", "mmdu-bench", "llava", "exmodd")
AT = 2  # index of the bad record: two good records before it, two after

# -- images -----------------------------------------------------------------------------------


def encode(image: Image.Image, kind: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=kind, **options)
    return out.getvalue()


def noise(width: int, height: int, seed: int) -> Image.Image:
    """Random pixels: every image is distinct and compresses poorly (realistic sizes)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` but holds a few bytes of pixels: a pixel bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@functools.cache
def good_images() -> dict[str, bytes]:
    """The images good records use, by member name."""
    return {
        "g0.jpg": encode(noise(48, 32, 0), "JPEG"),
        "g1.png": encode(noise(40, 40, 1), "PNG"),
        "g2.jpg": encode(noise(36, 52, 2), "JPEG"),
        "g3.png": encode(noise(30, 20, 3), "PNG"),
    }


@functools.cache
def unusual_images() -> dict[str, bytes]:
    """Valid images of the kinds real corpora hold: accepted, passed through byte for byte."""
    gradient = np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50
    frames = [noise(32, 24, 10 + i).convert("P") for i in range(3)]
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    palette = noise(24, 24, 20).convert("P")
    palette.info["transparency"] = 0
    jpeg = encode(noise(30, 24, 17), "JPEG")
    app0 = 4 + int.from_bytes(jpeg[4:6], "big")  # SOI, then APP0 and its length
    return {
        "stray-bytes.jpg": jpeg[:app0] + b"\x00\x00junk" + jpeg[app0:],  # decoders skip them
        "cmyk.jpg": encode(Image.new("CMYK", (40, 30), (10, 200, 30, 0)), "JPEG"),
        "sixteen-bit.png": encode(Image.fromarray(gradient), "PNG"),
        "animated.gif": encode(
            frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0
        ),
        "exif-rotated.jpg": encode(noise(60, 30, 11), "JPEG", exif=exif),
        "progressive.jpg": encode(noise(50, 40, 12), "JPEG", progressive=True),
        "grey.jpg": encode(noise(30, 30, 13).convert("L"), "JPEG"),
        "palette.png": encode(palette, "PNG"),
        "lossless.webp": encode(noise(30, 30, 14), "WEBP", lossless=True),
        "plain.bmp": encode(noise(30, 20, 15), "BMP"),
        "plain.tif": encode(noise(30, 20, 16), "TIFF"),
    }


# -- stores -----------------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes], *, deflate: bool = True) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            archive.writestr(info, data)
    return path


def make_store(directory: Path, kind: str, extra: dict[str, bytes] | None = None) -> Path:
    """`pics/` (a folder) or `pics.zip` with the good images and `extra` members."""
    members = {**good_images(), **(extra or {})}
    if kind == "zip":
        return make_zip(directory / "pics.zip", members)
    root = directory / "pics"
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


# -- records ------------------------------------------------------------------------------------

ROLES = {"mmdu": ("user", "assistant"), "mmdu-bench": ("user", "assistant")}
ROLES["llava"] = ("human", "gpt")
PLACEHOLDER = {"mmdu": "<ImageHere>", "mmdu-bench": "<ImageHere>", "llava": "<image>"}


def image_path(fmt: str, member: str) -> str:
    """How each format writes a path: MMDU-45k with the store's name, the benchmark from '/'."""
    return {"mmdu": f"pics/{member}", "mmdu-bench": f"/pics/{member}"}.get(fmt, member)


def record(fmt: str, rid: str, images: Sequence[str] = ("g0.jpg", "g1.png")) -> dict:
    """A good record of `fmt` with id `rid` (the keyed benchmark carries it as its key)."""
    if fmt == "exmodd":
        return {
            "id": rid,
            "image": images[0],
            "dialog": [
                {"speaker": "A", "text": f"What a calm scene, {rid}."},
                {"speaker": "B", "text": "It is.", "explanation": "The speaker agrees."},
            ],
        }
    user, assistant = ROLES[fmt]
    mark = PLACEHOLDER[fmt]
    intro = "".join(f"Image{n}: {mark}\n" for n in range(1, len(images) + 1))
    turns = [
        {"from": user, "value": f"{intro}What do these show ({rid})?"},
        {"from": assistant, "value": "Image1 shows a street; the last one a field."},
        {"from": user, "value": "Which is brighter, Image 1 or the other?"},
        {"from": assistant, "value": "Image 1."},
    ]
    item = {"id": rid, "image": [image_path(fmt, m) for m in images], "conversations": turns}
    if fmt == "mmdu-bench":
        del item["id"]
    return item


def good_records(fmt: str, n: int = 4) -> list[tuple[str, dict]]:
    names = sorted(good_images())
    return [
        (f"good-{i}", record(fmt, f"good-{i}", (names[i % 4], names[(i + 1) % 4])))
        for i in range(n)
    ]


# -- layouts ------------------------------------------------------------------------------------

LAYOUTS = ("array", "minified", "lines", "keyed")
DEFAULT_LAYOUT = {"mmdu": "array", "mmdu-bench": "keyed", "llava": "lines", "exmodd": "lines"}


@dataclass(frozen=True, slots=True)
class Raw:
    """An element written as these exact bytes (bad JSON, a cut record, odd encodings)."""

    data: bytes


def serialise(layout: str, elements: Sequence[tuple[str, object]]) -> bytes:
    """A file of `elements` (key, value) in a layout; `Raw` values go in byte for byte.

    array: ``json.dump(..., indent=4)``, as MMDU-45k; minified: no whitespace at all;
    lines: one value per line; keyed: an object keyed by id with ``indent=4``, as the benchmark.
    """
    raws: dict[bytes, bytes] = {}

    def placeholder(value: object) -> object:
        if not isinstance(value, Raw):
            return value
        mark = f"@@RAW{len(raws)}@@"
        raws[json.dumps(mark).encode()] = value.data
        return mark

    values = [(key, placeholder(value)) for key, value in elements]
    if layout == "lines":
        lines = [json.dumps(v, ensure_ascii=False).encode() for _, v in values]
        text = b"\n".join(lines) + b"\n"
    elif layout == "keyed":
        text = json.dumps(dict(values), indent=4, ensure_ascii=False).encode()
    elif layout == "array":
        text = json.dumps([v for _, v in values], indent=4, ensure_ascii=False).encode()
    elif layout == "minified":
        minified = json.dumps([v for _, v in values], separators=(",", ":"), ensure_ascii=False)
        text = minified.encode()
    else:
        raise ValueError(layout)
    for mark, data in raws.items():
        text = text.replace(mark, data)
    return text


# -- one defect through ingest ------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What ingest made of a source: catalog ids in order, and the rejects.jsonl rows."""

    source: Path
    ids: list[str]
    rejects: list[dict]
    good_ids: list[str]
    formats: set[str] = field(default_factory=set)

    def one_reject(self, reason: str, *, index: int = AT) -> dict:
        """Exactly one reject, with this reason, at this index, naming the file; goods kept."""
        assert self.ids == self.good_ids, (self.ids, self.rejects)
        assert len(self.rejects) == 1, self.rejects
        found = self.rejects[0]
        assert (found["reason"], found["index"]) == (reason, index), found
        assert found["file"] == str(self.source)
        assert found["detail"]
        assert reason in REJECT_REASONS
        return found

    def damaged(self) -> list[dict]:
        """Structural damage: every good record kept, and a `bad_json` reject where the damage
        starts (the bad record's index); fragments after it may be rejects of any reason."""
        assert self.ids == self.good_ids, (self.ids, self.rejects)
        assert self.rejects, "damage went unreported"
        assert (self.rejects[0]["reason"], self.rejects[0]["index"]) == ("bad_json", AT)
        assert {r["reason"] for r in self.rejects} <= set(REJECT_REASONS), self.rejects
        assert all(r["file"] == str(self.source) and r["detail"] for r in self.rejects)
        return self.rejects


def ingest_file(
    directory: Path,
    source: Path,
    store: Path | None,
    *,
    limits: Limits | None = None,
    format: str | None = None,
    good_ids: Sequence[str] = (),
) -> Outcome:
    catalog = directory / "catalog"
    spec = SourceSpec(path=str(source), images=str(store) if store else None, format=format)
    ingest([spec], catalog, IngestConfig(limits=limits or Limits()), force=True)
    frame = Catalog.open(catalog).frame(["id", "format"])
    rejects_path = catalog / "rejects.jsonl"
    rejects = [json.loads(line) for line in rejects_path.read_text().splitlines()]
    return Outcome(
        source=source,
        ids=frame["id"].to_list(),
        rejects=rejects,
        good_ids=list(good_ids),
        formats=set(frame["format"].to_list()),
    )


def ingest_sandwich(
    directory: Path,
    fmt: str,
    bad: object,
    *,
    layout: str | None = None,
    store: str = "folder",
    extra_images: dict[str, bytes] | None = None,
    limits: Limits | None = None,
    prepare: Callable[[Path], None] | None = None,
) -> Outcome:
    """Write good, good, BAD, good, good in `layout` (the format's usual one by default), a store
    with the good images plus `extra_images`, ingest it, and return what the catalog holds.

    `bad` is a record (dict or any JSON value) or `Raw` bytes; `prepare(store_path)` may change
    the store before ingest (symlinks, folders, FIFOs).
    """
    layout = layout or DEFAULT_LAYOUT[fmt]
    goods = good_records(fmt)
    elements = [*goods[:AT], ("bad", bad), *goods[AT:]]
    suffix = ".jsonl" if layout == "lines" else ".json"
    source = directory / f"{fmt}-{layout}{suffix}"
    source.write_bytes(serialise(layout, elements))
    store_path = make_store(directory, store, extra_images)
    if prepare is not None:
        prepare(store_path)
    outcome = ingest_file(
        directory, source, store_path, limits=limits, good_ids=[rid for rid, _ in goods]
    )
    expected = "mmdu-bench" if layout == "keyed" and fmt.startswith("mmdu") else fmt
    assert outcome.formats == {expected}
    return outcome


# -- checks over the whole matrix -----------------------------------------------------------------


def matrix() -> dict[str, list[str]]:
    """Every defect of the hostile matrix, by test file: the names its cases are listed under."""
    from tests import test_hostile_images, test_hostile_json, test_hostile_records

    return {
        "json": test_hostile_json.DEFECT_NAMES,
        "records": test_hostile_records.DEFECT_NAMES,
        "images": test_hostile_images.DEFECT_NAMES,
    }


def test_the_matrix_has_at_least_40_distinct_defects_and_the_doc_counts_them() -> None:
    names = [name for group in matrix().values() for name in group]
    assert len(names) == len(set(names)), "defect names must be distinct"
    assert len(names) >= 40
    text = DOC.read_text()
    row = re.search(r"\| distinct defects tried \| (\d+) \|", text)
    assert row is not None, "docs/reliability.md lost its table row"
    assert int(row.group(1)) == len(names), "update the count in docs/reliability.md"


def test_every_reject_reason_is_documented_and_reached_by_the_matrix() -> None:
    formats_doc = (Path(__file__).parent.parent / "docs" / "formats.md").read_text()
    reliability_doc = DOC.read_text()
    for reason in REJECT_REASONS:
        assert f"`{reason}`" in formats_doc, reason
        assert f"`{reason}`" in reliability_doc, reason


# -- a whole hostile corpus: ingest, compose, validate -------------------------------------------


def hostile_corpus(directory: Path) -> tuple[Path, Path, list[str], int]:
    """An MMDU-45k-shaped array where every second record is bad in its own way, and a zip with
    unusual-but-valid images and hostile members. Returns source, store, good ids, bad count."""
    from tests.test_hostile_images import ZIP_MEMBERS
    from tests.test_hostile_records import conversation_defects

    unusual = sorted(unusual_images())
    elements: list[tuple[str, object]] = []
    good_ids: list[str] = []
    bad = 0
    names = sorted(good_images())
    for i, defect in enumerate(conversation_defects("mmdu")):
        rid = f"good-{i}"
        pair = (unusual[i % len(unusual)], names[i % 4])
        elements.append((rid, record("mmdu", rid, pair)))
        good_ids.append(rid)
        elements.append((f"bad-{i}", defect))
        bad += 1
    source = directory / "hostile.json"
    source.write_bytes(serialise("array", elements))
    store = make_zip(directory / "pics.zip", {**good_images(), **unusual_images(), **ZIP_MEMBERS()})
    return source, store, good_ids, bad


def test_a_hostile_corpus_goes_through_ingest_compose_and_validate(tmp_path: Path) -> None:
    source, store, good_ids, bad = hostile_corpus(tmp_path)
    outcome = ingest_file(tmp_path, source, store, good_ids=good_ids)
    assert outcome.ids == good_ids  # every good record kept, in order
    assert len(outcome.rejects) == bad  # every bad one rejected exactly once
    assert {r["reason"] for r in outcome.rejects} <= set(REJECT_REASONS)
    out = tmp_path / "out"
    args = [
        "--catalog", str(tmp_path / "catalog"), "--out", str(out), "--tokens", "1k",
        "--tolerance", "0.9", "--image-tokens", "fixed:32", "--shard-size", "3", "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(cli.app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = validate_output(out)  # every image decodes, every check holds
    assert report.ok, [str(p) for p in report.problems[:5]]
    # Nothing lost on the way: every accepted dialogue is in a sample, and the unusual images
    # reach the shards byte for byte.
    manifest = pl.read_parquet(out / "manifest.parquet")
    used = {dialogue for ids in manifest["sources"].to_list() for dialogue in ids}
    assert used == set(good_ids)
    shard_images = {
        hashlib.sha256(data).hexdigest()
        for tar in sorted(out.glob("*.tar"))
        for name, data in read_members(tar)
        if not name.endswith(".json")
    }
    assert {hashlib.sha256(d).hexdigest() for d in unusual_images().values()} <= shard_images


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def test_nothing_is_written_outside_out(tmp_path: Path) -> None:
    """A run reads its inputs, writes under --out, and leaves the inputs, the working folder and
    the temporary folder as they were (a hostile corpus, so rejects are written too; two workers,
    so the process pool's temporary files count)."""
    inputs, work, temp, out = (tmp_path / name for name in ("in", "cwd", "tmp", "out"))
    for folder in (inputs, work, temp):
        folder.mkdir()
    source, store, _, _ = hostile_corpus(inputs)
    before = snapshot(inputs)
    script = (
        "import os, sys, tempfile; tempfile.tempdir = sys.argv[1]; os.chdir(sys.argv[2]); "
        "sys.argv = ['compose', *sys.argv[3:]]; import cli; cli.main()"
    )
    arguments = [
        "--source", str(source), "--images", str(store), "--out", str(out), "--tokens", "1k",
        "--tolerance", "0.9", "--image-tokens", "fixed:32", "--workers", "2", "--quiet",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", script, str(temp), str(work), *arguments],
        cwd=Path(__file__).parent.parent,
        # tiktoken caches its encoding file in the temp folder unless told where (reliability.md)
        env={**os.environ, "TMPDIR": str(temp), "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert snapshot(inputs) == before
    assert list(work.iterdir()) == [] and list(temp.iterdir()) == []
    assert (out / "run.json").exists() and (out / "catalog" / "rejects.jsonl").exists()
