"""plan.parquet: written atomically with the report in the file's metadata, read back only
when its page checksums and the report's digest hold, so a damaged plan is never used."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from compose.planning.result import SEGMENT_SCHEMA, Plan, PlanReport

METADATA_KEY = b"compose.plan"
DIGEST_KEY = b"compose.plan.sha256"  # of the report JSON; the data pages carry CRCs of their own


def save_plan(plan: Plan, path: str | os.PathLike) -> Path:
    """Write plan.parquet atomically; budgets, policy and report ride in the file's metadata.

    A directory `path` gets `plan.parquet` inside it. Returns the file written.
    """
    target = Path(path)
    if target.is_dir():
        target = target / "plan.parquet"
    table = plan.segments.to_arrow()
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(plan.report.to_json(), sort_keys=True).encode()
    metadata[DIGEST_KEY] = hashlib.sha256(metadata[METADATA_KEY]).hexdigest().encode()
    table = table.replace_schema_metadata(metadata)
    partial = target.with_name(f".{target.name}.partial")
    pq.write_table(table, partial, write_page_checksum=True)
    os.replace(partial, target)
    return target


def load_plan(path: str | os.PathLike) -> Plan:
    """Read a plan written by `save_plan`; a damaged one (page CRCs, report checksum) is a
    ValueError, never a plan."""
    source = Path(path)
    if source.is_dir():
        source = source / "plan.parquet"
    try:
        table = pq.read_table(source, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"{source}: damaged plan (checksum or format error: {error})") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{source}: not a compose plan (no {METADATA_KEY.decode()} metadata)")
    digest = (table.schema.metadata or {}).get(DIGEST_KEY)
    if digest is not None and hashlib.sha256(raw).hexdigest().encode() != digest:
        raise ValueError(f"{source}: damaged plan (the report's checksum does not match)")
    segments = pl.from_arrow(table.replace_schema_metadata(None))
    missing = [name for name in SEGMENT_SCHEMA if name not in segments.columns]
    if missing:
        raise ValueError(f"{source}: plan lacks columns {', '.join(missing)}")
    segments = segments.select(pl.col(n).cast(t) for n, t in SEGMENT_SCHEMA.items())
    return Plan(segments=segments, report=PlanReport.from_dict(json.loads(raw)))
