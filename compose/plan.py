"""Budgets -> plan: which prefix of which dialogue goes into which sample, at which image offset.

The plan is a pure function of (catalog, budgets, policy): every random choice comes from
`Policy.seed`. Per-dialogue work is vectorised over a candidate table with one row per
(dialogue, prefix length); Python loops run once per sample (and per tail step), never once per
record. A sample may end with long-range probes: the next QA turn of a dialogue placed at the
start of the sample, asked after everything else. docs/planning.md describes the algorithm, the
budgets, probes, orders and the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from compose import order as ordering
from compose.order import ORDERS
from compose.tokens import image_model

DigitTokens = Callable[[np.ndarray], np.ndarray]

METADATA_KEY = b"compose.plan"
DIGEST_KEY = b"compose.plan.sha256"  # of the report JSON; the data pages carry CRCs of their own
REQUIRED_COLUMNS = ("row", "n_images", "n_qa", "qa_text_tokens", "qa_new_images", "images")

# Tail search: how many upcoming dialogues the best-fit step may pick from, how many steps it
# takes per sample, how many shorter main runs a sample tries before its first dialogue is set
# aside, and how many samples in a row may fail before planning stops.
POOL = 64
TAIL_STEPS = 8
ATTEMPT_DROPS = (0, 1, 2, 4)
CORRECTION_ROUNDS = 3
FAILURE_LIMIT = 256


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Budgets:
    """What every sample must respect. `tokens` is both the hard ceiling and the target.

    With several `lengths` (context lengths), samples take them in turn and `tokens` is the
    largest; every other budget applies to each sample at its own length.
    """

    tokens: int
    tolerance: float = 0.02  # floor = ceil(tokens * (1 - tolerance))
    max_images: int | None = None  # hard ceiling
    min_images: int = 0  # floor
    samples: int | None = None  # None: as many as the corpus gives
    reuse: int = 1  # how many times a dialogue may be used in the whole plan (epochs)
    message_overhead: int = 0  # tokens added per message
    lengths: tuple[int, ...] = ()  # several token budgets, taken in turn; () = just `tokens`
    probes: int = 0  # long-range probe turns at the end of each sample
    min_reach: int = 0  # tokens between a probe and the earlier turns of its dialogue
    min_reach_share: float = 0.0  # the same, as a share of the sample's token budget

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ValueError(f"--tokens must be at least 1, got {self.tokens}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"--tolerance must be in [0, 1), got {self.tolerance}")
        if self.max_images is not None and self.max_images < 0:
            raise ValueError(f"--max-images must be >= 0, got {self.max_images}")
        if self.min_images < 0:
            raise ValueError(f"--min-images must be >= 0, got {self.min_images}")
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"--samples must be at least 1, got {self.samples}")
        if self.reuse < 1:
            raise ValueError(f"--reuse must be at least 1, got {self.reuse}")
        if self.message_overhead < 0:
            raise ValueError(f"message overhead must be >= 0, got {self.message_overhead}")
        lengths = tuple(int(t) for t in self.lengths)
        object.__setattr__(self, "lengths", lengths if len(lengths) > 1 else ())
        if lengths and (min(lengths) < 1 or len(set(lengths)) != len(lengths)):
            raise ValueError(f"--tokens lengths must be distinct and >= 1, got {lengths}")
        if lengths and max(lengths) != self.tokens:
            raise ValueError(f"tokens {self.tokens} is not the largest of lengths {lengths}")
        if self.probes < 0:
            raise ValueError(f"--probes must be >= 0, got {self.probes}")
        if self.min_reach < 0 or not 0.0 <= self.min_reach_share < 1.0:
            raise ValueError(
                f"--min-reach must be >= 0 tokens or a share in [0%, 100%), got "
                f"{self.min_reach} tokens, {self.min_reach_share:.0%}"
            )

    @property
    def floor(self) -> int:
        """The fewest tokens a sample may hold: the ceiling less the tolerance, rounded up."""
        return math.ceil(self.tokens * (1 - self.tolerance))

    @property
    def sizes(self) -> tuple[int, ...]:
        """The token budgets samples take in turn (one unless `lengths` is given)."""
        return self.lengths or (self.tokens,)

    def at(self, tokens: int) -> Budgets:
        """These budgets for samples of one length."""
        return dataclasses.replace(self, tokens=tokens, lengths=())

    def reach(self, tokens: int | None = None) -> int:
        """The reach-back every probe of a sample with this token budget must have."""
        budget = self.tokens if tokens is None else tokens
        return max(self.min_reach, math.ceil(self.min_reach_share * budget))


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How the plan chooses: image-token model, dialogue order, seed, source weights.

    `order`: `random` (seeded shuffle per epoch), `input` (catalog order), `topic` (dialogues
    with similar first questions together), `length` (large and small dialogues in turn, for
    fill). `weights`: one per catalog source (its `source` number), the share of tokens each
    brings; () = no mixing, the catalog as it is.
    """

    image_tokens: str = "llava-1.5"
    order: str = "random"
    seed: int = 0
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        weights = tuple(float(w) for w in self.weights)
        if any(not (math.isfinite(w) and w > 0) for w in weights):
            raise ValueError(f"source weights must be positive numbers, got {weights}")
        object.__setattr__(self, "weights", weights)


class Infeasible(ValueError):
    """The budgets cannot be met with this catalog and image model; the message says why."""


_TOKENS = re.compile(r"(\d+(?:\.\d+)?)\s*([km]?)", re.IGNORECASE)


