"""Other loaders reading composed shards in place: Megatron-Energon and Hugging Face `datasets`.

`write_energon` adds what `energon prepare` writes beside a folder of shards (`.nv-meta/`:
`.info.json` and `.info.yaml`, `split.yaml`, `dataset.yaml`, a `sample_loader.py`,
`index.sqlite`, `index.uuid`; and a `.tar.idx` per shard), so Energon reads them as an
`InterleavedSample` dataset without a prepare step. `hf_features` gives the `features` that
`datasets.load_dataset("webdataset", ...)` needs for shards whose samples hold different numbers
of images (it infers them from the first five samples otherwise, and refuses when they differ).
docs/loader.md shows both.

A composed output is read here from a local folder or an fsspec URL (`output_folder`,
`shard_list`, `shard_file`: one shard on disk at a time), which `compose.export` shares. For a URL,
Energon's metadata is built in this machine's stage and uploaded beside the shards.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import tarfile
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from compose import storage
from compose.loader import SHARD_INDEX, index_entries, shard_urls

META = ".nv-meta"
ITAR_SUFFIX = ".tar.idx"
_UUID_NAMESPACE = uuid.UUID("6f1c3b0e-7c1a-4e55-9d7e-2f6a0c8a5b11")  # compose's own namespace

# Energon imports this file from `.nv-meta/` (dataset.yaml names it); it must not need compose.
SAMPLE_LOADER = """\
# Written by compose (compose.ecosystem.write_energon). Energon calls sample_loader() with the
# decoded parts of one sample: "json" (the sample document) and "001.jpg", "002.png", ...
# (the images). The sequence is every message's text in order, split where each image stands,
# with that image in between. Roles are not part of an InterleavedSample: read them from the
# JSON part (sample["messages"][i]["role"]) in a custom loader if your task needs them.
import re

_PLACEHOLDER = {
    "mmdu": re.compile(r"<ImageHere>"),
    "llava": re.compile(r"<image>"),
    "canonical": re.compile(r"<image-[0-9]+>"),
}


def sample_loader(raw: dict) -> dict:
    sample = raw["json"]
    skip = len(sample["key"]) + 1
    by_member = {image["member"]: raw[image["member"][skip:]] for image in sample["images"]}
    images = list(by_member.values())
    sequence = []
    taken = 0
    for message in sample["messages"]:
        content = message["content"]
        if isinstance(content, list):
            for part in content:
                if part["type"] == "text":
                    if part["text"]:
                        sequence.append(part["text"])
                else:
                    sequence.append(by_member[part["image_url"]["url"]])
            continue
        for number, piece in enumerate(_PLACEHOLDER[sample["style"]].split(content)):
            if number:
                sequence.append(images[taken])
                taken += 1
            if piece:
                sequence.append(piece)
    return dict(sequence=sequence)


def part_filter(part: str) -> bool:
    return True
"""

DATASET_YAML = """\
sample_type:
  __module__: megatron.energon
  __class__: InterleavedSample
sample_loader: sample_loader.py:sample_loader
part_filter: sample_loader.py:part_filter
"""


@dataclass(frozen=True, slots=True)
class _Shard:
    name: str
    samples: list[tuple[str, int, int]]  # key, header offset, bytes up to the next sample
    parts: list[tuple[int, str, int, int]]  # sample index, part name, data offset, data size


@dataclass(frozen=True, slots=True)
class EnergonSummary:
    files: Sequence[Path | str]  # local paths; URLs for an output at a URL
    shards: int
    samples: int
    bytes: int


# -- a composed output, local or at a URL ------------------------------------------------------


def output_folder(folder: str | Path) -> storage.Folder:
    """A composed output to read, from a local folder or any fsspec URL (`memory://`, `s3://`);
    ValueError naming it when its scheme is not one fsspec can read here."""
    try:
        return storage.Folder(folder)
    except (ValueError, ImportError) as error:  # fsspec: unknown scheme, or its package missing
        raise ValueError(f"{folder}: not a folder or a URL compose can read ({error})") from None


def shard_list(folder: storage.Folder) -> list[dict]:
    """The entries of the output's `shards.json`, in order, each `url` a plain file name in
    the folder (as compose writes them), so joining it to a folder or URL stays inside."""
    where = folder.where(SHARD_INDEX)
    try:
        data = folder.read_bytes(SHARD_INDEX)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{where}: no shard index (is this a compose output folder?)"
        ) from None
    except OSError as error:
        raise OSError(f"{where}: cannot read: {error}") from None
    entries = index_entries(data, where)
    names = [entry["url"] for entry in entries]
    for name in names:
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{where}: {name!r} is not a shard file name in the folder")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: a shard is listed twice")
    return entries


@contextmanager
def shard_file(folder: storage.Folder, name: str) -> Iterator[Path]:
    """A local path to one shard of the output: the file itself, or for a URL a download
    into this machine's stage, removed on exit."""
    with ExitStack() as stack:
        try:
            path = stack.enter_context(folder.local(name))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{folder.where(name)}: missing (shards.json lists it)"
            ) from None
        yield path


