"""manifest.parquet rows: built by a worker, read back from a kept shard, streamed by the run."""

from __future__ import annotations

import os
import secrets
import tarfile
from collections.abc import Sequence
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from compose import shards

MANIFEST_GROUP = 65536  # manifest rows per Parquet row group


def manifest_row(sample: dict, shard: str, offset: int) -> dict:
    tokens = sample["tokens"]
    segments = [s for s in sample["segments"] if not s.get("probe")]
    probes = sample.get("probes", [])
    return {
        "key": sample["key"],
        "shard": shard,
        "offset": offset,
        "tokens": tokens["total"],
        "text_tokens": tokens["text"],
        "image_tokens": tokens["image"],
        "images": len(sample["images"]),
        "turns": len(sample["messages"]) // 2,
        "segments": len(segments),
        "fill": tokens.get("fill"),
        "sources": [s["dialogue"] for s in segments],
        # stress sets (docs/stress-sets.md): lists run parallel to `sources` / to each other
        "budget": tokens.get("budget"),
        "source_files": [s["file"] for s in segments],
        "source_tokens": [s.get("tokens", 0) for s in segments],
        "probes": len(probes),
        "probe_dialogues": [p["dialogue"] for p in probes],
        "probe_turns": [p["turn"] for p in probes],
        "probe_images": [p["images"] for p in probes],
        "probe_reach_tokens": [p["reach_tokens"] for p in probes],
        "probe_reach_images": [p["reach_images"] for p in probes],
    }


MANIFEST_TYPES = {
    "key": pa.string(),
    "shard": pa.string(),
    "offset": pa.int64(),
    "tokens": pa.int64(),
    "text_tokens": pa.int64(),
    "image_tokens": pa.int64(),
    "images": pa.int64(),
    "turns": pa.int64(),
    "segments": pa.int64(),
    "fill": pa.float64(),
    "sources": pa.list_(pa.string()),
    "budget": pa.int64(),
    "source_files": pa.list_(pa.string()),
    "source_tokens": pa.list_(pa.int64()),
    "probes": pa.int64(),
    "probe_dialogues": pa.list_(pa.string()),
    "probe_turns": pa.list_(pa.int64()),
    "probe_images": pa.list_(pa.list_(pa.int64())),
    "probe_reach_tokens": pa.list_(pa.int64()),
    "probe_reach_images": pa.list_(pa.int64()),
}


class ManifestWriter:
    """manifest.parquet, streamed: rows arrive shard by shard in key order and leave in row
    groups of MANIFEST_GROUP, so the manifest never sits whole in memory. Written under a
    temporary name and renamed when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        self.writer: pq.ParquetWriter | None = None
        self.batch: list[dict] = []
        self.last = ""

    def add(self, rows: Sequence[dict]) -> None:
        for row in rows:
            if row["key"] + "." <= self.last + ".":
                raise ValueError(f"manifest: key {row['key']!r} comes after {self.last!r}")
            self.last = row["key"]
        self.batch.extend(rows)
        if len(self.batch) >= MANIFEST_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self.batch:
            return
        table = pa.Table.from_pylist(self.batch)
        table = table.cast(
            pa.schema(
                [
                    pa.field(name, MANIFEST_TYPES.get(name, table.schema.field(name).type))
                    for name in table.column_names
                ]
            )
        )
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.temp, table.schema, compression="zstd")
        self.writer.write_table(table, row_group_size=MANIFEST_GROUP)
        self.batch = []

    def close(self) -> None:
        self._flush()
        if self.writer is None:
            raise ValueError("no manifest rows to write")
        self.writer.close()
        os.replace(self.temp, self.path)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.temp.unlink(missing_ok=True)


def rows_from_shard(path: Path, stats: shards.ShardStats) -> list[dict]:
    """Manifest rows of a written shard, read back from its JSON members only."""
    rows = []
    with tarfile.open(path, "r:") as tar:
        jsons = [m for m in tar if m.name.endswith(".json")]
        if len(jsons) != len(stats.offsets):
            raise ValueError(f"{path}: {len(jsons)} samples, the stats say {len(stats.offsets)}")
        for member, offset in zip(jsons, stats.offsets, strict=True):
            sample = orjson.loads(tar.extractfile(member).read())
            rows.append(manifest_row(sample, stats.name, offset))
    return rows
