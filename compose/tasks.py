"""Shard tasks and how a plan is cut into them: what the run, its workers and resume share."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from compose import shards, storage
from compose.catalog import SCHEMA as CATALOG_SCHEMA
from compose.catalog import Catalog
from compose.catalog_rows import trimmed
from compose.plan import Budgets, Plan, Policy

ENGINES = ("local", "ray")
_ROWS = "catalog-rows-{}.arrow"


def default_workers() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """Where and how shards are written, and what runs the tasks."""

    out: str  # a folder or an fsspec URL
    prefix: str = "shard"
    shard_size: int = 100  # samples per shard
    style: str = "mmdu"
    workers: int = field(default_factory=default_workers)
    engine: str = "local"  # "local": a process pool; "ray": a Ray cluster
    ray_address: str | None = None  # join this cluster; None: start a local one
    resume: bool = False  # refuse to overwrite the shards of a different run
    validate: bool = True  # check every sample as it is built (a failure stops the run)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.workers < 1 or self.shard_size < 1:
            raise ValueError("workers and shard_size must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardTask:
    """Everything one shard is made from; picklable, so it runs in any process or machine."""

    index: int
    keys: tuple[str, ...]
    segments: pa.Table  # the shard's plan rows, by sample then position
    rows: pa.Table  # the catalog rows those segments use
    tokenizer: str
    stores: tuple[str | storage.Staged, ...]  # image store of each catalog source; a URL's
    # staged copy carries its URL, so a worker that cannot see the copy stages its own
    budgets: Budgets
    policy: Policy
    output: Output
    keep_finished: bool = True  # a verified shard already written by this run is kept


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardResult:
    stats: shards.ShardStats
    rows: list[dict]  # manifest rows of the shard's samples
    skipped: bool  # already written and verified


@dataclass(slots=True, kw_only=True)
class RunResult:
    out: str
    shards: list[shards.ShardStats] = field(default_factory=list)
    samples: int = 0
    images: int = 0
    tokens: int = 0
    skipped: int = 0
    seconds: float = 0.0


def sample_key(sample: int) -> str:
    return f"s{sample:08d}"


def shard_tasks(
    cat: Catalog,
    rows: Path,
    plan: Plan,
    budgets: Budgets,
    policy: Policy,
    output: Output,
    *,
    keep_finished: bool = True,
) -> Iterator[ShardTask]:
    """Cut the plan into tasks of `shard_size` consecutive samples, one at a time."""
    segments = plan.segments.sort("sample", "position")
    sample = segments["sample"].to_numpy()
    starts = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]]) if len(sample) else sample
    bounds = np.r_[starts, len(sample)]
    stores = tuple(storage.portable(s["images"]) for s in cat.meta["sources"])
    size = output.shard_size
    for index, first in enumerate(range(0, len(starts), size)):
        lo, hi = int(bounds[first]), int(bounds[min(first + size, len(starts))])
        chunk = segments.slice(lo, hi - lo)
        numbers = sample[starts[first : first + size]]
        dialogues = np.unique(chunk["dialogue"].to_numpy())
        turns = np.zeros(len(dialogues), dtype=np.int64)  # messages each dialogue's segments read
        where = np.searchsorted(dialogues, chunk["dialogue"].to_numpy())
        np.maximum.at(turns, where, 2 * (chunk["last_turn"].to_numpy().astype(np.int64) + 1))
        yield ShardTask(
            index=index,
            keys=tuple(sample_key(int(s)) for s in numbers),
            segments=chunk.to_arrow(),
            rows=trimmed(_take(rows, dialogues), turns),
            tokenizer=cat.meta["tokenizer"]["spec"],
            stores=stores,
            budgets=budgets,
            policy=policy,
            output=output,
            keep_finished=keep_finished,
        )


def row_cache(cat: Catalog, work: Path) -> Path:
    """The catalog as one uncompressed Arrow file (built once per catalog, removed when the run
    is done): memory-mapped, any row is read in time and memory of its own size, where a
    compressed Parquet part would be decoded whole for each row."""
    digest = hashlib.sha256(orjson.dumps(cat.meta, option=orjson.OPT_SORT_KEYS)).hexdigest()
    path = work / _ROWS.format(digest[:16])
    if path.exists():
        return path
    for old in work.glob(_ROWS.format("*")):
        old.unlink()
    temp = work / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        _write_rows(cat, temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _write_rows(cat: Catalog, path: Path) -> None:
    expected = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, CATALOG_SCHEMA) as writer:
        for part in cat.part_paths:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=1024):
                table = pa.Table.from_batches([batch]).cast(CATALOG_SCHEMA)
                numbers = table["row"].to_numpy()
                if not np.array_equal(numbers, np.arange(expected, expected + len(numbers))):
                    raise ValueError(f"{part}: catalog rows are not numbered in order")
                expected += len(numbers)
                writer.write_table(table)


def _take(path: Path, rows: np.ndarray) -> pa.Table:
    """Rows (sorted, unique) of the memory-mapped catalog, batch by batch (`Table.take` would
    first concatenate every batch, copying the whole catalog). The file is mapped for this
    call only, so the pages read for one task do not stay in this process's RSS."""
    reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
    batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
    starts = np.cumsum([0, *(b.num_rows for b in batches)])
    which = np.searchsorted(starts, rows, side="right") - 1
    taken = [
        batches[b].take(pa.array(rows[which == b] - starts[b])) for b in np.unique(which).tolist()
    ]
    return pa.Table.from_batches(taken, schema=CATALOG_SCHEMA)
