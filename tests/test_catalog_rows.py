"""TaskRows gives the rows splicing reads exactly as Arrow's own conversion would, turn by turn."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compose.catalog import Catalog, SourceSpec, ingest
from compose.catalog_rows import COLUMNS, TaskRows, trimmed
from tests.corpus import write_mmdu45k


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pa.Table:
    root = tmp_path_factory.mktemp("rows")
    corpus = write_mmdu45k(root, 40, seed=4, zip=True)
    ingest([SourceSpec(path=str(corpus.source), images=str(corpus.images))], root / "catalog")
    cat = Catalog.open(root / "catalog")
    return pa.concat_tables([pq.read_table(p) for p in cat.part_paths])


def test_rows_equal_arrows_conversion_in_any_order(table):
    task = table.take([7, 3, 30, 0, 12]).slice(1)  # an unordered, sliced subset, as tasks are
    rows = TaskRows(task)
    expected = {r["row"]: r for r in task.select(COLUMNS).to_pylist()}
    for number in [30, 3, 12, 0]:
        row = rows.row(number)
        turns = list(row.pop("turns"))
        want = dict(expected[number])
        want_turns = [{k: t[k] for k in turns[0]} for t in want.pop("turns")]
        assert row == want and turns == want_turns


def test_turns_slice_and_index_like_a_list(table):
    row = TaskRows(table).row(5)
    turns, full = row["turns"], table.slice(5, 1).to_pylist()[0]["turns"]
    assert len(turns) == len(full) >= 2
    assert [t["text"] for t in turns[2:6]] == [t["text"] for t in full[2:6]]
    assert turns[-1]["text"] == full[-1]["text"] and turns[::3][0]["role"] == "user"
    with pytest.raises(IndexError):
        turns[len(full)]
    with pytest.raises(KeyError):
        TaskRows(table.slice(0, 3)).row(4)


def test_trimmed_keeps_the_first_turns_of_each_row_and_the_columns_splicing_reads(table):
    task = table.take([3, 9, 14, 20])
    full = task.to_pylist()
    wanted = [2, 100, 0, 4]  # more than a row has keeps all of it
    cut = trimmed(task, wanted)
    assert cut.schema.names == COLUMNS
    for row, before, n in zip(cut.to_pylist(), full, wanted, strict=True):
        assert row["turns"] == before["turns"][:n]
        assert {k: v for k, v in row.items() if k != "turns"} == {
            k: before[k] for k in COLUMNS if k != "turns"
        }
    rows = TaskRows(cut)
    assert [t["text"] for t in rows.row(full[0]["row"])["turns"]] == [
        t["text"] for t in full[0]["turns"][:2]
    ]
