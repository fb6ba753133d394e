"""Reading composed shards back: a streaming `webdataset` pipeline and random access by key.

`dataset(...)` yields `(messages, images)` per sample, with the text rendered in any tag style
whatever style the shards were written in: the canonical form is the pivot (each message is
brought back to canonical `<image-N>` tags, then rendered). Shards are split by node and by
DataLoader worker, so several workers see every sample exactly once per epoch. `SampleIndex`
reads one sample by key or position through the manifest's byte offsets. docs/loader.md shows
both in a training loop.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

import fsspec
import orjson
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image

from compose import tags
from compose.canonical import canonical_texts

__all__ = [
    "SampleIndex",
    "canonical_texts",
    "dataset",
    "render_messages",
    "sample_pair",
    "samples",
    "shard_samples",
    "shard_urls",
]

MANIFEST = "manifest.parquet"
SHARD_INDEX = "shards.json"
_BLOCK = 512
_BUFFER = 1 << 20
# webdataset's grouping: the key is the name up to the first dot of its last component.
_MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


def shard_urls(source: str | Path | Sequence[str]) -> list[str]:
    """The shard urls of a composed folder (its `shards.json`), a `shards.json`, or urls as given.

    A string that is neither a folder nor a `.json` file is a webdataset url or brace pattern
    (`out/shard-{000000..000009}.tar`) and is passed through.
    """
    if not isinstance(source, str | Path):
        return [str(url) for url in source]
    text = str(source)
    if Path(text).is_dir():
        return _urls_from_index(Path(text) / SHARD_INDEX)
    if text.endswith(".json"):
        return _urls_from_index(Path(text))
    return [text]


def _urls_from_index(index: Path) -> list[str]:
    try:
        data = index.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{index}: no shard index (is this a compose output folder?)"
        ) from None
    return [str(index.parent / entry["url"]) for entry in index_entries(data, str(index))]


def index_entries(data: bytes, where: str) -> list[dict]:
    """The entries of a wids shard index (`shards.json`), each with a string `url`; a damaged
    or empty index is a ValueError naming `where`."""
    try:
        entries = json.loads(data)["shardlist"]
        if not all(isinstance(entry["url"], str) for entry in entries):
            raise TypeError("a url is not a string")
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{where}: not a wids shard index ({type(error).__name__}: {error})"
        ) from None
    if not entries:
        raise ValueError(f"{where}: the shard list is empty")
    return entries


def dataset(
    source: str | Path | Sequence[str],
    *,
    style: str | None = None,
    decode: bool = True,
    shuffle: int = 0,
    seed: int = 0,
    with_sample: bool = False,
) -> wds.FluidWrapper:
    """A webdataset pipeline yielding `(messages, images)` for every sample of the shards.

    `style` renders the text (`mmdu`, `llava`, `canonical`, `openai`; None keeps the shards'
    style). `images` are in number order: PIL images, loaded, with `decode=True`, else the
    bytes as stored. `shuffle` > 0 shuffles the shard order and samples through a buffer of that
    many samples, from `seed`. `with_sample=True` adds the sample JSON as a third item.
    Shards are split by node (torch.distributed rank) and by DataLoader worker, so each epoch
    gives every sample exactly once over all workers; a worker left without a shard raises.
    The stages are webdataset's, except the tar reader: compose's shards are plain USTAR, read
    here strictly (a header that is not one is an error naming the shard and the byte).
    """
    if style is not None and style not in tags.STYLES:
        raise ValueError(f"unknown style {style!r} (expected one of {', '.join(tags.STYLES)})")
    urls = shard_urls(source)
    pipeline = wds.FluidWrapper(wds.SimpleShardList(urls))
    pipeline.append(wds.split_by_node)
    pipeline.append(wds.split_by_worker)
    if shuffle > 0:
        pipeline.append(wds.detshuffle(len(urls), seed=seed))
    pipeline.append(shard_samples)
    pipeline.append(_not_empty)
    if shuffle > 0:
        pipeline.append(wds.detshuffle(shuffle, seed=seed))
    return pipeline.map(partial(sample_pair, style=style, decode=decode, with_sample=with_sample))


def samples(
    source: str | Path | Sequence[str], *, style: str | None = None, decode: bool = False
) -> Iterator[tuple[list[dict], list, dict]]:
    """Every sample once, in shard order, as `(messages, images, sample JSON)`: for tools that
    read a whole output in one process (export, stats), with no node or worker splitting."""
    if style is not None and style not in tags.STYLES:
        raise ValueError(f"unknown style {style!r} (expected one of {', '.join(tags.STYLES)})")
    shards = ({"url": url} for url in shard_urls(source))
    for raw in shard_samples(shards):
        yield sample_pair(raw, style=style, decode=decode, with_sample=True)


def shard_samples(shards: Iterable[dict]) -> Iterator[dict]:
    """webdataset stage: `{"url": ...}` per shard in, one dict per sample out, as webdataset
    groups them (`{"__key__", "__url__", "json": bytes, "001.jpg": bytes, ...}`)."""
    for shard in shards:
        url = shard["url"]
        with wds.gopen(url, "rb", bufsize=_BUFFER) as stream:
            sample: dict | None = None
            for name, data in _tar_members(stream, url):
                match = _MEMBER.match(name)
                if match is None:
                    continue
                key, suffix = match.group(1), match.group(2).lower()
                if sample is None or sample["__key__"] != key:
                    if sample is not None:
                        yield sample
                    sample = {"__key__": key, "__url__": url}
                if suffix in sample:
                    raise ValueError(f"{url}: member {name} occurs twice in sample {key}")
                sample[suffix] = data
            if sample is not None:
                yield sample


def _tar_members(stream: IO[bytes], url: str, offset: int = 0) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each regular file of a USTAR stream, from byte `offset` (where the
    stream stands) to the end-of-archive block."""
    while True:
        header = stream.read(_BLOCK)
        if not header.strip(b"\0"):
            return  # end of archive (or an empty file)
        if len(header) < _BLOCK:
            raise ValueError(f"{url}: truncated tar header at byte {offset}")
        name, size, kind = _header(header, url, offset)
        padded = size + (-size % _BLOCK)
        data = stream.read(padded)
        if len(data) < padded:
            raise ValueError(f"{url}: member {name} is truncated (at byte {offset})")
        offset += _BLOCK + padded
        if kind in (b"0", b"\0"):
            yield name, data[:size]
        elif kind in (b"x", b"g", b"L", b"K"):
            raise ValueError(f"{url}: {name}: a PAX or GNU extension header, not a compose shard")


