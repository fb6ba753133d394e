"""Closing a sample after its main run: best-fit steps from the lookahead pool, a pair repair
when the greedy steps leave it short, and the mention correction with its trim. Everything a
step compares is one numpy array over all its candidates."""

from __future__ import annotations

import numpy as np

from compose.planning.arrays import excl_cumsum, ranges
from compose.planning.probes import reaches
from compose.planning.sample import Fit, Pool, Sample

# Best-fit steps a sample's tail takes, and how many times a sample is filled, corrected for its
# mentions and trimmed before it counts as failed.
TAIL_STEPS = 8
CORRECTION_ROUNDS = 3


def complete(fit: Fit, sample: Sample, pool: Pool) -> bool:
    """Fill the tail, correct re-indexed mentions, trim; True when every budget holds."""
    rounds = CORRECTION_ROUNDS if fit.mentions is not None else 1
    for _ in range(rounds):
        fill(fit, sample, pool)
        if not closes(fit, sample):
            pair(fit, sample, pool)
            fill(fit, sample, pool)
        correct(fit, sample)
        if closes(fit, sample):
            return True
    return False


def totals(fit: Fit, sample: Sample) -> tuple[np.ndarray, int, int]:
    """The sample's current candidates, its tokens (probes included) and its images."""
    t = fit.table
    current = t.start[sample.dialogue] + sample.length - 1
    tokens = int((t.cost[current] + sample.correction).sum())
    tokens += int((sample.probe_cost + sample.probe_correction).sum())
    return current, tokens, int(t.images[current].sum())


def closes(fit: Fit, sample: Sample) -> bool:
    _, tokens, images = totals(fit, sample)
    return (
        len(sample.dialogue) > 0
        and fit.floor <= tokens <= fit.budgets.tokens
        and fit.budgets.min_images <= images <= fit.max_images
        and reaches(fit, sample)
    )


def fill(fit: Fit, sample: Sample, pool: Pool) -> None:
    """Best-fit steps over (pool dialogue, prefix) and (segment, longer prefix) candidates.

    Each step takes the candidate that most reduces an image deficit (below min_images),
    then adds the most tokens without passing either ceiling, then brings the most images.
    Probe sources are never extended.
    """
    t, budgets = fit.table, fit.budgets
    for _ in range(TAIL_STEPS):
        current, tokens, images = totals(fit, sample)
        room = budgets.tokens - tokens
        if room <= 0:
            break
        need = max(budgets.min_images - images, 0)
        extra = fit.size.usable[sample.dialogue] - sample.length
        extra[: sample.fixed] = 0
        longer = ranges(current + 1, extra)
        base = np.repeat(current, extra)
        open_ = pool.open()
        fresh = pool.candidate[open_]
        gain = np.concatenate((t.cost[longer] - t.cost[base], t.cost[fresh]))
        more = np.concatenate((t.images[longer] - t.images[base], t.images[fresh]))
        ok = (gain <= room) & (more <= fit.max_images - images) & ((gain > 0) | (more > 0))
        if not ok.any():
            break
        key = (np.minimum(more, need) * (budgets.tokens + 1) + gain).astype(np.float64)
        key = key * (fit.most_images + 1) + more
        best = int(np.argmax(np.where(ok, key, -1.0)))
        if best < len(longer):
            segment = int(np.repeat(np.arange(len(extra)), extra)[best])
            sample.length[segment] = t.length[longer[best]]
        else:
            take(fit, sample, pool, int(open_[best - len(longer)]))


def take(fit: Fit, sample: Sample, pool: Pool, prefix: int) -> None:
    """Append pool prefix `prefix` to the sample and close its pool entry."""
    owner = int(pool.owner[prefix])
    pool.taken[owner] = True
    length = int(fit.table.length[pool.candidate[prefix]])
    sample.append(int(pool.dialogue[owner]), length, int(pool.position[owner]))


def pair(fit: Fit, sample: Sample, pool: Pool) -> None:
    """Repair a sample the greedy tail left short: one segment re-cut (any prefix, or
    dropped) together with one pool prefix, the pair that lands highest within the budgets.
    Probe sources are neither re-cut nor dropped.
    """
    t, budgets = fit.table, fit.budgets
    current, tokens, images = totals(fit, sample)
    options = fit.size.usable[sample.dialogue].copy()
    options[: sample.fixed] = 0
    recut = ranges(t.start[sample.dialogue], options)
    segment = np.repeat(np.arange(len(options)), options)
    droppable = np.arange(sample.fixed, len(options))
    seg_cost = t.cost[current] + sample.correction
    a_gain = np.concatenate(([0], t.cost[recut] - t.cost[current][segment], -seg_cost[droppable]))
    a_more = np.concatenate(
        ([0], t.images[recut] - t.images[current][segment], -t.images[current][droppable])
    )
    open_ = pool.open()
    b_gain = np.concatenate(([0], t.cost[pool.candidate[open_]]))
    b_more = np.concatenate(([0], t.images[pool.candidate[open_]]))
    total = tokens + a_gain[:, None] + b_gain[None, :]
    count = images + a_more[:, None] + b_more[None, :]
    ok = (total >= fit.floor) & (total <= budgets.tokens)
    ok &= (count >= budgets.min_images) & (count <= fit.max_images)
    if not ok.any():
        return
    best = ok & (total == total[ok].max())
    a, b = np.unravel_index(int(np.argmax(np.where(best, count, -1))), best.shape)
    if 1 <= a <= len(recut):
        sample.length[segment[a - 1]] = t.length[recut[a - 1]]
    elif a > len(recut):
        sample.remove(int(droppable[a - 1 - len(recut)]))
    if b > 0:
        take(fit, sample, pool, int(open_[b - 1]))


def correct(fit: Fit, sample: Sample) -> None:
    """Mention correction at the final offsets (probes at their source's offset); trims
    the last segments, never a probe source, if over the ceiling."""
    mentions = fit.mentions
    if mentions is None:
        return
    t = fit.table
    current = t.start[sample.dialogue] + sample.length - 1
    offsets = excl_cumsum(t.images[current])
    sample.correction = mentions.correction(sample.dialogue, current, offsets)
    if len(sample.probe_cost):
        head = sample.sources
        asked = mentions.correction(sample.dialogue[head], current[head] + 1, offsets[head])
        sample.probe_correction = asked - sample.correction[head]
    probes = int((sample.probe_cost + sample.probe_correction).sum())
    total = int((t.cost[current] + sample.correction).sum()) + probes
    while total > fit.budgets.tokens and len(sample.dialogue) > sample.fixed:
        sample.trimmed = True
        last = len(sample.dialogue) - 1
        d, j = int(sample.dialogue[last]), int(sample.length[last])
        prefix = mentions.prefix_corrections(d, j, int(offsets[last]), int(t.start[d]))
        costs = t.cost[t.start[d] : t.start[d] + j] + prefix
        others = total - int(costs[-1])
        fitting = np.flatnonzero(others + costs <= fit.budgets.tokens)
        if len(fitting):
            keep = int(fitting[-1])
            sample.length[last] = keep + 1
            sample.correction[last] = prefix[keep]
            total = others + int(costs[keep])
        else:
            sample.remove(last)
            total = others
