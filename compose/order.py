"""The order in which the planner meets dialogues: seeded shuffles, topic clusters, length
packing, and weighted mixing of sources.

Everything here is a pure numpy/polars function of its inputs and a seeded `Generator`: the
planner calls `stream` once per plan, never once per dialogue. The topic signature is a hashed
TF-IDF of a dialogue's first question, projected to a few dense dimensions; `signatures` is
public so that `compose stats` can measure topic coherence of any output the same way.
docs/planning.md ("Order and mixing") describes the policies and what they measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from scipy import sparse

ORDERS = ("random", "input", "topic", "length")

# Words that say nothing about a topic in MMDU-style first questions: function words, and the
# words every question uses to point at its pictures.
STOPWORDS = frozenset(
    """
    the and for are but not you all any can had her was one our out has him his how its may new
    now old see two way who did get let put say she too use that with have this will your from
    they know want been good much some time very when come here just like long make many more
    only over such take than them well were what which while would there their these those about
    into could other after first also back then where why each does should between both
    image images imagehere picture pictures photo photos photograph figure shown shows show
    please describe detail details detailed based given provide explain tell
    """.split()
)
_WEIGHT = re.compile(r"(?P<path>.+):(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")

# The catalog column (a `Catalog.frame` name) of each dialogue's first message: topic order
# reads it alone rather than every turn's text.
FIRST_QUESTION = "turns[0].text"
FIT_ROWS = 4096  # k-means centroids are fitted on at most this many dialogues, then all assigned
KMEANS_ROUNDS = 12


# --- weighted sources ----------------------------------------------------------------------


def split_weight(text: str) -> tuple[str, float | None]:
    """`a.json:0.7` -> (`a.json`, 0.7); a value without a `:NUMBER` suffix has no weight.

    A path that exists as written (a file named `x:1`) is taken whole. A weight must be a
    positive finite number.
    """
    match = _WEIGHT.fullmatch(text)
    if match is None or Path(text).exists():
        return text, None
    weight = float(match.group("weight"))
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"--source {text}: a weight must be a positive number")
    return match.group("path"), weight


def mix(parts: Sequence[np.ndarray], costs: Sequence[np.ndarray], weights: Sequence[float]):
    """Merge per-source streams so that, at every point, each source has brought tokens in
    proportion to its weight; the merged stream ends where the first source runs out.

    Each entry gets a virtual time, the running tokens of its source divided by the source's
    weight (stride scheduling); sorting by it interleaves the sources. Entries past the
    earliest source's last time are dropped, so the mix holds over the whole plan. Returns the
    merged entries and how many were dropped.
    """
    times = [
        np.cumsum(np.asarray(c, dtype=np.float64)) / w for c, w in zip(costs, weights, strict=True)
    ]
    live = [t for t in times if len(t)]
    horizon = min(t[-1] for t in live) if live else 0.0
    merged = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    when = np.concatenate(times) if times else np.zeros(0)
    # A source's order within the merge is kept: ties break by source, then position.
    source = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    rank = np.concatenate([np.arange(len(p)) for p in parts])
    order = np.lexsort((rank, source, when))
    keep = when[order] <= horizon * (1 + 1e-12)
    return merged[order][keep], int((~keep).sum())


# --- topic signatures ----------------------------------------------------------------------


def first_questions(frame: pl.DataFrame) -> pl.Series:
    """The first user message of each catalog row (canonical text), from the frame's
    `FIRST_QUESTION` column or else its turns; raises if the frame has neither."""
    if FIRST_QUESTION in frame.columns:
        return frame[FIRST_QUESTION].fill_null("")
    if "turns" not in frame.columns:
        raise ValueError("catalog frame lacks column turns (needed for --order topic)")
    inner = getattr(frame.schema["turns"], "inner", None)
    if "text" not in [f.name for f in getattr(inner, "fields", [])]:
        raise ValueError("catalog column turns has no text (needed for --order topic)")
    return frame["turns"].list.first().struct.field("text").fill_null("")


def signatures(texts: Sequence[str] | pl.Series) -> sparse.csr_matrix:
    """TF-IDF rows of the texts, L2-normalised (float32, one row per text): the dot product
    of two rows is the cosine similarity of the texts. A text with no content word has an
    empty row.

    Words are lowercase runs of 3+ letters other than `STOPWORDS` (which hold `image`, so tags
    and mentions such as `<image-2>` or `Image 2` drop out), and only words found in at least
    two texts (a word in one text says nothing about what texts share); weights are
    (1 + log tf) * idf over the texts given. Words are numbered in order of first appearance,
    so the result depends on the texts only.
    """
    series = pl.Series("text", texts, dtype=pl.String).fill_null("")
    n = len(series)
    words = (
        pl.DataFrame(
            {
                "doc": np.arange(n, dtype=np.int64),
                "word": series.str.to_lowercase().str.extract_all(r"[a-z]{3,}"),
            }
        )
        .explode("word")
        .drop_nulls("word")
        .filter(~pl.col("word").is_in(list(STOPWORDS)))
    )
    if words.height == 0:
        return sparse.csr_matrix((n, 0), dtype=np.float32)
    # Hash-based codes (fast; a string sort of a million words is not), renumbered by first
    # appearance so that nothing depends on the process's string cache.
    codes = words["word"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    distinct, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(distinct))
    size = len(distinct)
    key, tf = np.unique(words["doc"].to_numpy() * size + rank[inverse], return_counts=True)
    doc, word = key // size, key % size
    df = np.bincount(word, minlength=size)
    shared = df[word] >= 2
    column = np.cumsum(df >= 2) - 1
    weight = (1 + np.log(tf[shared])) * (np.log((1 + n) / (1 + df[word[shared]])) + 1)
    matrix = sparse.csr_matrix(
        (weight.astype(np.float32), (doc[shared], column[word[shared]])),
        shape=(n, int((df >= 2).sum())),
    )
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sparse.diags(np.where(norms > 0, 1 / np.maximum(norms, 1e-30), 0)).dot(matrix).tocsr()


def clusters(vectors: sparse.csr_matrix, k: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means labels 0..k-1 of `signatures` rows; empty rows get label -1.

    Centroids are fitted on at most `FIT_ROWS` rows drawn with `rng`, then every row is
    assigned once, so cost stays linear in the rows.
    """
    labels = np.full(vectors.shape[0], -1, dtype=np.int64)
    live = np.flatnonzero(np.diff(vectors.indptr) > 0)
    if len(live) == 0:
        return labels
    k = max(1, min(k, len(live)))
    fit = live if len(live) <= FIT_ROWS else np.sort(rng.choice(live, FIT_ROWS, replace=False))
    points = vectors[fit]
    centroids = points[rng.choice(len(fit), k, replace=False)].toarray()
    for _ in range(KMEANS_ROUNDS):
        nearest = np.asarray((points @ centroids.T).argmax(axis=1)).ravel()
        members = sparse.csr_matrix(
            (np.ones(len(fit), dtype=np.float32), (nearest, np.arange(len(fit)))),
            shape=(k, len(fit)),
        )
        sums = (members @ points).toarray()
        empty = np.flatnonzero(np.bincount(nearest, minlength=k) == 0)
        if len(empty):
            sums[empty] = points[rng.choice(len(fit), len(empty))].toarray()
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = sums / np.maximum(norms, 1e-12)
    labels[live] = np.asarray((vectors[live] @ centroids.T).argmax(axis=1)).ravel()
    return labels


