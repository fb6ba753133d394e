"""The mention correction: re-indexing renumbers prose mentions (`Image 9` -> `Image 10`), which
can change text tokens. Mentions are indexed once per plan, so a sample's correction is one
vectorised sum over its segments."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from compose.planning.arrays import ranges
from compose.planning.table import Table, bad_row

DigitTokens = Callable[[np.ndarray], np.ndarray]


class Mentions:
    """Prose mentions per dialogue, to correct text tokens when numbers shift by an offset.

    Mentions are stored in turn order per dialogue; `prefix_count[c]` is how many of them the
    prefix of candidate c holds.
    """

    def __init__(self, frame: pl.DataFrame, table: Table, digit_tokens: DigitTokens) -> None:
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
            raise bad_row(frame, bad, "turns holds more messages than 2 * n_qa")
        self.number = turns["m"].to_numpy()
        del turns
        if (self.number < 1).any():
            bad = np.zeros(len(table.n_qa), dtype=bool)
            bad[dialogue[self.number < 1]] = True
            raise bad_row(frame, bad, "a mention number is below 1")
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
        index = ranges(self.start[dialogues], counts)
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
