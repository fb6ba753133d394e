"""The catalog rows of one shard task, as splicing reads them.

A sample uses prefixes of its dialogues, often short ones (100 images in 64k tokens leave
little text for each), but turning a whole Arrow row into Python objects converts every turn's
text: that was an eighth of a run (py-spy, one worker). Here a row is a dict whose `turns` is
a sequence that builds a turn only when it is read, from columns taken apart once per task.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

COLUMNS = ["row", "id", "source", "file", "index", "turns", "images"]  # what splicing reads


def trimmed(table: pa.Table, turns: np.ndarray) -> pa.Table:
    """`table`'s columns that splicing reads, row i's `turns` cut to its first `turns[i]`: the
    turns a task's segments use. The rest of every dialogue's text would be copied, pickled and
    shipped to a worker for nothing (how much depends on the plan: image budgets make prefixes
    short)."""
    table = table.select(COLUMNS).combine_chunks()
    if not table.num_rows:
        return table
    lists = table["turns"].chunk(0)
    offsets = lists.offsets.to_numpy()
    keep = np.minimum(np.diff(offsets), np.asarray(turns, dtype=np.int64))
    ends = np.cumsum(keep)
    index = np.repeat(offsets[:-1], keep) + np.arange(int(ends[-1])) - np.repeat(ends - keep, keep)
    cut = pa.ListArray.from_arrays(
        pa.array(np.concatenate(([0], ends)), pa.int32()),
        lists.values.take(pa.array(index, pa.int64())),
        type=lists.type,
    )
    return table.set_column(table.schema.get_field_index("turns"), "turns", cut)


class TaskRows:
    """Rows by catalog row number; `rows(numbers)` gives them as splicing expects."""

    def __init__(self, table: pa.Table) -> None:
        table = table.select(COLUMNS).combine_chunks()
        numbers = table["row"].to_numpy()
        self._position = {int(n): i for i, n in enumerate(numbers.tolist())}
        self._scalars = {
            name: table[name].to_pylist() for name in ("row", "id", "source", "file", "index")
        }
        self._images = table["images"].chunk(0) if table.num_rows else pa.array([])
        turns = table["turns"].chunk(0) if table.num_rows else None
        self._turns = _TurnColumns(turns) if turns is not None else None

    def rows(self, numbers: Sequence[int]) -> list[dict]:
        return [self.row(n) for n in numbers]

    def row(self, number: int) -> dict:
        i = self._position[number]
        row = {name: values[i] for name, values in self._scalars.items()}
        row["images"] = self._images[i].as_py()
        row["turns"] = _Turns(self._turns, i)
        return row


class _TurnColumns:
    """Every turn of the task's rows, column by column, with each row's first turn."""

    def __init__(self, turns: pa.ListArray) -> None:
        lengths = pc.list_value_length(turns).fill_null(0).to_numpy(zero_copy_only=False)
        self.start = np.concatenate(([0], np.cumsum(lengths))).tolist()
        flat = pc.list_flatten(turns)
        self.role = flat.field("role").to_pylist()
        self.text = flat.field("text")  # converted one string at a time, when read
        self.tokens = flat.field("text_tokens").to_pylist()
        self.introduces = _IntLists(flat.field("introduces"))
        self.mentions = _IntLists(flat.field("mentions"))

    def turn(self, j: int) -> dict:
        return {
            "role": self.role[j],
            "text": self.text[j].as_py(),
            "text_tokens": self.tokens[j],
            "introduces": self.introduces[j],
            "mentions": self.mentions[j],
        }


class _IntLists:
    """A list<int> column as flat numpy values and offsets."""

    def __init__(self, lists: pa.ListArray) -> None:
        lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
        self._start = np.concatenate(([0], np.cumsum(lengths))).tolist()
        self._values = pc.list_flatten(lists).to_numpy(zero_copy_only=False)

    def __getitem__(self, j: int) -> list[int]:
        return self._values[self._start[j] : self._start[j + 1]].tolist()


class _Turns(Sequence):
    """One row's turns; a turn becomes a dict when it is read."""

    __slots__ = ("_columns", "_first", "_count")

    def __init__(self, columns: _TurnColumns | None, i: int) -> None:
        self._columns = columns
        self._first = columns.start[i] if columns else 0
        self._count = columns.start[i + 1] - self._first if columns else 0

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._turn(k) for k in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"turn {index} of a dialogue with {self._count} turns")
        return self._turn(index)

    def _turn(self, k: int) -> dict:
        return self._columns.turn(self._first + k)
