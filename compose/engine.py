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

The parts live beside this module: the task types and cutting the plan (`compose.tasks`), one
shard in a worker (`compose.worker`), resume (`compose.resume`), the manifest
(`compose.manifest`), the files in OUT and run.json (`compose.run_files`). Their public names
are importable from here too.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from compose import run_files, shard_index, shards, storage
from compose.catalog import Catalog
from compose.manifest import (
    MANIFEST_GROUP,
    MANIFEST_TYPES,
    ManifestWriter,
    manifest_row,
    rows_from_shard,
)
from compose.plan import Budgets, Plan, Policy
from compose.resume import begin, fingerprint
from compose.run_files import (
    RESUME_FILE,
    RUN_FILE,
    run_record,
    stage_sources,
    versions,
    write_run_record,
)
from compose.tasks import (
    ENGINES,
    Output,
    RunResult,
    ShardResult,
    ShardTask,
    default_workers,
    row_cache,
    sample_key,
    shard_tasks,
)
from compose.worker import READ_AHEAD, READ_THREADS, write_task

__all__ = [
    "ENGINES",
    "INDEX",
    "IN_FLIGHT",
    "MANIFEST",
    "MANIFEST_GROUP",
    "MANIFEST_TYPES",
    "PLAN_FILE",
    "READ_AHEAD",
    "READ_THREADS",
    "RESUME_FILE",
    "RUN_FILE",
    "Output",
    "RunResult",
    "ShardResult",
    "ShardTask",
    "default_workers",
    "fingerprint",
    "manifest_row",
    "rows_from_shard",
    "run",
    "run_record",
    "sample_key",
    "shard_tasks",
    "stage_sources",
    "versions",
    "write_run_record",
    "write_task",
]

MANIFEST = shards.MANIFEST_NAME
INDEX = shards.INDEX_NAME
PLAN_FILE = "plan.parquet"
IN_FLIGHT = 2  # tasks queued per worker: enough to keep every worker busy


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
    run_files.remove_temporary(work)
    cat = Catalog.open(catalog)
    keep = begin(output, fingerprint(cat, plan, budgets, policy, output))
    rows = row_cache(cat, work)
    tasks = shard_tasks(cat, rows, plan, budgets, policy, output, keep_finished=keep)
    result = RunResult(out=output.out)
    manifest = ManifestWriter(work / MANIFEST)
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
    shard_index.write_index(work, result.shards, name=output.prefix)
    run_files.remove_stale(output, len(result.shards))
    if storage.is_remote(output.out):
        for name in (MANIFEST, INDEX, PLAN_FILE):
            if (work / name).exists():
                storage.upload(work / name, storage.join(output.out, name))
    (work / rows.name).unlink(missing_ok=True)
    result.seconds = time.perf_counter() - started
    return result


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
