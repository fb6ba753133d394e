"""Ingest: sources -> a Parquet catalog, where tokens are counted and images probed once.

The catalog is the only thing later stages read about the corpus (docs/catalog.md). It is keyed by
the checksums of its inputs and the settings, so re-running ingest on unchanged inputs reuses it.

How the work is shared (figures in benchmarks/README.md): this process reads the sources (split,
parse, canonical tags), probes each distinct image once and decides which records are accepted, so
catalog rows are numbered as records arrive. Accepted dialogues gather into parts of flat columns;
each full part goes to a worker process that counts its tokens (the dominant cost), builds the
Arrow columns and writes the part file while this process reads on. Processes, not threads: the
reading is Python, and it would hold the GIL that tokenizer threads need between two texts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from compose import __version__
from compose.model import Dialogue, Reject, SkipRecord
from compose.sources import open_source, open_store
from compose.sources.base import Limits
from compose.sources.stores import ImageInfo, ImageStore
from compose.tags import strip_tags
from compose.tokens import TextTokenizer, load_tokenizer

if TYPE_CHECKING:
    import polars as pl

CATALOG_VERSION = 3  # 3: images carry crc32
PART_ROWS = 4096  # at most this many dialogues in one part file ...
PART_CHARS = 8 << 20  # ... and about this much text, so a part's memory is bounded either way
_IN_FLIGHT = 8  # parts handed to the worker, not yet written: files on disk, not memory here

TURN_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("text", pa.string()),
        ("text_tokens", pa.int32()),
        ("introduces", pa.list_(pa.int32())),
        ("mentions", pa.list_(pa.int32())),
        ("explanation", pa.string()),
    ]
)
IMAGE_TYPE = pa.struct(
    [
        ("number", pa.int32()),
        ("path", pa.string()),
        ("member", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("sha256", pa.string()),
        ("crc32", pa.int64()),
    ]
)
SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("source", pa.int32()),
        ("file", pa.string()),
        ("index", pa.int64()),
        ("offset", pa.int64()),
        ("format", pa.string()),
        ("n_images", pa.int32()),
        ("n_qa", pa.int32()),
        ("qa_text_tokens", pa.list_(pa.int32())),
        ("qa_new_images", pa.list_(pa.int32())),
        ("turns", pa.list_(TURN_TYPE)),
        ("images", pa.list_(IMAGE_TYPE)),
        ("meta", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    """One input: a dialogue file, the image store its paths resolve in, and its format."""

    path: str
    images: str | None = None  # folder or zip; default: the folder holding the source file
    format: str | None = None  # None: detected from the content

    def image_root(self) -> str:
        return self.images if self.images is not None else str(Path(self.path).parent)


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestConfig:
    tokenizer: str = "cl100k_base"
    limits: Limits = field(default_factory=Limits)
    decode_images: bool = False  # fully decode every image (slow); default: header probe only


@dataclass(slots=True, kw_only=True)
class IngestSummary:
    catalog: str
    reused: bool
    read: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    images: int = 0
    unique_images: int = 0
    text_tokens: int = 0
    qa_turns: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        out = asdict(self)
        out["rejected"] = dict(sorted(self.rejected.items()))
        return out


class Progress:
    """What ingest reports while it runs; the CLI passes a rich-backed one."""

    def advance(self, records: int) -> None:  # noqa: B027 - a no-op default is the point
        pass


def file_sha256(path: str | Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def store_fingerprint(path: str) -> str:
    """Identify an image store without reading every image: a zip by its member names, sizes and
    CRCs (its central directory), a folder by the names, sizes and mtimes of its files."""
    p = Path(path)
    digest = hashlib.sha256()
    if not p.exists():
        return "absent"
    if p.is_file():
        try:
            with zipfile.ZipFile(p) as archive:
                for info in archive.infolist():
                    digest.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode())
        except zipfile.BadZipFile as error:
            raise ValueError(
                f"{path}: an image store must be a folder or a .zip file ({error})"
            ) from None
        return digest.hexdigest()
    for root, dirs, files in os.walk(p):
        dirs.sort()
        for name in sorted(files):
            full = Path(root, name)
            st = full.lstat()
            rel = full.relative_to(p).as_posix()
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def catalog_key(
    sources: Sequence[SourceSpec], config: IngestConfig, tokenizer: TextTokenizer
) -> dict:
    """Everything the catalog's content depends on; equal keys mean the catalog can be reused."""
    return {
        "catalog_version": CATALOG_VERSION,
        "tool": __version__,
        "tokenizer": tokenizer.fingerprint,
        "limits": asdict(config.limits),
        "decode_images": config.decode_images,
        "sources": [
            {
                "path": str(Path(s.path).resolve()),
                "sha256": file_sha256(s.path),
                "format": s.format,
                "images": str(Path(s.image_root()).resolve()),
                "images_fingerprint": store_fingerprint(s.image_root()),
            }
            for s in sources
        ],
    }


