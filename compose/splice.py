"""Plan rows -> one composed sample: re-index, merge images, render, count exactly.

A sample is built in one pass over its segments. Each segment's canonical text is re-indexed by
the segment's image offset (one regex pass per message, see `compose.tags`), its images are
appended to the sample's list, and every message is counted with the same tokenizer and
image-token model the plan used. A count that disagrees with the plan is a bug, not bad input.

A probe is a plan row that continues an earlier segment of the same sample: the next QA turn of
that dialogue, re-indexed by the same offset, bringing no image. The sample's `probes` list
marks each one (its messages, source, the images it may need, its reach-back), so exports and
judges can score probes apart from the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from compose import tags
from compose.shards import image_extension, image_member
from compose.tokens import ImageTokenModel, TextTokenizer


class SpliceError(RuntimeError):
    """The composed sample disagrees with its plan: a bug to report, never silently fixed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpliceConfig:
    style: str = "mmdu"
    message_overhead: int = 0
    token_budget: int | None = None  # recorded in the sample for the fill ratio


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedSegment:
    """One plan row with its catalog row attached."""

    row: dict  # the full catalog row (turns, images, provenance)
    first_turn: int
    last_turn: int
    image_offset: int
    planned_tokens: int | None = None
    probe: bool = False  # the next QA turn of an earlier segment's dialogue, asked here


@dataclass(frozen=True, slots=True, kw_only=True)
class Composed:
    """A sample ready to write: its JSON document and its image bytes in number order."""

    sample: dict
    images: tuple[tuple[str, bytes], ...]


def compose_sample(
    key: str,
    segments: Sequence[PlannedSegment],
    *,
    read_image: Callable[[int, dict], bytes],
    tokenizer: TextTokenizer,
    image_model: ImageTokenModel,
    config: SpliceConfig,
) -> Composed:
    """Splice `segments` into one sample keyed `key`; `read_image(source, image)` gives the bytes
    of a catalog image entry (which the reader may check against its sha256 or crc32)."""
    messages: list[dict] = []
    canonical: list[str] = []
    images: list[dict] = []
    blobs: list[tuple[str, bytes]] = []
    provenance: list[dict] = []
    probes: list[dict] = []
    counts: list[int | None] = []  # text tokens per message; None: to be counted
    for segment in segments:
        row = segment.row
        offset = segment.image_offset
        source = _probe_source(key, segment, provenance) if segment.probe else None
        if source is None and offset != len(images):
            raise SpliceError(
                f"{key}: segment {row['id']!r} has image offset {offset} but {len(images)} "
                "images precede it"
            )
        turns = row["turns"][2 * segment.first_turn : 2 * segment.last_turn + 2]
        first_message = len(messages)
        for turn in turns:
            text, count = _renumbered(turn, offset, tokenizer)
            canonical.append(text)
            counts.append(count)
            messages.append({"role": turn["role"], "content": text})
        wanted = max((n for t in turns for n in t["introduces"]), default=0)
        if source is not None:
            wanted = 0  # _probe_source checked that the probe introduces no image
        for image in row["images"][:wanted]:
            number = image["number"] + offset
            ext = image_extension(image["format"])
            images.append(
                {
                    "number": number,
                    "member": ext,  # named below, once the sample's image count is known
                    "path": image["path"],
                    "dialogue": row["id"],
                    "width": image["width"],
                    "height": image["height"],
                    "format": image["format"],
                    "bytes": image["bytes"],
                    "sha256": image["sha256"],
                }
            )
            blobs.append((ext, read_image(row["source"], image)))
        entry = {
            "dialogue": row["id"],
            "row": row["row"],
            "source": row["source"],  # index of the input in run.json's `inputs`
            "file": file_name(row["file"]),
            "index": row["index"],
            "first_turn": segment.first_turn,
            "last_turn": segment.last_turn,
            "image_offset": offset,
            "images": wanted,
            "messages": [first_message, len(messages)],
            "probe": segment.probe,
        }
        provenance.append(entry)
        if source is not None:
            probes.append({"segment": source, "entry": len(provenance) - 1})

    for image in images:
        image["member"] = image_member(key, image["number"], len(images), image["member"])
    text_tokens = _text_tokens(canonical, counts, tokenizer)
    widths = np.array([i["width"] for i in images], dtype=np.int64)
    heights = np.array([i["height"] for i in images], dtype=np.int64)
    image_tokens = image_model.count(widths, heights) if images else np.zeros(0, np.int64)
    for image, count in zip(images, image_tokens.tolist(), strict=True):
        image["tokens"] = count
    _render(messages, canonical, images, config.style)

    overhead = config.message_overhead * len(messages)
    total = int(text_tokens.sum()) + int(image_tokens.sum()) + overhead
    _check_plan(key, segments, provenance, text_tokens, image_tokens, config)
    spans = message_spans(canonical, text_tokens, image_tokens, config.message_overhead)
    for prov, count in zip(provenance, _segment_tokens(provenance, spans), strict=True):
        prov["tokens"] = count
    tokens = {
        "text": int(text_tokens.sum()),
        "image": int(image_tokens.sum()),
        "overhead": overhead,
        "total": total,
    }
    if config.token_budget:
        tokens["budget"] = config.token_budget
        tokens["fill"] = round(total / config.token_budget, 6)
    sample = {
        "key": key,
        "style": config.style,
        "messages": messages,
        "message_tokens": text_tokens.tolist(),
        "images": images,
        "tokens": tokens,
        "segments": provenance,
        "probes": [_probe_entry(p, provenance, canonical, spans) for p in probes],
    }
    return Composed(sample=sample, images=tuple(blobs))


