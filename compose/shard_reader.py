"""Reading finished shards back, and checking one against its stats file.

The reader accepts exactly the USTAR subset `compose.shards` writes (checksums, regular files,
no prefix field) and says where a shard is malformed; resume and `compose validate` trust a
shard only through `verify_shard`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from compose.shards import BLOCK, MEMBER_NAME, ZEROS, ShardStats, number_width


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
        if block == ZEROS[:BLOCK]:
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
                match = MEMBER_NAME.fullmatch(name)
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
        width = number_width(len(numbers))
        if "json" not in parts:
            problems.append(f"{path}: sample {key} has no {key}.json member")
        if numbers != [f"{n:0{width}d}" for n in range(1, len(numbers) + 1)]:
            problems.append(f"{path}: sample {key} images are not numbered 1..{len(numbers)}")
    return problems