def parse_tokens(text: str) -> int:
    """Read a token budget: "64k" is 65,536 (k = 1024, as context windows are counted)."""
    match = _TOKENS.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a token count: {text!r} (expected e.g. 64k, 128K, 64000, 1.5k)")
    number, unit = match.groups()
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]
    whole, _, fraction = number.partition(".")
    # Exact arithmetic: 1.5k is 1536, and 1.0001k is refused rather than rounded.
    numerator = (int(whole) * 10 ** len(fraction) + int(fraction or 0)) * scale
    value, remainder = divmod(numerator, 10 ** len(fraction))
    if remainder:
        raise ValueError(f"not a whole number of tokens: {text!r}")
    if value < 1:
        raise ValueError(f"a token budget must be at least 1: {text!r}")
    return value


def parse_lengths(text: str) -> tuple[int, ...]:
    """Read one or several token budgets: `64k`, a list `32k,64k,128k`, or a range
    `32k..128k` (from the first to the last in steps of the first: 32k, 64k, 96k, 128k) or
    `32k..128k:16k` (steps of 16k). Lists and ranges combine: `8k,32k..64k:16k`."""
    sizes: list[int] = []
    for item in text.split(","):
        low, dots, rest = item.partition("..")
        if not dots:
            sizes.append(parse_tokens(item))
            continue
        high, _, step_text = rest.partition(":")
        start, stop = parse_tokens(low), parse_tokens(high)
        step = parse_tokens(step_text) if step_text else start
        if stop < start or (stop - start) % step:
            raise ValueError(
                f"range {item.strip()!r}: {stop:,} is not {start:,} plus a whole number of "
                f"steps of {step:,}"
            )
        sizes.extend(range(start, stop + 1, step))
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"--tokens {text!r} names a length twice")
    return tuple(sizes)


def parse_reach(text: str) -> tuple[int, float]:
    """Read `--min-reach`: `50%` (of each sample's token budget) or `30k` tokens; returns
    (tokens, share)."""
    value = text.strip()
    if value.endswith("%"):
        try:
            share = float(value[:-1]) / 100
        except ValueError:
            raise ValueError(f"not a share: {text!r} (expected e.g. 50%)") from None
        if not 0.0 <= share < 1.0:
            raise ValueError(f"--min-reach {text}: a share must be in [0%, 100%)")
        return 0, share
    if value in ("", "0"):
        return 0, 0.0
    return parse_tokens(value), 0.0


# --- the plan and its report ---------------------------------------------------------------


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


# The catalog columns the planner reads, as `Catalog.frame` names them: of the turns only their
# mention numbers, of the images only their sizes, so planning never holds the turn text.
PLAN_COLUMNS = [
    "row",
    "id",
    "n_images",
    "n_qa",
    "qa_text_tokens",
    "qa_new_images",
    "images.width",
    "images.height",
    "turns.mentions",
    "source",
]


def plan_columns(policy: Policy) -> list[str]:
    """`PLAN_COLUMNS`, and the first question's text when the order is `topic`."""
    topic = [ordering.FIRST_QUESTION] if policy.order == "topic" else []
    return [*PLAN_COLUMNS, *topic]


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


# --- the catalog as a candidate table ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Table:
    """One row per (dialogue, prefix length); dialogues in frame order, prefixes 1..n_qa.

    `start[d]` is dialogue d's first candidate, so prefix j of d is candidate start[d] + j - 1.
    Costs and images never decrease with j, so the usable prefixes of d are 1..usable[d].
    """

    rows: np.ndarray  # catalog row per dialogue
    n_qa: np.ndarray
    start: np.ndarray
    usable: np.ndarray  # prefixes within the token and image ceilings
    chosen: np.ndarray  # candidate the main run takes for each dialogue; -1 if none
    dialogue: np.ndarray  # per candidate: its dialogue
    length: np.ndarray  # per candidate: QA turns in the prefix
    text: np.ndarray
    image_tokens: np.ndarray
    images: np.ndarray
    cost: np.ndarray  # text + image tokens + message overhead
    per_image: np.ndarray  # image tokens of each image of the catalog
    next_cost: np.ndarray  # per candidate: cost of the next QA turn if it brings no image, or -1