# -- Megatron-Energon --------------------------------------------------------------------------


def write_energon(folder: str | Path) -> EnergonSummary:
    """Write Energon's metadata for the shards of a composed `folder` (listed in shards.json),
    a local folder or a URL (built in the stage, then uploaded beside the shards).

    Every sample goes to the `train` split (`val` and `test` are empty). `index.uuid` is
    derived from the shards' checksums, so the same shards give the same files. One shard is
    read (and for a URL, on disk) at a time.
    """
    source = output_folder(folder)
    entries = shard_list(source)
    if not source.remote:
        files, counts = _write_metadata(source, entries, Path(storage.local_path(source.root)))
        size = sum(path.stat().st_size for path in files)
        return EnergonSummary(
            files=files, shards=len(counts), samples=sum(counts.values()), bytes=size
        )
    stage = storage.stage_root()
    stage.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="energon-", dir=stage) as temp:
        files, counts = _write_metadata(source, entries, Path(temp))
        urls = []
        for path in files:  # dataset.yaml last: a reader that finds it finds the rest
            urls.append(storage.join(source.root, path.relative_to(temp).as_posix()))
            storage.upload(path, urls[-1])
        size = sum(path.stat().st_size for path in files)
    return EnergonSummary(files=urls, shards=len(counts), samples=sum(counts.values()), bytes=size)


def _write_metadata(
    source: storage.Folder, entries: list[dict], root: Path
) -> tuple[list[Path], dict[str, int]]:
    """Write the `.tar.idx` files and `.nv-meta/` of the source's shards into local `root`;
    the files written (`dataset.yaml` last) and each shard's sample count."""
    meta = root / META
    meta.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    counts: dict[str, int] = {}
    database = meta / "index.sqlite"
    with _sqlite_index(database, source.where(f"{META}/index.sqlite")) as db:
        for number, entry in enumerate(entries):
            name = entry["url"]
            with shard_file(source, name) as path:
                shard = _scan(path, source.where(name))
            _add_shard(db, number, shard)
            written.append(_write_itar(root, shard))
            counts[name] = len(shard.samples)
    info = {"energon_version": None, "shard_counts": counts}
    written.append(_write(meta / ".info.json", json.dumps(info, indent=2) + "\n"))
    written.append(_write(meta / ".info.yaml", _info_yaml(counts)))
    written.append(_write(meta / "split.yaml", _split_yaml(list(counts))))
    written.append(_write(meta / "sample_loader.py", SAMPLE_LOADER))
    written.append(database)
    written.append(_write(meta / "index.uuid", str(_dataset_uuid(entries))))
    written.append(_write(meta / "dataset.yaml", DATASET_YAML))
    return written, counts


def _scan(path: Path, where: str) -> _Shard:
    """Sample and part offsets of one shard, as `energon prepare` indexes them."""
    samples: list[tuple[str, int, int]] = []
    parts: list[tuple[int, str, int, int]] = []
    starts: list[int] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                key, _, part = member.name.partition(".")
                if not samples or samples[-1][0] != key:
                    samples.append((key, member.offset, 0))
                    starts.append(member.offset)
                parts.append((len(samples) - 1, part, member.offset_data, member.size))
            end = tar.offset
    except (OSError, tarfile.TarError) as error:
        raise ValueError(f"{where}: cannot index the shard: {error}") from None
    if not samples:
        raise ValueError(f"{where}: the shard holds no samples")
    bounds = [*starts[1:], end]
    sized = [
        (key, start, stop - start) for (key, start, _), stop in zip(samples, bounds, strict=True)
    ]
    return _Shard(name=path.name, samples=sized, parts=parts)


def _write_itar(folder: Path, shard: _Shard) -> Path:
    # Energon reads unsigned 64-bit offsets in native order; x86 and ARM servers are little-endian.
    offsets = [start for _, start, _ in shard.samples]
    _, last_start, last_size = shard.samples[-1]
    offsets.append(last_start + last_size)
    path = folder / (shard.name.removesuffix(".tar") + ITAR_SUFFIX)
    return _write(path, struct.pack(f"<{len(offsets)}Q", *offsets))


