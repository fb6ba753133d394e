"""The catalog as a candidate table: one row per (dialogue, prefix length) with its tokens and
images, built with cumulative sums over the exploded columns, and the table seen at each token
budget. Everything after works on these arrays, never on catalog rows; bad rows are refused
here, by catalog row and id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from compose.planning.arrays import excl_cumsum
from compose.planning.columns import REQUIRED_COLUMNS
from compose.planning.config import Budgets, Policy
from compose.tokens import image_model


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
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


def _flat(series: pl.Series, name: str) -> np.ndarray:
    values = series.explode(empty_as_null=False)
    if values.null_count():
        raise ValueError(f"catalog column {name!r} holds null values")
    return values.to_numpy().astype(np.int64, copy=False)


def bad_row(frame: pl.DataFrame, bad: np.ndarray, reason: str) -> ValueError:
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
        raise bad_row(
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
        raise bad_row(frame, bad, f"image size refused: {error}") from error


def build_table(frame: pl.DataFrame, budgets: Budgets, policy: Policy) -> Table:
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
            raise bad_row(frame, lengths != counted, f"{name} does not match its count")
    text = _flat(frame["qa_text_tokens"], "qa_text_tokens")
    new = _flat(frame["qa_new_images"], "qa_new_images")
    if (text < 0).any() or (new < 0).any():
        raise ValueError("catalog holds negative token or image counts")
    dialogue = np.repeat(np.arange(len(n_qa), dtype=np.int64), n_qa)
    introduced = np.bincount(dialogue, weights=new, minlength=len(n_qa)).astype(np.int64)
    if (introduced != n_images).any():
        raise bad_row(frame, introduced != n_images, "qa_new_images does not add up to n_images")

    per_image = _image_tokens(frame, n_images, policy.image_tokens)

    start = excl_cumsum(n_qa)
    length = np.arange(len(text), dtype=np.int64) - start[dialogue] + 1
    text_sum = np.concatenate(([0], np.cumsum(text)))
    new_sum = np.concatenate(([0], np.cumsum(new)))
    image_sum = np.concatenate(([0], np.cumsum(per_image)))
    prefix_text = text_sum[1:] - text_sum[start][dialogue]
    prefix_images = new_sum[1:] - new_sum[start][dialogue]
    first_image = excl_cumsum(n_images)[dialogue]
    prefix_image_tokens = image_sum[first_image + prefix_images] - image_sum[first_image]
    cost = prefix_text + prefix_image_tokens + budgets.message_overhead * 2 * length

    fits = cost <= budgets.tokens
    if budgets.max_images is not None:
        fits &= prefix_images <= budgets.max_images
    usable = np.bincount(dialogue, weights=fits, minlength=len(n_qa)).astype(np.int64)
    chosen = _choose(len(n_qa), dialogue, length, cost, prefix_images, fits, budgets)
    chosen[usable == 0] = -1
    return Table(
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
class Size:
    """The candidate table seen at one token budget: which prefixes fit, which one the main run
    takes, and which prefixes can be a probe's source (candidate indices, -1 for none)."""

    budgets: Budgets
    usable: np.ndarray
    chosen: np.ndarray
    probe_long: np.ndarray  # the longest probe source within the preferred prefix, or shorter
    probe_short: np.ndarray  # the shortest probe source


def _size(table: Table, budgets: Budgets) -> Size:
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
    return Size(budgets=budgets, usable=usable, chosen=chosen, probe_long=long, probe_short=short)


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


def per_length(table: Table, budgets: Budgets) -> list[Size]:
    return [_size(table, budgets.at(tokens)) for tokens in budgets.sizes]
