"""Cutting the seeded stream into samples: each sample takes its probe sources, a main run of
preferred prefixes found by `searchsorted`, then a tail (compose/planning/tail.py); a sample that
cannot close is retried with shorter main runs, then its first dialogue is set aside. Python
loops here run once per sample, never once per dialogue."""

from __future__ import annotations

import math

import numpy as np

from compose.planning.arrays import ranges
from compose.planning.config import Budgets
from compose.planning.mentions import Mentions
from compose.planning.probes import lead, pick_head
from compose.planning.sample import Assembly, Fit, Pool, Sample
from compose.planning.table import Size, Table
from compose.planning.tail import complete, totals

# How many upcoming dialogues the tail may pick from, how many shorter main runs a sample tries
# before its first dialogue is set aside, and how many samples in a row may fail before
# planning stops.
POOL = 64
ATTEMPT_DROPS = (0, 1, 2, 4)
FAILURE_LIMIT = 256


class Assembler:
    """Cuts the seeded stream of dialogues into samples: probe sources first (with probes),
    a main run, then a best-fit tail. Samples take the token budgets of `sizes` in turn."""

    def __init__(
        self,
        table: Table,
        budgets: Budgets,
        sizes: list[Size],
        mentions: Mentions | None,
        stream: np.ndarray,
        seed: int,
    ) -> None:
        self.t = table
        self.all = budgets
        self.fits = [Fit.at(size, table=table, mentions=mentions) for size in sizes]
        self.stream = stream
        self.consumed = np.zeros(len(self.stream), dtype=bool)
        longest = table.start + table.usable - 1
        self.stream_most = table.cost[longest[self.stream]]
        self.remaining = int(self.stream_most.sum())
        self.window = window_size(table, budgets)
        self.rng = np.random.default_rng([seed, 2])  # where probe sources start in a sample
        self.out = Assembly()

    def run(self) -> Assembly:
        limit = self.all.samples
        head = 0
        failures = 0
        while limit is None or len(self.out.samples) < limit:
            fit = self.fits[len(self.out.samples) % len(self.fits)]
            if self.remaining < fit.floor:
                break
            window = self._window(head)
            if len(window) == 0:
                break
            head = int(window[0])
            sample = self._sample(fit, window)
            if sample is None:
                self._consume(window[:1])
                self.out.set_aside += 1
                failures += 1
                if failures >= FAILURE_LIMIT:
                    break
                continue
            failures = 0
            self._consume(sample.position)
            self.out.samples.append(sample)
            self.out.budgets.append(fit.budgets.tokens)
        return self.out

    def _consume(self, positions: np.ndarray) -> None:
        self.consumed[positions] = True
        self.remaining -= int(self.stream_most[positions].sum())

    def _window(self, head: int) -> np.ndarray:
        """The next unconsumed stream positions, each dialogue once (epochs may meet here)."""
        size = self.window
        while True:
            end = min(head + 2 * size, len(self.stream))
            span = np.arange(head, end)
            open_ = span[~self.consumed[span]]
            if len(open_) >= size or end == len(self.stream):
                break
            size *= 2
        open_ = open_[:size]
        if self.all.reuse > 1:
            _, first = np.unique(self.stream[open_], return_index=True)
            open_ = open_[np.sort(first)]
        return open_

    def _sample(self, fit: Fit, window: np.ndarray) -> Sample | None:
        """Probe sources, then the main run: preferred prefixes in stream order while both
        ceilings hold; then the tail. A sample whose tail cannot reach the floors is retried
        with shorter main runs.
        """
        t, size = self.t, fit.size
        window = window[size.usable[self.stream[window]] > 0]
        head = pick_head(fit, self.stream, window)
        if head is None:
            return None
        rest = window[~np.isin(window, head.position)]
        dialogues = self.stream[rest]
        chosen = size.chosen[dialogues]
        head_current = t.start[head.dialogue] + head.length - 1
        head_tokens = int(t.cost[head_current].sum() + head.probe_cost.sum())
        head_images = int(t.images[head_current].sum())
        run = min(
            int(
                np.searchsorted(
                    np.cumsum(t.cost[chosen]), fit.budgets.tokens - head_tokens, side="right"
                )
            ),
            int(
                np.searchsorted(
                    np.cumsum(t.images[chosen]), fit.max_images - head_images, side="right"
                )
            ),
        )
        before = lead(fit, head, chosen, self.rng)
        for drop in ATTEMPT_DROPS:
            if drop >= run and drop > 0:
                break
            cut = run - drop
            m = min(before, cut)  # lead-in segments, then the sources, then the rest of the run
            sample = Sample(
                dialogue=_lead_in(dialogues, head.dialogue, m, cut),
                length=_lead_in(t.length[chosen], head.length, m, cut),
                position=_lead_in(rest, head.position, m, cut),
                correction=np.zeros(len(head.dialogue) + cut, dtype=np.int64),
                fixed=m + len(head.dialogue),
                probe_cost=head.probe_cost.copy(),
                probe_correction=np.zeros(len(head.dialogue), dtype=np.int64),
            )
            pool_d = dialogues[cut : cut + POOL]
            pool = Pool(
                dialogue=pool_d,
                position=rest[cut : cut + POOL],
                candidate=ranges(t.start[pool_d], size.usable[pool_d]),
                owner=np.repeat(np.arange(len(pool_d)), size.usable[pool_d]),
                taken=np.zeros(len(pool_d), dtype=bool),
            )
            if complete(fit, sample, pool):
                return sample
            _, tokens, images = totals(fit, sample)
            self.out.last_try = (tokens, images)
        return None


def _lead_in(run: np.ndarray, head: np.ndarray, lead: int, cut: int) -> np.ndarray:
    """The first `cut` entries of the main run with the head inserted after `lead` of them."""
    return np.concatenate((run[:lead], head, run[lead:cut]))


def window_size(table: Table, budgets: Budgets) -> int:
    """Stream entries one sample looks at: about two main runs of preferred prefixes and the
    lookahead pool."""
    usable = np.flatnonzero(table.usable > 0)
    mean = float(table.cost[table.chosen[usable]].mean()) if len(usable) else 1.0
    return 2 * math.ceil(budgets.tokens / max(mean, 1.0)) + POOL + 8
