"""The ingest worker: a child process that counts the tokens of each part of gathered columns
and writes it as a Parquet file, while the ingest process reads on (`compose.catalog`).

Run as `python -m compose.catalog_worker SPEC FINGERPRINT`, started by `Worker`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from compose.catalog_reader import IMAGE_TYPE, SCHEMA, TURN_TYPE
from compose.tags import strip_tags
from compose.tokens import TextTokenizer, load_tokenizer


class Worker:
    """A child `python -m compose.catalog_worker` that runs `write_part` on each (input, output)
    pair written to its stdin, in order, and answers each with one JSON line.

    A plain child process, not multiprocessing: it imports this module and what it needs, not
    the caller's main module (which spawn re-imports, with all that pulls in), and a caller of
    `ingest` needs no ``if __name__ == "__main__"`` guard.
    """

    def __init__(self, tokenizer: TextTokenizer, spec: str) -> None:
        root = str(Path(__file__).resolve().parents[1])  # the folder holding `compose`
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "compose.catalog_worker", spec, tokenizer.fingerprint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )

    def submit(self, source: str, target: str) -> Reply:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps([source, target]) + b"\n")
        self.process.stdin.flush()
        return Reply(self)

    def answer(self) -> tuple[int, int, str]:
        """The next reply, in the order of `submit`."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"the ingest worker process stopped (exit code {code})")
        reply = orjson.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the ingest worker failed: {reply['error']}")
        return reply["tokens"], reply["qa_turns"], reply["sha256"]

    def finish(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        if self.process.wait() != 0:
            raise RuntimeError(f"the ingest worker process ended with {self.process.returncode}")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@dataclass(slots=True)
class Reply:
    worker: Worker

    def result(self) -> tuple[int, int, str]:
        return self.worker.answer()


def _serve(spec: str, fingerprint: str) -> int:
    """The worker's loop (see `Worker`). Replies go to the original stdout; anything a library
    prints goes to stderr instead, so it cannot garble them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    tokenizer = load_tokenizer(spec)
    for line in sys.stdin.buffer:  # ends when the parent closes our stdin, or goes away
        source, target = orjson.loads(line)
        try:
            if tokenizer.fingerprint != fingerprint:
                raise ValueError(f"tokenizer {spec!r} changed while ingest ran")
            tokens, qa_turns, digest = write_part(source, target, tokenizer)
            reply = {"tokens": tokens, "qa_turns": qa_turns, "sha256": digest}
        except Exception as error:  # noqa: BLE001  sent back: the parent stops and reports it
            reply = {"error": f"{type(error).__name__}: {error}"}
        try:
            replies.write(orjson.dumps(reply) + b"\n")
            replies.flush()
        except BrokenPipeError:  # the parent is gone: nobody to answer
            return 1
    return 0


def write_part(source: str, target: str, tokenizer: TextTokenizer) -> tuple[int, int, str]:
    """Count the tokens of a part written by `_Part.payload` at `source` (then removed), and
    write it as one Parquet file at `target`. Returns (text tokens, QA turns, file sha256)."""
    path = Path(source)
    columns = pickle.loads(path.read_bytes())
    path.unlink()
    blob, offsets = columns["text"], columns["text_offsets"].tolist()
    texts = [str(blob[a:b], "utf-8") for a, b in itertools.pairwise(offsets)]
    tagged = columns["introduces"][0].tolist()  # canonical tags are exactly the introductions
    counts = tokenizer.count_batch(
        [strip_tags(t) if n else t for t, n in zip(texts, tagged, strict=True)]
    )
    sink = pa.BufferOutputStream()
    pq.write_table(part_table(columns, counts), sink, compression="zstd")
    data = sink.getvalue()
    Path(target).write_bytes(data)
    return int(counts.sum()), len(texts) // 2, hashlib.sha256(data).hexdigest()


def part_table(columns: dict, counts: np.ndarray) -> pa.Table:
    """The Arrow table of a part, column by column: no per-row Python objects."""
    ids, sources, files, indexes, offsets, formats, metas, n_turns, n_images = _transpose(
        columns["dialogues"], 9
    )
    numbers, paths, members, sizes, widths, heights, kinds, digests, crcs = _transpose(
        columns["images"], 9
    )
    turn_counts = np.asarray(n_turns, dtype=np.int32)
    if (turn_counts % 2).any():
        raise ValueError("a dialogue with an odd number of turns reached the catalog (a bug)")
    turn_offsets = offsets_of(turn_counts)
    qa_offsets = turn_offsets // 2
    tokens = np.asarray(counts, dtype=np.int32)
    introduces, new_images = _int_lists(columns["introduces"])
    mentions, _ = _int_lists(columns["mentions"])
    text_offsets = columns["text_offsets"]
    text = pa.StringArray.from_buffers(
        len(text_offsets) - 1, pa.py_buffer(text_offsets), pa.py_buffer(columns["text"])
    )
    turns = pa.StructArray.from_arrays(
        [
            pa.array(columns["roles"], pa.string()),
            text,
            pa.array(tokens, pa.int32()),
            introduces,
            mentions,
            pa.array(columns["explanations"], pa.string()),
        ],
        fields=list(TURN_TYPE),
    )
    images = pa.StructArray.from_arrays(
        [
            pa.array(numbers, pa.int32()),
            pa.array(paths, pa.string()),
            pa.array(members, pa.string()),
            pa.array(sizes, pa.int64()),
            pa.array(widths, pa.int32()),
            pa.array(heights, pa.int32()),
            pa.array(kinds, pa.string()),
            pa.array(digests, pa.string()),
            pa.array(crcs, pa.int64()),
        ],
        fields=list(IMAGE_TYPE),
    )
    first = columns["first_row"]
    arrays = [
        pa.array(np.arange(first, first + columns["rows"], dtype=np.int64)),
        pa.array(ids, pa.string()),
        pa.array(sources, pa.int32()),
        pa.array(files, pa.string()),
        pa.array(indexes, pa.int64()),
        pa.array(offsets, pa.int64()),
        pa.array(formats, pa.string()),
        pa.array(n_images, pa.int32()),
        pa.array(turn_counts // 2, pa.int32()),
        _lists(qa_offsets, tokens.reshape(-1, 2).sum(axis=1, dtype=np.int32)),
        _lists(qa_offsets, new_images.reshape(-1, 2).sum(axis=1, dtype=np.int32)),
        _lists(turn_offsets, turns),
        _lists(offsets_of(np.asarray(n_images, dtype=np.int32)), images),
        pa.array(metas, pa.string()),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _transpose(rows: list[tuple], width: int) -> list[list]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def offsets_of(lengths: np.ndarray, dtype: type = np.int32) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=dtype)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _lists(offsets: np.ndarray, values: pa.Array | np.ndarray) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def flat_groups(groups: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ints as (lengths, values): two arrays instead of many small tuples."""
    lengths = np.fromiter(map(len, groups), dtype=np.int32, count=len(groups))
    values = np.fromiter(itertools.chain.from_iterable(groups), dtype=np.int32)
    return lengths, values


def _int_lists(flat: tuple[np.ndarray, np.ndarray]) -> tuple[pa.Array, np.ndarray]:
    """A list<int32> column from `flat_groups`'s arrays, and the lengths."""
    lengths, values = flat
    return _lists(offsets_of(lengths), pa.array(values, pa.int32())), lengths


if __name__ == "__main__":  # the ingest worker, started by `Worker`
    raise SystemExit(_serve(*sys.argv[1:]))
