"""Image stores: path safety, missing and bad images, limits, zip size checks, worker processes."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from compose.model import SkipRecord
from compose.sources import Limits, open_store
from compose.sources.stores import DirStore, ImageChanged, ZipStore, normalise
from tests.corpus import write_mmdu45k, write_mmdu_bench


def image_bytes(width: int = 40, height: int = 30, kind: str = "PNG", seed: int = 0) -> bytes:
    pixels = bytes((seed + i * 7) % 256 for i in range(width * height * 3))
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, format=kind)
    return out.getvalue()


def skip_reason(call) -> str:
    with pytest.raises(SkipRecord) as caught:
        call()
    return caught.value.reason


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pics"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(image_bytes(seed=1))
    (root / "sub" / "b.jpg").write_bytes(image_bytes(kind="JPEG", seed=2))
    return root


# -- path rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "member"),
    [
        ("a.png", "a.png"),
        ("/a.png", "a.png"),  # a leading slash means the store root
        ("sub/b.jpg", "sub/b.jpg"),
        ("/sub/./b.jpg", "sub/b.jpg"),
        ("sub/../a.png", "a.png"),  # '..' that stays inside is folded
        ("sub\\b.jpg", "sub/b.jpg"),  # a Windows separator
        ("pics/a.png", "a.png"),  # the store's own name in front
        ("/pics/sub/b.jpg", "sub/b.jpg"),
    ],
)
def test_dir_store_resolves_paths_as_written(folder: Path, written: str, member: str) -> None:
    store = open_store(str(folder))
    assert isinstance(store, DirStore)
    assert store.resolve(written) == member
    assert store.read(member) == (folder / member).read_bytes()


@pytest.mark.parametrize(
    "written",
    [
        "../secret.png",
        "sub/../../secret.png",
        "/../secret.png",
        "..\\secret.png",
        "C:\\images\\a.png",
        "c:/images/a.png",
        "\\\\server\\share\\a.png",
        "file:///etc/passwd",
        "https://example.org/a.png",
        "a.png\x00.jpg",
    ],
)
def test_paths_that_leave_the_root_are_refused(folder: Path, written: str) -> None:
    (folder.parent / "secret.png").write_bytes(image_bytes(seed=3))
    assert skip_reason(lambda: open_store(str(folder)).resolve(written)) == "path_outside_root"


def test_symlinks_out_of_the_folder_are_refused(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(image_bytes(seed=4))
    (folder / "link.png").symlink_to(outside / "x.png")
    (folder / "linked_dir").symlink_to(outside, target_is_directory=True)
    (folder / "inner.png").symlink_to(folder / "a.png")  # a link that stays inside is fine
    store = open_store(str(folder))
    assert skip_reason(lambda: store.resolve("link.png")) == "path_outside_root"
    assert skip_reason(lambda: store.resolve("linked_dir/x.png")) == "path_outside_root"
    assert skip_reason(lambda: store.read("link.png")) == "path_outside_root"
    assert store.resolve("inner.png") == "inner.png"
    assert store.read("inner.png") == (folder / "a.png").read_bytes()


@pytest.mark.parametrize("written", ["nope.png", "sub", "", "/", "sub/nope.jpg"])
def test_missing_images(folder: Path, written: str) -> None:
    store = open_store(str(folder))
    assert skip_reason(lambda: store.resolve(written)) == "missing_image"


def test_read_of_a_missing_member_is_missing_image(folder: Path) -> None:
    store = open_store(str(folder))
    assert skip_reason(lambda: store.read("gone.png")) == "missing_image"
    assert skip_reason(lambda: store.read("sub")) == "missing_image"


def test_normalise() -> None:
    assert normalise("/mmdu_pics/x.jpg") == "mmdu_pics/x.jpg"
    assert normalise("a//b/./c.jpg") == "a/b/c.jpg"
    with pytest.raises(SkipRecord, match="path_outside_root"):
        normalise("a/../../b.jpg")


# -- zip stores -----------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes], *, deflate: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            archive.writestr(info, data)
    return path


def test_zip_store_resolves_with_and_without_its_own_name(tmp_path: Path) -> None:
    data = image_bytes(seed=5)
    path = make_zip(tmp_path / "mmdu-45k_pics.zip", {"x.png": data, "deep/y.png": data})
    store = open_store(str(path))
    assert isinstance(store, ZipStore)
    assert store.resolve("mmdu-45k_pics/x.png") == "x.png"
    assert store.resolve("/x.png") == "x.png"
    assert store.resolve("deep/y.png") == "deep/y.png"
    assert store.read("x.png") == data
    assert skip_reason(lambda: store.resolve("other/x.png")) == "missing_image"
    assert skip_reason(lambda: store.read("nope.png")) == "missing_image"
    store.close()


def test_zip_slip_entries_are_refused(tmp_path: Path) -> None:
    data = image_bytes(seed=6)
    path = make_zip(
        tmp_path / "pics.zip", {"../evil.png": data, "/abs.png": data, "ok/../../up.png": data}
    )
    store = open_store(str(path))
    assert skip_reason(lambda: store.resolve("../evil.png")) == "path_outside_root"
    assert skip_reason(lambda: store.resolve("evil.png")) == "path_outside_root"
    assert skip_reason(lambda: store.resolve("up.png")) == "path_outside_root"
    assert skip_reason(lambda: store.resolve("abs.png")) == "path_outside_root"
    assert skip_reason(lambda: store.read("../evil.png")) == "missing_image"  # never indexed


def _patch_central_size(path: Path, name: str, size: int) -> None:
    """Rewrite the uncompressed size the central directory declares for one entry."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_len] == name.encode():
            struct.pack_into("<I", data, at + 24, size)
            break
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("deflate", [False, True])
def test_zip_declared_size_that_lies_is_undecodable(tmp_path: Path, deflate: bool) -> None:
    data = image_bytes(seed=7)
    path = make_zip(tmp_path / "pics.zip", {"a.png": data, "b.png": data}, deflate=deflate)
    _patch_central_size(path, "a.png", len(data) + 100)
    store = open_store(str(path))
    assert store.resolve("a.png") == "a.png"
    assert skip_reason(lambda: store.read("a.png")) == "undecodable_image"
    assert store.read("b.png") == data  # its neighbour is intact


