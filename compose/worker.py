"""One shard task in a worker process; `write_task` is pickled by this path for the pool and Ray."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from itertools import groupby
from pathlib import Path

import orjson

from compose import shards, storage
from compose.catalog_rows import TaskRows
from compose.manifest import manifest_row
from compose.resume import finished
from compose.sample_checks import SampleBudgets, SampleInvalid, check_sample
from compose.sources import Limits, open_store
from compose.splice import PlannedSegment, SpliceConfig, compose_sample
from compose.tasks import ShardResult, ShardTask
from compose.tokens import image_model, load_tokenizer

READ_THREADS = 4  # per worker: image reads in flight while it splices
READ_AHEAD = 2  # samples whose images are read ahead of the one being spliced


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
        done = finished(task)
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