def _excl_cumsum(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int64)
    np.cumsum(values[:-1], out=out[1:])
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges start..start+length-1, vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    steps = np.arange(total, dtype=np.int64) - np.repeat(_excl_cumsum(lengths), lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + steps


def _flat(series: pl.Series, name: str) -> np.ndarray:
    values = series.explode(empty_as_null=False)
    if values.null_count():
        raise ValueError(f"catalog column {name!r} holds null values")
    return values.to_numpy().astype(np.int64, copy=False)


def _bad_row(frame: pl.DataFrame, bad: np.ndarray, reason: str) -> ValueError:
    first = int(np.flatnonzero(bad)[0])
    row = frame["row"][first]
    ident = f", id {frame['id'][first]!r}" if "id" in frame.columns else ""
    count = int(bad.sum())
    more = f" (and {count - 1:,} more rows)" if count > 1 else ""
    return ValueError(f"catalog row {row}{ident}: {reason}{more}")


def _image_tokens(frame: pl.DataFrame, n_images: np.ndarray, spec: str) -> np.ndarray:
    """Tokens of every image of the catalog, in frame order; a size the model refuses names
    its catalog row."""
    model = image_model(spec)
    flat = frame["images"].explode(empty_as_null=False)
    width, height = flat.struct.field("width"), flat.struct.field("height")
    owner = np.repeat(np.arange(len(n_images)), n_images)
    missing = (width.is_null() | height.is_null()).to_numpy()
    if missing.any():
        raise _bad_row(
            frame, np.isin(np.arange(len(n_images)), owner[missing]), "image size unknown"
        )
    width, height = width.to_numpy(), height.to_numpy()
    try:
        return np.asarray(model.count(width, height), dtype=np.int64)
    except ValueError as error:
        refused = (width <= 0) | (height <= 0)
        if not refused.any():
            refused = ~np.asarray(model.supports(width, height), dtype=bool)
        bad = np.isin(np.arange(len(n_images)), owner[refused])
        raise _bad_row(frame, bad, f"image size refused: {error}") from error


def _build_table(frame: pl.DataFrame, budgets: Budgets, policy: Policy) -> _Table:
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"catalog frame lacks columns {', '.join(missing)}")
    rows = frame["row"].to_numpy().astype(np.int64, copy=False)
    n_qa = frame["n_qa"].to_numpy().astype(np.int64, copy=False)
    n_images = frame["n_images"].to_numpy().astype(np.int64, copy=False)
    for name, counted in (
        ("qa_text_tokens", n_qa),
        ("qa_new_images", n_qa),
        ("images", n_images),
    ):
        lengths = frame[name].list.len().fill_null(-1).to_numpy()
        if (lengths != counted).any():
            raise _bad_row(frame, lengths != counted, f"{name} does not match its count")
    text = _flat(frame["qa_text_tokens"], "qa_text_tokens")
    new = _flat(frame["qa_new_images"], "qa_new_images")
    if (text < 0).any() or (new < 0).any():
        raise ValueError("catalog holds negative token or image counts")
    dialogue = np.repeat(np.arange(len(n_qa), dtype=np.int64), n_qa)
    introduced = np.bincount(dialogue, weights=new, minlength=len(n_qa)).astype(np.int64)
    if (introduced != n_images).any():
        raise _bad_row(frame, introduced != n_images, "qa_new_images does not add up to n_images")

    per_image = _image_tokens(frame, n_images, policy.image_tokens)

    start = _excl_cumsum(n_qa)
    length = np.arange(len(text), dtype=np.int64) - start[dialogue] + 1
    text_sum = np.concatenate(([0], np.cumsum(text)))
    new_sum = np.concatenate(([0], np.cumsum(new)))
    image_sum = np.concatenate(([0], np.cumsum(per_image)))
    prefix_text = text_sum[1:] - text_sum[start][dialogue]
    prefix_images = new_sum[1:] - new_sum[start][dialogue]
    first_image = _excl_cumsum(n_images)[dialogue]
    prefix_image_tokens = image_sum[first_image + prefix_images] - image_sum[first_image]
    cost = prefix_text + prefix_image_tokens + budgets.message_overhead * 2 * length

    fits = cost <= budgets.tokens
    if budgets.max_images is not None:
        fits &= prefix_images <= budgets.max_images
    usable = np.bincount(dialogue, weights=fits, minlength=len(n_qa)).astype(np.int64)
    chosen = _choose(len(n_qa), dialogue, length, cost, prefix_images, fits, budgets)
    chosen[usable == 0] = -1
    return _Table(
        rows=rows,
        n_qa=n_qa,
        start=start,
        usable=usable,
        chosen=chosen,
        dialogue=dialogue,
        length=length,
        text=prefix_text,
        image_tokens=prefix_image_tokens,
        images=prefix_images,
        cost=cost,
        per_image=per_image,
        next_cost=_next_cost(length, n_qa[dialogue], new, cost),
    )


def _next_cost(length, n_qa, new, cost) -> np.ndarray:
    """Per candidate (prefix j of d): what QA turn j + 1 of d costs when it exists and introduces
    no image, so it can be asked later as a probe; -1 otherwise. Candidate c + 1 is prefix
    j + 1 of the same dialogue whenever j < n_qa."""
    out = np.full(len(cost), -1, dtype=np.int64)
    has_next = np.flatnonzero(length < n_qa)
    ok = has_next[new[has_next + 1] == 0]
    out[ok] = cost[ok + 1] - cost[ok]
    return out


def _choose(
    n: int,
    dialogue: np.ndarray,
    length: np.ndarray,
    cost: np.ndarray,
    images: np.ndarray,
    fits: np.ndarray,
    budgets: Budgets,
) -> np.ndarray:
    """The prefix of each dialogue that the main run takes, steered by image density.

    With an image ceiling, the prefix whose images are closest to density max_images/tokens
    (|images - rho * cost| smallest): short prefixes of image-poor dialogues, longer ones of
    image-rich dialogues. With only an image floor, the longest prefix dense enough for it.
    Otherwise the longest prefix that fits. Ties go to the longer prefix.
    """
    if budgets.max_images is not None:
        rho = budgets.max_images / budgets.tokens
        score = np.abs(images - rho * cost)
    elif budgets.min_images > 0:
        rho = 1.05 * budgets.min_images / max(budgets.floor, 1)
        score = np.maximum(rho * cost - images, 0.0)
    else:
        score = np.zeros(len(cost))
    score = np.where(fits, score, np.inf)
    order = np.lexsort((-length, score, dialogue))
    first = np.ones(len(order), dtype=bool)
    first[1:] = dialogue[order[1:]] != dialogue[order[:-1]]
    chosen = np.full(n, -1, dtype=np.int64)
    chosen[dialogue[order[first]]] = order[first]
    return chosen


@dataclass(frozen=True, slots=True, kw_only=True)
class _Size:
    """The candidate table seen at one token budget: which prefixes fit, which one the main run
    takes, and which prefixes can be a probe's source (candidate indices, -1 for none)."""

    budgets: Budgets
    usable: np.ndarray
    chosen: np.ndarray
    probe_long: np.ndarray  # the longest probe source within the preferred prefix, or shorter
    probe_short: np.ndarray  # the shortest probe source


