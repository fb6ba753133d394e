"""A sample's texts back in canonical tags: one reading for the loader and the sample checks."""

from __future__ import annotations

import itertools
import re

from compose import tags

# The placeholders of the tag grammar (compose.tags), ASCII case-insensitive like it.
_PLACEHOLDER = re.compile(r"<imagehere>|<image>", re.IGNORECASE | re.ASCII)


def canonical_texts(sample: dict, *, strict: bool = True) -> list[str]:
    """The sample's message texts in canonical form (`<image-N>` where image N stands).

    Placeholders are numbered across the whole sample, as the tag grammar counts them. Text
    rendered from canonical form holds no other tag (`compose.tags.render` replaces every one),
    so numbering the placeholders alone gives what `compose.tags.parse` gives, several times
    faster: it skips the prose mentions, which stay as written either way.

    An OpenAI image part that names no image of the sample raises `ValueError`; with
    `strict=False` (the checks, which report every problem) it reads as `<image-0>`, which the
    reference checks then report.
    """
    style = sample["style"]
    messages = sample["messages"]
    if style == "canonical":
        return [message["content"] for message in messages]
    if style == "openai":
        numbers = {image["member"]: image["number"] for image in sample["images"]}
        return [_join_parts(message["content"], numbers, strict) for message in messages]
    if style not in ("mmdu", "llava"):
        raise ValueError(f"unknown style {style!r}")
    numbers = itertools.count(1)

    def numbered(_: re.Match[str]) -> str:
        return tags.tag(next(numbers))

    return [_PLACEHOLDER.sub(numbered, message["content"]) for message in messages]


def _join_parts(parts: str | list[dict], numbers: dict[str, int], strict: bool) -> str:
    if isinstance(parts, str):  # the sample schema allows plain text content in any style
        return parts
    pieces = []
    for part in parts:
        if part["type"] == "text":
            pieces.append(part["text"])
            continue
        url = part["image_url"]["url"]
        if url in numbers:
            pieces.append(tags.tag(numbers[url]))
        elif strict:
            raise ValueError(f"image part {url!r} names no image of the sample")
        else:
            pieces.append(tags.tag(0))
    return "".join(pieces)