def ingest(
    sources: Sequence[SourceSpec],
    out: str | Path,
    config: IngestConfig = IngestConfig(),
    *,
    progress: Progress | None = None,
    force: bool = False,
) -> IngestSummary:
    """Read every source into a catalog at `out`, or reuse the one there if its key matches."""
    started = time.perf_counter()
    out = Path(out)
    tokenizer = load_tokenizer(config.tokenizer)
    existing = None if force else _read_meta(out)
    key: dict | None = None
    if existing is not None:
        key = catalog_key(sources, config, tokenizer)
        if existing.get("key") == key and not damaged_parts(out, existing):
            counts = existing["summary_counts"]
            summary = IngestSummary(catalog=str(out), reused=True, **counts)
            summary.rejected = Counter(counts["rejected"])
            summary.seconds = time.perf_counter() - started
            return summary

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "dialogues").mkdir(parents=True)
    summary = IngestSummary(catalog=str(out), reused=False)
    source_meta = []
    writer = _PartWriter(tmp / "dialogues", tokenizer, config.tokenizer)
    with ThreadPoolExecutor(1) as background:
        # Without a catalog to compare with, the checksums are taken while the inputs are read.
        keying = None if key else background.submit(catalog_key, sources, config, tokenizer)
        with writer, open(tmp / "rejects.jsonl", "wb") as rejects:
            for number, spec in enumerate(sources):
                stats = _ingest_source(number, spec, config, writer, rejects, summary, progress)
                source_meta.append(stats)
        key = key or keying.result()
    for stats, keyed in zip(source_meta, key["sources"], strict=True):
        stats["sha256"] = keyed["sha256"]
    summary.text_tokens = writer.text_tokens
    summary.qa_turns = writer.qa_turns
    summary.seconds = time.perf_counter() - started
    meta = {
        "catalog_version": CATALOG_VERSION,
        "tool": f"compose {__version__}",
        "key": key,
        "tokenizer": {
            "spec": config.tokenizer,
            "name": tokenizer.name,
            "fingerprint": tokenizer.fingerprint,
        },
        "part_rows": PART_ROWS,
        "parts": writer.parts,
        "part_sizes": writer.sizes,
        "part_sha256": writer.digests,
        "sources": source_meta,
        "summary_counts": {
            k: v for k, v in summary.to_json().items() if k not in ("catalog", "reused", "seconds")
        },
    }
    meta["checksum"] = _meta_digest(meta)
    (tmp / "catalog.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    # catalog.json goes first: a kill while the old folder is half deleted must not leave a
    # catalog whose key still matches and whose parts are missing.
    (out / "catalog.json").unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return summary


def _ingest_source(
    number: int,
    spec: SourceSpec,
    config: IngestConfig,
    writer: _PartWriter,
    rejects,
    summary: IngestSummary,
    progress: Progress | None,
) -> dict:
    reader = open_source(spec.path, format=spec.format, limits=config.limits)
    root = spec.image_root()
    store = open_store(root, config.limits) if Path(root).exists() else None
    probes = _ProbeCache(store, decode=config.decode_images)
    counts: Counter = Counter()
    reasons: Counter = Counter()
    kept: set[str] = set()  # members of the accepted dialogues' images
    try:
        for item in reader:
            summary.read += 1
            counts["read"] += 1
            if isinstance(item, Dialogue):
                try:
                    infos = [probes.info(ref.path) for ref in item.images]
                except SkipRecord as skip:
                    item = Reject(origin=item.origin, reason=skip.reason, detail=skip.detail)
                else:
                    writer.add(number, item, infos)
                    kept.update(info.member for info in infos)
                    summary.accepted += 1
                    summary.images += len(infos)
                    counts["accepted"] += 1
            if isinstance(item, Reject):
                rejects.write(orjson.dumps(item.to_json()) + b"\n")
                summary.rejected[item.reason] += 1
                reasons[item.reason] += 1
                counts["rejected"] += 1
            if progress is not None and summary.read % 256 == 0:
                progress.advance(256)
    finally:
        if store is not None:
            store.close()
    summary.unique_images += len(kept)
    return {
        "path": str(Path(spec.path).resolve()),
        "format": reader.format,
        "sha256": None,
        "images": str(Path(root).resolve()),
        "images_kind": "zip" if Path(root).is_file() else "folder",
        "read": counts["read"],
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "rejected_by_reason": dict(sorted(reasons.items())),
        "images_accepted": len(kept),
    }


class _ProbeCache:
    """Each distinct image is probed once, however many dialogues share it."""

    def __init__(self, store: ImageStore | None, *, decode: bool) -> None:
        self.store = store
        self.decode = decode
        self.seen: dict[str, ImageInfo | SkipRecord] = {}

    def info(self, path: str) -> ImageInfo:
        cached = self.seen.get(path)
        if cached is None:
            try:
                if self.store is None:
                    raise SkipRecord(
                        "missing_image", f"{path}: no image store given and none found"
                    )
                cached = self.store.probe(self.store.resolve(path), decode=self.decode)
            except SkipRecord as skip:
                cached = skip
            self.seen[path] = cached
        if isinstance(cached, SkipRecord):
            raise SkipRecord(cached.reason, cached.detail)
        return cached


# -- parts: gathered here, counted and written in the background --------------------------------


@dataclass(slots=True)
class _Part:
    """Accepted dialogues in flat columns, the texts as UTF-8 bytes: `payload` packs them into
    one blob that a worker reads in one go and turns into Arrow columns without per-row work."""

    first_row: int
    rows: int = 0
    chars: int = 0
    dialogues: list[tuple] = field(default_factory=list)  # id, source, file, index, offset,
    # format, meta, turns, images: one tuple per dialogue
    roles: list[str] = field(default_factory=list)
    texts: list[bytes] = field(default_factory=list)
    explanations: list[str | None] = field(default_factory=list)
    introduces: list[tuple[int, ...]] = field(default_factory=list)
    mentions: list[tuple[int, ...]] = field(default_factory=list)
    images: list[tuple] = field(default_factory=list)  # one per image, IMAGE_TYPE's fields

    def add(self, source: int, dialogue: Dialogue, infos: list[ImageInfo]) -> None:
        origin = dialogue.origin
        meta = json.dumps(dialogue.meta, sort_keys=True) if dialogue.meta else "{}"
        turns = dialogue.turns
        self.dialogues.append(
            (
                dialogue.id,
                source,
                origin.file,
                origin.index,
                origin.offset,
                dialogue.format,
                meta,
                len(turns),
                len(dialogue.images),
            )
        )
        for turn in turns:
            self.roles.append(turn.role)
            self.texts.append(turn.text.encode())
            self.explanations.append(turn.explanation)
            self.introduces.append(turn.introduces)
            self.mentions.append(turn.mentions)
            self.chars += len(turn.text)
        self.images.extend(
            (
                ref.number,
                ref.path,
                i.member,
                i.bytes,
                i.width,
                i.height,
                i.format,
                i.sha256,
                i.crc32,
            )
            for ref, i in zip(dialogue.images, infos, strict=True)
        )
        self.rows += 1

    def payload(self) -> bytes:
        """Everything a worker needs, pickled; the texts travel as one UTF-8 blob + offsets."""
        lengths = np.fromiter(map(len, self.texts), dtype=np.int64, count=len(self.texts))
        text_offsets = _offsets(lengths, np.int64)
        if text_offsets[-1] > np.iinfo(np.int32).max:
            raise ValueError(f"a catalog part holds {text_offsets[-1]} bytes of text, over 2 GiB")
        columns = {
            "first_row": self.first_row,
            "rows": self.rows,
            "dialogues": self.dialogues,
            "roles": self.roles,
            "text": b"".join(self.texts),
            "text_offsets": text_offsets.astype(np.int32),
            "explanations": self.explanations,
            "introduces": _flat(self.introduces),
            "mentions": _flat(self.mentions),
            "images": self.images,
        }
        return pickle.dumps(columns, protocol=pickle.HIGHEST_PROTOCOL)


class _PartWriter:
    """Cuts accepted dialogues into parts; each part is counted and written in the background.

    Once a first part fills up (the input is big enough to pay for starting it), parts go to one
    worker process whose tokenizer threads use every core; a smaller input is written by one
    thread here after reading. A part travels as a file (one write here, one read there): a
    pipe would move it in 64 KiB pieces, each waiting for the GIL that reading holds. One part
    runs and one waits while the next is read, so memory is bounded by a few parts.
    """

    def __init__(self, folder: Path, tokenizer: TextTokenizer, spec: str) -> None:
        self.folder = folder
        self.tokenizer = tokenizer
        self.spec = spec
        self.part = _Part(first_row=0)
        self.parts: list[str] = []
        self.sizes: list[int] = []
        self.digests: list[str] = []  # sha256 of each part file, in order
        self.text_tokens = 0
        self.qa_turns = 0
        self.worker: _Worker | ThreadPoolExecutor | None = None
        self.pending: deque[Future | _Reply] = deque()

    def __enter__(self) -> _PartWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        elif isinstance(self.worker, _Worker):
            self.worker.stop()
        elif self.worker is not None:
            self.worker.shutdown(cancel_futures=True)

    def add(self, source: int, dialogue: Dialogue, infos: list[ImageInfo]) -> None:
        self.part.add(source, dialogue, infos)
        if self.part.rows >= PART_ROWS or self.part.chars >= PART_CHARS:
            self._flush(more=True)

    def close(self) -> None:
        self._flush(more=False)
        while self.pending:
            self._collect(self.pending.popleft())
        if isinstance(self.worker, _Worker):
            self.worker.finish()
        elif self.worker is not None:
            self.worker.shutdown()

    def _flush(self, *, more: bool) -> None:
        part = self.part
        if not part.rows:
            return
        self.part = _Part(first_row=part.first_row + part.rows)
        name = f"part-{len(self.parts):06d}"
        self.parts.append(f"dialogues/{name}.parquet")
        self.sizes.append(part.rows)
        if self.worker is None:
            self.worker = _Worker(self.tokenizer, self.spec) if more else ThreadPoolExecutor(1)
        while len(self.pending) >= _IN_FLIGHT:
            self._collect(self.pending.popleft())
        source, target = self.folder / f"{name}.input", self.folder / f"{name}.parquet"
        source.write_bytes(part.payload())
        if isinstance(self.worker, _Worker):
            self.pending.append(self.worker.submit(str(source), str(target)))
        else:
            task = self.worker.submit(write_part, str(source), str(target), self.tokenizer)
            self.pending.append(task)

    def _collect(self, pending: Future | _Reply) -> None:
        tokens, qa_turns, digest = pending.result()
        self.text_tokens += tokens
        self.qa_turns += qa_turns
        self.digests.append(digest)


class _Worker:
    """A child `python -m compose.catalog` that runs `write_part` on each (input, output) pair
    written to its stdin, in order, and answers each with one JSON line.

    A plain child process, not multiprocessing: it imports this module and what it needs, not
    the caller's main module (which spawn re-imports, with all that pulls in), and a caller of
    `ingest` needs no ``if __name__ == "__main__"`` guard.
    """

    def __init__(self, tokenizer: TextTokenizer, spec: str) -> None:
        root = str(Path(__file__).resolve().parents[1])  # the folder holding `compose`
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "compose.catalog", spec, tokenizer.fingerprint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )

    def submit(self, source: str, target: str) -> _Reply:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps([source, target]) + b"\n")
        self.process.stdin.flush()
        return _Reply(self)

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
class _Reply:
    worker: _Worker

    def result(self) -> tuple[int, int, str]:
        return self.worker.answer()


