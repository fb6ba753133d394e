"""Deterministic WebDataset tar shards, their stats files, the manifest and the shard index.

A shard is a plain USTAR tar whose headers are built here byte by byte, so the same samples give
the same bytes on any Python version and machine: members sorted by name, mtime 0, uid/gid 0,
mode 0644, empty user and group names, padded to 10240-byte records like GNU tar. A sample is
`KEY.json` plus `KEY.NNN.EXT` per image, the image bytes exactly as given. webdataset groups
members by the part of the name before the first dot, so keys hold no dots. A shard is written
under a temporary name and renamed; its `.stats.json` is written after the rename and is the
completion marker a resume trusts. docs/shards.md describes the output folder.

Reading and checking finished shards is `compose.shard_reader`; the manifest and the shard
index are `compose.shard_index`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
MEMBER_NAME = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]*)\.(?:json|(\d{3,})\.([a-z0-9]{1,16}))")
ZEROS = bytes(RECORD)
_HEADER = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12s")
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


def key_order(key: str) -> str:
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
        width = number_width(len(self.images))
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
    return f"{key}.{number:0{number_width(n_images)}d}.{ext}"


def number_width(n_images: int) -> int:
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
        if not isinstance(offsets, list) or not all(is_int(o) for o in offsets):
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


def is_int(value: object) -> bool:
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
    if not prefix or "/" in prefix or "\\" in prefix or not is_int(index) or index < 0:
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
            chunks += (_header(name, size), data, ZEROS[: -size % BLOCK])
            self.position += BLOCK + size + (-size % BLOCK)
        for chunk in chunks:
            self._sha.update(chunk)
        self._write(chunks)

    def finish(self) -> str:
        """Write the end-of-archive blocks and record padding; returns the sha256 hex."""
        end = self.position + 2 * BLOCK
        tail = ZEROS[: end + (-end % RECORD) - self.position]
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
    temp = temp_path(final)
    try:
        with open(temp, "xb", buffering=0) as file:
            stats = _write_tar(_TarStream(file), name, samples)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    write_atomic(marker, json_bytes(stats.to_json()))
    return stats


def _write_tar(tar: _TarStream, name: str, samples: Iterable[SampleRecord]) -> ShardStats:
    keys: list[str] = []
    offsets: list[int] = []
    for sample in samples:
        if not isinstance(sample, SampleRecord):
            raise ValueError(f"{name}: expected a SampleRecord, got {type(sample).__name__}")
        if keys and key_order(sample.key) <= key_order(keys[-1]):
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


def temp_path(final: Path) -> Path:
    # Hidden and not ending in .tar, so no glob of finished shards ever matches it.
    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` under a temporary name beside `path`, then rename: never half a file."""
    temp = temp_path(path)
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def json_bytes(obj: object) -> bytes:
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
