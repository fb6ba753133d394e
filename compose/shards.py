"""Deterministic WebDataset tar shards, their stats files, the manifest and the shard index.

A shard is a plain USTAR tar whose headers are built here byte by byte, so the same samples give
the same bytes on any Python version and machine: members sorted by name, mtime 0, uid/gid 0,
mode 0644, empty user and group names, padded to 10240-byte records like GNU tar. A sample is
`KEY.json` plus `KEY.NNN.EXT` per image, the image bytes exactly as given. webdataset groups
members by the part of the name before the first dot, so keys hold no dots. A shard is written
under a temporary name and renamed; its `.stats.json` is written after the rename and is the
completion marker a resume trusts. docs/shards.md describes the output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

BLOCK = 512
RECORD = 20 * BLOCK  # GNU tar's and Python tarfile's default record size
MTIME = 0
MODE = 0o644
NAME_MAX = 100  # the USTAR name field; names are never split into the prefix field
MAX_SIZE = 8**11 - 1  # largest size an 11-digit octal field holds (8 GiB - 1)
MANIFEST_NAME = "manifest.parquet"
INDEX_NAME = "shards.json"
WIDS_KIND = "wids-shard-index-v1"
WIDS_VERSION = 1

# A leading letter or digit keeps keys clear of webdataset's `__meta__` members and of options;
# '-' and '_' allow readable keys. Lowercase extensions: webdataset lowercases suffixes on read.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_EXT = re.compile(r"[a-z0-9]{1,16}")
_MEMBER = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]*)\.(?:json|(\d{3,})\.([a-z0-9]{1,16}))")
_ZEROS = bytes(RECORD)
_HEADER = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12s")
_LOCATION = ("key", "shard", "offset")
_PIL_EXT = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif", "JPEG2000": "jp2"}


def image_extension(pillow_format: str) -> str:
    """Member extension for a Pillow format name (`JPEG` -> `jpg`, `PNG` -> `png`, ...)."""
    ext = _PIL_EXT.get(pillow_format.upper(), pillow_format.lower())
    if not _EXT.fullmatch(ext):
        raise ValueError(f"image format {pillow_format!r} has no usable file extension")
    return ext


def check_key(key: str) -> None:
    """Raise ValueError unless `key` can name a sample: webdataset splits names at the first dot."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(
            f"sample key {key!r} is not usable: keys are ASCII letters, digits, '-' and '_', "
            "starting with a letter or digit (no dots, no slashes)"
        )


def _order(key: str) -> str:
    # Comparing `key + "."` keeps every member name of the whole shard sorted: `a` before `a-b`
    # would otherwise put `a-b.json` ('-' < '.') ahead of `a.json`.
    return key + "."


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleRecord:
    """One sample as it goes into a shard: its key, its JSON bytes and its images' bytes."""

    key: str
    sample_json: bytes
    images: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        check_key(self.key)
        if not isinstance(self.sample_json, bytes | bytearray | memoryview):
            raise ValueError(f"sample {self.key}: sample_json must be bytes")
        width = _number_width(len(self.images))
        for number, image in enumerate(self.images, 1):
            if not (isinstance(image, tuple) and len(image) == 2):
                raise ValueError(f"sample {self.key}: image {number} is not (extension, bytes)")
            ext, data = image
            if not isinstance(ext, str) or not _EXT.fullmatch(ext):
                raise ValueError(
                    f"sample {self.key}: image {number} extension {ext!r} is not 1-16 "
                    "lowercase letters or digits"
                )
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ValueError(f"sample {self.key}: image {number} data must be bytes")
        longest = max([5, *(2 + width + len(ext) for ext, _ in self.images)])
        if len(self.key) + longest > NAME_MAX:
            raise ValueError(
                f"sample key {self.key!r} is too long: member names must fit {NAME_MAX} bytes"
            )

    def members(self) -> list[tuple[str, bytes]]:
        """Member names and bytes in name order (images first: digits sort before `json`)."""
        count = len(self.images)
        names = [image_member(self.key, n, count, ext) for n, (ext, _) in enumerate(self.images, 1)]
        pairs = [(name, data) for name, (_, data) in zip(names, self.images, strict=True)]
        return sorted([*pairs, (f"{self.key}.json", self.sample_json)])


def image_member(key: str, number: int, n_images: int, ext: str) -> str:
    """The member name of image `number` of a sample with `n_images` images."""
    return f"{key}.{number:0{_number_width(n_images)}d}.{ext}"