def chain(vectors: sparse.csr_matrix, labels: np.ndarray, rng: np.random.Generator):
    """Renumber clusters 0..k-1 along a greedy nearest-neighbour path through their centroids,
    from a seeded start, so that clusters next to each other in the stream are alike too
    (a sample that spans two clusters still stays near one topic). -1 stays -1."""
    live = labels >= 0
    if not live.any():
        return labels
    k = int(labels.max()) + 1
    members = sparse.csr_matrix(
        (np.ones(int(live.sum()), dtype=np.float32), (labels[live], np.flatnonzero(live))),
        shape=(k, len(labels)),
    )
    centroids = (members @ vectors).toarray()
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    similar = centroids @ centroids.T
    path = [int(rng.integers(k))]
    visited = np.zeros(k, dtype=bool)
    visited[path[0]] = True
    for _ in range(k - 1):  # once per cluster (about sqrt(n)), not per dialogue
        scores = np.where(visited, -np.inf, similar[path[-1]])
        path.append(int(np.argmax(scores)))
        visited[path[-1]] = True
    rank = np.empty(k, dtype=np.int64)
    rank[path] = np.arange(k)
    return np.where(live, rank[np.maximum(labels, 0)], -1)


def topics(frame: pl.DataFrame, seed: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Per catalog row: the signature of its first question, and a topic cluster (about
    sqrt(n) clusters, so a cluster holds a few samples' worth of dialogues), numbered along a
    path through similar clusters."""
    vectors = signatures(first_questions(frame))
    k = max(1, round(math.sqrt(vectors.shape[0])))
    rng = np.random.default_rng([seed, 1])
    return vectors, chain(vectors, clusters(vectors, k, rng), rng)


def neighbour_similarity(vectors: sparse.csr_matrix, sample: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row with the next one of the same sample (rows in sample
    order); pairs touching an empty row are left out."""
    same = np.flatnonzero(sample[1:] == sample[:-1])
    filled = np.diff(vectors.indptr) > 0
    same = same[filled[same] & filled[same + 1]]
    return np.asarray(vectors[same].multiply(vectors[same + 1]).sum(axis=1)).ravel()


def coherence(texts: Sequence[str] | pl.Series, sample: Sequence[int]) -> float | None:
    """Topic coherence of composed samples: the mean TF-IDF cosine similarity of consecutive
    segments' first questions within a sample. `texts` are those first questions in sample
    order, `sample` says which sample each belongs to. None when there is no pair to compare.

    `compose stats` and the plan report use this, so their figures agree.
    """
    similar = neighbour_similarity(signatures(texts), np.asarray(sample))
    return float(similar.mean()) if len(similar) else None


# --- the stream ----------------------------------------------------------------------------


def arrange(
    ids: np.ndarray,
    order: str,
    rng: np.random.Generator,
    *,
    cost: np.ndarray,
    labels: np.ndarray | None = None,
    block: int = 128,
) -> np.ndarray:
    """One epoch of `ids` (dialogue indices) in the policy's order.

    `random`: a seeded shuffle. `input`: as given. `topic`: clusters in label order (`topics`
    numbers them along a path through similar clusters), each cluster's dialogues together and
    shuffled inside. `length`: see `length_order`. `cost` and `labels` are indexed by
    dialogue.
    """
    if order == "input":
        return ids
    if order == "random":
        return rng.permutation(ids)
    if order == "topic":
        if labels is None:
            raise ValueError("--order topic needs topic labels")
        return ids[np.lexsort((rng.random(len(ids)), labels[ids]))]
    if order == "length":
        return length_order(ids, cost, rng, block)
    raise ValueError(f"unknown order {order!r} (expected one of {', '.join(ORDERS)})")


def length_order(
    ids: np.ndarray, cost: np.ndarray, rng: np.random.Generator, block: int
) -> np.ndarray:
    """A seeded shuffle, then each run of `block` entries sorted largest first.

    With `block` about what one sample can reach (its main run and lookahead pool), each
    sample starts from large dialogues and finds smaller ones behind them to close the gap,
    first-fit-decreasing style, while the corpus stays mixed from block to block. Measured on
    an MMDU-45k-shaped corpus: a few more samples and fewer truncated segments than `random`
    (docs/planning.md); plain sorts of the whole corpus did worse than `random`.
    """
    shuffled = ids[rng.permutation(len(ids))]
    run = np.arange(len(ids)) // max(block, 1)
    return shuffled[np.lexsort((-cost[shuffled], run))]


def stream(
    usable: np.ndarray,
    *,
    order: str,
    seed: int,
    reuse: int,
    cost: np.ndarray,
    labels: np.ndarray | None = None,
    source: np.ndarray | None = None,
    weights: Sequence[float] = (),
    block: int = 128,
) -> tuple[np.ndarray, int]:
    """The planner's stream of dialogue indices: `reuse` epochs in the policy's order, mixed by
    source `weights` when given. Returns the stream and how many entries the mix left out.
    `block` is the `length` order's run (about the dialogues one sample reaches)."""
    rng = np.random.default_rng(seed)
    options = {"cost": cost, "labels": labels, "block": block}
    if not weights:
        epochs = [arrange(usable, order, rng, **options) for _ in range(reuse)]
        return np.concatenate(epochs) if epochs else usable, 0
    if source is None:
        raise ValueError("source weights need the catalog column source")
    parts = []
    for number in range(len(weights)):
        mine = usable[source[usable] == number]
        epochs = [arrange(mine, order, rng, **options) for _ in range(reuse)]
        parts.append(np.concatenate(epochs))
    merged, dropped = mix(parts, [cost[p] for p in parts], weights)
    return merged, dropped


def source_weights(sources: Sequence[str]) -> tuple[float, ...]:
    """The weight of each `--source` value, in order: every source has one, or none has."""
    weights = [split_weight(value)[1] for value in sources]
    given = [w for w in weights if w is not None]
    if not given:
        return ()
    if len(given) != len(weights):
        missing = next(v for v, w in zip(sources, weights, strict=True) if w is None)
        raise ValueError(f"--source {missing} has no :WEIGHT; give every --source one, or none")
    return tuple(given)
