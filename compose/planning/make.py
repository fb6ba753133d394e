"""The planner's entry point: candidate table, feasibility, stream, assembly, rows and report,
in that order. Each step lives in its own module of compose/planning; this one only wires them."""

from __future__ import annotations

import numpy as np
import polars as pl

from compose import order as ordering
from compose.planning.assemble import Assembler, window_size
from compose.planning.config import Budgets, Infeasible, Policy
from compose.planning.feasible import check_all, fmt_tokens
from compose.planning.mentions import DigitTokens, Mentions
from compose.planning.report import Extra, build_report
from compose.planning.result import Plan
from compose.planning.sample import Assembly
from compose.planning.segments import segment_frame
from compose.planning.table import build_table, per_length


def make_plan(
    frame: pl.DataFrame,
    budgets: Budgets,
    policy: Policy,
    *,
    digit_tokens: DigitTokens | None = None,
) -> Plan:
    """Plan samples from the catalog's dialogue rows; raises `Infeasible` before any work.

    `digit_tokens(numbers)` gives the text tokens of each number written alone; with it, each
    segment's text tokens are corrected for its mentions being renumbered by its image offset.
    `--order topic` reads the first question's text from the frame's `turns[0].text` (or its
    `turns`); source weights read its `source` column.
    """
    table = build_table(frame, budgets, policy)
    sizes = per_length(table, budgets)
    check_all(frame, table, budgets, policy, sizes)
    mentions = Mentions(frame, table, digit_tokens) if digit_tokens is not None else None
    vectors = labels = None
    if policy.order == "topic":
        vectors, labels = ordering.topics(frame, policy.seed)
    source = frame["source"].to_numpy().astype(np.int64) if "source" in frame.columns else None
    usable = np.flatnonzero(table.usable > 0)
    preferred = np.zeros(len(table.rows), dtype=np.int64)
    preferred[usable] = table.cost[table.chosen[usable]]
    stream, dropped = ordering.stream(
        usable,
        order=policy.order,
        seed=policy.seed,
        reuse=budgets.reuse,
        cost=preferred,
        labels=labels,
        source=source if policy.weights else None,
        weights=policy.weights,
        block=window_size(table, budgets.at(min(budgets.sizes))),
    )
    assembly = Assembler(table, budgets, sizes, mentions, stream, policy.seed).run()
    if not assembly.samples:
        raise _nothing_closed(assembly, budgets)
    segments = segment_frame(table, assembly, budgets)
    coherence = None
    if vectors is not None:
        order = np.concatenate([s.dialogue for s in assembly.samples])
        counts = [len(s.dialogue) for s in assembly.samples]
        similar = ordering.neighbour_similarity(
            vectors[order], np.repeat(np.arange(len(counts)), counts)
        )
        coherence = float(similar.mean()) if len(similar) else None
    extra = Extra(source=source, weights=policy.weights, dropped=dropped, coherence=coherence)
    report = build_report(table, assembly, segments, budgets, policy, extra)
    return Plan(segments=segments, report=report)


def _nothing_closed(assembly: Assembly, budgets: Budgets) -> Infeasible:
    tokens, images = assembly.last_try
    ceiling = "" if budgets.max_images is None else f", --max-images {budgets.max_images:,}"
    probes = ""
    if budgets.probes:
        probes = f"; --probes {budgets.probes} reaching back {budgets.reach():,} tokens"
    return Infeasible(
        f"no sample meets every budget: {assembly.set_aside:,} tries failed, the last holding "
        f"{tokens:,} tokens (floor {budgets.floor:,}, --tokens {fmt_tokens(budgets.tokens)}) "
        f"and {images:,} images (--min-images {budgets.min_images:,}{ceiling}){probes}"
    )
