"""Ingest: sources -> a Parquet catalog, where tokens are counted and images probed once.

A finished catalog is read through `compose.catalog_reader` (re-exported here: `Catalog`,
`SCHEMA`, ...); the worker process that counts tokens and writes parts is
`compose.catalog_worker`.

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
import json
import os
import pickle
import shutil
import time
import zipfile
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson

from compose import __version__
from compose.catalog_reader import (
    CATALOG_VERSION,
    IMAGE_TYPE,
    SCHEMA,
    TURN_TYPE,
    Catalog,
    damaged_parts,
    file_sha256,
    meta_digest,
    read_meta,
)
from compose.catalog_worker import Reply, Worker, flat_groups, offsets_of, write_part
from compose.model import Dialogue, Reject, SkipRecord
from compose.sources import open_source, open_store
from compose.sources.base import Limits
from compose.sources.stores import ImageInfo, ImageStore
from compose.tokens import TextTokenizer, load_tokenizer

PART_ROWS = 4096  # at most this many dialogues in one part file ...
PART_CHARS = 8 << 20  # ... and about this much text, so a part's memory is bounded either way
_IN_FLIGHT = 8  # parts handed to the worker, not yet written: files on disk, not memory here


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
    existing = None if force else read_meta(out)
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
    meta["checksum"] = meta_digest(meta)
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
        text_offsets = offsets_of(lengths, np.int64)
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
            "introduces": flat_groups(self.introduces),
            "mentions": flat_groups(self.mentions),
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
        self.worker: Worker | ThreadPoolExecutor | None = None
        self.pending: deque[Future | Reply] = deque()

    def __enter__(self) -> _PartWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        elif isinstance(self.worker, Worker):
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
        if isinstance(self.worker, Worker):
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
            self.worker = Worker(self.tokenizer, self.spec) if more else ThreadPoolExecutor(1)
        while len(self.pending) >= _IN_FLIGHT:
            self._collect(self.pending.popleft())
        source, target = self.folder / f"{name}.input", self.folder / f"{name}.parquet"
        source.write_bytes(part.payload())
        if isinstance(self.worker, Worker):
            self.pending.append(self.worker.submit(str(source), str(target)))
        else:
            task = self.worker.submit(write_part, str(source), str(target), self.tokenizer)
            self.pending.append(task)

    def _collect(self, pending: Future | Reply) -> None:
        tokens, qa_turns, digest = pending.result()
        self.text_tokens += tokens
        self.qa_turns += qa_turns
        self.digests.append(digest)


__all__ = [
    "CATALOG_VERSION",
    "IMAGE_TYPE",
    "SCHEMA",
    "TURN_TYPE",
    "Catalog",
    "IngestConfig",
    "IngestSummary",
    "SourceSpec",
    "catalog_key",
    "damaged_parts",
    "file_sha256",
    "ingest",
    "store_fingerprint",
]
