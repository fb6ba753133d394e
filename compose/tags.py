"""The tag grammar: how text points at images, and how to move those pointers.

Three forms occur in MMDU-style data (docs/tag-grammar.md has the full grammar):

- explicit tags ``<image-N>`` (N >= 1), the canonical stored form of an introduction;
- positional placeholders ``<ImageHere>`` and ``<image>``: the k-th placeholder of a
  dialogue is image k, counted across turns;
- prose mentions ``Image1``, ``Image 1``, ``image-1``, ``Image_1`` (any case, word-bounded).

Everything is done with one compiled pattern and one pass per text, so re-indexing can never
chain (``Image1`` -> ``Image2`` -> ``Image3``) the way repeated string replaces would.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from compose.model import SkipRecord

STYLES = ("canonical", "mmdu", "llava", "openai")

# The scan runs case-sensitively on an ASCII-lowered copy of the text and starts every match
# with the literal `image`, so the regex engine can jump between candidates with a fast literal
# search; look-behinds placed after that literal decide what a match is. That is ~15x faster
# than one case-insensitive pattern with a leading look-behind, and reads the same grammar:
# after '<' only a tag or placeholder counts, so the word "image" inside a tag is never a
# mention; a mention may not follow a word character or '<', nor be followed by one, so
# `Image1` never matches inside `Image10`, `Image12b` or `myImage1`. (No match can hold another
# `image`, so skipping a candidate never hides a later one.) Case folding is ASCII only (no
# dotless `ı` or `İ` reading as `i`) and numbers are ASCII digits only, so a shifted number is
# always written in the digits it was read in. A tag keeps a '-' sign so that `<image--1>` is
# read as a tag, and rejected, not left as text.
_SCAN = re.compile(
    r"image(?:"
    r"(?<=<image)(?:-(?P<tag>-?[0-9]+)>|(?P<placeholder>here>|>))"
    r"|(?<![\w<]image)[ _-]?(?P<num>[0-9]+)(?!\w)"
    r")"
)
_MENTION = re.compile(r"image(?<![\w<]image)[ _-]?([0-9]+)(?!\w)")  # `_SCAN`'s mentions alone
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class Ref(NamedTuple):
    """One reference found in a text: its kind, its span, and the span of its number."""

    kind: str  # "tag", "placeholder" or "mention"
    start: int
    end: int
    digits: str  # the number as written ("" for a placeholder)
    digits_start: int
    digits_end: int


def refs(text: str) -> Iterator[Ref]:
    """Every tag, placeholder and mention of `text`, in order."""
    for match in _SCAN.finditer(_lowered(text)):
        start, end = match.span()
        kind = match.lastgroup
        if kind == "num":
            a, b = match.span("num")
            yield Ref("mention", start, b, text[a:b], a, b)
        elif kind == "tag":
            a, b = match.span("tag")
            yield Ref("tag", start - 1, end, text[a:b], a, b)
        else:
            yield Ref("placeholder", start - 1, end, "", end, end)


def _lowered(text: str) -> str:
    """`text` with ASCII letters lowered and every character where it was."""
    low = text.lower()
    if len(low) != len(text):  # a few non-ASCII letters lower to two characters
        low = text.translate(_ASCII_LOWER)
    return low


_TAG = re.compile(r"<image-([0-9]+)>")
# What `refs` reads as a placeholder, found alone: no match of the scan can hold a '<', so a
# placeholder is never inside another reference.
_PLACEHOLDER = re.compile(r"<image(?:here)?>", re.IGNORECASE | re.ASCII)

# No image list comes near a billion images; longer numbers are refused before int() sees them
# (int() itself refuses strings of more than 4300 digits with a ValueError).
_MAX_DIGITS = 9
TOO_LARGE = 10**_MAX_DIGITS  # what `mentions`/`introductions` report for a longer number

MMDU_PLACEHOLDER = "<ImageHere>"
LLAVA_PLACEHOLDER = "<image>"


@dataclass(frozen=True, slots=True)
class ParsedTurn:
    """One turn in canonical form, with the image numbers it introduces and mentions."""

    text: str
    introduces: tuple[int, ...]
    mentions: tuple[int, ...]


def tag(number: int) -> str:
    return f"<image-{number}>"


def parse_dialogue(texts: Sequence[str], n_images: int) -> list[ParsedTurn]:
    """Turn source texts into canonical turns and check every reference against `n_images`.

    The k-th placeholder of the dialogue becomes ``<image-k>``; explicit tags keep their number.
    Raises `SkipRecord` when a reference is out of range, an image is introduced twice or never,
    images are introduced out of order, or a mention comes before the turn introducing its image.
    """
    placeholders = 0
    introduced_in: dict[int, int] = {}
    turns: list[ParsedTurn] = []
    for turn_index, text in enumerate(texts):
        where = f"turn {turn_index + 1}"
        pieces: list[str] = []
        introduces: list[int] = []
        mentioned: list[int] = []
        position = 0
        for ref in refs(text):
            pieces.append(text[position : ref.start])
            position = ref.end
            if ref.kind == "mention":
                mentioned.append(_in_list(ref.digits, n_images, f"{where}: mention"))
                pieces.append(text[ref.start : ref.end])
                continue
            if ref.kind == "placeholder":
                placeholders += 1
                number = _in_list(str(placeholders), n_images, f"{where}: placeholder")
            else:
                number = _in_list(ref.digits, n_images, f"{where}: image tag")
            if number in introduced_in:
                raise SkipRecord(
                    "image_introduced_twice",
                    f"image {number} is introduced twice (turns {introduced_in[number] + 1} "
                    f"and {turn_index + 1})",
                )
            introduced_in[number] = turn_index
            introduces.append(number)
            pieces.append(tag(number))
        pieces.append(text[position:])
        turns.append(ParsedTurn("".join(pieces), tuple(introduces), tuple(mentioned)))
    _check_introductions(turns, introduced_in, n_images)
    return turns


def _in_list(digits: str, n_images: int, what: str) -> int:
    """The image number `digits` spells, or `SkipRecord` when the list has no such image."""
    significant = digits.lstrip("-").lstrip("0")
    if len(significant) <= _MAX_DIGITS:
        number = int(digits)
        if 1 <= number <= n_images:
            return number
    shown = digits if len(digits) <= 24 else f"{digits[:12]}... ({len(digits)} characters)"
    raise SkipRecord("tag_past_images", f"{what} {shown} is outside the image list (1..{n_images})")


def _check_introductions(
    turns: Sequence[ParsedTurn], introduced_in: dict[int, int], n_images: int
) -> None:
    order = [n for turn in turns for n in turn.introduces]
    if order != sorted(order):
        raise SkipRecord("images_out_of_order", f"images are introduced in the order {order[:12]}")
    for number in range(1, n_images + 1):
        if number not in introduced_in:
            raise SkipRecord(
                "image_never_introduced",
                f"image {number} of {n_images} has no placeholder or tag in the dialogue",
            )
    for turn_index, turn in enumerate(turns):
        for number in turn.mentions:
            if introduced_in[number] > turn_index:
                raise SkipRecord(
                    "image_never_introduced",
                    f"turn {turn_index + 1} mentions image {number} before turn "
                    f"{introduced_in[number] + 1} introduces it",
                )


def reindex(text: str, offset: int) -> str:
    """Shift every tag and mention of a canonical text by `offset`, in one pass.

    Mentions keep their spelling (case, separator, zero padding): ``Image 2`` + 3 -> ``Image 5``,
    ``Image_02`` + 1 -> ``Image_03``. Raises `ValueError` for a text that is not canonical (a
    placeholder, a number below 1) or a shift that would take a number below 1: splicing only
    ever meets those through a bug, and a wrong number must not be written silently.
    """
    return reindex_mentions(text, offset)[0]


def reindex_mentions(text: str, offset: int) -> tuple[str, list[tuple[str, str]] | None]:
    """`reindex`, and the digits of every prose mention before and after, in order.

    What a tokenizer sees changes only in those digits (tags are removed before counting), so a
    tokenizer that pre-tokenizes a digit run on its own can update a known count from them
    alone. The list is None when a mention's digits are followed by '<' (once a tag there is
    removed, they could run into digits after it) or by a non-ASCII character (one that a newer
    Unicode than Python's counts as a digit): such a text must be counted again.
    """
    pieces: list[str] = []
    changed: list[tuple[str, str]] = []
    countable = True
    position = 0
    shifted: dict[str, str] = {}  # a text names the same few images again and again
    for match in _SCAN.finditer(_lowered(text)):  # `refs`, without a Ref per match
        kind = match.lastgroup
        if kind == "placeholder":
            found = text[match.start() - 1 : match.end()]
            raise ValueError(f"placeholder {found!r} in a text to re-index: not canonical")
        start, end = match.span(kind)
        digits = text[start:end]
        new = shifted.get(digits)
        if new is None:
            new = shifted[digits] = _shift(digits, offset)
        pieces += (text[position:start], new)
        position = end
        if kind == "num":
            changed.append((digits, new))
            after = text[end : end + 1]
            countable = countable and after != "<" and after.isascii()
    pieces.append(text[position:])
    return "".join(pieces), changed if countable else None


def _shift(digits: str, offset: int) -> str:
    old = _number(digits)
    new = old + offset
    if old == TOO_LARGE:
        raise ValueError(f"image number of {len(digits)} characters: not a canonical text")
    if old < 1 or new < 1:
        raise ValueError(f"re-indexing image {digits} by {offset} gives {new}: numbers start at 1")
    width = len(digits) if digits.startswith("0") else 0
    return str(new).zfill(width)


def _number(digits: str) -> int:
    """The number `digits` spell; one of more than `_MAX_DIGITS` digits reads as `TOO_LARGE`."""
    if len(digits) <= _MAX_DIGITS:
        return int(digits)
    if len(digits.lstrip("-").lstrip("0")) > _MAX_DIGITS:
        return TOO_LARGE
    return int(digits)


def strip_tags(text: str) -> str:
    """The text a tokenizer sees: canonical tags removed, mentions kept."""
    return _TAG.sub("", text)


def introductions(text: str) -> list[int]:
    """Image numbers introduced by a canonical text, in order (never raises, see `TOO_LARGE`)."""
    return [_number(n) for n in _TAG.findall(text)]


def mentions(text: str) -> list[int]:
    """Image numbers mentioned in prose, in order (never raises, see `TOO_LARGE`)."""
    return [_number(digits) for digits in _MENTION.findall(_lowered(text))]


def render(text: str, style: str) -> str:
    """Render a canonical text in a string style: ``canonical``, ``mmdu`` or ``llava``."""
    if style == "canonical":
        return text
    if style == "mmdu":
        return _TAG.sub(MMDU_PLACEHOLDER, text)
    if style == "llava":
        return _TAG.sub(LLAVA_PLACEHOLDER, text)
    if style == "openai":
        raise ValueError("the openai style is content parts, not a string: use render_parts")
    raise ValueError(f"unknown text style {style!r} (expected canonical, mmdu or llava)")


def render_parts(text: str, image_url: Callable[[int], str]) -> list[dict]:
    """Render a canonical text as OpenAI chat content parts, images interleaved in place."""
    parts: list[dict] = []
    position = 0
    for match in _TAG.finditer(text):
        if match.start() > position:
            parts.append({"type": "text", "text": text[position : match.start()]})
        url = image_url(_number(match.group(1)))
        parts.append({"type": "image_url", "image_url": {"url": url}})
        position = match.end()
    if position < len(text):
        parts.append({"type": "text", "text": text[position:]})
    return parts


def parse(text: str, style: str, first: int = 1) -> str:
    """Inverse of `render`: placeholders become tags numbered from `first` (canonical: as is)."""
    if style == "canonical":
        return text
    if style not in ("mmdu", "llava"):
        raise ValueError(f"unknown text style {style!r}")
    numbers = itertools.count(first)
    return _PLACEHOLDER.sub(lambda _: tag(next(numbers)), text)