def _size(table: _Table, budgets: Budgets) -> _Size:
    """A probe source is a prefix that fits, shows at least one image, and whose next QA turn
    exists, introduces no image, and fits with it: asked later, that turn is the probe."""
    n = len(table.rows)
    fits = table.cost <= budgets.tokens
    if budgets.max_images is not None:
        fits &= table.images <= budgets.max_images
    usable = np.bincount(table.dialogue, weights=fits, minlength=n).astype(np.int64)
    chosen = _choose(n, table.dialogue, table.length, table.cost, table.images, fits, budgets)
    chosen[usable == 0] = -1
    short = np.full(n, -1, dtype=np.int64)
    long = short
    if budgets.probes:
        valid = fits & (table.next_cost >= 0) & (table.images > 0)
        valid &= table.cost + table.next_cost <= budgets.tokens
        short = _per_dialogue(table.dialogue, valid, n, last=False)
        within = valid & (np.arange(len(valid)) <= chosen[table.dialogue])
        long = _per_dialogue(table.dialogue, within, n, last=True)
        long = np.where(long >= 0, long, short)
    return _Size(budgets=budgets, usable=usable, chosen=chosen, probe_long=long, probe_short=short)


def _per_dialogue(dialogue: np.ndarray, mask: np.ndarray, n: int, *, last: bool) -> np.ndarray:
    """The first (or last) candidate of each dialogue where `mask` holds; -1 where none does."""
    out = np.full(n, -1, dtype=np.int64)
    index = np.flatnonzero(mask)
    if len(index) == 0:
        return out
    owner = dialogue[index]
    if last:
        edge = np.r_[owner[1:] != owner[:-1], True]
    else:
        edge = np.r_[True, owner[1:] != owner[:-1]]
    out[owner[edge]] = index[edge]
    return out


def _sizes(table: _Table, budgets: Budgets) -> list[_Size]:
    return [_size(table, budgets.at(tokens)) for tokens in budgets.sizes]


# --- feasibility ---------------------------------------------------------------------------


def _fmt_tokens(value: int) -> str:
    if value % 1024 == 0:
        return f"{value // 1024:,}k ({value:,})"
    return f"{value:,}"


def check_feasible(frame: pl.DataFrame, budgets: Budgets, policy: Policy) -> None:
    """Raise `Infeasible`, with the numbers, when no plan can meet the budgets."""
    table = _build_table(frame, budgets, policy)
    _check_all(frame, table, budgets, policy, _sizes(table, budgets))


def _check_all(frame, table: _Table, budgets: Budgets, policy: Policy, sizes) -> None:
    """Every check, at every token budget of `sizes`, then what the whole plan needs."""
    for size in sizes:
        view = dataclasses.replace(table, usable=size.usable, chosen=size.chosen)
        _check(view, size.budgets, policy)
        _check_probes(view, size)
    _check_samples(table, budgets, sizes)
    _check_sources(frame, table, policy, sizes[-1] if len(sizes) else None)


def _check_samples(table: _Table, budgets: Budgets, sizes: list[_Size]) -> None:
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


def _check_probes(table: _Table, size: _Size) -> None:
    """Enough dialogues that can carry a probe, and a reach-back that leaves them room."""
    budgets = size.budgets
    if not budgets.probes:
        return
    eligible = size.probe_short >= 0
    count = int(eligible.sum())
    where = f"at --tokens {_fmt_tokens(budgets.tokens)}"
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


def _check_sources(frame, table: _Table, policy: Policy, size: _Size | None) -> None:
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


def _check(table: _Table, budgets: Budgets, policy: Policy) -> None:
    tokens = _fmt_tokens(budgets.tokens)
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


def _check_image_tokens(table: _Table, budgets: Budgets, policy: Policy) -> None:
    """The image floor alone: its image tokens must fit in the ceiling."""
    wanted = budgets.min_images
    if wanted == 0 or len(table.per_image) == 0:
        return
    low, high = int(table.per_image.min()), int(table.per_image.max())
    each = f"{low:,} per image" if low == high else f"at least {low:,} per image in this corpus"
    if wanted * low > budgets.tokens:
        raise Infeasible(
            f"--min-images {wanted:,} needs at least {wanted * low:,} image tokens "
            f"({policy.image_tokens}: {each}) but --tokens is {_fmt_tokens(budgets.tokens)}"
        )


def _check_image_density(table: _Table, budgets: Budgets, available: int) -> None:
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
    fits = _ranges(table.start, table.usable)
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
            f"--min-images {wanted:,} cannot fit in --tokens {_fmt_tokens(budgets.tokens)}: "
            f"packing the corpus's most image-dense QA turns (the best: one image per "
            f"{per:,.0f} tokens) gives at most {most:,} images"
        )


# --- mention correction --------------------------------------------------------------------


