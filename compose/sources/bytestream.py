"""A dialogue file as bytes, local or remote (an fsspec URL), gzip inflated as it is read.

Damage inside a gzip stream (the file cut short, a bad CRC, bad deflate data) ends the stream
instead of raising, so every record before it is kept; `jsonstream` then says where it stopped.
Byte offsets downstream count in the decompressed stream.
"""

from __future__ import annotations

import io
import zlib
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
_INFLATE_CHUNK = 1 << 16  # compressed bytes inflated per step


def open_bytes(path: str) -> BinaryIO:
    """Open a file for reading bytes; a gzip stream (by its magic bytes) is decompressed."""
    if "://" in path:
        import fsspec

        raw = fsspec.open(path, "rb").open()
    else:
        raw = open(path, "rb")
    magic = raw.read(2)
    raw.seek(0)
    if magic == GZIP_MAGIC:
        return Inflated(raw)  # type: ignore[return-value]
    return raw


class Inflated(io.RawIOBase):
    """Decompresses a gzip stream (one member or several) as it is read. Damage (the file cut
    short, a bad CRC, bad deflate data) ends the stream instead of raising, so every record
    before it is kept; `damage` then says what happened and where."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._inflate = zlib.decompressobj(wbits=31)
        self._pending = bytearray()  # decompressed, not yet handed out
        self._done = False
        self.damage: str | None = None
        self.position = 0  # decompressed bytes handed out

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            self._fill()
        size = len(self._pending) if size < 0 else size
        data = bytes(self._pending[:size])
        del self._pending[:size]
        self.position += len(data)
        return data

    def _fill(self) -> None:
        chunk = self._raw.read(_INFLATE_CHUNK)
        if not chunk:
            self._done = True
            if not self._inflate.eof:
                self._damaged("the file ends before the gzip stream does (truncated)")
            return
        try:
            self._salvage(chunk)
        except zlib.error as error:
            self._done = True
            self._damaged(f"bad gzip data: {error}")

    def _salvage(self, chunk: bytes) -> None:
        """Inflate `chunk` into the pending bytes; on damage, first keep the output of every
        byte before it (zlib drops the output of a call that fails), then raise."""
        saved = self._inflate.copy()
        try:
            self._pending += self._inflated(chunk)
        except zlib.error:
            self._inflate = saved
            if len(chunk) <= 64:
                raise
            half = len(chunk) // 2
            self._salvage(chunk[:half])
            self._salvage(chunk[half:])

    def _inflated(self, chunk: bytes) -> bytes:
        out = bytearray()
        while chunk:
            if self._inflate.eof:  # the next member, or padding after the last one
                if not chunk.strip(b"\x00"):
                    break
                self._inflate = zlib.decompressobj(wbits=31)
            out += self._inflate.decompress(chunk)
            chunk = self._inflate.unused_data
        return bytes(out)

    def _damaged(self, what: str) -> None:
        at = self.position + len(self._pending)
        self.damage = f"the gzip stream is damaged after byte {at} of its data: {what}"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # what io.TextIOWrapper and friends read through
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()
