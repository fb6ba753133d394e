"""What a re-run may keep: the run's fingerprint, and the check a worker makes of a shard."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import orjson

from compose import __version__, run_files, shard_reader, shards, storage
from compose.catalog import Catalog
from compose.manifest import rows_from_shard
from compose.plan import Budgets, Plan, Policy
from compose.splice import file_name
from compose.tasks import Output, ShardResult, ShardTask


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


def begin(output: Output, run_fingerprint: str) -> bool:
    """Record this run in OUT; True when the shards already there belong to it."""
    raw = run_files.read(output.out, run_files.RESUME_FILE)
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
    # they describe a finished run; rewritten at the end
    for name in (run_files.RUN_FILE, shards.MANIFEST_NAME, shards.INDEX_NAME):
        run_files.delete(output.out, name)
    record = {"fingerprint": run_fingerprint, "tool": f"compose {__version__}"}
    run_files.write(output.out, run_files.RESUME_FILE, run_files.json_bytes(record))
    return same


def finished(task: ShardTask) -> ShardResult | None:
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
    if shard_reader.verify_shard(path, stats):
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
