"""Budgets no plan can meet are reported before any work, with the numbers that make them
impossible: each check is a bound over the candidate table, never a trial plan."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl

from compose.planning.arrays import ranges
from compose.planning.config import Budgets, Infeasible, Policy
from compose.planning.table import Size, Table, build_table, per_length


def fmt_tokens(value: int) -> str:
    if value % 1024 == 0:
        return f"{value // 1024:,}k ({value:,})"
    return f"{value:,}"


def check_feasible(frame: pl.DataFrame, budgets: Budgets, policy: Policy) -> None:
    """Raise `Infeasible`, with the numbers, when no plan can meet the budgets."""
    table = build_table(frame, budgets, policy)
    check_all(frame, table, budgets, policy, per_length(table, budgets))


def check_all(frame, table: Table, budgets: Budgets, policy: Policy, sizes) -> None:
    """Every check, at every token budget of `sizes`, then what the whole plan needs."""
    for size in sizes:
        view = dataclasses.replace(table, usable=size.usable, chosen=size.chosen)
        _check(view, size.budgets, policy)
        _check_probes(view, size)
    _check_samples(table, budgets, sizes)
    _check_sources(frame, table, policy, sizes[-1] if len(sizes) else None)


def _check_samples(table: Table, budgets: Budgets, sizes: list[Size]) -> None:
    """`samples` against the stream: about how many dialogues would they take?"""
    if budgets.samples is None:
        return
    usable = table.usable > 0
    needed = 0
    costs = []
    for index, size in enumerate(sizes):
        count = budgets.samples // len(sizes) + (index < budgets.samples % len(sizes))
        mean_cost = float(table.cost[size.chosen[size.usable > 0]].mean())
        costs.append(mean_cost)
        b = size.budgets
        needed += math.ceil(count * (b.tokens + b.floor) / 2 / mean_cost)
    mean_cost = float(np.mean(costs))
    have = int(usable.sum()) * budgets.reuse
    if needed > have:
        times = f" ({int(usable.sum()):,} x --reuse {budgets.reuse})" if budgets.reuse > 1 else ""
        raise Infeasible(
            f"--samples {budgets.samples:,} needs about {needed:,} dialogues "
            f"(segments average {mean_cost:,.0f} tokens) but the corpus has {have:,}{times}"
            f"; {'raise' if budgets.reuse > 1 else 'use'} --reuse"
        )


def _check_probes(table: Table, size: Size) -> None:
    """Enough dialogues that can carry a probe, and a reach-back that leaves them room."""
    budgets = size.budgets
    if not budgets.probes:
        return
    eligible = size.probe_short >= 0
    count = int(eligible.sum())
    where = f"at --tokens {fmt_tokens(budgets.tokens)}"
    if count < budgets.probes:
        raise Infeasible(
            f"--probes {budgets.probes} needs dialogues with a QA turn left over after a prefix "
            f"that shows images (a turn that introduces no new image): {count:,} of "
            f"{int((size.usable > 0).sum()):,} usable dialogues have one {where}"
        )
    short = size.probe_short[eligible]
    need = table.cost[short] + table.next_cost[short]
    room = budgets.floor - budgets.reach()
    cheapest = int(need.min())
    if cheapest > room:
        raise Infeasible(
            f"--min-reach {budgets.reach():,} tokens leaves {max(room, 0):,} of the floor "
            f"({budgets.floor:,}) {where} for a probe's source segment and the probes, but "
            f"the cheapest source segment and probe take {cheapest:,}"
        )


def _check_sources(frame, table: Table, policy: Policy, size: Size | None) -> None:
    """Source weights: one per catalog source, and each weighted source has dialogues."""
    if not policy.weights:
        return
    if "source" not in frame.columns:
        raise ValueError("catalog frame lacks column source (needed for source weights)")
    source = frame["source"].to_numpy().astype(np.int64)
    if len(source) and int(source.max()) >= len(policy.weights):
        raise Infeasible(
            f"{len(policy.weights)} source weights but the catalog has "
            f"{int(source.max()) + 1} sources: give every --source a weight"
        )
    usable = np.bincount(source, weights=table.usable > 0, minlength=len(policy.weights)).astype(
        np.int64
    )
    for number, (count, weight) in enumerate(zip(usable, policy.weights, strict=True)):
        if count == 0:
            raise Infeasible(
                f"source {number + 1} has weight {weight:g} but no dialogue that fits the budgets"
            )


def _check(table: Table, budgets: Budgets, policy: Policy) -> None:
    tokens = fmt_tokens(budgets.tokens)
    if len(table.rows) == 0 or len(table.cost) == 0:
        raise Infeasible("the catalog holds no dialogues with a QA turn")
    if budgets.max_images is not None and budgets.min_images > budgets.max_images:
        raise Infeasible(
            f"--min-images {budgets.min_images:,} is above --max-images {budgets.max_images:,}"
        )
    first = table.start[table.n_qa > 0]
    smallest = int(table.cost[first].min())
    if smallest > budgets.tokens:
        raise Infeasible(
            f"the smallest segment (one QA turn with its images) is {smallest:,} tokens "
            f"but --tokens is {tokens}"
        )
    usable = table.usable > 0
    if not usable.any():
        fewest = int(table.images[first][table.cost[first] <= budgets.tokens].min())
        raise Infeasible(
            f"every segment within --tokens {tokens} brings at least {fewest:,} images "
            f"(its first QA turn's) but --max-images is {budgets.max_images:,}"
        )
    _check_image_tokens(table, budgets, policy)
    longest = table.start[usable] + table.usable[usable] - 1
    corpus = int(table.cost[longest].sum())
    if corpus < budgets.floor:
        raise Infeasible(
            f"the corpus holds {corpus:,} tokens, less than one sample's floor of "
            f"{budgets.floor:,} (--tokens {tokens}, --tolerance {budgets.tolerance:g})"
        )
    _check_image_density(table, budgets, int(table.images[longest].sum()))


def _check_image_tokens(table: Table, budgets: Budgets, policy: Policy) -> None:
    """The image floor alone: its image tokens must fit in the ceiling."""
    wanted = budgets.min_images
    if wanted == 0 or len(table.per_image) == 0:
        return
    low, high = int(table.per_image.min()), int(table.per_image.max())
    each = f"{low:,} per image" if low == high else f"at least {low:,} per image in this corpus"
    if wanted * low > budgets.tokens:
        raise Infeasible(
            f"--min-images {wanted:,} needs at least {wanted * low:,} image tokens "
            f"({policy.image_tokens}: {each}) but --tokens is {fmt_tokens(budgets.tokens)}"
        )


def _check_image_density(table: Table, budgets: Budgets, available: int) -> None:
    """The image floor against the corpus: enough images, dense enough to fit the ceiling.

    The bound packs QA turns by images per token, each turn on its own (a relaxation: a real
    segment must also carry the turns before it), so it never refuses a feasible budget.
    """
    wanted = budgets.min_images
    if wanted == 0:
        return
    if wanted > available:
        raise Infeasible(
            f"--min-images {wanted:,} but the segments that fit hold only {available:,} images "
            "in the whole corpus"
        )
    fits = ranges(table.start, table.usable)
    first = table.length[fits] == 1
    cost = table.cost[fits] - np.where(first, 0, table.cost[fits - 1])
    images = table.images[fits] - np.where(first, 0, table.images[fits - 1])
    brings = images > 0
    cost, images = cost[brings], images[brings]
    order = np.argsort(-images / np.maximum(cost, 1e-9), kind="stable")
    cost, images = cost[order], images[order]
    spent = np.cumsum(cost)
    whole = int(np.searchsorted(spent, budgets.tokens, side="right"))
    most = float(images[:whole].sum())
    if whole < len(cost):
        left = budgets.tokens - (int(spent[whole - 1]) if whole else 0)
        most += images[whole] * left / cost[whole]
    most = math.floor(most + 1e-9)
    if wanted > most:
        per = cost[0] / images[0]
        raise Infeasible(
            f"--min-images {wanted:,} cannot fit in --tokens {fmt_tokens(budgets.tokens)}: "
            f"packing the corpus's most image-dense QA turns (the best: one image per "
            f"{per:,.0f} tokens) gives at most {most:,} images"
        )