class _Mentions:
    """Prose mentions per dialogue, to correct text tokens when numbers shift by an offset.

    Mentions are stored in turn order per dialogue; `prefix_count[c]` is how many of them the
    prefix of candidate c holds.
    """

    def __init__(self, frame: pl.DataFrame, table: _Table, digit_tokens: DigitTokens) -> None:
        if "turns" not in frame.columns:
            raise ValueError("catalog frame lacks column turns (needed for mention correction)")
        # One row per mention (millions at MMDU-45k scale): 32-bit columns halve the memory.
        turns = (
            frame.select(
                pl.int_range(pl.len(), dtype=pl.Int32).alias("dialogue"),
                pl.col("turns").list.eval(pl.element().struct.field("mentions")).alias("m"),
            )
            .explode("m", empty_as_null=False)
            .with_columns(pl.int_range(pl.len(), dtype=pl.Int32).over("dialogue").alias("turn"))
            .explode("m", empty_as_null=False)
            .drop_nulls("m")
        )
        dialogue = turns["dialogue"].to_numpy()
        qa = turns["turn"].to_numpy() // 2
        past = qa >= table.n_qa[dialogue]
        if past.any():
            bad = np.zeros(len(table.n_qa), dtype=bool)
            bad[dialogue[past]] = True
            raise _bad_row(frame, bad, "turns holds more messages than 2 * n_qa")
        self.number = turns["m"].to_numpy()
        del turns
        if (self.number < 1).any():
            bad = np.zeros(len(table.n_qa), dtype=bool)
            bad[dialogue[self.number < 1]] = True
            raise _bad_row(frame, bad, "a mention number is below 1")
        self.qa = qa
        self.start = np.searchsorted(dialogue, np.arange(len(table.n_qa)))
        per_turn = np.bincount(table.start[dialogue] + qa, minlength=len(table.cost))
        running = np.cumsum(per_turn)
        self.prefix_count = running - (running - per_turn)[table.start][table.dialogue]
        self._digit_tokens = digit_tokens
        self._table = np.zeros(0, dtype=np.int64)

    def _digits(self, numbers: np.ndarray) -> np.ndarray:
        need = int(numbers.max()) + 1 if len(numbers) else 0
        if need > len(self._table):
            size = max(need, 2 * len(self._table), 1024)
            counts = np.asarray(self._digit_tokens(np.arange(size, dtype=np.int64)))
            if counts.shape != (size,):
                raise ValueError(f"digit_tokens gave shape {counts.shape} for {size} numbers")
            self._table = counts.astype(np.int64)
        return self._table[numbers]

    def shifts(self, dialogues: np.ndarray, candidates: np.ndarray, offsets: np.ndarray):
        """Per mention of the given prefixes: its segment (index) and its token change."""
        counts = self.prefix_count[candidates]
        index = _ranges(self.start[dialogues], counts)
        owner = np.repeat(np.arange(len(dialogues)), counts)
        number = self.number[index]
        delta = self._digits(number + offsets[owner]) - self._digits(number)
        return owner, index, delta

    def correction(self, dialogues, candidates, offsets) -> np.ndarray:
        owner, _, delta = self.shifts(dialogues, candidates, offsets)
        return np.bincount(owner, weights=delta, minlength=len(dialogues)).astype(np.int64)

    def prefix_corrections(self, dialogue: int, length: int, offset: int, start: int):
        """Correction of each prefix 1..length of one dialogue placed at `offset`."""
        candidate = np.array([start + length - 1])
        _, index, delta = self.shifts(np.array([dialogue]), candidate, np.array([offset]))
        per_qa = np.bincount(self.qa[index], weights=delta, minlength=length)[:length]
        return np.cumsum(per_qa).astype(np.int64)


# --- assembly ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Sample:
    """A sample under construction: its segments as (dialogue, prefix length, stream position).

    The first `fixed` segments are never re-cut, extended or dropped: a lead-in, then the probe
    sources, the last `len(probe_cost)` of them. The probe of source k asks QA turn
    `length[k]` (0-based) of dialogue `dialogue[k]` after all the segments.
    """

    dialogue: np.ndarray
    length: np.ndarray
    position: np.ndarray
    correction: np.ndarray  # text tokens added by re-indexed mentions, per segment
    trimmed: bool = False
    fixed: int = 0
    probe_cost: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    probe_correction: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def append(self, dialogue: int, length: int, position: int) -> None:
        self.dialogue = np.append(self.dialogue, dialogue)
        self.length = np.append(self.length, length)
        self.position = np.append(self.position, position)
        self.correction = np.append(self.correction, 0)

    def remove(self, segment: int) -> None:
        keep = np.arange(len(self.dialogue)) != segment
        self.dialogue = self.dialogue[keep]
        self.length = self.length[keep]
        self.position = self.position[keep]
        self.correction = self.correction[keep]

    @property
    def sources(self) -> slice:
        """The probe sources: the last segments of the frozen prefix."""
        return slice(self.fixed - len(self.probe_cost), self.fixed)


@dataclass(frozen=True, slots=True)
class _Head:
    """The probe sources a sample starts with, and what their probes cost (tokens)."""

    position: np.ndarray  # stream positions
    dialogue: np.ndarray
    length: np.ndarray  # source prefix lengths; the probe is QA turn `length` (0-based)
    probe_cost: np.ndarray
    slack: int = 0  # tokens that may come before the sources and keep every reach-back

    @classmethod
    def empty(cls) -> _Head:
        none = np.zeros(0, dtype=np.int64)
        return cls(position=none, dialogue=none, length=none, probe_cost=none)


@dataclass(slots=True)
class _Pool:
    """The seeded lookahead: upcoming stream dialogues and all their usable prefixes."""

    dialogue: np.ndarray  # per pool entry
    position: np.ndarray  # per pool entry: stream position
    candidate: np.ndarray  # per prefix: candidate index
    owner: np.ndarray  # per prefix: pool entry
    taken: np.ndarray  # per pool entry

    def open(self) -> np.ndarray:
        return np.flatnonzero(~self.taken[self.owner])


@dataclass(slots=True)
class _Assembly:
    samples: list[_Sample] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)  # the token budget of each sample
    set_aside: int = 0
    last_try: tuple[int, int] = (0, 0)  # tokens and images of the last sample that failed