def _serve(spec: str, fingerprint: str) -> int:
    """The worker's loop (see `_Worker`). Replies go to the original stdout; anything a library
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
    turn_offsets = _offsets(turn_counts)
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
        _lists(_offsets(np.asarray(n_images, dtype=np.int32)), images),
        pa.array(metas, pa.string()),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _transpose(rows: list[tuple], width: int) -> list[list]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def _offsets(lengths: np.ndarray, dtype: type = np.int32) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=dtype)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _lists(offsets: np.ndarray, values: pa.Array | np.ndarray) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def _flat(groups: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ints as (lengths, values): two arrays instead of many small tuples."""
    lengths = np.fromiter(map(len, groups), dtype=np.int32, count=len(groups))
    values = np.fromiter(itertools.chain.from_iterable(groups), dtype=np.int32)
    return lengths, values


def _int_lists(flat: tuple[np.ndarray, np.ndarray]) -> tuple[pa.Array, np.ndarray]:
    """A list<int32> column from `_flat`'s arrays, and the lengths."""
    lengths, values = flat
    return _lists(_offsets(lengths), pa.array(values, pa.int32())), lengths


def _read_meta(path: Path) -> dict | None:
    """catalog.json, or None when it is missing, unreadable or fails its own checksum."""
    try:
        meta = orjson.loads((path / "catalog.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("checksum", _meta_digest(meta)) != _meta_digest(meta):
        return None
    return meta


def _meta_digest(meta: dict) -> str:
    rest = {key: value for key, value in meta.items() if key != "checksum"}
    return hashlib.sha256(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)).hexdigest()


def damaged_parts(path: Path, meta: dict) -> list[str]:
    """Part files that are missing or whose bytes differ from the checksums in catalog.json."""
    damaged = []
    for part, digest in zip(meta.get("parts", []), meta.get("part_sha256", []), strict=False):
        try:
            found = file_sha256(path / part)
        except OSError as error:
            damaged.append(f"{path / part}: {error.strerror or error}")
            continue
        if found != digest:
            damaged.append(f"{path / part}: checksum {found[:12]}... differs from catalog.json")
    return damaged


@dataclass(slots=True)
class Catalog:
    """A finished catalog: its metadata, its rows as polars frames, random access by row."""

    path: Path
    meta: dict
    _parts: dict[int, pa.Table] = field(default_factory=dict, repr=False)
    _starts: list[int] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> Catalog:
        path = Path(path)
        meta = _read_meta(path)
        if meta is None:
            raise FileNotFoundError(
                f"{path}: not a catalog (no readable catalog.json, or it fails its checksum)"
            )
        version = meta.get("catalog_version")
        if version != CATALOG_VERSION:
            raise ValueError(
                f"{path}: a catalog of version {version}, this compose reads version "
                f"{CATALOG_VERSION}: rebuild it with `compose ingest --force`"
            )
        damaged = damaged_parts(path, meta)
        if damaged:
            raise ValueError(
                f"{path}: damaged catalog, not used: {damaged[0]}"
                + (f" (and {len(damaged) - 1} more parts)" if len(damaged) > 1 else "")
                + "; rebuild it with `compose ingest --force`"
            )
        return cls(path=path, meta=meta)

    @property
    def part_paths(self) -> list[Path]:
        return [self.path / p for p in self.meta["parts"]]

    def frame(self, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """All rows, only the columns asked for. A name may reach into the structs of a list
        column: `turns.mentions` reads that field alone (`turns` then holds structs of it only),
        `turns[0].text` the text of each dialogue's first turn alone (a column of that name,
        null where there is none). Parts are read one at a time, and only those Parquet leaves
        of each, so the planner never holds the turn text (docs/planning.md, "Memory")."""
        import polars as pl  # here, so that ingest workers never load it
        import pyarrow.compute as pc

        def leaf(schema: pa.Schema, name: str) -> str:
            """The Parquet path of a name: a list's values sit under `list.<value field>`."""
            top, *fields = name.split(".")
            if top not in schema.names:
                raise ValueError(f"{self.path}: no catalog column {top!r}")
            steps, kind = [top], schema.field(top).type
            for step in fields:
                if pa.types.is_list(kind):
                    steps += ["list", kind.value_field.name]
                    kind = kind.value_type
                if not pa.types.is_struct(kind) or kind.get_field_index(step) < 0:
                    raise ValueError(f"{self.path}: catalog column {name!r} has no field {step!r}")
                steps.append(step)
                kind = kind.field(step).type
            return ".".join(steps)

        def element(file: pq.ParquetFile, name: str) -> pa.ChunkedArray:
            """`top[k].field`: one value per row, read from that leaf alone."""
            top, _, rest = name.partition("[")
            number, _, field = rest.partition("].")
            values = file.read(columns=[leaf(file.schema_arrow, f"{top}.{field}")])[top]
            k = int(number)
            one = pc.list_slice(values, k, k + 1, return_fixed_size_list=True)
            values = pc.list_element(one, 0)
            for step in field.split("."):
                values = pc.struct_field(values, step)
            return values

        def read(source) -> pl.DataFrame:
            file = pq.ParquetFile(source)
            if columns is None:
                return pl.from_arrow(file.read())
            plain = [name for name in columns if "[" not in name]
            table = file.read(columns=[leaf(file.schema_arrow, name) for name in plain])
            for name in columns:
                if "[" in name:
                    table = table.append_column(name, element(file, name))
            order = dict.fromkeys(n if "[" in n else n.split(".")[0] for n in columns)
            return pl.from_arrow(table.select(list(order)))

        if not self.part_paths:  # one empty part, so that the types are those a read gives
            buffer = pa.BufferOutputStream()
            pq.write_table(SCHEMA.empty_table(), buffer)
            return read(pa.BufferReader(buffer.getvalue()))
        return pl.concat([read(part) for part in self.part_paths], rechunk=True)

    def rows(self, rows: Sequence[int]) -> list[dict]:
        """Full rows (turns and images) for the given catalog rows, in the order asked."""
        starts = self._part_starts()
        out = []
        for row in rows:
            number = bisect_right(starts, row) - 1
            if row < 0 or number >= len(self.meta["parts"]):
                raise IndexError(f"{self.path}: no catalog row {row}")
            part = self._part(number)
            local = row - starts[number]
            if local >= len(part):
                raise IndexError(f"{self.path}: no catalog row {row}")
            out.append(part.slice(local, 1).to_pylist()[0])
        return out

    def _part_starts(self) -> list[int]:
        """The first row of each part (parts hold up to `part_rows` rows, fewer when long)."""
        if not self._starts:
            sizes = self.meta.get("part_sizes")
            if sizes is None:  # version 1: every part but the last is full
                sizes = [self.meta["part_rows"]] * len(self.meta["parts"])
            self._starts = [0, *itertools.accumulate(sizes)][:-1] or [0]
        return self._starts

    def _part(self, number: int) -> pa.Table:
        table = self._parts.get(number)
        if table is None:
            if len(self._parts) >= 4:
                self._parts.pop(next(iter(self._parts)))
            table = pq.read_table(self.path / self.meta["parts"][number])
            self._parts[number] = table
        return table

    def source_store(self, source: int, limits: Limits | None = None) -> ImageStore:
        return open_store(self.meta["sources"][source]["images"], limits or Limits())


if __name__ == "__main__":  # the ingest worker, started by `_Worker`
    raise SystemExit(_serve(*sys.argv[1:]))