def _number_width(n_images: int) -> int:
    # At least 3 digits; wider only when a sample has 1000+ images, so names still sort by number.
    return max(3, len(str(n_images)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardStats:
    """What one finished shard holds; its `.stats.json` marks the shard complete."""

    name: str
    samples: int
    bytes: int
    sha256: str
    first_key: str
    last_key: str
    offsets: tuple[int, ...]  # per sample: byte offset of its first member's header
    keys: tuple[str, ...] = ()  # per sample, in shard order (empty only in hand-made stats)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "samples": self.samples,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "first_key": self.first_key,
            "last_key": self.last_key,
            "keys": list(self.keys),
            "offsets": list(self.offsets),
        }

    @classmethod
    def from_json(cls, d: Any) -> ShardStats:
        """Parse a stats object; raises ValueError saying which field is wrong."""
        if not isinstance(d, dict):
            raise ValueError("stats must be a JSON object")
        fields = {"name": str, "sha256": str, "first_key": str, "last_key": str}
        for field, kind in [*fields.items(), ("samples", int), ("bytes", int)]:
            value = d.get(field)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"stats field {field!r} is missing or not {kind.__name__}")
        offsets, keys = d.get("offsets"), d.get("keys", [])
        if not isinstance(offsets, list) or not all(_is_int(o) for o in offsets):
            raise ValueError("stats field 'offsets' must be a list of integers")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("stats field 'keys' must be a list of strings")
        stats = cls(
            name=d["name"],
            samples=d["samples"],
            bytes=d["bytes"],
            sha256=d["sha256"],
            first_key=d["first_key"],
            last_key=d["last_key"],
            offsets=tuple(offsets),
            keys=tuple(keys),
        )
        _check_consistent(stats)
        return stats


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_consistent(stats: ShardStats) -> None:
    if stats.samples < 1 or len(stats.offsets) != stats.samples:
        raise ValueError(f"stats of {stats.name}: {stats.samples} samples, offsets disagree")
    if stats.keys and (
        len(stats.keys) != stats.samples
        or (stats.keys[0], stats.keys[-1]) != (stats.first_key, stats.last_key)
    ):
        raise ValueError(f"stats of {stats.name}: keys disagree with samples or first/last key")
    if not re.fullmatch(r"[0-9a-f]{64}", stats.sha256):
        raise ValueError(f"stats of {stats.name}: sha256 is not 64 hex digits")


def shard_name(prefix: str, index: int) -> str:
    """`{prefix}-{index:06d}.tar`."""
    if not prefix or "/" in prefix or "\\" in prefix or not _is_int(index) or index < 0:
        raise ValueError(f"bad shard prefix or index: {prefix!r}, {index!r}")
    return f"{prefix}-{index:06d}.tar"


def stats_name(prefix: str, index: int) -> str:
    """`{prefix}-{index:06d}.stats.json`, the shard's completion marker."""
    return shard_name(prefix, index).removesuffix(".tar") + ".stats.json"


def _header(name: str, size: int) -> bytes:
    """One USTAR header with the fixed metadata; the same bytes Python 3.11's tarfile writes."""
    if size > MAX_SIZE:
        raise ValueError(f"member {name} is {size} bytes, over the USTAR limit of {MAX_SIZE}")
    block = _HEADER.pack(
        name.encode("ascii"),
        b"%07o\0" % MODE,
        b"%07o\0" % 0,  # uid
        b"%07o\0" % 0,  # gid
        b"%011o\0" % size,
        b"%011o\0" % MTIME,
        b" " * 8,  # checksum placeholder: counted as spaces
        b"0",  # regular file
        b"",  # linkname
        b"ustar\0",
        b"00",
        b"",  # uname
        b"",  # gname
        b"",  # devmajor: empty for regular files
        b"",  # devminor
        b"",  # prefix
        b"",
    )
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]


