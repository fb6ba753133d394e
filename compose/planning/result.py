"""What a plan is: its segment rows (`SEGMENT_SCHEMA`), its report, and the `Plan` that pairs
them. Kept apart from the planner so that readers of a plan (the engine, stats) need none of
its machinery."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from compose.planning.config import Budgets, Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class Distribution:
    mean: float
    min: float
    p1: float
    p50: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> Distribution:
        if len(values) == 0:
            return cls(mean=0.0, min=0.0, p1=0.0, p50=0.0, max=0.0)
        values = np.asarray(values, dtype=np.float64)
        p1, p50 = np.percentile(values, [1, 50])
        return cls(
            mean=float(values.mean()),
            min=float(values.min()),
            p1=float(p1),
            p50=float(p50),
            max=float(values.max()),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanReport:
    """What the plan achieved. `over_budget` and `under_floor` are counted, and must be 0."""

    budgets: Budgets
    policy: Policy
    floor: int
    samples: int
    samples_requested: int | None
    dialogues: int  # catalog rows
    dialogues_used: int
    dialogues_unused: int
    dialogues_unusable: int  # not even one QA turn fits the token and image ceilings
    dialogues_set_aside: int  # stream entries skipped because no sample could be closed on them
    segments: int
    segments_truncated: int  # prefixes shorter than their dialogue
    segments_corrected: int  # segments whose text tokens changed by re-indexed mentions
    samples_trimmed: int  # samples shortened after the mention correction
    over_budget: int  # samples above the token or image ceiling
    under_floor: int  # samples below the token or image floor
    tokens: Distribution
    images: Distribution  # achieved images per sample
    fill: Distribution  # tokens / the sample's token budget
    segments_per_sample: Distribution
    probes: int = 0  # probe turns in the whole plan
    reach_tokens: Distribution | None = None  # per probe; None without probes
    reach_images: Distribution | None = None
    lengths: tuple[dict, ...] = ()  # per token budget: tokens, samples, fill_mean
    mix: tuple[dict, ...] = ()  # per catalog source: source, weight, segments, tokens, share
    mix_dropped: int = 0  # stream entries the source weights left out (a source ran out)
    coherence: float | None = None  # topic order: mean cosine of neighbouring first questions

    def to_json(self) -> dict:
        """A JSON-ready dict (like `Reject.to_json`); `from_dict` reads it back."""
        out = asdict(self)
        out["lengths"] = [dict(x) for x in self.lengths]
        out["mix"] = [dict(x) for x in self.mix]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> PlanReport:
        values = dict(data)
        values["budgets"] = Budgets(**values["budgets"])
        values["policy"] = Policy(**values["policy"])
        for name in ("tokens", "images", "fill", "segments_per_sample"):
            values[name] = Distribution(**values[name])
        for name in ("reach_tokens", "reach_images"):
            if values.get(name) is not None:
                values[name] = Distribution(**values[name])
        for name in ("lengths", "mix"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)


SEGMENT_SCHEMA = {
    "sample": pl.Int64,
    "position": pl.Int32,
    "dialogue": pl.Int64,
    "first_turn": pl.Int32,
    "last_turn": pl.Int32,
    "image_offset": pl.Int32,
    "images": pl.Int32,
    "text_tokens": pl.Int64,
    "image_tokens": pl.Int64,
    "tokens": pl.Int64,
    "budget": pl.Int64,  # the sample's token budget
    "probe": pl.Boolean,  # a probe turn: the next QA turn of an earlier segment's dialogue
    "reach_tokens": pl.Int64,  # probes: tokens from the end of its source segment to it
    "reach_images": pl.Int64,  # probes: images introduced after its source segment's
}


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """Segments sorted by (sample, position), one row each, and the report of the whole plan."""

    segments: pl.DataFrame
    report: PlanReport

    @property
    def budgets(self) -> Budgets:
        return self.report.budgets

    @property
    def policy(self) -> Policy:
        return self.report.policy