def test_zip_declared_size_past_the_limit_is_too_large_before_reading(tmp_path: Path) -> None:
    data = image_bytes(seed=8)
    path = make_zip(tmp_path / "pics.zip", {"a.png": data})
    _patch_central_size(path, "a.png", 4_000_000_000)
    store = open_store(str(path))
    assert skip_reason(lambda: store.read("a.png")) == "image_too_large"


def test_zip_corrupt_bytes_are_undecodable(tmp_path: Path) -> None:
    data = image_bytes(seed=9)
    path = make_zip(tmp_path / "pics.zip", {"a.png": data})
    raw = bytearray(path.read_bytes())
    start = raw.find(data[:16])
    raw[start + 50] ^= 0xFF  # flips a byte: the CRC no longer matches
    path.write_bytes(bytes(raw))
    assert skip_reason(lambda: open_store(str(path)).read("a.png")) == "undecodable_image"


def _read_in_worker(args: tuple[ZipStore, str]) -> str:
    store, member = args
    return hashlib.sha256(store.read(member)).hexdigest()


def test_zip_store_is_safe_across_processes(tmp_path: Path) -> None:
    members = {f"{i}.png": image_bytes(seed=i) for i in range(8)}
    store = open_store(str(make_zip(tmp_path / "pics.zip", members)))
    store.read("0.png")  # opened in the parent before the fork
    copy = pickle.loads(pickle.dumps(store))
    assert copy.read("3.png") == members["3.png"]
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(2) as pool:
        digests = pool.map(_read_in_worker, [(store, name) for name in members] * 3)
    assert digests == [hashlib.sha256(d).hexdigest() for d in members.values()] * 3