def _header(block: bytes, url: str, offset: int) -> tuple[str, int, bytes]:
    try:
        stored = int(block[148:156].strip(b"\0 ") or b"-1", 8)
        size = int(block[124:136].strip(b"\0 ") or b"0", 8)
    except ValueError:
        raise ValueError(f"{url}: no tar header at byte {offset}") from None
    if stored != sum(block[:148]) + 256 + sum(block[156:]):
        raise ValueError(f"{url}: no tar header at byte {offset} (bad checksum)")
    name = block[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
    if prefix:
        name = prefix.decode("utf-8", "surrogateescape") + "/" + name
    return name, size, block[156:157]


def _not_empty(samples: Iterable[dict]) -> Iterator[dict]:
    count = 0
    for sample in samples:
        count += 1
        yield sample
    if count == 0:
        raise ValueError(
            "no samples for this worker: fewer shards than nodes x DataLoader workers?"
        )


def sample_pair(
    raw: dict, *, style: str | None = None, decode: bool = True, with_sample: bool = False
) -> tuple:
    """One webdataset sample dict -> `(messages, images)` (plus the sample JSON if asked)."""
    key = raw.get("__key__", "?")
    where = f"{raw.get('__url__', 'shard')}: sample {key}"
    try:
        sample = orjson.loads(raw["json"])
        blobs = [raw[name] for name in sorted(n for n in raw if n[:1].isdigit())]
        messages = _messages(sample, style)
        images = [_decode(blob) for blob in blobs] if decode else blobs
    except (KeyError, ValueError, TypeError, OSError) as error:
        raise ValueError(f"{where}: {type(error).__name__}: {error}") from error
    if len(images) != len(sample["images"]):
        raise ValueError(
            f"{where}: {len(images)} image members, the sample JSON lists {len(sample['images'])}"
        )
    return (messages, images, sample) if with_sample else (messages, images)


def _messages(sample: dict, style: str | None) -> list[dict]:
    if style is None or style == sample["style"]:
        return sample["messages"]
    roles = [message["role"] for message in sample["messages"]]
    return render_messages(roles, canonical_texts(sample), style, sample["images"])


def _decode(blob: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(blob))
    image.load()
    return image


def render_messages(
    roles: Sequence[str],
    texts: Sequence[str],
    style: str,
    images: Sequence[dict],
    image_url: Callable[[int], str] | None = None,
) -> list[dict]:
    """Chat messages from canonical texts; `openai` parts point at `image_url(number)`
    (default: the image's member name in the shard)."""
    if style == "openai":
        if image_url is None:
            members = {image["number"]: image["member"] for image in images}
            image_url = members.__getitem__
        return [
            {"role": role, "content": tags.render_parts(text, image_url)}
            for role, text in zip(roles, texts, strict=True)
        ]
    return [
        {"role": role, "content": tags.render(text, style)}
        for role, text in zip(roles, texts, strict=True)
    ]


class SampleIndex:
    """Random access to the samples of a composed folder, by key or by position in key order.

    Reads `manifest.parquet` once (key, shard, offset) and then, per sample, seeks to its first
    tar header and reads its members: nothing before it in the shard is touched. Usable as a
    map-style dataset (`len`, integer indexing) in a PyTorch DataLoader.
    """

    def __init__(
        self, folder: str | Path, *, style: str | None = None, decode: bool = True
    ) -> None:
        self.folder = str(folder)
        self.style = style
        self.decode = decode
        path = f"{self.folder.rstrip('/')}/{MANIFEST}"
        try:
            table = pq.read_table(path, columns=["key", "shard", "offset"])
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no manifest (is this a compose output folder?)"
            ) from None
        self.keys: list[str] = table.column("key").to_pylist()
        self._shards: list[str] = table.column("shard").to_pylist()
        self._offsets: list[int] = table.column("offset").to_pylist()
        self._row = {key: row for row, key in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, item: int | str) -> tuple:
        """`(messages, images)` of the sample at position `item`, or with key `item`."""
        return sample_pair(self.raw(item), style=self.style, decode=self.decode)

    def raw(self, item: int | str) -> dict:
        """The sample as webdataset would give it: `{"__key__", "json", "001.jpg", ...}`."""
        row = self._position(item)
        key, shard = self.keys[row], self._shards[row]
        url = f"{self.folder.rstrip('/')}/{shard}"
        sample: dict[str, Any] = {"__key__": key, "__url__": url}
        with fsspec.open(url, "rb") as file:
            file.seek(self._offsets[row])
            sample.update(_members_of(file, url, self._offsets[row], key))
        if "json" not in sample:
            raise ValueError(f"{url}: no {key}.json at byte {self._offsets[row]}")
        return sample

    def _position(self, item: int | str) -> int:
        if isinstance(item, str):
            if item not in self._row:
                raise KeyError(f"{self.folder}: no sample with key {item!r}")
            return self._row[item]
        if not -len(self.keys) <= item < len(self.keys):
            raise IndexError(f"{self.folder}: sample {item} of {len(self.keys)}")
        return item % len(self.keys)


def _members_of(file: IO[bytes], url: str, offset: int, key: str) -> Iterator[tuple[str, bytes]]:
    """(suffix, bytes) of the members named `key.*` from `offset` on; stops at the next key
    before reading its data."""
    while True:
        header = file.read(_BLOCK)
        if len(header) < _BLOCK or not header.strip(b"\0"):
            return
        name, size, kind = _header(header, url, offset)
        base, _, suffix = name.partition(".")
        if base != key or kind not in (b"0", b"\0"):
            return
        data = file.read(size)
        if len(data) < size:
            raise ValueError(f"{url}: member {name} is truncated (at byte {offset})")
        file.seek(-size % _BLOCK, 1)
        offset += _BLOCK + size + (-size % _BLOCK)
        yield suffix.lower(), data
