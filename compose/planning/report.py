"""The plan report, recomputed from the written segment rows (not from the assembler's own
counts), so `over_budget` and `under_floor` check the plan rather than restate it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from compose.planning.config import Budgets, Policy
from compose.planning.result import Distribution, PlanReport
from compose.planning.sample import Assembly
from compose.planning.table import Table


@dataclass(frozen=True, slots=True, kw_only=True)
class Extra:
    """What the report needs besides the table and the samples."""

    source: np.ndarray | None  # per frame position: catalog source number
    weights: tuple[float, ...]
    dropped: int
    coherence: float | None


def build_report(
    table: Table,
    assembly: Assembly,
    segments: pl.DataFrame,
    budgets: Budgets,
    policy: Policy,
    extra: Extra,
) -> PlanReport:
    per_sample = (
        segments.group_by("sample")
        .agg(
            pl.col("tokens").sum(),
            pl.col("images").sum(),
            (~pl.col("probe")).sum().alias("segments"),
            pl.col("budget").first(),
        )
        .sort("sample")
    )
    tokens = per_sample["tokens"].to_numpy()
    images = per_sample["images"].to_numpy()
    budget = per_sample["budget"].to_numpy()
    floors = np.array([budgets.at(int(b)).floor for b in budget], dtype=np.int64)
    ceiling = budgets.max_images if budgets.max_images is not None else np.inf
    over = (tokens > budget) | (images > ceiling)
    under = (tokens < floors) | (images < budgets.min_images)
    plain = segments.filter(~pl.col("probe"))
    used = plain["dialogue"].n_unique() if plain.height else 0
    truncated = sum(int((s.length < table.n_qa[s.dialogue]).sum()) for s in assembly.samples)
    corrected = sum(int(np.count_nonzero(s.correction)) for s in assembly.samples)
    probes = segments.filter(pl.col("probe"))
    fill = tokens / budget
    lengths = tuple(
        {
            "tokens": size,
            "samples": int((budget == size).sum()),
            "fill_mean": float(fill[budget == size].mean()) if (budget == size).any() else 0.0,
        }
        for size in budgets.sizes
    )
    return PlanReport(
        budgets=budgets,
        policy=policy,
        floor=budgets.floor,
        samples=per_sample.height,
        samples_requested=budgets.samples,
        dialogues=len(table.rows),
        dialogues_used=used,
        dialogues_unused=len(table.rows) - used,
        dialogues_unusable=int((table.usable == 0).sum()),
        dialogues_set_aside=assembly.set_aside,
        segments=plain.height,
        segments_truncated=truncated,
        segments_corrected=corrected,
        samples_trimmed=sum(s.trimmed for s in assembly.samples),
        over_budget=int(over.sum()),
        under_floor=int(under.sum()),
        tokens=Distribution.of(tokens),
        images=Distribution.of(images),
        fill=Distribution.of(fill),
        segments_per_sample=Distribution.of(per_sample["segments"].to_numpy()),
        probes=probes.height,
        reach_tokens=Distribution.of(probes["reach_tokens"].to_numpy()) if probes.height else None,
        reach_images=Distribution.of(probes["reach_images"].to_numpy()) if probes.height else None,
        lengths=lengths,
        mix=_mix(table, segments, extra),
        mix_dropped=extra.dropped,
        coherence=extra.coherence,
    )


def _mix(table: Table, segments: pl.DataFrame, extra: Extra) -> tuple[dict, ...]:
    """Achieved share of tokens (probes included) and segments per catalog source."""
    if extra.source is None:
        return ()
    owner = pl.DataFrame({"dialogue": table.rows, "source": extra.source})
    per_source = (
        segments.join(owner, on="dialogue", how="left")
        .group_by("source")
        .agg((~pl.col("probe")).sum().alias("segments"), pl.col("tokens").sum())
    )
    found = {r["source"]: r for r in per_source.iter_rows(named=True)}
    total = max(int(segments["tokens"].sum()), 1)
    count = max(len(extra.weights), int(extra.source.max(initial=-1)) + 1)
    return tuple(
        {
            "source": number,
            "weight": extra.weights[number] if extra.weights else None,
            "segments": int(found.get(number, {}).get("segments", 0)),
            "tokens": int(found.get(number, {}).get("tokens", 0)),
            "share": round(int(found.get(number, {}).get("tokens", 0)) / total, 6),
        }
        for number in range(count)
    )
