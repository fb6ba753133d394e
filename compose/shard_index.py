"""The files that index a run's shards: `manifest.parquet` (one row per sample, where it is
and what it holds) and `shards.json` (the wids shard list random-access loaders read)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from compose.shards import (
    BLOCK,
    INDEX_NAME,
    MANIFEST_NAME,
    WIDS_KIND,
    WIDS_VERSION,
    ShardStats,
    is_int,
    json_bytes,
    key_order,
    temp_path,
    write_atomic,
)

LOCATION = ("key", "shard", "offset")  # filled in by the manifest from the shards' stats


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
    temp = temp_path(path)
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
    for row in sorted(rows, key=lambda r: key_order(r["key"])):
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
    columns = ["key", "shard", "offset", *(f for f in fields if f not in LOCATION)]
    try:
        return pa.Table.from_pylist(table_rows).select(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"manifest rows do not form a table: {exc}") from exc


def _place(row: dict) -> tuple[str, int]:
    shard, offset = row.get("shard"), row.get("offset")
    if not isinstance(shard, str) or not is_int(offset) or offset < 0 or offset % BLOCK:
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
    first = min(rows, key=lambda r: key_order(r["key"]))
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
    write_atomic(path, json_bytes(index))
    return path
