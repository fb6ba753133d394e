"""Stream the records of a big JSON file without loading it: split first, then parse each record.

Three layouts: a top-level array (MMDU-45k is one 1.28 GB array), a top-level object keyed by id
(the MMDU benchmark), and JSON lines. The work is in four modules, each with one job: telling the
layout (`jsonlayout`), finding the structure with numpy (`jsonscan`), cutting the stream into
records and resynchronising after damage (`jsonsplit`), and parsing one record within the limits
(`jsonrecord`); the bytes come through `bytestream` (gzip inflated as read). This module joins
them, and says where a damaged gzip stream stopped.

Byte offsets count in the decompressed stream when the input is gzip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from compose.model import SkipRecord
from compose.sources.bytestream import Inflated, open_bytes
from compose.sources.jsonlayout import LAYOUTS, first_byte, sniff_layout
from compose.sources.jsonrecord import Record, decode, is_bad_json
from compose.sources.jsonscan import longest_string, nesting_depth
from compose.sources.jsonsplit import BLOCK, split_container, split_lines
from compose.sources.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "BLOCK",
    "LAYOUTS",
    "Record",
    "decode",
    "iter_records",
    "iter_stream",
    "longest_string",
    "nesting_depth",
    "open_bytes",
    "sniff_layout",
]

_HEAD = 1 << 20  # bytes read to tell the layout


def iter_records(
    path: str, *, layout: str | None = None, limits: Limits = DEFAULT_LIMITS, block: int = BLOCK
) -> Iterator[Record]:
    """Yield every top-level record of a JSON array, id-keyed object or JSON-lines file."""
    with open_bytes(path) as stream:
        yield from iter_stream(stream, path, layout=layout, limits=limits, block=block)


def iter_stream(
    stream: BinaryIO,
    name: str,
    *,
    layout: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    block: int = BLOCK,
) -> Iterator[Record]:
    """`iter_records` over an open binary stream; `name` is used in messages."""
    records = _split_stream(stream, name, layout, limits, block)
    if isinstance(stream, Inflated):
        records = _with_damage(records, stream)
    yield from records


def _split_stream(
    stream: BinaryIO, name: str, layout: str | None, limits: Limits, block: int
) -> Iterator[Record]:
    head = _read_at_least(stream, _HEAD)  # whitespace or a BOM may come first
    if layout is None:
        layout = sniff_layout(head, name)
    elif layout not in LAYOUTS:
        raise ValueError(f"unknown JSON layout {layout!r} (expected one of {LAYOUTS})")
    if layout == "lines":
        yield from split_lines(stream, head, limits, block)
        return
    start = first_byte(head)
    opener = b"[" if layout == "array" else b"{"
    if start is None or head[start : start + 1] != opener:
        seen = head[start or 0 : (start or 0) + 40]
        raise ValueError(f"{name}: expected a JSON {layout} starting with {opener!r}, saw {seen!r}")
    yield from split_container(stream, head, start + 1, layout == "object", limits, block)


def _with_damage(records: Iterator[Record], stream: Inflated) -> Iterator[Record]:
    """Say where a damaged gzip stream stopped: in the record it cut (a `bad_json` reject by
    then), or as a reject of its own when no record was cut."""
    last = None
    for record in records:
        if last is not None:
            yield last
        last = record
    if stream.damage is None:
        if last is not None:
            yield last
        return
    if last is not None and is_bad_json(last):
        detail = f"{last.value.detail}; {stream.damage}"  # type: ignore[union-attr]
        yield last._replace(value=SkipRecord("bad_json", detail))
        return
    if last is not None:
        yield last
    index = last.index + 1 if last is not None else 0
    yield Record(index, stream.position, None, SkipRecord("bad_json", stream.damage))


def _read_at_least(stream: BinaryIO, size: int) -> bytes:
    chunks, total = [], 0
    while total < size:
        chunk = stream.read(size - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
