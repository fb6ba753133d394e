"""Composed shards -> the files training and evaluation tools read, one sample at a time.

Formats (docs/export.md has each layout and where its field names come from):

- ``llava``: a LLaVA JSON array, ``human``/``gpt`` turns with ``<image>`` placeholders, and the
  images in ``{stem}_images/`` beside it;
- ``mmdu``: the MMDU benchmark JSON object keyed by id, ``user``/``assistant`` turns, each
  image introduced as ``ImageN: <ImageHere>``, images in ``{stem}_images/``;
- ``vlmevalkit``: the TSV VLMEvalKit's multi-turn ``MMDUDataset`` reads (``index``, ``image``
  base64, ``image_path``, ``question``/``answer`` as stringified per-turn lists);
- ``openai``: JSON lines of chat messages with interleaved text and image parts, the images as
  files in ``{stem}_images/`` or as data urls;
- ``energon``: no copy, Megatron-Energon's metadata beside the shards (`compose.ecosystem`).

Text is brought back to canonical tags first (`compose.loader.canonical_texts`) and rendered from
there, whatever style the shards were written in. Images are copied as stored, never re-encoded.
The output file is written under a temporary name and renamed when complete.

The composed output and the export's output are each a local path or an fsspec URL (`s3://`,
`memory://`, `file://`): a remote shard is downloaded into the stage, read and deleted before the
next, and the export is written through fsspec, so memory holds one sample and the disk one shard.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import orjson
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from compose import ecosystem, loader, storage, tags

FORMATS = ("llava", "mmdu", "vlmevalkit", "openai")
IMAGE_MODES = ("files", "data-url")
VLMEVALKIT_COLUMNS = ("index", "image", "image_path", "question", "answer")

_TAG = re.compile(r"<image-([0-9]+)>")
# A label right before an introduction: `Image3: `, `Image 3:`, `image_3 ` ... (any case).
_LABEL = re.compile(r"(?<![\w<])(?a:image)[ _-]?0*([0-9]+)\s*[:.]?\s*\Z", re.IGNORECASE)
_LABEL_WINDOW = 64
_GLUED = re.compile(r"[\w<]")  # a label right after one of these would not read as a mention
_MIME = {"jpg": "jpeg", "tif": "tiff"}
# VLMEvalKit reads an `image` value of 64 characters or fewer as the index of another row.
_VLMEVALKIT_MIN_BASE64 = 65


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSummary:
    format: str
    out: str
    images_folder: str | None
    samples: int
    images: int
    bytes: int  # of the output file and the image files written
    seconds: float

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "out": self.out,
            "images_folder": self.images_folder,
            "samples": self.samples,
            "images": self.images,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class _Sample:
    key: str
    roles: list[str]
    texts: list[str]  # canonical
    images: list[dict]  # the sample JSON's image entries, in number order
    blobs: list[bytes]


def export(
    folder: str | Path,
    out: str | Path | None,
    *,
    format: str,
    images: str = "files",
    on_sample: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Export every sample of a composed `folder` (a path or an fsspec URL) to `out` (a path or
    a URL) in `format`.

    `images` (openai only) is ``files`` or ``data-url``. Raises ValueError for a sample the
    format cannot hold (it names the sample), leaving no output file behind. The ``energon``
    format writes Energon's metadata beside the shards instead (`out` None or `folder`).
    """
    if format == "energon":
        return _energon(folder, out)
    if format not in FORMATS:
        expected = ", ".join((*FORMATS, "energon"))
        raise ValueError(f"unknown export format {format!r} (expected one of {expected})")
    if out is None:
        raise ValueError(f"the {format} export needs an output file (--out)")
    if images not in IMAGE_MODES:
        raise ValueError(f"unknown image mode {images!r} (expected one of {IMAGE_MODES})")
    if images == "data-url" and format != "openai":
        raise ValueError("data-url images are for the openai format only")
    started = time.perf_counter()
    source = ecosystem.output_folder(folder)
    names = [entry["url"] for entry in ecosystem.shard_list(source)]
    folder_images = None if format == "vlmevalkit" or images == "data-url" else images_folder(out)
    writer = _Writer(str(out), folder_images)
    count = 0
    emit = {
        "llava": _write_llava,
        "mmdu": _write_mmdu,
        "vlmevalkit": _write_vlmevalkit,
        "openai": _write_openai,
    }[format]
    with writer, closing(_samples(source, names, on_sample)) as samples:
        for _ in emit(samples, writer, images):
            count += 1
    return ExportSummary(
        format=format,
        out=str(out),
        images_folder=folder_images,
        samples=count,
        images=writer.images,
        bytes=writer.bytes,
        seconds=time.perf_counter() - started,
    )


def _energon(folder: str | Path, out: str | Path | None) -> ExportSummary:
    started = time.perf_counter()
    meta = storage.join(storage.local_path(str(folder)), ecosystem.META)
    if out is not None and not _same_place(folder, out):
        raise ValueError(
            f"the energon metadata goes beside the shards, in {meta}; "
            "leave out --out or give the shard folder"
        )
    summary = ecosystem.write_energon(folder)
    return ExportSummary(
        format="energon",
        out=meta,
        images_folder=None,
        samples=summary.samples,
        images=0,
        bytes=summary.bytes,
        seconds=time.perf_counter() - started,
    )


