"""The plan's rows from the assembled samples: segments, then each sample's probes, with offsets,
tokens and reach-backs computed over all samples at once."""

from __future__ import annotations

import numpy as np
import polars as pl

from compose.planning.arrays import excl_cumsum, ranges
from compose.planning.config import Budgets
from compose.planning.result import SEGMENT_SCHEMA
from compose.planning.sample import Assembly
from compose.planning.table import Table


def segment_frame(table: Table, assembly: Assembly, budgets: Budgets) -> pl.DataFrame:
    """Segment rows, then each sample's probe rows after its last segment."""
    samples = assembly.samples
    count = len(samples)
    sizes = np.array([len(s.dialogue) for s in samples], dtype=np.int64)
    dialogue = np.concatenate([s.dialogue for s in samples])
    length = np.concatenate([s.length for s in samples])
    sample = np.repeat(np.arange(count, dtype=np.int64), sizes)
    first = excl_cumsum(sizes)
    position = np.arange(len(dialogue), dtype=np.int64) - first[sample]
    candidate = table.start[dialogue] + length - 1
    images = table.images[candidate]
    running = np.cumsum(images)
    offset = running - images - (running - images)[first][sample]
    correction = np.concatenate([s.correction for s in samples])
    text = table.text[candidate] + correction
    image_tokens = table.image_tokens[candidate]
    tokens = text + image_tokens + budgets.message_overhead * 2 * length
    budget = np.repeat(np.array(assembly.budgets, dtype=np.int64), sizes)
    segments = pl.DataFrame(
        {
            "sample": sample,
            "position": position,
            "dialogue": table.rows[dialogue],
            "first_turn": np.zeros(len(dialogue), dtype=np.int32),
            "last_turn": length - 1,
            "image_offset": offset,
            "images": images,
            "text_tokens": text,
            "image_tokens": image_tokens,
            "tokens": tokens,
            "budget": budget,
            "probe": np.zeros(len(dialogue), dtype=bool),
        }
    ).with_columns(
        pl.lit(None, dtype=pl.Int64).alias("reach_tokens"),
        pl.lit(None, dtype=pl.Int64).alias("reach_images"),
    )

    fixed = np.array([len(s.probe_cost) for s in samples], dtype=np.int64)
    lead = np.array([s.fixed - len(s.probe_cost) for s in samples], dtype=np.int64)
    source = ranges(first + lead, fixed)  # the segment row each probe continues
    if len(source) == 0:
        return segments.select(pl.col(n).cast(t) for n, t in SEGMENT_SCHEMA.items())
    owner = sample[source]
    asked = np.concatenate([s.probe_correction for s in samples])
    cost = np.concatenate([s.probe_cost for s in samples]) + asked
    probe_first = excl_cumsum(fixed)
    rank = np.arange(len(source)) - probe_first[owner]
    seg_running = np.cumsum(tokens)
    end = seg_running[source] - (seg_running - tokens)[first][owner]
    seg_total = np.bincount(sample, weights=tokens, minlength=count).astype(np.int64)
    probe_running = np.cumsum(cost)
    before = probe_running - cost - (probe_running - cost)[probe_first][owner]
    image_total = np.bincount(sample, weights=images, minlength=count).astype(np.int64)
    probes = pl.DataFrame(
        {
            "sample": owner,
            "position": sizes[owner] + rank,
            "dialogue": table.rows[dialogue[source]],
            "first_turn": length[source],
            "last_turn": length[source],
            "image_offset": offset[source],
            "images": np.zeros(len(source), dtype=np.int64),
            "text_tokens": table.text[candidate[source] + 1]
            - table.text[candidate[source]]
            + asked,
            "image_tokens": np.zeros(len(source), dtype=np.int64),
            "tokens": cost,
            "budget": budget[source],
            "probe": np.ones(len(source), dtype=bool),
            "reach_tokens": seg_total[owner] - end + before,
            "reach_images": image_total[owner] - (offset[source] + images[source]),
        }
    )
    columns = [pl.col(n).cast(t) for n, t in SEGMENT_SCHEMA.items()]
    return pl.concat([segments.select(columns), probes.select(columns)]).sort("sample", "position")
