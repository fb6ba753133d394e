"""Where the structure of a JSON text is, found with numpy as simdjson's stage 1 does.

Vectorised compares over each block find the bytes that can matter (quotes, backslashes,
brackets, commas); escaped quotes are dropped, quote parity tells which bytes stand outside
strings, and a running bracket depth finds the commas between top-level elements. The splitter
cuts records there; the limits read nesting depth and string lengths here before any parse.
"""

from __future__ import annotations

import numpy as np

PIECE = 1 << 18  # bytes per vectorised compare: small enough to stay in cache
BOM = b"\xef\xbb\xbf"
WS = b" \t\r\n"

QUOTE, BACKSLASH, COMMA = 0x22, 0x5C, 0x2C
OPENERS = (0x5B, 0x7B)  # [ {
CLOSERS = (0x5D, 0x7D)  # ] }


class Scanner:
    """Carries string and depth state across blocks; finds the cuts between top-level elements.

    A block handed to `scan` never ends inside a run of backslashes (the caller holds such a
    tail back), so whether a quote is escaped is always decided inside one block.
    """

    __slots__ = ("in_string", "depth", "_work", "_mask", "_mask2")

    def __init__(self, depth: int = 1) -> None:
        self.in_string = False
        self.depth = depth
        self._work = np.empty(PIECE, np.uint8)
        self._mask = np.empty(PIECE, np.bool_)
        self._mask2 = np.empty(PIECE, np.bool_)

    def candidates(self, a: np.ndarray) -> np.ndarray:
        """Positions of bytes that may be structural: `"` `\\` `[` `]` `{` `}` `,` (and `|`)."""
        found = []
        for begin in range(0, len(a), PIECE):
            x = a[begin : begin + PIECE]
            n = len(x)
            work, mask, mask2 = self._work[:n], self._mask[:n], self._mask2[:n]
            # [ \ ] { | } all map into 0x7B..0x7D once bit 0x20 is set: one range test for six.
            np.bitwise_or(x, 0x20, out=work)
            np.subtract(work, 0x7B, out=work)
            np.less(work, 3, out=mask)
            np.equal(x, QUOTE, out=mask2)
            np.logical_or(mask, mask2, out=mask)
            np.equal(x, COMMA, out=mask2)
            np.logical_or(mask, mask2, out=mask)
            idx = np.flatnonzero(mask)
            if begin:
                idx += begin
            found.append(idx)
        if len(found) == 1:
            return found[0]
        return np.concatenate(found) if found else np.empty(0, np.intp)

    def quotes(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The `candidates`, their bytes, and which of them are quotes that are not escaped."""
        pos = self.candidates(a)
        ch = a[pos]
        quote = ch == QUOTE
        unmark_escaped(a, pos, ch, quote)
        return pos, ch, quote

    def structure(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Structural bytes outside strings: positions, depth after each, closer and comma flags.

        Updates `in_string` and `depth` so the next block continues where this one stopped.
        """
        pos, ch, quote = self.quotes(a)
        parity = np.cumsum(quote, dtype=np.int64)
        if self.in_string:
            parity += 1
        opener = (ch == OPENERS[0]) | (ch == OPENERS[1])
        closer = (ch == CLOSERS[0]) | (ch == CLOSERS[1])
        comma = ch == COMMA
        keep = ((parity & 1) == 0) & (opener | closer | comma)
        sclose = closer[keep]
        depth = np.cumsum(opener[keep].astype(np.int64) - sclose)
        depth += self.depth
        if len(pos):
            self.in_string = bool(parity[-1] & 1)
        if len(depth):
            self.depth = int(depth[-1])
        return pos[keep], depth, sclose, comma[keep]

    def scan(self, a: np.ndarray) -> tuple[list[int], int | None, int]:
        """Cut positions (top-level commas, then the closing bracket), where the top ends, and
        the deepest nesting seen (so records of a shallow block skip their own depth check)."""
        spos, depth, sclose, scomma = self.structure(a)
        deepest = int(depth.max()) - 1 if len(depth) else 0
        cuts = spos[scomma & (depth == 1)]
        ends = np.flatnonzero(sclose & (depth <= 0))
        if not len(ends):
            return cuts.tolist(), None, deepest
        end = int(spos[ends[0]])
        return cuts[cuts < end].tolist() + [end], end, deepest


def unmark_escaped(a: np.ndarray, pos: np.ndarray, ch: np.ndarray, quote: np.ndarray) -> None:
    """Clear `quote` where a quote follows an odd run of backslashes (it is escaped)."""
    backslash = ch == BACKSLASH
    if not backslash.any():
        return
    qidx = np.flatnonzero(quote)
    before = pos[qidx] - 1
    suspect = before >= 0
    suspect[suspect] = a[before[suspect]] == BACKSLASH
    if not suspect.any():
        return
    slashes = pos[backslash]
    run_start = np.ones(len(slashes), np.bool_)
    run_start[1:] = slashes[1:] != slashes[:-1] + 1
    run_id = np.cumsum(run_start) - 1
    first_of_run = slashes[run_start]
    ends = before[suspect]
    length = ends - first_of_run[run_id[np.searchsorted(slashes, ends)]] + 1
    quote[qidx[np.flatnonzero(suspect)[(length & 1) == 1]]] = False


def balanced(line: bytes) -> bool:
    """True when a line holds whole values only: depth back to 0, not inside a string."""
    scanner = Scanner(depth=0)
    a = np.frombuffer(line, np.uint8)
    _, depth, _, _ = scanner.structure(a)
    return len(depth) > 0 and not scanner.in_string and int(depth.min()) >= 0 and depth[-1] == 0


def nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text (strings skipped)."""
    _, depth, _, _ = Scanner(depth=0).structure(np.frombuffer(raw, np.uint8))
    return int(depth.max()) if len(depth) else 0


def longest_string(raw: bytes) -> int:
    """The byte length of the longest string of a JSON text, as encoded (an open one counts)."""
    a = np.frombuffer(raw, np.uint8)
    pos, _, quote = Scanner(depth=0).quotes(a)
    q = pos[quote]
    if len(q) % 2:
        q = np.append(q, len(raw))
    return int((q[1::2] - q[0::2] - 1).max()) if len(q) else 0


def trailing_backslashes(buf: bytes) -> int:
    """How many backslashes end `buf`: a block is scanned only up to them (see `Scanner`)."""
    n = 0
    while n < len(buf) and buf[len(buf) - 1 - n] == BACKSLASH:
        n += 1
    return n


def leading_ws(raw: bytes) -> int:
    return len(raw) - len(raw.lstrip(WS))


def string_end(data: bytes, start: int) -> int:
    """Where the string whose opening quote is at `start` closes (`len(data)` if it does not):
    for the few bytes read one at a time, before or outside the scan."""
    i = start + 1
    while i < len(data) and data[i] != QUOTE:
        i += 2 if data[i] == BACKSLASH else 1
    return i