def file_name(path: str) -> str:
    """The name of a source file without its folders: a sample's bytes must not depend on
    where the corpus lay (run.json's `inputs` give each input's full path and sha256)."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _renumbered(turn: dict, offset: int, tokenizer: TextTokenizer) -> tuple[str, int | None]:
    """A catalog turn's text moved by `offset`, and its text tokens when the catalog's count
    tells them exactly (None otherwise): at offset 0 it is the count itself."""
    known = turn.get("text_tokens")
    if offset == 0:
        return turn["text"], known
    text, renumbered = tags.reindex_mentions(turn["text"], offset)
    return text, None if known is None else tokenizer.recount(known, renumbered)


def _text_tokens(
    canonical: Sequence[str], counts: Sequence[int | None], tokenizer: TextTokenizer
) -> np.ndarray:
    """Every message's text tokens: the known counts, and the rest counted now."""
    unknown = [i for i, count in enumerate(counts) if count is None]
    out = np.array([0 if count is None else count for count in counts], dtype=np.int64)
    if unknown:
        out[unknown] = tokenizer.count_batch([tags.strip_tags(canonical[i]) for i in unknown])
    return out


def _probe_source(key: str, segment: PlannedSegment, provenance: list[dict]) -> int:
    """The earlier segment a probe continues: same dialogue row, same image offset, its last QA
    turn the one before the probe's. The probe is one QA turn that introduces no image."""
    row = segment.row
    turn = segment.first_turn
    where = f"{key}: probe {row['id']!r} turn {turn}"
    if segment.last_turn != turn:
        raise SpliceError(f"{where}: a probe is one QA turn, not {turn}..{segment.last_turn}")
    if any(t["introduces"] for t in row["turns"][2 * turn : 2 * turn + 2]):
        raise SpliceError(f"{where}: a probe turn may not introduce images")
    for index, prov in enumerate(provenance):
        if (
            not prov["probe"]
            and prov["row"] == row["row"]
            and prov["last_turn"] == turn - 1
            and prov["image_offset"] == segment.image_offset
        ):
            return index
    raise SpliceError(
        f"{where}: no earlier segment of the sample ends at turn {turn - 1} with image offset "
        f"{segment.image_offset}"
    )


def message_spans(canonical: Sequence[str], text_tokens, image_tokens, overhead: int) -> np.ndarray:
    """(start, end) token positions of every message in the sample: its text tokens, the image
    tokens of the images it introduces, and the per-message overhead. Images are numbered
    1..n in introduction order, so `image_tokens[n - 1]` is image n's."""
    image_tokens = np.asarray(image_tokens, dtype=np.int64)
    sizes = np.asarray(text_tokens, dtype=np.int64) + overhead
    for index, text in enumerate(canonical):
        sizes[index] += sum(int(image_tokens[n - 1]) for n in tags.introductions(text))
    ends = np.cumsum(sizes)
    return np.stack((ends - sizes, ends), axis=1)


def _segment_tokens(provenance: list[dict], spans: np.ndarray) -> list[int]:
    return [int(spans[p["messages"][1] - 1, 1] - spans[p["messages"][0], 0]) for p in provenance]


def _probe_entry(probe: dict, provenance: list[dict], canonical: list[str], spans) -> dict:
    """What a judge and `compose stats` need about one probe.

    `images`: the source segment's images (the dialogue's pictures so far, all it can need);
    `mentions`: those the probe question and answer name; `reach_tokens`: tokens from the end
    of the source segment to the start of the probe question; `reach_images`: images
    introduced in between.
    """
    source = provenance[probe["segment"]]
    entry = provenance[probe["entry"]]
    question, end = entry["messages"]
    first = source["image_offset"] + 1
    named = sorted({n for text in canonical[question:end] for n in tags.mentions(text)})
    before = sum(len(tags.introductions(text)) for text in canonical[:question])
    return {
        "messages": [question, question + 1],
        "dialogue": entry["dialogue"],
        "row": entry["row"],
        "turn": entry["first_turn"],
        "segment": probe["segment"],
        "images": list(range(first, first + source["images"])),
        "mentions": named,
        "reach_tokens": int(spans[question, 0] - spans[source["messages"][1] - 1, 1]),
        "reach_images": before - (source["image_offset"] + source["images"]),
    }


def _render(messages: list[dict], canonical: list[str], images: list[dict], style: str) -> None:
    if style == "openai":
        members = {image["number"]: image["member"] for image in images}
        for message, text in zip(messages, canonical, strict=True):
            message["content"] = tags.render_parts(text, members.__getitem__)
        return
    for message, text in zip(messages, canonical, strict=True):
        message["content"] = tags.render(text, style)


def _check_plan(
    key: str,
    segments: Sequence[PlannedSegment],
    provenance: list[dict],
    text_tokens: np.ndarray,
    image_tokens: np.ndarray,
    config: SpliceConfig,
) -> None:
    """The plan's token estimate per segment must equal the exact count."""
    image_cursor = 0
    for segment, prov in zip(segments, provenance, strict=True):
        start, end = prov["messages"]
        exact = (
            int(text_tokens[start:end].sum())
            + int(image_tokens[image_cursor : image_cursor + prov["images"]].sum())
            + config.message_overhead * (end - start)
        )
        image_cursor += prov["images"]
        if segment.planned_tokens is not None and exact != segment.planned_tokens:
            raise SpliceError(
                f"{key}: segment {prov['dialogue']!r} (turns {prov['first_turn']}.."
                f"{prov['last_turn']}, offset {prov['image_offset']}) counts {exact} tokens, "
                f"the plan said {segment.planned_tokens}"
            )
