"""Tests of compose.shards: tar layout, determinism, atomicity, verification, manifest, index."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import weakref
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compose.shard_index import write_index, write_manifest
from compose.shard_reader import read_members, verify_shard
from compose.shards import (
    INDEX_NAME,
    MANIFEST_NAME,
    WIDS_KIND,
    SampleRecord,
    ShardStats,
    _header,
    _TarStream,
    image_extension,
    load_stats,
    shard_name,
    stats_name,
    write_shard,
)

REPO = Path(__file__).resolve().parents[1]


def make_records(n: int = 6, seed: int = 0) -> list[SampleRecord]:
    """Samples with 0..3 images of mixed formats and sizes that cross block boundaries."""
    exts = ("jpg", "png", "webp", "gif")
    records = []
    for i in range(n):
        images = tuple(
            (exts[(i + j) % 4], hashlib.sha256(b"%d-%d-%d" % (seed, i, j)).digest() * (7 * i + j))
            for j in range(i % 4)
        )
        body = json.dumps({"id": i, "messages": ["x" * (100 * i)]}).encode()
        records.append(SampleRecord(key=f"sample-{i:04d}", sample_json=body, images=images))
    return records


def expected_members(records: list[SampleRecord]) -> list[tuple[str, bytes]]:
    members = []
    for record in records:
        members += [(n, bytes(d)) for n, d in record.members()]
    return members


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def shard(tmp_path: Path) -> tuple[Path, ShardStats, list[SampleRecord]]:
    records = make_records()
    stats = write_shard(tmp_path, "train", 0, records)
    return tmp_path / "train-000000.tar", stats, records


# --- layout ---------------------------------------------------------------------------------


def test_names() -> None:
    assert shard_name("train", 7) == "train-000007.tar"
    assert stats_name("train", 7) == "train-000007.stats.json"
    for prefix, index in (("", 0), ("a/b", 0), ("train", -1)):
        with pytest.raises(ValueError):
            shard_name(prefix, index)


def test_members_sorted_with_fixed_metadata(shard) -> None:
    path, _, records = shard
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == [name for name, _ in expected_members(records)]
    assert names[:3] == ["sample-0000.json", "sample-0001.001.png", "sample-0001.json"]
    for m in members:
        assert m.isreg()
        assert (m.mtime, m.uid, m.gid, m.mode, m.uname, m.gname) == (0, 0, 0, 0o644, "", "")
    assert path.stat().st_size % 10240 == 0  # padded to tar records like GNU tar


def test_image_bytes_untouched(shard) -> None:
    path, _, records = shard
    assert list(read_members(path)) == expected_members(records)
    with tarfile.open(path) as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar] == list(read_members(path))


def test_pinned_bytes() -> None:
    # Headers are built by hand, so these bytes must hold on every Python version and machine.
    record = SampleRecord(key="k0", sample_json=b'{"a": 1}', images=(("jpg", b"\xff\xd8xyz"),))
    out = io.BytesIO()
    tar = _TarStream(out)
    tar.add_sample(record.members())
    digest = tar.finish()
    data = out.getvalue()
    assert len(data) == 10240 and digest == hashlib.sha256(data).hexdigest()
    assert data[:11] == b"k0.001.jpg\0"
    assert data[100:157] == (
        b"0000644\x000000000\x000000000\x0000000000005\x0000000000000\x00007253\x00 0"
    )
    assert data[257:265] == b"ustar\x0000" and data[265:512] == bytes(247)
    assert digest == "a22b7d39f71a397c3405810ff0f6e5ee1de886f7aa243a240ce96cd4ed20585a"


def test_header_matches_tarfile() -> None:
    for name, size in (("a.json", 0), ("k.001.jpg", 511), ("x" * 90 + ".json", 8**11 - 1)):
        info = tarfile.TarInfo.frombuf(_header(name, size), "ascii", "strict")
        assert (info.name, info.size, info.type) == (name, size, tarfile.REGTYPE)
        assert (info.mtime, info.mode, info.uid, info.gid) == (0, 0o644, 0, 0)
    with pytest.raises(ValueError, match="USTAR limit"):
        _header("a.json", 8**11)


def test_offsets_point_at_each_samples_first_header(shard) -> None:
    path, stats, records = shard
    assert stats.offsets[0] == 0
    with open(path, "rb") as f:
        for record, offset in zip(records, stats.offsets, strict=True):
            f.seek(offset)
            with tarfile.open(fileobj=f, mode="r|") as tar:
                sample = {}
                for m in tar:
                    if not m.name.startswith(record.key + "."):
                        break
                    sample[m.name] = tar.extractfile(m).read()
            assert sample == {n: bytes(d) for n, d in record.members()}


def test_webdataset_reads_the_samples_back(shard) -> None:
    path, _, records = shard
    samples = list(wds.WebDataset(str(path), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [r.key for r in records]
    for sample, record in zip(samples, records, strict=True):
        assert sample["json"] == record.sample_json
        images = {k: v for k, v in sample.items() if re.fullmatch(r"\d{3}\.\w+", k)}
        assert images == {f"{n:03d}.{ext}": data for n, (ext, data) in enumerate(record.images, 1)}
        assert {k for k in sample if not k.startswith("__")} == {"json", *images}


def test_many_images_keep_number_order(tmp_path: Path) -> None:
    images = tuple(("png", b"%d" % n) for n in range(1, 1001))
    write_shard(tmp_path, "big", 0, [SampleRecord(key="k", sample_json=b"{}", images=images)])
    names = [name for name, _ in read_members(tmp_path / "big-000000.tar")]
    assert names[0] == "k.0001.png" and names[-2] == "k.1000.png" and names[-1] == "k.json"
    assert [int(n.split(".")[1]) for n in names[:-1]] == list(range(1, 1001))


def test_key_order_is_the_order_of_member_names(tmp_path: Path) -> None:
    # 'a-b.json' sorts before 'a.json', so key 'a-b' must come before 'a'.
    records = [SampleRecord(key=k, sample_json=b"{}") for k in ("a-b", "a", "a_b", "b")]
    write_shard(tmp_path, "o", 0, records)
    names = [n for n, _ in read_members(tmp_path / "o-000000.tar")]
    assert names == sorted(names)
    with pytest.raises(ValueError, match="increasing key order"):
        write_shard(tmp_path, "o", 1, [records[1], records[0]])


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "a.b", "a/b", "__key__", "-a", "ä", "a b", "a\\b", "x" * 96, 5]
)
def test_bad_keys_rejected(key) -> None:
    with pytest.raises(ValueError):
        SampleRecord(key=key, sample_json=b"{}")


@pytest.mark.parametrize(
    "images", [(("JPG", b"x"),), (("jp.g", b"x"),), (("", b"x"),), (("jpg", "text"),), ("jpg",)]
)
def test_bad_images_rejected(images) -> None:
    with pytest.raises(ValueError, match="sample k"):
        SampleRecord(key="k", sample_json=b"{}", images=images)


def test_longest_key_that_fits() -> None:
    SampleRecord(key="x" * 95, sample_json=b"{}")  # x...x.json is 100 bytes
    SampleRecord(key="x" * 90, sample_json=b"{}", images=(("jpg", b""),))  # .001.jpg: 98
    with pytest.raises(ValueError, match="too long"):
        SampleRecord(key="x" * 93, sample_json=b"{}", images=(("webp", b""),))


def test_image_extension() -> None:
    assert [image_extension(f) for f in ("JPEG", "PNG", "WEBP", "GIF", "MPO")] == [
        "jpg",
        "png",
        "webp",
        "gif",
        "jpg",
    ]
    with pytest.raises(ValueError):
        image_extension("weird format")


@pytest.mark.parametrize(
    "samples, message",
    [
        ([], "no samples"),
        (
            [SampleRecord(key="b", sample_json=b"{}"), SampleRecord(key="a", sample_json=b"{}")],
            "order",
        ),
        ([SampleRecord(key="a", sample_json=b"{}")] * 2, "order"),
        ([{"key": "a"}], "SampleRecord"),
    ],
)
def test_bad_shards_leave_nothing(tmp_path: Path, samples, message) -> None:
    with pytest.raises(ValueError, match=message):
        write_shard(tmp_path, "bad", 0, samples)
    assert list(tmp_path.iterdir()) == []


# --- atomicity and resume -------------------------------------------------------------------


def test_success_leaves_only_tar_and_stats(shard) -> None:
    path, stats, _ = shard
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "train-000000.stats.json",
        "train-000000.tar",
    ]
    assert json.loads((path.parent / "train-000000.stats.json").read_text()) == stats.to_json()
    assert stats.bytes == path.stat().st_size
    assert stats.sha256 == sha256_file(path)
    assert (stats.samples, stats.first_key, stats.last_key) == (6, "sample-0000", "sample-0005")


def test_exception_mid_shard_leaves_no_tar_and_no_stats(shard) -> None:
    path, _, records = shard  # a finished shard 0 from an earlier run is there

    def failing():
        yield from records[:3]
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="went away"):
        write_shard(path.parent, "train", 0, failing())
    assert list(path.parent.iterdir()) == []
    assert load_stats(path.parent, "train", 0) is None


def test_streams_one_sample_at_a_time(tmp_path: Path) -> None:
    class Blob(bytearray):  # bytearray subclasses can be weakly referenced, bytes cannot
        pass

    refs: list[weakref.ref] = []

    def samples():
        for i in range(20):
            gc.collect()
            # every image but the one of the sample being written has been released
            assert sum(r() is not None for r in refs) <= 1
            blob = Blob(os.urandom(100_000))
            refs.append(weakref.ref(blob))
            yield SampleRecord(key=f"s{i:02d}", sample_json=b"{}", images=(("jpg", blob),))

    stats = write_shard(tmp_path, "mem", 0, samples())
    assert stats.samples == 20


def test_load_stats(shard) -> None:
    path, stats, _ = shard
    out = path.parent
    assert load_stats(out, "train", 0) == stats
    assert load_stats(out, "train", 1) is None  # missing
    marker = out / "train-000000.stats.json"
    marker.write_text("{not json")
    assert load_stats(out, "train", 0) is None
    marker.write_text(json.dumps({**stats.to_json(), "offsets": "x"}))
    assert load_stats(out, "train", 0) is None
    marker.write_text(json.dumps({**stats.to_json(), "name": "other-000000.tar"}))
    assert load_stats(out, "train", 0) is None
    marker.write_text(json.dumps(stats.to_json()))
    with open(path, "ab") as f:
        f.write(b"\0" * 512)  # the tar no longer has the size the marker promises
    assert load_stats(out, "train", 0) is None
    path.unlink()
    assert load_stats(out, "train", 0) is None


@given(
    keys=st.lists(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True), min_size=1),
    data=st.data(),
)
def test_stats_json_roundtrip(keys, data) -> None:
    keys = sorted(set(keys), key=lambda k: k + ".")
    offsets = sorted(
        data.draw(st.lists(st.integers(0, 2**40), min_size=len(keys), max_size=len(keys)))
    )
    stats = ShardStats(
        name="p-000001.tar",
        samples=len(keys),
        bytes=data.draw(st.integers(0, 2**40)),
        sha256="ab" * 32,
        first_key=keys[0],
        last_key=keys[-1],
        offsets=tuple(offsets),
        keys=tuple(keys),
    )
    assert ShardStats.from_json(json.loads(json.dumps(stats.to_json()))) == stats


@pytest.mark.parametrize(
    "change",
    [
        {"samples": True},
        {"samples": 5},
        {"sha256": "xyz"},
        {"keys": ["a"]},
        {"first_key": 1},
        {"offsets": [0, "1"]},
    ],
)
def test_stats_from_json_rejects(change) -> None:
    good = {"name": "p-000000.tar", "samples": 2, "bytes": 10240, "sha256": "0" * 64}
    good |= {"first_key": "a", "last_key": "b", "keys": ["a", "b"], "offsets": [0, 1024]}
    ShardStats.from_json(good)
    with pytest.raises(ValueError):
        ShardStats.from_json(good | change)


# --- verification ---------------------------------------------------------------------------


def test_verify_clean_shard(shard) -> None:
    path, stats, _ = shard
    assert verify_shard(path, stats) == []


def test_verify_finds_a_changed_byte(shard) -> None:
    path, stats, records = shard
    data = bytearray(path.read_bytes())
    image = records[3].images[0][1]
    at = data.index(image) + 17
    data[at] ^= 1
    path.write_bytes(data)
    problems = verify_shard(path, stats)
    assert len(problems) == 1 and "sha256" in problems[0] and str(path) in problems[0]


def test_verify_finds_a_changed_header(shard) -> None:
    path, stats, _ = shard
    data = bytearray(path.read_bytes())
    data[stats.offsets[2] + 3] ^= 1  # a name byte: the header checksum no longer matches
    path.write_bytes(data)
    problems = verify_shard(path, stats)
    assert any("sha256" in p for p in problems)
    assert any(f"header at byte {stats.offsets[2]}: bad header checksum" in p for p in problems)


@pytest.mark.parametrize("where", ["padding", "last header", "last image"])
def test_verify_finds_a_truncated_file(shard, where) -> None:
    path, stats, _ = shard
    data = path.read_bytes()
    end = {"padding": len(data) - 1, "last header": stats.offsets[-1] + 100}
    end["last image"] = stats.offsets[-1] + 700  # inside sample-0005.001.png
    path.write_bytes(data[: end[where]])
    problems = verify_shard(path, stats)
    assert any(f"{end[where]} bytes, stats say {len(data)}" in p for p in problems)
    assert any("sha256" in p for p in problems)
    truncated = [p for p in problems if re.search(r"truncated at byte|is truncated", p)]
    assert bool(truncated) == (where != "padding")


def rewrite_without(path: Path, drop: str) -> None:
    """Rewrite a shard with the same writer's headers but one member left out."""
    members = [(n, d) for n, d in read_members(path) if n != drop]
    with open(path, "wb") as f:
        tar = _TarStream(f)
        tar.add_sample(members)
        tar.finish()


