"""Runs a plan: shard tasks in a local process pool or on a Ray cluster, with resume.

A shard task carries everything its shard is made from (its plan rows, the catalog rows they use,
the tokenizer and image-store locations, the budgets), so its bytes depend only on the task:
any number of workers, on either engine, gives the same output. Tasks are cut from the plan one
at a time and at most a few per worker are in flight, so memory grows with the shard size and
the worker count, not with the corpus or the number of samples. Results come back in shard order,
and the manifest is streamed to disk as they arrive.

Resume: `resume.json` records the fingerprint of the run (catalog, plan, budgets, output
settings). A re-run with the same fingerprint keeps every shard whose stats file and bytes verify
and redoes the rest; `run.json`, written last, marks the whole run complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import signal
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata
from itertools import groupby
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from compose import __version__, shards, storage
from compose.catalog import SCHEMA as CATALOG_SCHEMA
from compose.catalog import Catalog, SourceSpec
from compose.catalog_rows import TaskRows, trimmed
from compose.plan import Budgets, Plan, Policy
from compose.sources import Limits, open_store
from compose.splice import PlannedSegment, SpliceConfig, compose_sample, file_name
from compose.tokens import image_model, load_tokenizer
from compose.validate import SampleBudgets, SampleInvalid, check_sample

RUN_FILE = "run.json"
RESUME_FILE = "resume.json"
MANIFEST = shards.MANIFEST_NAME
INDEX = shards.INDEX_NAME
PLAN_FILE = "plan.parquet"
ENGINES = ("local", "ray")
READ_THREADS = 4  # per worker: image reads in flight while it splices
READ_AHEAD = 2  # samples whose images are read ahead of the one being spliced
IN_FLIGHT = 2  # tasks queued per worker: enough to keep every worker busy
READ_THREADS = 4  # per worker: image reads in flight while it splices
READ_AHEAD = 2  # samples whose images are read ahead of the one being spliced
MANIFEST_GROUP = 65536  # manifest rows per Parquet row group
_TEMP = re.compile(r"\..+\.\d+-[0-9a-f]{8}\.tmp")  # shards._temp_path and ours
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


# --- the run ------------------------------------------------------------------------------


def run(
    catalog: str,
    plan: Plan,
    budgets: Budgets,
    policy: Policy,
    output: Output,
    *,
    on_shard: Callable[[shards.ShardStats, bool], None] | None = None,
) -> RunResult:
    """Write every shard of `plan`, keeping finished ones of the same run; then the manifest,
    the shard index and (for a remote output) the plan. The caller writes run.json last."""
    started = time.perf_counter()
    work = storage.workspace(output.out)
    work.mkdir(parents=True, exist_ok=True)
    _remove_temporary(work)
    cat = Catalog.open(catalog)
    keep = _begin(output, fingerprint(cat, plan, budgets, policy, output))
    rows = _row_cache(cat, work)
    tasks = shard_tasks(cat, rows, plan, budgets, policy, output, keep_finished=keep)
    result = RunResult(out=output.out)
    manifest = _ManifestWriter(work / MANIFEST)
    try:
        for done in _execute(tasks, output):
            result.shards.append(done.stats)
            result.skipped += done.skipped
            result.samples += len(done.rows)
            result.images += sum(r["images"] for r in done.rows)
            result.tokens += sum(r["tokens"] for r in done.rows)
            manifest.add(done.rows)
            if on_shard:
                on_shard(done.stats, done.skipped)
    except BaseException:
        manifest.abort()
        raise
    manifest.close()
    shards.write_index(work, result.shards, name=output.prefix)
    _remove_stale(output, len(result.shards))
    if storage.is_remote(output.out):
        for name in (MANIFEST, INDEX, PLAN_FILE):
            if (work / name).exists():
                storage.upload(work / name, storage.join(output.out, name))
    (work / rows.name).unlink(missing_ok=True)
    result.seconds = time.perf_counter() - started
    return result


def fingerprint(cat: Catalog, plan: Plan, budgets: Budgets, policy: Policy, output: Output) -> str:
    """What the shards' bytes depend on; equal fingerprints mean a finished shard can be kept."""
    digest = hashlib.sha256()
    digest.update(
        orjson.dumps(_placeless(cat.meta.get("key", cat.meta)), option=orjson.OPT_SORT_KEYS)
    )
    digest.update(plan.segments.write_ipc(None, compression="uncompressed").getvalue())
    settings = {
        "tool": __version__,
        "budgets": asdict(budgets),
        "policy": asdict(policy),
        "output": {k: getattr(output, k) for k in ("prefix", "shard_size", "style", "validate")},
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _placeless(key: dict) -> dict:
    """The catalog key with its inputs named by file name, as samples name them: a run resumed
    on another machine, with its inputs staged elsewhere, writes the same bytes."""
    sources = [
        {**s, **{k: file_name(str(s[k])) for k in ("path", "images") if k in s}}
        for s in key.get("sources", [])
    ]
    return {**key, "sources": sources} if "sources" in key else key


def _begin(output: Output, run_fingerprint: str) -> bool:
    """Record this run in OUT; True when the shards already there belong to it."""
    raw = _read(output.out, RESUME_FILE)
    try:
        previous = json.loads(raw)["fingerprint"] if raw is not None else None
    except (ValueError, KeyError, TypeError):
        previous = None
    same = previous == run_fingerprint
    if output.resume and previous is not None and not same:
        raise ValueError(
            f"--resume: {output.out} holds shards of a different run (other inputs, budgets, "
            "seed or output settings); run the same command as before, or drop --resume to "
            "overwrite them"
        )
    for name in (RUN_FILE, MANIFEST, INDEX):  # they describe a finished run; rewritten at the end
        _delete(output.out, name)
    record = {"fingerprint": run_fingerprint, "tool": f"compose {__version__}"}
    _write(output.out, RESUME_FILE, _json(record))
    return same


# --- tasks --------------------------------------------------------------------------------


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


def _row_cache(cat: Catalog, work: Path) -> Path:
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


# --- executing tasks ----------------------------------------------------------------------


def _execute(tasks: Iterable[ShardTask], output: Output) -> Iterator[ShardResult]:
    if output.engine == "ray":
        yield from _ray(tasks, output)
    elif output.workers <= 1 or storage.is_remote(output.out) and output.out.startswith("memory"):
        yield from map(write_task, tasks)  # memory:// lives in this process only
    else:
        yield from _pool(tasks, output.workers)


def _in_order(tasks: Iterable, submit: Callable, result: Callable, window: int) -> Iterator:
    """Results in task order, with at most `window` tasks submitted and not yet collected."""
    pending: deque = deque()
    for task in tasks:
        pending.append(submit(task))
        if len(pending) >= window:
            yield result(pending.popleft())
    while pending:
        yield result(pending.popleft())


def _leave_ctrl_c_to_the_parent() -> None:
    """Ctrl-C reaches the whole process group: a worker finishes its shard (written atomically)
    and the parent stops the pool, instead of every worker dying with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool(tasks: Iterable[ShardTask], workers: int) -> Iterator[ShardResult]:
    context = get_context("spawn")  # polars and tiktoken threads do not survive fork
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_leave_ctrl_c_to_the_parent
    )
    try:
        submit = lambda task: pool.submit(write_task, task)  # noqa: E731
        yield from _in_order(tasks, submit, lambda f: f.result(), IN_FLIGHT * workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray(tasks: Iterable[ShardTask], output: Output) -> Iterator[ShardResult]:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "--engine ray needs Ray: pip install 'compose-mm[ray]' (or pip install ray)"
        ) from None
    started = not ray.is_initialized()
    if started:
        if output.ray_address:
            ray.init(address=output.ray_address, log_to_driver=False)
        else:
            # "local": a new cluster of this process, never one that `ray start` (or
            # RAY_ADDRESS) left running on the machine; joining one takes --ray-address.
            ray.init(
                address="local",
                num_cpus=output.workers,
                include_dashboard=False,
                log_to_driver=False,
            )
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(write_task)
        window = IN_FLIGHT * max(1, int(ray.cluster_resources().get("CPU", output.workers)))
        yield from _in_order(tasks, remote.remote, ray.get, window)
    finally:
        if started:
            ray.shutdown()


# --- one shard (runs in a worker) ---------------------------------------------------------


@cache
def _worker_state(tokenizer: str, images: str):
    """Per process: the tokenizer and the image-token model, loaded once."""
    return load_tokenizer(tokenizer), image_model(images)


@cache
def _store(root: str | storage.Staged):
    return open_store(storage.local_copy(root), Limits())


def write_task(task: ShardTask) -> ShardResult:
    """Splice, check and write one shard, unless a verified copy of it is already there."""
    if task.keep_finished:
        done = _finished(task)
        if done is not None:
            return done
    out, prefix = task.output.out, task.output.prefix
    remote = storage.is_remote(out)
    folder = storage.workspace(out) / "shards" if remote else Path(storage.local_path(out))
    rows: list[dict] = []
    stats = shards.write_shard(folder, prefix, task.index, _records(task, rows))
    for row, offset in zip(rows, stats.offsets, strict=True):
        row["shard"], row["offset"] = stats.name, offset
    if remote:  # the tar first: a stats file on the remote side vouches for a whole tar
        marker = shards.stats_name(prefix, task.index)
        for name in (stats.name, marker):
            storage.upload(folder / name, storage.join(out, name))
            (folder / name).unlink()
    return ShardResult(stats=stats, rows=rows, skipped=False)


def _records(task: ShardTask, manifest: list[dict]) -> Iterator[shards.SampleRecord]:
    pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="compose-read")
    try:
        yield from _spliced(task, manifest, pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _read_image(task: ShardTask, source: int, image: dict) -> bytes:
    # The store proves the bytes are those ingest probed by the catalog's CRC-32 (free in a
    # zip, whose reader checks it anyway), so the sample check skips their sha256.
    return _store(task.stores[source]).read(image["member"], crc32=image["crc32"])


def _spliced(
    task: ShardTask, manifest: list[dict], pool: ThreadPoolExecutor
) -> Iterator[shards.SampleRecord]:
    """The task's samples, in order. Each sample's images are read in `pool` while the
    samples before it are spliced: on a corpus larger than memory they come from disk, and a
    worker reading them itself would leave its core idle (reads and zlib's CRC release the GIL)."""
    tokenizer, images = _worker_state(task.tokenizer, task.policy.image_tokens)
    budgets = task.budgets
    catalog = TaskRows(task.rows)  # only the turns a sample uses become Python objects
    for store in set(task.stores):
        _store(store)  # opened here, before any thread reads from it

    def fetch(sample: tuple[str, list[dict]]) -> tuple[str, list[dict], list[dict], Callable]:
        key, group = sample
        rows = catalog.rows([r["dialogue"] for r in group])
        futures = {
            (row["source"], image["member"]): pool.submit(_read_image, task, row["source"], image)
            for segment, row in zip(group, rows, strict=True)
            for image in row["images"][: segment["images"]]
        }

        def read_image(source: int, image: dict) -> bytes:
            future = futures.get((source, image["member"]))
            return future.result() if future is not None else _read_image(task, source, image)

        return key, group, rows, read_image

    by_sample = groupby(task.segments.to_pylist(), key=lambda r: r["sample"])
    samples = ((key, list(rows)) for key, (_, rows) in zip(task.keys, by_sample, strict=True))
    for key, group, rows, read_image in _ahead(samples, fetch, READ_AHEAD):
        planned = [_planned(r, row) for r, row in zip(group, rows, strict=True)]
        at = budgets.at(group[0].get("budget", budgets.tokens))  # this sample's length
        config = SpliceConfig(
            style=task.output.style,
            message_overhead=at.message_overhead,
            token_budget=at.tokens,
        )
        sample_budgets = SampleBudgets(
            tokens=at.tokens,
            floor=at.floor,
            max_images=at.max_images,
            min_images=at.min_images,
            probes=at.probes,
            min_reach=at.reach() if at.probes else 0,
        )
        composed = compose_sample(
            key,
            planned,
            read_image=read_image,
            tokenizer=tokenizer,
            image_model=images,
            config=config,
        )
        if task.output.validate:
            blobs = {
                image["member"]: data
                for image, (_, data) in zip(composed.sample["images"], composed.images, strict=True)
            }
            problems = check_sample(
                composed.sample,
                budgets=sample_budgets,
                blobs=blobs,
                decode_images=False,
                images_verified=True,
            )
            if problems:
                raise SampleInvalid(problems)
        manifest.append(manifest_row(composed.sample, "", 0))
        yield shards.SampleRecord(
            key=key,
            sample_json=orjson.dumps(composed.sample, option=orjson.OPT_SORT_KEYS),
            images=composed.images,
        )


def _ahead(items: Iterable, fetch: Callable, depth: int) -> Iterator:
    """`fetch(item)` of every item in order, each called `depth` items before it is yielded."""
    pending: deque = deque()
    for item in items:
        pending.append(fetch(item))
        if len(pending) > depth:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


def _planned(segment: dict, row: dict) -> PlannedSegment:
    """A plan row with its catalog row attached."""
    probe = {"probe": True} if segment.get("probe") else {}  # plans with probes only
    return PlannedSegment(
        row=row,
        first_turn=segment["first_turn"],
        last_turn=segment["last_turn"],
        image_offset=segment["image_offset"],
        planned_tokens=segment["tokens"],
        **probe,
    )


def _finished(task: ShardTask) -> ShardResult | None:
    """The shard as already written, if its stats file and its bytes verify and it holds this
    task's samples; None when it has to be (re)written."""
    out, prefix = task.output.out, task.output.prefix
    if storage.is_remote(out):
        return _finished_remote(task)
    folder = Path(storage.local_path(out))
    stats = shards.load_stats(folder, prefix, task.index)
    if stats is None or not _same_samples(stats, task):
        return None
    path = folder / stats.name
    if shards.verify_shard(path, stats):
        return None
    return ShardResult(stats=stats, rows=rows_from_shard(path, stats), skipped=True)


def _finished_remote(task: ShardTask) -> ShardResult | None:
    out, prefix = task.output.out, task.output.prefix
    raw = storage.read_bytes(storage.join(out, shards.stats_name(prefix, task.index)))
    try:
        stats = shards.ShardStats.from_json(json.loads(raw)) if raw is not None else None
    except ValueError:
        return None
    if stats is None or not _same_samples(stats, task):
        return None
    url = storage.join(out, stats.name)
    if storage.size(url) != stats.bytes or storage.sha256(url) != stats.sha256:
        return None
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / stats.name
        local.write_bytes(storage.read_bytes(url) or b"")
        return ShardResult(stats=stats, rows=rows_from_shard(local, stats), skipped=True)


def _same_samples(stats: shards.ShardStats, task: ShardTask) -> bool:
    if stats.keys:
        return stats.keys == task.keys
    return (stats.samples, stats.first_key, stats.last_key) == (
        len(task.keys),
        task.keys[0],
        task.keys[-1],
    )


# --- manifest -----------------------------------------------------------------------------


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


class _ManifestWriter:
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


# --- files in OUT (a folder or a URL) -----------------------------------------------------


def _read(out: str, name: str) -> bytes | None:
    if storage.is_remote(out):
        return storage.read_bytes(storage.join(out, name))
    try:
        return (Path(storage.local_path(out)) / name).read_bytes()
    except FileNotFoundError:
        return None


def _write(out: str, name: str, data: bytes) -> None:
    """Write atomically in a local OUT (temporary name, then rename); upload to a remote one."""
    work = storage.workspace(out)
    work.mkdir(parents=True, exist_ok=True)
    path = work / name
    shards.write_atomic(path, data)
    if storage.is_remote(out):
        storage.upload(path, storage.join(out, name))


def _delete(out: str, name: str) -> None:
    (storage.workspace(out) / name).unlink(missing_ok=True)
    if storage.is_remote(out):
        storage.remove(storage.join(out, name))


def _exists(out: str, name: str) -> bool:
    if storage.is_remote(out):
        return storage.size(storage.join(out, name)) is not None
    return (Path(storage.local_path(out)) / name).exists()


def _remove_stale(output: Output, count: int) -> None:
    """Shards of an earlier, larger run into the same folder would be read as part of this one."""
    index = count
    while _exists(output.out, shards.shard_name(output.prefix, index)):
        _delete(output.out, shards.stats_name(output.prefix, index))
        _delete(output.out, shards.shard_name(output.prefix, index))
        index += 1


def _remove_temporary(work: Path) -> None:
    """Temporary files a killed run left behind (hidden, named NAME.PID-RANDOM.tmp)."""
    for path in work.glob(".*.tmp"):
        if _TEMP.fullmatch(path.name):
            path.unlink(missing_ok=True)
    for path in (work / "shards").glob(".*.tmp"):
        path.unlink(missing_ok=True)


def _json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


# --- the run record -----------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {"compose": __version__, "python": platform.python_version()}
    for package in (
        "polars",
        "pyarrow",
        "numpy",
        "webdataset",
        "pillow",
        "tiktoken",
        "orjson",
        "fsspec",
    ):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "absent"
    return out


def run_record(
    *,
    catalog: Catalog,
    plan: Plan,
    budgets: Budgets,
    policy: Policy,
    output: Output,
    result: RunResult,
    argv: Sequence[str] = (),
) -> dict:
    """run.json: enough to reproduce the run and to know what it made."""
    summary = {
        "samples": result.samples,
        "shards": len(result.shards),
        "images": result.images,
        "tokens": result.tokens,
        "bytes": sum(s.bytes for s in result.shards),
        "skipped_shards": result.skipped,
        "seconds": round(result.seconds, 3),
        # per-length counts, probes and the achieved mix, as planned (splice checks the counts)
        "lengths": {str(x["tokens"]): x["samples"] for x in plan.report.lengths},
        "probes": plan.report.probes,
        "mix": [dict(x) for x in plan.report.mix],
    }
    config = {
        **{k: v for k, v in asdict(budgets).items()},
        "seed": policy.seed,
        "order": policy.order,
        "weights": list(policy.weights),
        "image_tokens": policy.image_tokens,
        "tokenizer": catalog.meta["tokenizer"]["spec"],
        "style": output.style,
        "shard_size": output.shard_size,
        "prefix": output.prefix,
        "workers": output.workers,
        "engine": output.engine,
    }
    return {
        "tool": f"compose {__version__}",
        "argv": list(argv),
        "config": config,
        "versions": versions(),
        "cpus": os.cpu_count(),
        "catalog": str(catalog.path),
        "inputs": [
            {
                "path": s["path"],
                "sha256": s.get("sha256"),
                "format": s["format"],
                "images": s.get("images"),
            }
            for s in catalog.meta["sources"]
        ],
        "plan": plan.report.to_json(),
        "summary": summary,
        "shards": [s.name for s in result.shards],
    }


def write_run_record(out: str | Path, record: dict) -> str:
    """Write run.json, the last file of a run: its presence means the run is complete."""
    _write(str(out), RUN_FILE, _json(record))
    return storage.join(str(out), RUN_FILE)


def stage_sources(specs: Sequence[SourceSpec], out: str) -> list[SourceSpec]:
    """Sources and image stores given as URLs, copied once into OUT's workspace (`inputs/`):
    the catalog reads local files. `file://` URLs are read in place."""
    folder = storage.workspace(out) / "inputs"
    return [
        SourceSpec(
            path=storage.stage_input(spec.path, folder),
            images=None if spec.images is None else storage.stage_input(spec.images, folder),
            format=spec.format,
        )
        for spec in specs
    ]