class _TarStream:
    """Appends samples to an unbuffered binary file, hashing every byte and counting the
    position. A sample's members go down in one `writev`: a buffered writer would copy every
    image once more into its buffer. Hashing in a helper thread was measured no faster on this
    2-core machine, so it stays inline."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        try:
            self._fd: int | None = file.fileno()
        except (OSError, ValueError):  # an in-memory file (io.UnsupportedOperation)
            self._fd = None
        self._sha = hashlib.sha256()
        self.position = 0

    def add_sample(self, members: Sequence[tuple[str, bytes]]) -> None:
        chunks: list[bytes] = []
        for name, data in members:
            size = memoryview(data).nbytes
            chunks += (_header(name, size), data, _ZEROS[: -size % BLOCK])
            self.position += BLOCK + size + (-size % BLOCK)
        for chunk in chunks:
            self._sha.update(chunk)
        self._write(chunks)

    def finish(self) -> str:
        """Write the end-of-archive blocks and record padding; returns the sha256 hex."""
        end = self.position + 2 * BLOCK
        tail = _ZEROS[: end + (-end % RECORD) - self.position]
        self._write([tail])
        self._sha.update(tail)
        self.position += len(tail)
        return self._sha.hexdigest()

    def _write(self, chunks: list[bytes]) -> None:
        if self._fd is None:
            for chunk in chunks:
                self._file.write(chunk)
        else:
            _write_all(self._fd, chunks)


_IOV_MAX = 1024  # POSIX guarantees at least 16; Linux allows 1024 buffers per writev


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """Every byte of `chunks`, in order, whatever short writes the kernel makes."""
    views = [memoryview(c) for c in chunks if len(c)]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= views[0].nbytes:
            written -= views.pop(0).nbytes
        if written:
            views[0] = views[0][written:]


def write_shard(
    out_dir: str | Path, prefix: str, index: int, samples: Iterable[SampleRecord]
) -> ShardStats:
    """Write one shard atomically, then its stats file; returns the stats.

    Streams: only the current sample is held. Samples must come in increasing key order.
    Raises ValueError on an empty shard, a bad or out-of-order key; on any error neither the
    tar nor the stats file of this shard is left behind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = shard_name(prefix, index)
    final, marker = out / name, out / stats_name(prefix, index)
    marker.unlink(missing_ok=True)  # a stale marker must never vouch for the new tar
    final.unlink(missing_ok=True)
    temp = _temp_path(final)
    try:
        with open(temp, "xb", buffering=0) as file:
            stats = _write_tar(_TarStream(file), name, samples)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    write_atomic(marker, _json_bytes(stats.to_json()))
    return stats


def _write_tar(tar: _TarStream, name: str, samples: Iterable[SampleRecord]) -> ShardStats:
    keys: list[str] = []
    offsets: list[int] = []
    for sample in samples:
        if not isinstance(sample, SampleRecord):
            raise ValueError(f"{name}: expected a SampleRecord, got {type(sample).__name__}")
        if keys and _order(sample.key) <= _order(keys[-1]):
            raise ValueError(
                f"{name}: sample key {sample.key!r} does not come after {keys[-1]!r}: "
                "samples must come in increasing key order"
            )
        keys.append(sample.key)
        offsets.append(tar.position)
        tar.add_sample(sample.members())
    if not keys:
        raise ValueError(f"{name}: no samples (empty shards are not written)")
    sha256 = tar.finish()
    return ShardStats(
        name=name,
        samples=len(keys),
        bytes=tar.position,
        sha256=sha256,
        first_key=keys[0],
        last_key=keys[-1],
        offsets=tuple(offsets),
        keys=tuple(keys),
    )


