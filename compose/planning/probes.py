"""Long-range probes: which dialogues a sample starts with so that their next QA turn, asked at
the end, reaches back far enough. Sources are taken only when the reach-back holds whatever the
rest of the sample holds; `reaches` checks the exact reach-backs once the sample is complete."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compose.planning.arrays import excl_cumsum
from compose.planning.sample import Fit, Sample


@dataclass(frozen=True, slots=True)
class Head:
    """The probe sources a sample starts with, and what their probes cost (tokens)."""

    position: np.ndarray  # stream positions
    dialogue: np.ndarray
    length: np.ndarray  # source prefix lengths; the probe is QA turn `length` (0-based)
    probe_cost: np.ndarray
    slack: int = 0  # tokens that may come before the sources and keep every reach-back

    @classmethod
    def empty(cls) -> Head:
        none = np.zeros(0, dtype=np.int64)
        return cls(position=none, dialogue=none, length=none, probe_cost=none)


def pick_head(fit: Fit, stream: np.ndarray, window: np.ndarray) -> Head | None:
    """The probe sources: the first dialogues of the window that can carry a probe, at
    their preferred prefix, else their shortest, else the cheapest few of the next ones.

    With every probe at the end, probe k reaches back at least
    floor - (sources 0..k) - (probes k..) tokens, whatever the rest of the sample holds;
    the sources are taken only when that is at least the reach asked for.
    """
    wanted = fit.budgets.probes
    if wanted == 0:
        return Head.empty()
    t, size = fit.table, fit.size
    dialogues = stream[window]
    eligible = np.flatnonzero(size.probe_short[dialogues] >= 0)[: 4 * wanted]
    if len(eligible) < wanted:
        return None
    short = size.probe_short[dialogues[eligible]]
    need = t.cost[short] + t.next_cost[short]
    cheap = np.sort(eligible[np.argsort(need, kind="stable")[:wanted]])
    first = eligible[:wanted]
    room = fit.floor - fit.reach
    for picks, prefixes in ((first, size.probe_long), (first, size.probe_short)) + (
        (cheap, size.probe_short),
    ):
        candidate = prefixes[dialogues[picks]]
        cost, probe = t.cost[candidate], t.next_cost[candidate]
        ends = np.cumsum(cost)
        after = np.cumsum(probe[::-1])[::-1]
        if (
            (ends + after).max() <= room
            and int(ends[-1] + after[0]) <= fit.budgets.tokens
            and int(t.images[candidate].sum()) <= fit.max_images
        ):
            return Head(
                position=window[picks],
                dialogue=dialogues[picks],
                length=t.length[candidate],
                probe_cost=probe,
                slack=int(room - (ends + after).max()),
            )
    return None


def lead(fit: Fit, head: Head, chosen: np.ndarray, rng: np.random.Generator) -> int:
    """How many main-run segments go before the probe sources: as many as fit in a seeded
    uniform share of the head's slack, so reach-backs spread from the reach asked for to
    nearly the whole sample instead of all sitting at the far end."""
    if len(head.dialogue) == 0 or head.slack <= 0:
        return 0
    tokens = rng.integers(0, head.slack + 1)
    return int(np.searchsorted(np.cumsum(fit.table.cost[chosen]), tokens, side="right"))


def reaches(fit: Fit, sample: Sample) -> bool:
    """Every probe at least `reach` tokens after the end of its source segment."""
    if len(sample.probe_cost) == 0:
        return True
    current = fit.table.start[sample.dialogue] + sample.length - 1
    segments = fit.table.cost[current] + sample.correction
    ends = np.cumsum(segments)[sample.sources]
    before = excl_cumsum(sample.probe_cost + sample.probe_correction)
    return bool((int(segments.sum()) - ends + before >= fit.reach).all())
