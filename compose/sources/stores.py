"""Image stores: a folder or a zip that a dialogue's image paths resolve in, read as untrusted.

A path as written is normalised before it touches the file system: ``\\`` counts as ``/``, a
leading ``/`` means the store root (the MMDU benchmark writes ``/mmdu_pics/NAME.jpg``), ``.``
and ``..`` are folded, and anything that would leave the root (``..`` past it, a Windows drive
or UNC path, a URL, a symlink out of a folder, a zip entry named with ``..``) is refused with
``path_outside_root``. When the first component of a path is the store's own name
(``mmdu-45k_pics/x.jpg`` against ``mmdu-45k_pics.zip`` holding ``x.jpg`` at its top), the
path is tried as written first, then without that component.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from compose.model import SkipRecord
from compose.sources.limits import DEFAULT_LIMITS, Limits

__all__ = ["DirStore", "ImageInfo", "ImageStore", "ZipStore", "normalise", "open_store"]

IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG includes MPO
_DRIVE = re.compile(r"^[A-Za-z]:")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the catalog keeps of an image; `member` is its normalised name inside the store."""

    member: str
    bytes: int
    width: int
    height: int
    format: str  # Pillow's format name: JPEG, PNG, ...
    sha256: str  # hex digest of the file bytes
    crc32: int  # CRC-32 of the file bytes: what a run checks them against (see `read`)


class ImageStore(Protocol):
    root: str

    def resolve(self, path: str) -> str: ...

    def read(self, member: str, crc32: int | None = None) -> bytes: ...

    def probe(self, member: str, *, decode: bool = False) -> ImageInfo: ...

    def close(self) -> None: ...


def open_store(path: str, limits: Limits = DEFAULT_LIMITS) -> ImageStore:
    """A folder becomes a `DirStore`, a zip file a `ZipStore`; anything else is a ValueError."""
    if os.path.isdir(path):
        return DirStore(path, limits)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such image folder or zip")
    store = ZipStore(path, limits)
    store._open()  # a file that only looks like a zip fails here, naming itself
    return store


def normalise(path: str) -> str:
    """The member name a path as written stands for, relative to the store root.

    Raises ``path_outside_root`` for a path that leaves the root, ``missing_image`` for one
    that names no file at all.
    """
    if not isinstance(path, str) or not path.strip():
        raise SkipRecord("missing_image", f"image path {path!r} names no file")
    if "\x00" in path:
        raise SkipRecord("path_outside_root", f"image path {path!r} holds a NUL byte")
    if path.startswith("\\\\") or _DRIVE.match(path):
        raise SkipRecord("path_outside_root", f"{path!r} is an absolute Windows path")
    if _URL.match(path):
        raise SkipRecord("path_outside_root", f"{path!r} is a URL, not a path in the store")
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            raise SkipRecord("path_outside_root", f"{path!r} leaves the image root through '..'")
    if not parts:
        raise SkipRecord("missing_image", f"image path {path!r} names no file")
    return "/".join(parts)


def _variants(member: str, store_name: str) -> list[str]:
    head, _, rest = member.partition("/")
    return [member, rest] if rest and head == store_name else [member]