def _temp_path(final: Path) -> Path:
    # Hidden and not ending in .tar, so no glob of finished shards ever matches it.
    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` under a temporary name beside `path`, then rename: never half a file."""
    temp = _temp_path(path)
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def load_stats(out_dir: str | Path, prefix: str, index: int) -> ShardStats | None:
    """The shard's stats if it is complete: marker readable and tar present with its size."""
    out = Path(out_dir)
    try:
        stats = ShardStats.from_json(json.loads((out / stats_name(prefix, index)).read_bytes()))
        size = (out / shard_name(prefix, index)).stat().st_size
    except (OSError, ValueError):
        return None
    if stats.name != shard_name(prefix, index) or size != stats.bytes:
        return None
    return stats


def _parse_header(block: bytes, where: str) -> tuple[str, int]:
    """Name and size of one header of the USTAR subset this module writes."""
    try:
        stored = int(block[148:156].rstrip(b"\0 "), 8)
    except ValueError:
        stored = -1
    if stored != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        raise ValueError(f"{where}: bad header checksum")
    if block[257:263] != b"ustar\0":
        raise ValueError(f"{where}: not a USTAR header")
    if block[156:157] not in (b"0", b"\0"):
        raise ValueError(f"{where}: member is not a regular file")
    if block[345:500].strip(b"\0"):
        raise ValueError(f"{where}: name uses the USTAR prefix field")
    try:
        name = block[:100].split(b"\0", 1)[0].decode("ascii")
        size = int(block[124:136].rstrip(b"\0 ") or b"0", 8)
    except ValueError as exc:
        raise ValueError(f"{where}: unreadable name or size") from exc
    return name, size


def _walk(file: IO[bytes], path: Path) -> Iterator[tuple[str, int, int]]:
    """(name, header offset, size) per member; raises ValueError at the first malformed spot."""
    end = os.fstat(file.fileno()).st_size
    offset = 0
    while True:
        file.seek(offset)
        block = file.read(BLOCK)
        if len(block) < BLOCK:
            raise ValueError(f"{path}: truncated at byte {offset} (no end-of-archive blocks)")
        if block == _ZEROS[:BLOCK]:
            return
        name, size = _parse_header(block, f"{path}: header at byte {offset}")
        if offset + BLOCK + size > end:
            raise ValueError(f"{path}: member {name} is truncated (file ends at byte {end})")
        yield name, offset, size
        offset += BLOCK + size + (-size % BLOCK)


def read_members(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Every member of a shard in order, as (name, bytes); ValueError on a malformed tar."""
    path = Path(path)
    with open(path, "rb") as file:
        for name, offset, size in _walk(file, path):
            file.seek(offset + BLOCK)
            yield name, file.read(size)


def verify_shard(path: str | Path, stats: ShardStats) -> list[str]:
    """Problems of a finished shard against its stats (size, sha256, members); [] if none."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as exc:
        return [f"{path}: cannot read: {exc.strerror or exc}"]
    problems = []
    if size != stats.bytes:
        problems.append(f"{path}: {size} bytes, stats say {stats.bytes}")
    if digest != stats.sha256:
        problems.append(f"{path}: sha256 {digest} differs from the stats' {stats.sha256}")
    return problems + _member_problems(path, stats)


def _member_problems(path: Path, stats: ShardStats) -> list[str]:
    samples: list[tuple[str, int, list[str]]] = []  # key, offset, image numbers as written
    problems: list[str] = []
    previous = ""
    try:
        with open(path, "rb") as file:
            for name, offset, _ in _walk(file, path):
                match = _MEMBER.fullmatch(name)
                if not match:
                    problems.append(f"{path}: member {name!r} is not KEY.json or KEY.NNN.EXT")
                    continue
                if name <= previous:
                    problems.append(f"{path}: member {name} is out of order after {previous}")
                previous = name
                key, number = match.group(1), match.group(2)
                if not samples or samples[-1][0] != key:
                    samples.append((key, offset, []))
                if number is None:
                    samples[-1][2].append("json")
                else:
                    samples[-1][2].append(number)
    except ValueError as exc:
        return [*problems, str(exc)]
    return problems + _sample_problems(path, stats, samples)


def _sample_problems(
    path: Path, stats: ShardStats, samples: list[tuple[str, int, list[str]]]
) -> list[str]:
    problems = []
    keys = [key for key, _, _ in samples]
    if len(keys) != stats.samples:
        problems.append(f"{path}: {len(keys)} samples, stats say {stats.samples}")
    if keys and (keys[0], keys[-1]) != (stats.first_key, stats.last_key):
        problems.append(f"{path}: first/last key {keys[0]}/{keys[-1]} differ from the stats'")
    if stats.keys and tuple(keys) != stats.keys:
        problems.append(f"{path}: sample keys differ from the stats' keys")
    if tuple(offset for _, offset, _ in samples) != stats.offsets:
        problems.append(f"{path}: sample offsets differ from the stats' offsets")
    for key, _, parts in samples:
        numbers = [p for p in parts if p != "json"]
        width = _number_width(len(numbers))
        if "json" not in parts:
            problems.append(f"{path}: sample {key} has no {key}.json member")
        if numbers != [f"{n:0{width}d}" for n in range(1, len(numbers) + 1)]:
            problems.append(f"{path}: sample {key} images are not numbered 1..{len(numbers)}")
    return problems


def write_manifest(
    out_dir: str | Path, rows: Sequence[dict], *, stats: Sequence[ShardStats] | None = None
) -> Path:
    """Write `manifest.parquet`, one row per sample sorted by key, with `shard` and `offset`.

    `offset` is the byte offset of the sample's first tar header in `shard`, for random access.
    With `stats`, both are filled in from the shards' stats (a row that has them must agree)
    and every sample of those shards needs exactly one row; without, every row must carry them.
    Every row needs the same fields.
    """
    located = None if stats is None else _locate(stats)
    table = _manifest_table(rows, located)
    path = Path(out_dir) / MANIFEST_NAME
    temp = _temp_path(path)
    try:
        pq.write_table(table, temp, compression="zstd")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _manifest_table(rows: Sequence[dict], located: dict[str, tuple[str, int]] | None) -> pa.Table:
    if not rows:
        raise ValueError("no manifest rows to write")
    fields = _common_fields(rows)
    table_rows = []
    places: set[tuple[str, int]] = set()
    for row in sorted(rows, key=lambda r: _order(r["key"])):
        key = row["key"]
        if table_rows and table_rows[-1]["key"] == key:
            raise ValueError(f"manifest rows: key {key!r} occurs twice")
        place = _place(row) if located is None else _checked_place(row, located)
        if place in places:
            raise ValueError(f"manifest row {key!r}: another row has shard and offset {place}")
        places.add(place)
        table_rows.append({**row, "shard": place[0], "offset": place[1]})
    if located:
        example = min(located)
        raise ValueError(f"{len(located)} shard samples have no manifest row, e.g. {example!r}")
    columns = ["key", "shard", "offset", *(f for f in fields if f not in _LOCATION)]
    try:
        return pa.Table.from_pylist(table_rows).select(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"manifest rows do not form a table: {exc}") from exc


def _place(row: dict) -> tuple[str, int]:
    shard, offset = row.get("shard"), row.get("offset")
    if not isinstance(shard, str) or not _is_int(offset) or offset < 0 or offset % BLOCK:
        raise ValueError(
            f"manifest row {row['key']!r} needs a shard name and a header offset "
            f"(got {shard!r}, {offset!r}), or pass the shards' stats"
        )
    return shard, offset


def _checked_place(row: dict, located: dict[str, tuple[str, int]]) -> tuple[str, int]:
    key = row["key"]
    if key not in located:
        raise ValueError(f"manifest row {key!r} is in no shard's stats")
    place = located.pop(key)
    for field, value in zip(("shard", "offset"), place, strict=True):
        if field in row and row[field] != value:
            raise ValueError(f"manifest row {key!r}: {field} is {row[field]!r}, not {value!r}")
    return place


def _locate(stats: Sequence[ShardStats]) -> dict[str, tuple[str, int]]:
    located: dict[str, tuple[str, int]] = {}
    for shard in stats:
        if len(shard.keys) != shard.samples:
            raise ValueError(f"stats of {shard.name} list no sample keys")
        for key, offset in zip(shard.keys, shard.offsets, strict=True):
            if key in located:
                raise ValueError(f"sample key {key!r} is in {located[key][0]} and {shard.name}")
            located[key] = (shard.name, offset)
    return located


def _common_fields(rows: Sequence[dict]) -> list[str]:
    """The rows' fields, in the order of the row with the smallest key; all rows must agree."""
    for position, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("key"), str):
            raise ValueError(f"manifest row {position} has no string 'key'")
    first = min(rows, key=lambda r: _order(r["key"]))
    fields = list(first)
    expected = set(fields) | {"shard", "offset"}
    for row in rows:
        if set(row) | {"shard", "offset"} != expected:
            raise ValueError(
                f"manifest row {row['key']!r} has fields {sorted(row)}, "
                f"row {first['key']!r} has {sorted(first)}"
            )
    return fields


def write_index(out_dir: str | Path, stats: Sequence[ShardStats], *, name: str) -> Path:
    """Write `shards.json`, the shard index webdataset's `wids.ShardListDataset` reads.

    Urls are relative (the shard file names): wids resolves them against the index's folder.
    """
    if not stats:
        raise ValueError("no shards to index")
    names = [s.name for s in stats]
    if len(set(names)) != len(names):
        raise ValueError("shard index: the same shard is listed twice")
    shardlist = [
        {"url": s.name, "nsamples": s.samples, "filesize": s.bytes, "sha256": s.sha256}
        for s in sorted(stats, key=lambda s: s.name)
    ]
    index = {
        "__kind__": WIDS_KIND,
        "wids_version": WIDS_VERSION,
        "name": name,
        "shardlist": shardlist,
    }
    path = Path(out_dir) / INDEX_NAME
    write_atomic(path, _json_bytes(index))
    return path