@pytest.mark.parametrize(
    "drop, expect",
    [
        ("sample-0003.002.jpg", "sample-0003 images are not numbered 1..2"),
        ("sample-0003.003.png", "sample offsets differ"),
        ("sample-0002.json", "sample-0002 has no sample-0002.json member"),
        ("sample-0000.json", "5 samples, stats say 6"),
    ],
)
def test_verify_finds_a_missing_member(shard, drop, expect) -> None:
    path, stats, _ = shard
    rewrite_without(path, drop)
    problems = verify_shard(path, stats)
    assert any("sha256" in p for p in problems)
    assert any(expect in p for p in problems), problems


def test_verify_missing_file(tmp_path: Path, shard) -> None:
    _, stats, _ = shard
    problems = verify_shard(tmp_path / "nope.tar", stats)
    assert len(problems) == 1 and "cannot read" in problems[0]


def test_read_members_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"x" * 1024)
    with pytest.raises(ValueError, match="bad header checksum"):
        list(read_members(bad))
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="truncated"):
        list(read_members(bad))


# --- determinism ----------------------------------------------------------------------------


WRITE_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[2])
sys.path.insert(0, sys.argv[3])
from test_shards import make_records, manifest_rows
from compose.shard_index import write_index, write_manifest
from compose.shards import write_shard
records = make_records(9)
out = sys.argv[1]
stats = [write_shard(out, "d", 0, records[:5]), write_shard(out, "d", 1, records[5:])]
write_manifest(out, manifest_rows(records), stats=stats)
write_index(out, stats, name="det")
"""


def manifest_rows(records: list[SampleRecord]) -> list[dict]:
    return [
        {
            "key": r.key,
            "tokens": 1000 + i,
            "images": len(r.images),
            "turns": 2 * i + 2,
            "fill": 0.5 + i / 100,
            "sources": [f"src-{i}", "other"],
        }
        for i, r in enumerate(records)
    ][::-1]  # out of key order on purpose


def output_digests(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.iterdir())}


def test_byte_identical_in_process_and_across_processes(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        records = make_records(9)
        stats = [write_shard(out, "d", 0, records[:5]), write_shard(out, "d", 1, records[5:])]
        write_manifest(out, manifest_rows(records), stats=stats)
        write_index(out, stats, name="det")
        digests.append(output_digests(out))
    out = tmp_path / "c"
    subprocess.run(
        [sys.executable, "-c", WRITE_SCRIPT, str(out), str(REPO), str(REPO / "tests")],
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    digests.append(output_digests(out))
    assert len(digests[0]) == 6  # 2 tars, 2 stats, manifest, index
    assert digests[0] == digests[1] == digests[2]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    samples=st.dictionaries(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,12}", fullmatch=True),
        st.tuples(
            st.binary(max_size=300),
            st.lists(
                st.tuples(st.sampled_from(["jpg", "png", "webp"]), st.binary(max_size=2000)),
                max_size=4,
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_roundtrip_property(tmp_path_factory, samples) -> None:
    out = tmp_path_factory.mktemp("prop")
    records = [
        SampleRecord(key=k, sample_json=j, images=tuple(imgs))
        for k, (j, imgs) in sorted(samples.items(), key=lambda kv: kv[0] + ".")
    ]
    stats = write_shard(out, "p", 0, records)
    path = out / "p-000000.tar"
    assert verify_shard(path, stats) == []
    assert list(read_members(path)) == expected_members(records)
    got = list(wds.WebDataset(str(path), shardshuffle=False))
    assert [s["__key__"] for s in got] == [r.key for r in records]
    assert [s["json"] for s in got] == [r.sample_json for r in records]


# --- manifest -------------------------------------------------------------------------------


def two_shards(out: Path) -> tuple[list[SampleRecord], list[ShardStats]]:
    records = make_records(7)
    stats = [write_shard(out, "m", 0, records[:4]), write_shard(out, "m", 1, records[4:])]
    return records, stats


def test_manifest_rows_sorted_with_shard_and_offset(tmp_path: Path) -> None:
    records, stats = two_shards(tmp_path)
    path = write_manifest(tmp_path, manifest_rows(records), stats=stats)
    assert path == tmp_path / MANIFEST_NAME
    table = pq.read_table(path)
    assert table.column_names == [
        "key",
        "shard",
        "offset",
        "tokens",
        "images",
        "turns",
        "fill",
        "sources",
    ]
    rows = table.to_pylist()
    assert [r["key"] for r in rows] == [r.key for r in records]
    assert [r["shard"] for r in rows] == ["m-000000.tar"] * 4 + ["m-000001.tar"] * 3
    assert [r["offset"] for r in rows] == [*stats[0].offsets, *stats[1].offsets]
    assert rows[2]["sources"] == ["src-2", "other"] and rows[2]["tokens"] == 1002
    # random access: seek to a row's offset and find its sample
    row = rows[5]
    with open(tmp_path / row["shard"], "rb") as f:
        f.seek(row["offset"])
        assert tarfile.TarInfo.frombuf(f.read(512), "ascii", "strict").name.startswith(row["key"])
    metadata = pq.read_metadata(path).metadata
    assert set(metadata) == {b"ARROW:schema"}  # no timestamps or pandas metadata


def test_manifest_without_stats_needs_located_rows(tmp_path: Path) -> None:
    records, _ = two_shards(tmp_path)
    with pytest.raises(ValueError, match="needs a shard name and a header offset"):
        write_manifest(tmp_path, manifest_rows(records))
    rows = [
        {**r, "shard": "m-000000.tar", "offset": 512 * i}
        for i, r in enumerate(manifest_rows(records))
    ]
    write_manifest(tmp_path, rows)
    assert pq.read_table(tmp_path / MANIFEST_NAME).column("offset").to_pylist() == [
        3072,
        2560,
        2048,
        1536,
        1024,
        512,
        0,
    ]
    rows[1]["offset"] = 0
    with pytest.raises(ValueError, match="another row has shard and offset"):
        write_manifest(tmp_path, rows)
    rows[1]["offset"] = 7
    with pytest.raises(ValueError, match="needs a shard name"):
        write_manifest(tmp_path, rows)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: rows[:-1], "no manifest row"),
        (lambda rows: [*rows, dict(rows[0])], "occurs twice"),
        (lambda rows: [*rows, {**rows[0], "key": "zzz"}], "in no shard"),
        (lambda rows: [{**rows[0], "extra": 1}, *rows[1:]], "has fields"),
        (lambda rows: [{**rows[0], "offset": 3}, *rows[1:]], "offset is 3"),
        (lambda rows: [{**rows[0], "shard": "x.tar"}, *rows[1:]], "shard is 'x.tar'"),
        (lambda rows: [{**rows[0], "tokens": "many"}, *rows[1:]], "do not form a table"),
        (lambda rows: [{"tokens": 1}, *rows], "no string 'key'"),
        (lambda rows: [], "no manifest rows"),
    ],
)
def test_manifest_rejects(tmp_path: Path, edit, message) -> None:
    records, stats = two_shards(tmp_path)
    with pytest.raises(ValueError, match=message):
        write_manifest(tmp_path, edit(manifest_rows(records)), stats=stats)
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_manifest_rows_may_carry_their_location(tmp_path: Path) -> None:
    records, stats = two_shards(tmp_path)
    plain = write_manifest(tmp_path, manifest_rows(records), stats=stats).read_bytes()
    located = {k: (s.name, o) for s in stats for k, o in zip(s.keys, s.offsets, strict=True)}
    rows = [
        {**r, "shard": located[r["key"]][0], "offset": located[r["key"]][1]}
        for r in manifest_rows(records)
    ]
    assert write_manifest(tmp_path, rows, stats=stats).read_bytes() == plain
    assert write_manifest(tmp_path, rows).read_bytes() == plain


def test_manifest_rejects_stats_listing_a_key_twice(tmp_path: Path) -> None:
    records, stats = two_shards(tmp_path)
    with pytest.raises(ValueError, match="is in m-000000.tar and m-000000.tar"):
        write_manifest(tmp_path, manifest_rows(records), stats=[stats[0], *stats])


# --- shard index ----------------------------------------------------------------------------


def wids_groups(names: list[str]) -> list[str]:
    """Sample keys as wids groups member names: the basename up to its first dot."""
    keys: list[str] = []
    for name in names:
        key = re.match(r"^((?:.*/)?.*?)(\..*)$", name).group(1)
        if not keys or keys[-1] != key:
            keys.append(key)
    return keys


def test_index_is_what_wids_reads(tmp_path: Path) -> None:
    records, stats = two_shards(tmp_path)
    path = write_index(tmp_path, stats[::-1], name="demo")
    assert path == tmp_path / INDEX_NAME
    index = json.loads(path.read_text())
    assert index["__kind__"] == WIDS_KIND == "wids-shard-index-v1"
    assert index["wids_version"] == 1 and index["name"] == "demo"
    shardlist = index["shardlist"]
    assert [s["url"] for s in shardlist] == ["m-000000.tar", "m-000001.tar"]
    for entry, st_ in zip(shardlist, stats, strict=True):
        # wids resolves urls against the folder of the index file
        shard = Path(os.path.normpath(os.path.join(path.parent, entry["url"])))
        assert entry["filesize"] == shard.stat().st_size == st_.bytes
        assert entry["sha256"] == sha256_file(shard)
        keys = wids_groups([n for n, _ in read_members(shard)])
        assert entry["nsamples"] == len(keys) == st_.samples
        assert keys == list(st_.keys)
    assert sum(s["nsamples"] for s in shardlist) == len(records)


def test_index_rejects(tmp_path: Path) -> None:
    _, stats = two_shards(tmp_path)
    with pytest.raises(ValueError, match="no shards"):
        write_index(tmp_path, [], name="x")
    with pytest.raises(ValueError, match="twice"):
        write_index(tmp_path, [stats[0], stats[0]], name="x")
