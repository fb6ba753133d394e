"""Cut a byte stream into records without loading it: a top-level array or object at the
scanner's top-level commas, block by block, and JSON lines at newlines.

A record over the size limit is scanned through and reported, never buffered. A damaged record
in an array or object is skipped by resynchronising on the separator between records (see
`_ContainerSplitter`), so the records after it survive.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import BinaryIO

import numpy as np

from compose.model import SkipRecord
from compose.sources.jsonrecord import Record, decode, is_bad_json, leading_key, too_large
from compose.sources.jsonscan import BOM, WS, Scanner, leading_ws, trailing_backslashes
from compose.sources.limits import Limits

BLOCK = 4 << 20  # bytes read per step


def split_container(
    stream: BinaryIO, head: bytes, start: int, keyed: bool, limits: Limits, block: int
) -> Iterator[Record]:
    """Cut a top-level array or object into elements; `start` is just past its opening bracket."""
    return iter(_ContainerSplitter(stream, head, start, keyed, limits, block))


class _ContainerSplitter:
    """The state of one array or object split, block by block.

    `buf` holds the bytes from absolute offset `base`; `elem` is where the pending element
    starts and `scanned` how far the scan has gone. An element over the size limit stops being
    buffered: it is scanned through and reported, never kept.

    Resynchronising: a stray quote or an unbalanced bracket shifts the scan for the rest of the
    file. So when an element fails to parse, outgrows the size limit or is cut off by the end of
    the input, the splitter looks inside it for the separator seen between the first two good
    records (e.g. ``},\n    {``). If that separator holds a newline followed by indentation,
    no valid string and no deeper nesting level can contain it: the bytes before it become one
    ``bad_json`` reject and splitting starts afresh after it. A minified file gives no such
    separator, and a damaged record there costs the rest of the file (as one reject).
    """

    def __init__(
        self, stream: BinaryIO, head: bytes, start: int, keyed: bool, limits: Limits, block: int
    ) -> None:
        self.stream, self.keyed, self.limits, self.block = stream, keyed, limits, block
        self.closer = "}" if keyed else "]"
        self.scanner = Scanner()
        self.buf, self.base = head[start:], start
        self.elem = self.scanned = start
        self.index = 0
        self.oversize = False
        self.deep = False  # whether the pending element may nest past the limit
        self.eof = False
        self.previous: bytes | None = None  # the last good element, to learn the separator
        self.separator: bytes | None = None
        self.after_comma = 0  # where, inside the separator, the next element starts

    def __iter__(self) -> Iterator[Record]:
        while True:
            buf = self.buf
            limit = len(buf) if self.eof else len(buf) - trailing_backslashes(buf)
            if limit > self.scanned - self.base:
                state = yield from self._scan(limit)
                if state == "done":
                    return
                if state == "restarted":
                    continue
            if self.eof:
                if (yield from self._end_of_input()):
                    continue
                return
            if not (yield from self._next_block()):
                continue

    def _scan(self, limit: int) -> Generator[Record, None, str]:
        begin = self.scanned - self.base
        region = np.frombuffer(self.buf, np.uint8, limit - begin, begin)
        cuts, end, deepest = self.scanner.scan(region)
        scanned = self.scanned
        end = None if end is None else end + scanned
        self.deep = self.deep or deepest > self.limits.max_depth
        for cut in cuts:
            cut += scanned
            if self.oversize:
                yield Record(self.index, self.elem, None, too_large(cut - self.elem, self.limits))
                self.oversize = False
            else:
                raw = self.buf[self.elem - self.base : cut - self.base]
                if not (cut == end and self.index == 0 and not raw.strip(WS)):  # `[]`, `{}`
                    record = _element(
                        raw, self.index, self.elem, self.keyed, self.limits,
                        last=cut == end, deep=self.deep,
                    )  # fmt: skip
                    if is_bad_json(record) and (yield from self._resync(raw, record)):
                        return "restarted"
                    self._learn(raw, record)
                    yield record
            self.elem = cut + 1
            self.index += 1
            self.deep = deepest > self.limits.max_depth
        if end is not None:
            rest = self.buf[end + 1 - self.base :]
            if rest.strip(WS) and (yield from self._resync_after_end(end)):
                return "restarted"
            yield from _trailing(self.stream, rest, end + 1, self.index, self.closer)
            return "done"
        self.scanned = self.base + limit
        return "scanning"

    def _next_block(self) -> Generator[Record, None, bool]:
        """Trim what is no longer needed and read on; False when it restarted instead."""
        base = self.base
        if self.oversize:
            self.buf, self.base = self.buf[self.scanned - base :], self.scanned
        elif self.scanned - self.elem > self.limits.max_record_bytes:
            raw = self.buf[self.elem - base : self.scanned - base]
            damaged = Record(self.index, self.elem, None, too_large(len(raw), self.limits))
            if (yield from self._resync(raw, damaged)):
                return False
            self.elem += leading_ws(raw)
            self.oversize = True
            self.buf, self.base = self.buf[self.scanned - base :], self.scanned
        else:
            self.buf, self.base = self.buf[self.elem - base :], self.elem
        chunk = self.stream.read(self.block)
        if chunk:
            self.buf += chunk
        else:
            self.eof = True
        return True

    def _end_of_input(self) -> Generator[Record, None, bool]:
        """The input ended before the closing bracket: the pending element is partial.
        True when a damaged record was skipped and scanning goes on."""
        if self.oversize:
            yield Record(
                self.index, self.elem, None, too_large(self.scanned - self.elem, self.limits)
            )
            return False
        raw = self.buf[self.elem - self.base :]
        lead = leading_ws(raw)
        if raw.strip(WS):
            detail = (
                f"the file ends inside this record (truncated input; no closing '{self.closer}')"
            )
        else:
            detail = f"the file ends before the closing '{self.closer}' (truncated input)"
        key = leading_key(raw) if self.keyed else None
        record = Record(self.index, self.elem + lead, key, SkipRecord("bad_json", detail))
        if raw.strip(WS) and (yield from self._resync(raw, record)):
            return True
        yield record
        return False

    def _learn(self, raw: bytes, record: Record) -> None:
        """Learn the separator from the first two good elements, if it is safe to resync on."""
        if self.separator is not None:
            return
        if isinstance(record.value, SkipRecord):
            self.previous = None
            return
        if self.previous is not None:
            body = self.previous.rstrip(WS)
            # Not its last byte: a record cut short ends in anything, and must still be found.
            tail = self.previous[len(body) :]  # the whitespace after it
            separator = tail + b"," + raw[: leading_ws(raw) + 1]
            indent = separator[separator.rfind(b"\n") + 1 : -1]
            one_per_line = b"\n" not in body
            if b"\n" in separator and (indent or one_per_line):
                self.separator, self.after_comma = separator, len(tail) + 1
        self.previous = raw

    def _resync(self, raw: bytes, record: Record) -> Generator[Record, None, bool]:
        """Report `raw` (the pending element) as damaged up to the next record start, and
        restart there; False (nothing yielded) when no separator lies inside it."""
        at = raw.find(self.separator, 1) if self.separator is not None else -1
        if at < 0:
            return False
        restart = self.elem + at + self.after_comma
        detail = record.value.detail if isinstance(record.value, SkipRecord) else ""
        detail = f"{detail}; damaged record: reading resumes at byte {restart}"
        lead = leading_ws(raw)
        key = leading_key(raw) if self.keyed else None
        yield Record(self.index, self.elem + lead, key, SkipRecord("bad_json", detail))
        self.index += 1
        self._restart(restart)
        return True

    def _resync_after_end(self, closer: int) -> Generator[Record, None, bool]:
        """The top closed early (damage before it) yet more follows: find the next record."""
        tail = self.buf[closer - self.base :]
        at = tail.find(self.separator) if self.separator is not None else -1
        if at < 0:
            return False
        restart = closer + at + self.after_comma
        if at > 0:  # bytes between the early close and the next record are lost: say so
            detail = f"the array closes early and data follows; resuming at byte {restart}"
            yield Record(self.index, closer + 1, None, SkipRecord("bad_json", detail))
            self.index += 1
        self._restart(restart)
        return True

    def _restart(self, position: int) -> None:
        self.elem = self.scanned = position
        self.scanner = Scanner()
        self.oversize = self.deep = False
        self.previous = None


def _element(
    raw: bytes, index: int, start: int, keyed: bool, limits: Limits, *, last: bool, deep: bool
) -> Record:
    lead = leading_ws(raw)
    offset = start + lead
    if lead == len(raw):
        why = "a trailing comma before the closing bracket" if last else "an empty element (',,')"
        return Record(index, offset, None, SkipRecord("bad_json", f"{why}"))
    key, value = decode(raw, keyed=keyed, limits=limits, check_depth=deep)
    return Record(index, offset, key, value)


def _trailing(
    stream: BinaryIO, rest: bytes, offset: int, index: int, closer: str
) -> Iterator[Record]:
    """After the closing bracket only whitespace may follow; anything else is reported once."""
    while True:
        stripped = rest.lstrip(WS)
        if stripped:
            at = offset + len(rest) - len(stripped)
            detail = f"unexpected data after the closing '{closer}': {stripped[:40]!r}"
            yield Record(index, at, None, SkipRecord("bad_json", detail))
            return
        offset += len(rest)
        rest = stream.read(BLOCK)
        if not rest:
            return


def split_lines(stream: BinaryIO, head: bytes, limits: Limits, block: int) -> Iterator[Record]:
    """JSON lines: one record per non-blank line; a raw newline can never sit inside a string."""
    buf, base = head, 0
    if buf.startswith(BOM):
        buf, base = buf[len(BOM) :], len(BOM)
    index = 0
    skipping: int | None = None  # start of an over-long line being skipped
    eof = False
    while True:
        lines = buf.split(b"\n")
        tail = lines.pop() if not eof else None
        for line in lines:
            if skipping is not None:
                yield Record(index, skipping, None, too_large(base - skipping + len(line), limits))
                index += 1
                skipping = None
            else:
                lead = leading_ws(line)
                if lead < len(line):
                    key, value = decode(line, keyed=False, limits=limits)
                    yield Record(index, base + lead, key, value)
                    index += 1
            base += len(line) + 1
        if eof:
            return
        assert tail is not None
        if skipping is None and len(tail) > limits.max_record_bytes:
            skipping = base + leading_ws(tail)
        if skipping is not None:
            base += len(tail)
            tail = b""
        chunk = stream.read(block)
        if not chunk:
            eof = True
            if skipping is not None:
                yield Record(index, skipping, None, too_large(base - skipping, limits))
                return
        buf = tail + chunk