def _same_place(a: str | Path, b: str | Path) -> bool:
    if storage.is_remote(str(a)) or storage.is_remote(str(b)):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return Path(storage.local_path(str(a))).resolve() == Path(storage.local_path(str(b))).resolve()


def images_folder(out: str | Path) -> str:
    """Where the image files of an export to `out` go: `{stem}_images/` beside it (a path, or
    a URL for a URL `out`)."""
    parent, _, name = str(out).rstrip("/").rpartition("/")
    folder = f"{name.split('.')[0]}_images"
    return f"{parent}/{folder}" if parent or str(out).startswith("/") else folder


def _samples(
    source: storage.Folder, names: list[str], on_sample: Callable[[int], None] | None
) -> Iterator[_Sample]:
    done = 0
    for name in names:
        with ecosystem.shard_file(source, name) as path:
            for messages, blobs, sample in _read_shard(path, source.where(name)):
                done += 1
                yield _Sample(
                    key=sample["key"],
                    roles=[message["role"] for message in messages],
                    texts=loader.canonical_texts(sample),
                    images=sample["images"],
                    blobs=blobs,
                )
                if on_sample is not None:
                    on_sample(done)


def _read_shard(path: Path, where: str) -> Iterator[tuple[list[dict], list, dict]]:
    """The samples of one local shard; a problem is named by `where` (the shard's URL when
    `path` is its download), not by the download."""
    try:
        yield from loader.samples([str(path)], decode=False)
    except ValueError as error:
        if where == str(path):
            raise
        raise ValueError(str(error).replace(str(path), where)) from error


def label_introductions(text: str) -> str:
    """Put `ImageN: ` before each `<image-N>` that no label of N already precedes.

    MMDU introduces every image as `Image1: <ImageHere>`; text from other sources (a LLaVA
    `<image>`, an EXMODD image) has the placeholder alone, and gets the label here (after a
    space when a word would otherwise run into it, so the label reads as a mention).
    """
    pieces = []
    position = 0
    for match in _TAG.finditer(text):
        number = int(match.group(1))
        before = text[max(0, match.start() - _LABEL_WINDOW) : match.start()]
        label = _LABEL.search(before)
        pieces.append(text[position : match.start()])
        if label is None or int(label.group(1)) != number:
            glued = _GLUED.match(text, match.start() - 1) if match.start() else None
            pieces.append(f"{' ' if glued else ''}Image{number}: ")
        pieces.append(match.group(0))
        position = match.end()
    pieces.append(text[position:])
    return "".join(pieces)


# -- the formats ----------------------------------------------------------------------------


def _write_llava(samples: Iterator[_Sample], writer: _Writer, _: str) -> Iterator[_Sample]:
    writer.text("[\n")
    for number, sample in enumerate(samples):
        paths = writer.image_files(sample)
        item: dict = {"id": sample.key}
        if paths:
            item["image"] = paths[0] if len(paths) == 1 else paths
        item["conversations"] = [
            {"from": "human" if role == "user" else "gpt", "value": tags.render(text, "llava")}
            for role, text in zip(sample.roles, sample.texts, strict=True)
        ]
        writer.raw((b",\n" if number else b"") + orjson.dumps(item))
        yield sample
    writer.text("\n]\n")


def _write_mmdu(samples: Iterator[_Sample], writer: _Writer, _: str) -> Iterator[_Sample]:
    writer.text("{\n")
    for number, sample in enumerate(samples):
        paths = ["/" + path for path in writer.image_files(sample)]
        item = {
            "image": paths,
            "conversations": [
                {"from": role, "value": tags.render(label_introductions(text), "mmdu")}
                for role, text in zip(sample.roles, sample.texts, strict=True)
            ],
        }
        prefix = b",\n" if number else b""
        writer.raw(prefix + orjson.dumps(sample.key) + b": " + orjson.dumps(item))
        yield sample
    writer.text("\n}\n")


def _write_vlmevalkit(samples: Iterator[_Sample], writer: _Writer, _: str) -> Iterator[_Sample]:
    table = csv.writer(writer.stream_text(), delimiter="\t", lineterminator="\n")
    table.writerow(VLMEVALKIT_COLUMNS)
    for sample in samples:
        questions, answers = [], []
        for turn, (role, text) in enumerate(zip(sample.roles, sample.texts, strict=True)):
            if role == "assistant" and _TAG.search(text):
                raise ValueError(
                    f"sample {sample.key}: message {turn + 1} (assistant) introduces an image; "
                    "VLMEvalKit takes <ImageHere> in questions only"
                )
            rendered = tags.render(label_introductions(text), "mmdu")
            (questions if role == "user" else answers).append(rendered)
        encoded = [_base64(sample, n) for n in range(len(sample.blobs))]
        names = [image["member"] for image in sample.images]
        table.writerow(
            [
                sample.key,
                _one_or_list(encoded),
                _one_or_list(names),
                repr(questions),
                repr(answers),
            ]
        )
        writer.images += len(encoded)
        yield sample


