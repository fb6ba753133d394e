"""Tell the layout of a JSON file from its first bytes: a top-level array (MMDU-45k), an object
keyed by id (the MMDU benchmark) or JSON lines, also when the first record is damaged.
"""

from __future__ import annotations

import io
from itertools import islice

from compose.sources.jsonscan import BOM, WS, balanced, leading_ws, string_end
from compose.sources.jsonsplit import BLOCK, split_container
from compose.sources.limits import DEFAULT_LIMITS

LAYOUTS = ("array", "object", "lines")


def first_byte(data: bytes) -> int | None:
    """Where the first value starts, past a BOM and whitespace; None in a blank file."""
    start = len(BOM) if data.startswith(BOM) else 0
    stripped = data[start:].lstrip(WS)
    return None if not stripped else len(data) - len(stripped)


def sniff_layout(head: bytes, name: str) -> str:
    """Tell the layout from the first bytes of a file; a file that is not JSON is a ValueError.

    ``[`` is an array. ``{`` is JSON lines when the first line holds one whole value and more
    follows, an object keyed by id when its first member's value is an object, and otherwise
    JSON lines (a file holding one record). A first line that is damaged (or a whole array)
    followed by a line opening an object is JSON lines too: only that first line is lost.
    """
    start = first_byte(head)
    if start is None:
        raise ValueError(f"{name}: the file is empty (no JSON value)")
    first = head[start : start + 1]
    newline = head.find(b"\n", start)
    more = newline != -1 and bool(head[newline:].strip())
    next_opens_object = more and head[newline:].lstrip(WS)[:1] == b"{"
    if first == b"[":
        whole_line = more and balanced(head[start:newline])
        return "lines" if whole_line and next_opens_object else "array"
    if first != b"{":
        if next_opens_object:
            return "lines"
        seen = head[start : start + 40]
        raise ValueError(f"{name}: not JSON: expected '[' or '{{' at byte {start}, saw {seen!r}")
    if more and balanced(head[start:newline]):
        return "lines"
    return "object" if _looks_keyed(head, start) else "lines"


_RECORD_FIELDS = {"conversations", "dialog", "messages"}  # a record's own keys, never ids


def _looks_keyed(head: bytes, start: int) -> bool:
    """An object keyed by id: its first member's value is an object, or (that member being
    damaged) one of the next few is, and no key is a field that only records have."""
    if _first_member_is_object(head, start):
        return True
    members = split_container(io.BytesIO(), head, start + 1, True, DEFAULT_LIMITS, BLOCK)
    keys, objects = set(), 0
    for member in islice(members, 16):
        keys.add(member.key)
        objects += isinstance(member.value, dict)
    return objects > 0 and not keys & _RECORD_FIELDS


def _first_member_is_object(head: bytes, start: int) -> bool:
    """Whether the value of the first member of the object at `start` is itself an object."""
    key = start + 1 + leading_ws(head[start + 1 :])
    if head[key : key + 1] != b'"':
        return False
    rest = head[string_end(head, key) + 1 :].lstrip(WS)
    return rest[:1] == b":" and rest[1:].lstrip(WS)[:1] == b"{"
