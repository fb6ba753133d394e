"""Two numpy idioms the planner uses everywhere, so that per-dialogue work stays vectorised."""

from __future__ import annotations

import numpy as np


def excl_cumsum(values: np.ndarray) -> np.ndarray:
    """Running sums that start at 0: where each run begins."""
    out = np.zeros(len(values), dtype=np.int64)
    np.cumsum(values[:-1], out=out[1:])
    return out


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges start..start+length-1, vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    steps = np.arange(total, dtype=np.int64) - np.repeat(excl_cumsum(lengths), lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + steps