# -- probing -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_probe_reads_the_header(folder: Path, kind: str) -> None:
    data = image_bytes(57, 33, kind)
    (folder / "p.img").write_bytes(data)
    info = open_store(str(folder)).probe("p.img")
    assert (info.member, info.width, info.height, info.format) == ("p.img", 57, 33, kind)
    assert (info.bytes, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_not_an_image_is_undecodable(folder: Path) -> None:
    (folder / "x.jpg").write_bytes(b"this is text, not pixels")
    (folder / "e.jpg").write_bytes(b"")
    store = open_store(str(folder))
    assert skip_reason(lambda: store.probe("x.jpg")) == "undecodable_image"
    assert skip_reason(lambda: store.probe("e.jpg")) == "undecodable_image"


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_truncated_image_is_caught_when_decoding(folder: Path, kind: str) -> None:
    data = image_bytes(64, 64, kind)
    (folder / "t.img").write_bytes(data[: len(data) // 2])
    store = open_store(str(folder))
    # the header alone is intact, but the JPEG/PNG structure shows the end is missing
    assert skip_reason(lambda: store.probe("t.img")) == "undecodable_image"
    assert skip_reason(lambda: store.probe("t.img", decode=True)) == "undecodable_image"
    (folder / "ok.img").write_bytes(data)
    assert store.probe("ok.img", decode=True).height == 64


def test_images_past_the_limits_are_too_large(folder: Path) -> None:
    (folder / "big.png").write_bytes(image_bytes(100, 100))
    few_pixels = open_store(str(folder), Limits(max_image_pixels=99 * 100))
    assert skip_reason(lambda: few_pixels.probe("big.png")) == "image_too_large"
    few_bytes = open_store(str(folder), Limits(max_image_bytes=100))
    assert skip_reason(lambda: few_bytes.read("big.png")) == "image_too_large"
    assert skip_reason(lambda: few_bytes.probe("big.png")) == "image_too_large"


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; its pixel data is a few bytes of nothing."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 100_000])  # past our limit; past Pillow's own too
def test_a_decompression_bomb_is_refused_from_its_header(folder: Path, side: int) -> None:
    (folder / "bomb.png").write_bytes(_png_header(side, side))
    store = open_store(str(folder))
    assert skip_reason(lambda: store.probe("bomb.png")) == "image_too_large"
    assert skip_reason(lambda: store.probe("bomb.png", decode=True)) == "image_too_large"


# -- opening, and the fixtures' stores ------------------------------------------------------


def test_open_store_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such"):
        open_store(str(tmp_path / "absent"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="folder or a .zip"):
        open_store(str(tmp_path / "notes.txt"))


def test_fixture_stores_resolve_every_image(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    corpora = [
        write_mmdu45k(tmp_path / "a", 4, seed=1, zip=True),
        write_mmdu45k(tmp_path / "b", 4, seed=1, zip=False),
        write_mmdu_bench(tmp_path / "c", 4, seed=1),
    ]
    for corpus in corpora:
        store = open_store(str(corpus.images))
        for path, digest in corpus.sha256.items():
            info = store.probe(store.resolve(path), decode=True)
            assert info.sha256 == digest
            assert (info.width, info.height) == corpus.sizes[path]
        store.close()


@pytest.mark.parametrize("zipped", [True, False])
def test_crc32_is_probed_and_checked_on_read(tmp_path: Path, zipped: bool) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (7, 5), "teal").save(buffer, "PNG")
    data = buffer.getvalue()
    if zipped:
        root = tmp_path / "pics.zip"
        with zipfile.ZipFile(root, "w") as archive:
            archive.writestr("a/one.png", data)
    else:
        root = tmp_path / "pics"
        (root / "a").mkdir(parents=True)
        (root / "a" / "one.png").write_bytes(data)
    store = open_store(str(root))
    member = store.resolve("a/one.png")
    info = store.probe(member)
    assert info.crc32 == zlib.crc32(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert store.read(member, crc32=info.crc32) == data
    with pytest.raises(ImageChanged, match=r"one.png.*changed since the catalog was made"):
        store.read(member, crc32=info.crc32 ^ 1)
