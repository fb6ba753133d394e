"""The files a run keeps in OUT beside its shards (a folder or a URL), and run.json's record."""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from compose import __version__, shards, storage
from compose.catalog import Catalog, SourceSpec
from compose.plan import Budgets, Plan, Policy
from compose.tasks import Output, RunResult

RUN_FILE = "run.json"
RESUME_FILE = "resume.json"
_TEMP = re.compile(r"\..+\.\d+-[0-9a-f]{8}\.tmp")  # shards.temp_path and ours

# --- files in OUT (a folder or a URL) -----------------------------------------------------


def read(out: str, name: str) -> bytes | None:
    if storage.is_remote(out):
        return storage.read_bytes(storage.join(out, name))
    try:
        return (Path(storage.local_path(out)) / name).read_bytes()
    except FileNotFoundError:
        return None


def write(out: str, name: str, data: bytes) -> None:
    """Write atomically in a local OUT (temporary name, then rename); upload to a remote one."""
    work = storage.workspace(out)
    work.mkdir(parents=True, exist_ok=True)
    path = work / name
    shards.write_atomic(path, data)
    if storage.is_remote(out):
        storage.upload(path, storage.join(out, name))


def delete(out: str, name: str) -> None:
    (storage.workspace(out) / name).unlink(missing_ok=True)
    if storage.is_remote(out):
        storage.remove(storage.join(out, name))


def exists(out: str, name: str) -> bool:
    if storage.is_remote(out):
        return storage.size(storage.join(out, name)) is not None
    return (Path(storage.local_path(out)) / name).exists()


def remove_stale(output: Output, count: int) -> None:
    """Shards of an earlier, larger run into the same folder would be read as part of this one."""
    index = count
    while exists(output.out, shards.shard_name(output.prefix, index)):
        delete(output.out, shards.stats_name(output.prefix, index))
        delete(output.out, shards.shard_name(output.prefix, index))
        index += 1


def remove_temporary(work: Path) -> None:
    """Temporary files a killed run left behind (hidden, named NAME.PID-RANDOM.tmp)."""
    for path in work.glob(".*.tmp"):
        if _TEMP.fullmatch(path.name):
            path.unlink(missing_ok=True)
    for path in (work / "shards").glob(".*.tmp"):
        path.unlink(missing_ok=True)


def json_bytes(obj: object) -> bytes:
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
    write(str(out), RUN_FILE, json_bytes(record))
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
