"""One record of a JSON file: `Record` (where it stands, its key, its value or why not), and
`decode`, which parses one element alone and within the limits, so that one bad element is one
reject and the elements around it survive (orjson, strict: NaN and Infinity are errors).
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from compose.model import SkipRecord
from compose.sources.jsonscan import leading_ws, longest_string, nesting_depth, string_end
from compose.sources.limits import DEFAULT_LIMITS, Limits


class Record(NamedTuple):
    """One top-level element: its position, its key (object layout) and its value or why not."""

    index: int
    offset: int
    key: str | None
    value: object  # the parsed value, or a SkipRecord("bad_json" | "too_large", ...)


def decode(
    raw: bytes, *, keyed: bool = False, limits: Limits = DEFAULT_LIMITS, check_depth: bool = True
) -> tuple[str | None, object]:
    """Parse one element: (key, value), or (key if known, SkipRecord) when it is bad or too big.

    `keyed` elements are object members, ``"key": value``. `check_depth=False` when the caller
    already knows the element nests within the limit.
    """
    if len(raw) > limits.max_record_bytes:
        return None, too_large(len(raw), limits)
    key = leading_key(raw) if keyed else None
    # Cheap bound first: nesting cannot exceed the number of opening brackets.
    if check_depth and raw.count(b"[") + raw.count(b"{") > limits.max_depth:
        depth = nesting_depth(raw)
        if depth > limits.max_depth:
            detail = f"nesting depth {depth} is over the limit of {limits.max_depth}"
            return key, SkipRecord("too_large", detail)
    if len(raw) > limits.max_string_bytes:
        longest = longest_string(raw)
        if longest > limits.max_string_bytes:
            detail = f"a string of {longest} bytes is over the limit of {limits.max_string_bytes}"
            return key, SkipRecord("too_large", detail)
    try:
        if not keyed:
            return None, orjson.loads(raw)
        member = orjson.loads(b"{" + raw + b"}")
    except orjson.JSONDecodeError as error:
        return key, SkipRecord("bad_json", str(error))
    if len(member) != 1:
        return key, SkipRecord("bad_json", f"expected one 'key: value' member, got {len(member)}")
    ((key, value),) = member.items()
    return key, value


def leading_key(raw: bytes) -> str | None:
    """The key of an object member, read from its first string, when that string is valid."""
    start = leading_ws(raw)
    if raw[start : start + 1] != b'"':
        return None
    try:
        key = orjson.loads(raw[start : string_end(raw, start) + 1])
    except orjson.JSONDecodeError:
        return None
    return key if isinstance(key, str) else None


def too_large(size: int, limits: Limits) -> SkipRecord:
    return SkipRecord(
        "too_large", f"record is {size} bytes, over the limit of {limits.max_record_bytes}"
    )


def is_bad_json(record: Record) -> bool:
    return isinstance(record.value, SkipRecord) and record.value.reason == "bad_json"