class _Assembler:
    """Cuts the seeded stream of dialogues into samples: probe sources first (with probes),
    a main run, then a best-fit tail. Samples take the token budgets of `sizes` in turn."""

    def __init__(
        self,
        table: _Table,
        budgets: Budgets,
        sizes: list[_Size],
        mentions: _Mentions | None,
        stream: np.ndarray,
        seed: int,
    ) -> None:
        self.t = table
        self.all = budgets
        self.sizes = sizes
        self.max_images = budgets.max_images if budgets.max_images is not None else 2**40
        self.mentions = mentions
        self.most_images = int(table.images.max(initial=0))
        self.stream = stream
        self.consumed = np.zeros(len(self.stream), dtype=bool)
        longest = table.start + table.usable - 1
        self.stream_most = table.cost[longest[self.stream]]
        self.remaining = int(self.stream_most.sum())
        self.window = _window_size(table, budgets)
        self.rng = np.random.default_rng([seed, 2])  # where probe sources start in a sample
        self.out = _Assembly()
        self._use(0)

    def _use(self, sample: int) -> None:
        """Take the token budget of the `sample`-th sample."""
        self.size = self.sizes[sample % len(self.sizes)]
        self.budgets = self.size.budgets
        self.floor = self.budgets.floor
        self.reach = self.budgets.reach() if self.budgets.probes else 0

    def run(self) -> _Assembly:
        limit = self.all.samples
        head = 0
        failures = 0
        while limit is None or len(self.out.samples) < limit:
            self._use(len(self.out.samples))
            if self.remaining < self.floor:
                break
            window = self._window(head)
            if len(window) == 0:
                break
            head = int(window[0])
            sample = self._sample(window)
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
            self.out.budgets.append(self.budgets.tokens)
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

    def _sample(self, window: np.ndarray) -> _Sample | None:
        """Probe sources, then the main run: preferred prefixes in stream order while both
        ceilings hold; then the tail. A sample whose tail cannot reach the floors is retried
        with shorter main runs.
        """
        t, size = self.t, self.size
        window = window[size.usable[self.stream[window]] > 0]
        head = self._head(window)
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
                    np.cumsum(t.cost[chosen]), self.budgets.tokens - head_tokens, side="right"
                )
            ),
            int(
                np.searchsorted(
                    np.cumsum(t.images[chosen]), self.max_images - head_images, side="right"
                )
            ),
        )
        lead = self._lead(head, chosen)
        for drop in ATTEMPT_DROPS:
            if drop >= run and drop > 0:
                break
            cut = run - drop
            m = min(lead, cut)  # lead-in segments, then the sources, then the rest of the run
            sample = _Sample(
                dialogue=_lead_in(dialogues, head.dialogue, m, cut),
                length=_lead_in(t.length[chosen], head.length, m, cut),
                position=_lead_in(rest, head.position, m, cut),
                correction=np.zeros(len(head.dialogue) + cut, dtype=np.int64),
                fixed=m + len(head.dialogue),
                probe_cost=head.probe_cost.copy(),
                probe_correction=np.zeros(len(head.dialogue), dtype=np.int64),
            )
            pool_d = dialogues[cut : cut + POOL]
            pool = _Pool(
                dialogue=pool_d,
                position=rest[cut : cut + POOL],
                candidate=_ranges(t.start[pool_d], size.usable[pool_d]),
                owner=np.repeat(np.arange(len(pool_d)), size.usable[pool_d]),
                taken=np.zeros(len(pool_d), dtype=bool),
            )
            if self._complete(sample, pool):
                return sample
        return None

    def _lead(self, head: _Head, chosen: np.ndarray) -> int:
        """How many main-run segments go before the probe sources: as many as fit in a seeded
        uniform share of the head's slack, so reach-backs spread from the reach asked for to
        nearly the whole sample instead of all sitting at the far end."""
        if len(head.dialogue) == 0 or head.slack <= 0:
            return 0
        tokens = self.rng.integers(0, head.slack + 1)
        return int(np.searchsorted(np.cumsum(self.t.cost[chosen]), tokens, side="right"))

    def _head(self, window: np.ndarray) -> _Head | None:
        """The probe sources: the first dialogues of the window that can carry a probe, at
        their preferred prefix, else their shortest, else the cheapest few of the next ones.

        With every probe at the end, probe k reaches back at least
        floor - (sources 0..k) - (probes k..) tokens, whatever the rest of the sample holds;
        the sources are taken only when that is at least the reach asked for.
        """
        wanted = self.budgets.probes
        if wanted == 0:
            return _Head.empty()
        t, size = self.t, self.size
        dialogues = self.stream[window]
        eligible = np.flatnonzero(size.probe_short[dialogues] >= 0)[: 4 * wanted]
        if len(eligible) < wanted:
            return None
        short = size.probe_short[dialogues[eligible]]
        need = t.cost[short] + t.next_cost[short]
        cheap = np.sort(eligible[np.argsort(need, kind="stable")[:wanted]])
        first = eligible[:wanted]
        room = self.floor - self.reach
        for picks, prefixes in ((first, size.probe_long), (first, size.probe_short)) + (
            (cheap, size.probe_short),
        ):
            candidate = prefixes[dialogues[picks]]
            cost, probe = t.cost[candidate], t.next_cost[candidate]
            ends = np.cumsum(cost)
            after = np.cumsum(probe[::-1])[::-1]
            if (
                (ends + after).max() <= room
                and int(ends[-1] + after[0]) <= self.budgets.tokens
                and int(t.images[candidate].sum()) <= self.max_images
            ):
                return _Head(
                    position=window[picks],
                    dialogue=dialogues[picks],
                    length=t.length[candidate],
                    probe_cost=probe,
                    slack=int(room - (ends + after).max()),
                )
        return None

    def _totals(self, sample: _Sample) -> tuple[np.ndarray, int, int]:
        current = self.t.start[sample.dialogue] + sample.length - 1
        tokens = int((self.t.cost[current] + sample.correction).sum())
        tokens += int((sample.probe_cost + sample.probe_correction).sum())
        return current, tokens, int(self.t.images[current].sum())

    def _complete(self, sample: _Sample, pool: _Pool) -> bool:
        """Fill the tail, correct re-indexed mentions, trim; True when every budget holds."""
        rounds = CORRECTION_ROUNDS if self.mentions is not None else 1
        for _ in range(rounds):
            self._fill(sample, pool)
            if not self._closes(sample):
                self._pair(sample, pool)
                self._fill(sample, pool)
            self._correct(sample)
            if self._closes(sample):
                return True
        _, tokens, images = self._totals(sample)
        self.out.last_try = (tokens, images)
        return False

    def _closes(self, sample: _Sample) -> bool:
        _, tokens, images = self._totals(sample)
        return (
            len(sample.dialogue) > 0
            and self.floor <= tokens <= self.budgets.tokens
            and self.budgets.min_images <= images <= self.max_images
            and self._reaches(sample)
        )

    def _reaches(self, sample: _Sample) -> bool:
        """Every probe at least `reach` tokens after the end of its source segment."""
        if len(sample.probe_cost) == 0:
            return True
        current = self.t.start[sample.dialogue] + sample.length - 1
        segments = self.t.cost[current] + sample.correction
        ends = np.cumsum(segments)[sample.sources]
        before = _excl_cumsum(sample.probe_cost + sample.probe_correction)
        return bool((int(segments.sum()) - ends + before >= self.reach).all())

    def _fill(self, sample: _Sample, pool: _Pool) -> None:
        """Best-fit steps over (pool dialogue, prefix) and (segment, longer prefix) candidates.

        Each step takes the candidate that most reduces an image deficit (below min_images),
        then adds the most tokens without passing either ceiling, then brings the most images.
        Probe sources are never extended.
        """
        t, budgets = self.t, self.budgets
        for _ in range(TAIL_STEPS):
            current, tokens, images = self._totals(sample)
            room = budgets.tokens - tokens
            if room <= 0:
                break
            need = max(budgets.min_images - images, 0)
            extra = self.size.usable[sample.dialogue] - sample.length
            extra[: sample.fixed] = 0
            longer = _ranges(current + 1, extra)
            base = np.repeat(current, extra)
            open_ = pool.open()
            fresh = pool.candidate[open_]
            gain = np.concatenate((t.cost[longer] - t.cost[base], t.cost[fresh]))
            more = np.concatenate((t.images[longer] - t.images[base], t.images[fresh]))
            ok = (gain <= room) & (more <= self.max_images - images) & ((gain > 0) | (more > 0))
            if not ok.any():
                break
            key = (np.minimum(more, need) * (budgets.tokens + 1) + gain).astype(np.float64)
            key = key * (self.most_images + 1) + more
            best = int(np.argmax(np.where(ok, key, -1.0)))
            if best < len(longer):
                segment = int(np.repeat(np.arange(len(extra)), extra)[best])
                sample.length[segment] = t.length[longer[best]]
            else:
                self._take(sample, pool, int(open_[best - len(longer)]))

    def _take(self, sample: _Sample, pool: _Pool, prefix: int) -> None:
        owner = int(pool.owner[prefix])
        pool.taken[owner] = True
        length = int(self.t.length[pool.candidate[prefix]])
        sample.append(int(pool.dialogue[owner]), length, int(pool.position[owner]))

    def _pair(self, sample: _Sample, pool: _Pool) -> None:
        """Repair a sample the greedy tail left short: one segment re-cut (any prefix, or
        dropped) together with one pool prefix, the pair that lands highest within the budgets.
        Probe sources are neither re-cut nor dropped.
        """
        t, budgets = self.t, self.budgets
        current, tokens, images = self._totals(sample)
        options = self.size.usable[sample.dialogue].copy()
        options[: sample.fixed] = 0
        recut = _ranges(t.start[sample.dialogue], options)
        segment = np.repeat(np.arange(len(options)), options)
        droppable = np.arange(sample.fixed, len(options))
        seg_cost = t.cost[current] + sample.correction
        a_gain = np.concatenate(
            ([0], t.cost[recut] - t.cost[current][segment], -seg_cost[droppable])
        )
        a_more = np.concatenate(
            ([0], t.images[recut] - t.images[current][segment], -t.images[current][droppable])
        )
        open_ = pool.open()
        b_gain = np.concatenate(([0], t.cost[pool.candidate[open_]]))
        b_more = np.concatenate(([0], t.images[pool.candidate[open_]]))
        total = tokens + a_gain[:, None] + b_gain[None, :]
        count = images + a_more[:, None] + b_more[None, :]
        ok = (total >= self.floor) & (total <= budgets.tokens)
        ok &= (count >= budgets.min_images) & (count <= self.max_images)
        if not ok.any():
            return
        best = ok & (total == total[ok].max())
        a, b = np.unravel_index(int(np.argmax(np.where(best, count, -1))), best.shape)
        if 1 <= a <= len(recut):
            sample.length[segment[a - 1]] = t.length[recut[a - 1]]
        elif a > len(recut):
            sample.remove(int(droppable[a - 1 - len(recut)]))
        if b > 0:
            self._take(sample, pool, int(open_[b - 1]))

    def _correct(self, sample: _Sample) -> None:
        """Mention correction at the final offsets (probes at their source's offset); trims
        the last segments, never a probe source, if over the ceiling."""
        if self.mentions is None:
            return
        t = self.t
        current = t.start[sample.dialogue] + sample.length - 1
        offsets = _excl_cumsum(t.images[current])
        sample.correction = self.mentions.correction(sample.dialogue, current, offsets)
        if len(sample.probe_cost):
            head = sample.sources
            asked = self.mentions.correction(
                sample.dialogue[head], current[head] + 1, offsets[head]
            )
            sample.probe_correction = asked - sample.correction[head]
        probes = int((sample.probe_cost + sample.probe_correction).sum())
        total = int((t.cost[current] + sample.correction).sum()) + probes
        while total > self.budgets.tokens and len(sample.dialogue) > sample.fixed:
            sample.trimmed = True
            last = len(sample.dialogue) - 1
            d, j = int(sample.dialogue[last]), int(sample.length[last])
            prefix = self.mentions.prefix_corrections(d, j, int(offsets[last]), int(t.start[d]))
            costs = t.cost[t.start[d] : t.start[d] + j] + prefix
            others = total - int(costs[-1])
            fitting = np.flatnonzero(others + costs <= self.budgets.tokens)
            if len(fitting):
                keep = int(fitting[-1])
                sample.length[last] = keep + 1
                sample.correction[last] = prefix[keep]
                total = others + int(costs[keep])
            else:
                sample.remove(last)
                total = others