def _base64(sample: _Sample, index: int) -> str:
    text = base64.b64encode(sample.blobs[index]).decode("ascii")
    if len(text) < _VLMEVALKIT_MIN_BASE64:
        raise ValueError(
            f"sample {sample.key}: image {index + 1} is only {len(sample.blobs[index])} bytes; "
            "VLMEvalKit reads an image field of 64 characters or fewer as a row reference"
        )
    return text


def _one_or_list(values: list[str]) -> str:
    if not values:
        return ""
    return values[0] if len(values) == 1 else repr(values)


def _write_openai(samples: Iterator[_Sample], writer: _Writer, mode: str) -> Iterator[_Sample]:
    for sample in samples:
        if mode == "data-url":
            urls = [
                _data_url(image, blob)
                for image, blob in zip(sample.images, sample.blobs, strict=True)
            ]
            writer.images += len(urls)
        else:
            urls = writer.image_files(sample)
        messages = loader.render_messages(
            sample.roles, sample.texts, "openai", sample.images, partial(_nth, urls)
        )
        writer.raw(orjson.dumps({"id": sample.key, "messages": messages}) + b"\n")
        yield sample


def _nth(urls: list[str], number: int) -> str:
    return urls[number - 1]


def _data_url(image: dict, blob: bytes) -> str:
    ext = image["member"].rsplit(".", 1)[-1]
    mime = f"image/{_MIME.get(ext, ext)}"
    return f"data:{mime};base64,{base64.b64encode(blob).decode('ascii')}"


# -- writing ----------------------------------------------------------------------------------


class _Writer:
    """The output file under a temporary name (renamed on success, removed on failure), and
    the image folder beside it, at a path or a URL (through fsspec either way)."""

    def __init__(self, out: str, folder: str | None) -> None:
        self.out = out
        self.folder = folder
        self.fs, self.path = _filesystem(out)
        parent, _, name = self.path.rpartition("/")
        self.temp = f"{parent}/.{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        self._folder = None if folder is None else _filesystem(folder)[1]
        self.file: IO[bytes] | None = None
        self._text: io.TextIOWrapper | None = None
        self.images = 0
        self.bytes = 0

    def __enter__(self) -> _Writer:
        try:
            if storage.is_remote(self.out):
                # An object store accepts or refuses a write only when it is sent: one small
                # write now shows a missing bucket or a denied write before any work is done.
                self.fs.pipe_file(self.temp, b"")
            else:  # (no folders to make on an object store: its makedirs creates buckets)
                self.fs.makedirs(self.path.rpartition("/")[0] or "/", exist_ok=True)
                if self._folder is not None:
                    self.fs.makedirs(self._folder, exist_ok=True)
            self.file = self.fs.open(self.temp, "wb")
        except OSError as error:
            self._discard()
            raise OSError(f"{self.out}: cannot write the export: {error}") from error
        return self

    def __exit__(self, kind, error, trace) -> None:
        assert self.file is not None
        if kind is not None:
            with suppress(OSError):
                self._close()
            self._discard()
            return
        try:
            self._close()
            self.bytes += int(self.fs.size(self.temp))
            self.fs.mv(self.temp, self.path)
        except OSError as failure:
            self._discard()
            raise OSError(f"{self.out}: cannot write the export: {failure}") from failure

    def _close(self) -> None:
        """Close the file: what fsspec holds back (an object store's upload) is sent now."""
        assert self.file is not None
        if self._text is not None:
            self._text.flush()
            self._text.detach()
            self._text = None
        self.file.close()

    def _discard(self) -> None:
        with suppress(OSError):
            self.fs.rm_file(self.temp)

    def raw(self, data: bytes) -> None:
        assert self.file is not None
        self.file.write(data)

    def text(self, data: str) -> None:
        self.raw(data.encode("utf-8"))

    def stream_text(self) -> IO[str]:
        assert self.file is not None
        self._text = io.TextIOWrapper(self.file, encoding="utf-8", newline="")
        return self._text

    def image_files(self, sample: _Sample) -> list[str]:
        """Write the sample's images (named by their shard member; on an object store in one
        concurrent batch) and return their paths relative to the output file's folder."""
        assert self.folder is not None and self._folder is not None
        files = {
            f"{self._folder}/{image['member']}": blob
            for image, blob in zip(sample.images, sample.blobs, strict=True)
        }
        try:
            self.fs.pipe(files)
        except OSError as error:
            raise OSError(f"{self.folder}: cannot write the images: {error}") from error
        self.bytes += sum(len(blob) for blob in sample.blobs)
        self.images += len(files)
        name = self.folder.rstrip("/").rpartition("/")[2]
        return [f"{name}/{image['member']}" for image in sample.images]


def _filesystem(target: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem and path of an output path or URL; ValueError naming it when its
    scheme is not one fsspec can write here."""
    try:
        return url_to_fs(target)
    except (ValueError, ImportError) as error:
        raise ValueError(f"{target}: not a path or a URL compose can write ({error})") from None