@contextmanager
def _sqlite_index(path: Path, where: str) -> Iterator[sqlite3.Connection]:
    """Energon's `index.sqlite`, filled shard by shard inside the block; its lookup indexes
    are built at the end, and the file appears only then."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    db = sqlite3.connect(temp)
    try:
        db.execute(
            "CREATE TABLE samples (tar_file_id INTEGER NOT NULL, sample_key TEXT NOT NULL UNIQUE, "
            "sample_index INTEGER NOT NULL, byte_offset INTEGER, byte_size INTEGER)"
        )
        db.execute(
            "CREATE TABLE sample_parts (tar_file_id INTEGER, sample_index INTEGER, "
            "part_name TEXT, content_byte_offset INTEGER, content_byte_size INTEGER)"
        )
        yield db
        db.execute("CREATE INDEX idx_samples_by_tar_and_idx ON samples(tar_file_id, sample_index)")
        db.execute(
            "CREATE INDEX idx_sample_parts_seq "
            "ON sample_parts(tar_file_id, sample_index, content_byte_offset)"
        )
        db.execute(
            "CREATE INDEX idx_sample_parts_full ON sample_parts(tar_file_id, sample_index, "
            "part_name, content_byte_offset, content_byte_size)"
        )
        db.commit()
    except sqlite3.IntegrityError as error:
        db.close()
        temp.unlink(missing_ok=True)
        raise ValueError(f"{where}: a sample key occurs twice: {error}") from None
    except BaseException:
        db.close()
        temp.unlink(missing_ok=True)
        raise
    db.close()
    os.replace(temp, path)


def _add_shard(db: sqlite3.Connection, number: int, shard: _Shard) -> None:
    db.executemany(
        "INSERT INTO samples VALUES (?, ?, ?, ?, ?)",
        ((number, key, i, start, size) for i, (key, start, size) in enumerate(shard.samples)),
    )
    db.executemany(
        "INSERT INTO sample_parts VALUES (?, ?, ?, ?, ?)",
        ((number, *part) for part in shard.parts),
    )


def _dataset_uuid(entries: list[dict]) -> uuid.UUID:
    digests = ",".join(f"{e['url']}:{e.get('sha256', e.get('filesize'))}" for e in entries)
    return uuid.uuid5(_UUID_NAMESPACE, digests)


def _info_yaml(counts: dict[str, int]) -> str:
    lines = ["energon_version: null", "shard_counts:"]
    lines += [f"  {name}: {count}" for name, count in counts.items()]
    return "\n".join(lines) + "\n"


def _split_yaml(names: list[str]) -> str:
    lines = ["split_parts:", "  train:", *(f"  - {name}" for name in names)]
    lines += ["  val: []", "  test: []", "exclude: []"]
    return "\n".join(lines) + "\n"


def _write(path: Path, data: str | bytes) -> Path:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(temp, path)
    return path


# -- Hugging Face datasets --------------------------------------------------------------------


def hf_features(folder: str | Path) -> Any:
    """`datasets.Features` for `load_dataset("webdataset", data_files=..., features=...)`.

    One column per image member name any sample has (`001.jpg`, `001.png`, ...; None where a
    sample has no such image), `json` with the sample document's type (unified over all
    samples), and `__key__`, `__url__`. Reads only the JSON members of the shards.
    """
    import datasets  # an optional extra: only this function needs it

    schema: pa.Schema | None = None
    parts: set[str] = set()
    for url in shard_urls(folder):
        documents = list(_json_members(url))
        for document in documents:
            skip = len(document["key"]) + 1
            parts.update(image["member"][skip:] for image in document["images"])
        table = pa.Table.from_pylist([{"json": document} for document in documents])
        schema = table.schema if schema is None else _unify(schema, table.schema)
    assert schema is not None  # shard_urls never returns an empty list
    features = datasets.Features.from_arrow_schema(schema)
    for part in sorted(parts):
        features[part] = datasets.Image()
    features["__key__"] = datasets.Value("string")
    features["__url__"] = datasets.Value("string")
    return features


def _unify(a: pa.Schema, b: pa.Schema) -> pa.Schema:
    return pa.unify_schemas([a, b], promote_options="permissive")


def _json_members(url: str) -> Iterator[dict]:
    with tarfile.open(url, mode="r:") as tar:
        for member in tar:
            if member.isreg() and member.name.endswith(".json"):
                file = tar.extractfile(member)
                assert file is not None
                yield json.loads(file.read())