def _lead_in(run: np.ndarray, head: np.ndarray, lead: int, cut: int) -> np.ndarray:
    """The first `cut` entries of the main run with the head inserted after `lead` of them."""
    return np.concatenate((run[:lead], head, run[lead:cut]))


def _window_size(table: _Table, budgets: Budgets) -> int:
    """Stream entries one sample looks at: about two main runs of preferred prefixes and the
    lookahead pool."""
    usable = np.flatnonzero(table.usable > 0)
    mean = float(table.cost[table.chosen[usable]].mean()) if len(usable) else 1.0
    return 2 * math.ceil(budgets.tokens / max(mean, 1.0)) + POOL + 8


# --- the public entry point ----------------------------------------------------------------


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
    `--order topic` reads the first question's text from the frame's `turns`; source weights
    read its `source` column.
    """
    table = _build_table(frame, budgets, policy)
    sizes = _sizes(table, budgets)
    _check_all(frame, table, budgets, policy, sizes)
    mentions = _Mentions(frame, table, digit_tokens) if digit_tokens is not None else None
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
        block=_window_size(table, budgets.at(min(budgets.sizes))),
    )
    assembly = _Assembler(table, budgets, sizes, mentions, stream, policy.seed).run()
    if not assembly.samples:
        raise _nothing_closed(assembly, budgets)
    segments = _segments(table, assembly, budgets)
    coherence = None
    if vectors is not None:
        order = np.concatenate([s.dialogue for s in assembly.samples])
        counts = [len(s.dialogue) for s in assembly.samples]
        similar = ordering.neighbour_similarity(
            vectors[order], np.repeat(np.arange(len(counts)), counts)
        )
        coherence = float(similar.mean()) if len(similar) else None
    extra = _Extra(source=source, weights=policy.weights, dropped=dropped, coherence=coherence)
    report = _report(table, assembly, segments, budgets, policy, extra)
    return Plan(segments=segments, report=report)


def _nothing_closed(assembly: _Assembly, budgets: Budgets) -> Infeasible:
    tokens, images = assembly.last_try
    ceiling = "" if budgets.max_images is None else f", --max-images {budgets.max_images:,}"
    probes = ""
    if budgets.probes:
        probes = f"; --probes {budgets.probes} reaching back {budgets.reach():,} tokens"
    return Infeasible(
        f"no sample meets every budget: {assembly.set_aside:,} tries failed, the last holding "
        f"{tokens:,} tokens (floor {budgets.floor:,}, --tokens {_fmt_tokens(budgets.tokens)}) "
        f"and {images:,} images (--min-images {budgets.min_images:,}{ceiling}){probes}"
    )


def _segments(table: _Table, assembly: _Assembly, budgets: Budgets) -> pl.DataFrame:
    """Segment rows, then each sample's probe rows after its last segment."""
    samples = assembly.samples
    count = len(samples)
    sizes = np.array([len(s.dialogue) for s in samples], dtype=np.int64)
    dialogue = np.concatenate([s.dialogue for s in samples])
    length = np.concatenate([s.length for s in samples])
    sample = np.repeat(np.arange(count, dtype=np.int64), sizes)
    first = _excl_cumsum(sizes)
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
    source = _ranges(first + lead, fixed)  # the segment row each probe continues
    if len(source) == 0:
        return segments.select(pl.col(n).cast(t) for n, t in SEGMENT_SCHEMA.items())
    owner = sample[source]
    asked = np.concatenate([s.probe_correction for s in samples])
    cost = np.concatenate([s.probe_cost for s in samples]) + asked
    probe_first = _excl_cumsum(fixed)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Extra:
    """What the report needs besides the table and the samples."""

    source: np.ndarray | None  # per frame position: catalog source number
    weights: tuple[float, ...]
    dropped: int
    coherence: float | None


def _report(
    table: _Table,
    assembly: _Assembly,
    segments: pl.DataFrame,
    budgets: Budgets,
    policy: Policy,
    extra: _Extra,
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


def _mix(table: _Table, segments: pl.DataFrame, extra: _Extra) -> tuple[dict, ...]:
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