class DirStore:
    """Images in a folder. Symlinks are followed only while they stay inside the root."""

    __slots__ = ("root", "limits", "_real", "_name")

    def __init__(self, root: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.limits = limits
        self._real = os.path.realpath(root)
        self._name = Path(os.path.normpath(root)).name

    def resolve(self, path: str) -> str:
        for member in _variants(normalise(path), self._name):
            full = self._inside(member, path)
            if os.path.isfile(full):
                return member
        raise SkipRecord("missing_image", f"{path!r} is not in the image folder {self.root}")

    def read(self, member: str, crc32: int | None = None) -> bytes:
        """The bytes of an image; with `crc32` (the catalog's), also proof that they are the
        bytes ingest probed, or `ImageChanged`."""
        full = self._inside(normalise(member), member)
        try:
            info = os.stat(full)
            if not stat.S_ISREG(info.st_mode):
                raise SkipRecord("missing_image", f"{member!r} in {self.root} is not a file")
            _check_size(member, info.st_size, self.limits)
            with open(full, "rb") as file:  # a buffer of the size stat says, not of the limit
                data = file.read(info.st_size + 1)
                if len(data) > info.st_size:  # it grew since: read it to the limit, as before
                    data += file.read(self.limits.max_image_bytes + 1 - len(data))
        except FileNotFoundError:
            raise SkipRecord("missing_image", f"{member!r} is not in {self.root}") from None
        except OSError as error:
            raise SkipRecord("missing_image", f"{member!r} in {self.root}: {error}") from None
        _check_size(member, len(data), self.limits)
        if crc32 is not None:
            _check_crc(self.root, member, zlib.crc32(data), crc32)
        return data

    def probe(self, member: str, *, decode: bool = False) -> ImageInfo:
        return probe_bytes(member, self.read(member), self.limits, decode=decode)

    def close(self) -> None:
        pass

    def _inside(self, member: str, written: str) -> str:
        """The real file of a member; a symlink (anywhere on the way) leading out is refused."""
        full = os.path.join(self._real, member)
        real = os.path.realpath(full)
        if real != self._real and not real.startswith(self._real + os.sep):
            raise SkipRecord(
                "path_outside_root", f"{written!r} leads outside {self.root} (to {real})"
            )
        return real


class ZipStore:
    """Images in a zip, read in place. Opened lazily, once per process, so a store can be sent
    to worker processes (it pickles as its path and limits)."""

    __slots__ = ("root", "limits", "_name", "_zip", "_pid", "_index", "_unsafe")

    def __init__(self, root: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.limits = limits
        self._name = Path(root).name.removesuffix(".zip").removesuffix(".ZIP")
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None
        self._index: dict[str, zipfile.ZipInfo] = {}
        self._unsafe: dict[str, str] = {}  # folded name -> raw name of entries that escape

    def __reduce__(self) -> tuple:
        return (ZipStore, (self.root, self.limits))

    def resolve(self, path: str) -> str:
        self._open()
        for member in _variants(normalise(path), self._name):
            if member in self._index:
                return member
            if member in self._unsafe:
                raise SkipRecord(
                    "path_outside_root",
                    f"{path!r}: the zip entry {self._unsafe[member]!r} points outside the archive",
                )
        raise SkipRecord("missing_image", f"{path!r} is not in the zip {self.root}")

    def read(self, member: str, crc32: int | None = None) -> bytes:
        """The bytes of an image, checked by zipfile against the CRC-32 of the zip's directory;
        with `crc32` (the catalog's), that CRC must be it, or `ImageChanged`."""
        archive = self._open()
        info = self._index.get(member)
        if info is None:
            raise SkipRecord("missing_image", f"{member!r} is not in the zip {self.root}")
        if crc32 is not None:
            _check_crc(self.root, member, info.CRC, crc32)
        _check_size(member, info.file_size, self.limits)
        try:
            with archive.open(info) as file:
                data = file.read(self.limits.max_image_bytes + 1)
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            OSError,
            RuntimeError,
            ValueError,
        ) as error:
            raise SkipRecord(
                "undecodable_image", f"{member!r} in {self.root}: damaged zip entry: {error}"
            ) from None
        except NotImplementedError as error:  # an unsupported compression method
            raise SkipRecord("undecodable_image", f"{member!r}: {error}") from None
        _check_size(member, len(data), self.limits)
        if len(data) != info.file_size:
            raise SkipRecord(
                "undecodable_image",
                f"{member!r} in {self.root}: the zip declares {info.file_size} bytes "
                f"but holds {len(data)}",
            )
        return data

    def probe(self, member: str, *, decode: bool = False) -> ImageInfo:
        data = self.read(member)  # zipfile checked the bytes against info.CRC
        crc32 = self._index[member].CRC
        return probe_bytes(member, data, self.limits, decode=decode, crc32=crc32)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        self._zip = None

    def _open(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            try:  # a forked copy never shares a file position
                self._zip = zipfile.ZipFile(self.root)
            except (
                zipfile.BadZipFile,
                OSError,
                EOFError,
                ValueError,
                NotImplementedError,
            ) as error:
                raise ValueError(
                    f"{self.root}: an image store must be a folder or a .zip file "
                    f"(unreadable as a zip: {error})"
                ) from None
            self._pid = os.getpid()
            self._index, self._unsafe = _zip_index(self._zip)
        return self._zip


def _zip_index(archive: zipfile.ZipFile) -> tuple[dict[str, zipfile.ZipInfo], dict[str, str]]:
    """Safe entries by name; unsafe ones (zip slip) by the name they would land on if clamped
    at the root, so a path asking for them is told why it is refused."""
    index: dict[str, zipfile.ZipInfo] = {}
    unsafe: dict[str, str] = {}
    for info in archive.infolist():
        if not info.filename or info.is_dir():  # a nameless entry can be asked for by no path
            continue
        raw = info.filename
        parts = _DRIVE.sub("", raw).replace("\\", "/").split("/")
        if ".." in parts or raw.startswith(("/", "\\")) or _DRIVE.match(raw):
            unsafe[_clamped(parts)] = raw
        else:
            index["/".join(p for p in parts if p not in ("", "."))] = info
    return index, unsafe


def _clamped(parts: list[str]) -> str:
    kept: list[str] = []
    for part in parts:
        if part == "..":
            if kept:
                kept.pop()
        elif part not in ("", "."):
            kept.append(part)
    return "/".join(kept)


def _check_size(member: str, size: int, limits: Limits) -> None:
    if size > limits.max_image_bytes:
        raise SkipRecord(
            "image_too_large",
            f"{member!r} is {size} bytes, over the limit of {limits.max_image_bytes}",
        )


class ImageChanged(ValueError):
    """An image's bytes are not those the catalog was made from: the store changed since."""


def _check_crc(root: str, member: str, found: int, expected: int) -> None:
    if found != expected:
        raise ImageChanged(
            f"{member!r} in {root} changed since the catalog was made (CRC-32 {found:08x}, "
            f"the catalog says {expected:08x}): make the catalog again (`compose ingest "
            "--force`, or the same `compose --source` run with --force)"
        )


def probe_bytes(
    member: str, data: bytes, limits: Limits, *, decode: bool = False, crc32: int | None = None
) -> ImageInfo:
    """Size and format from the image header (Pillow), checked against the limits before any
    decoding. A JPEG or PNG cut short is told from its structure, without decoding (see
    `_cut_short`); the rarer formats are decoded whole. `decode=True` decodes every image,
    which also catches damage inside a JPEG or PNG that leaves its structure whole."""
    _check_size(member, len(data), limits)
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                width, height = image.size
                kind = image.format or "unknown"
                if width * height > limits.max_image_pixels:
                    raise SkipRecord(
                        "image_too_large",
                        f"{member!r} is {width}x{height} pixels, over the limit of "
                        f"{limits.max_image_pixels}",
                    )
                if decode or kind not in ("JPEG", "MPO", "PNG"):
                    image.load()
                elif _cut_short(kind, data):
                    raise SkipRecord(
                        "undecodable_image",
                        f"{member!r} is cut short: its {kind} data has no end "
                        f"({len(data)} bytes; a truncated download or copy)",
                    )
    except SkipRecord:
        raise
    except Image.DecompressionBombError as error:
        raise SkipRecord("image_too_large", f"{member!r}: {error}") from None
    except Exception as error:  # noqa: BLE001  untrusted bytes: any decoder failure is a reject
        # Pillow names the BytesIO it read by its address: keep rejects.jsonl reproducible.
        message = _ADDRESS.sub("0x…", str(error))
        detail = f"{member!r} is not a readable image: {type(error).__name__}: {message}"
        raise SkipRecord("undecodable_image", detail) from None
    return ImageInfo(
        member=member,
        bytes=len(data),
        width=width,
        height=height,
        format=kind,
        sha256=digest,
        crc32=zlib.crc32(data) if crc32 is None else crc32,
    )


_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_JPEG_END = b"\xff\xd9"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: empty, with its fixed CRC


def _cut_short(kind: str, data: bytes) -> bool:
    """Whether a JPEG has no end-of-image marker after its first scan, or a PNG no IEND chunk
    after its header. Cheap (no pixel is decoded) and what a cut-off download looks like."""
    if kind == "PNG":
        return data.find(_PNG_END, 8) < 0
    scan = _jpeg_scan(data)
    return scan < 0 or data.find(_JPEG_END, scan) < 0


def _jpeg_scan(data: bytes) -> int:
    """Offset of the first start-of-scan marker of the main image, walking the marker segments
    (an EXIF thumbnail inside APP1 has markers of its own, skipped with its segment); -1 when
    the walk runs off the data."""
    position = 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:  # stray bytes between segments: decoders skip them too
            position = data.find(b"\xff", position)
            if position < 0:
                return -1
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0xDA:
            return position
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return -1
