"""compose.loader: streaming (also in a 2-worker DataLoader), styles, random access, bad shards."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import Counter

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from compose import loader, tags
from tests.composed import check_references, compose_folder, png, sha256, write_folder


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    return compose_folder(tmp_path_factory.mktemp("loader"), style="mmdu")


@pytest.fixture(scope="module")
def composed_openai(tmp_path_factory, composed):
    root = tmp_path_factory.mktemp("loader-openai")
    return compose_folder(root, style="openai", sources=composed.corpora)


def manifest_keys(out) -> list[str]:
    return pl.read_parquet(out / "manifest.parquet", columns=["key"])["key"].to_list()


def shard_of(out) -> dict[str, str]:
    frame = pl.read_parquet(out / "manifest.parquet", columns=["key", "shard"])
    return dict(zip(frame["key"], frame["shard"], strict=True))


def identity(item):
    return item


def test_the_fixture_has_shards_for_two_workers_and_all_three_sources(composed):
    shards = set(shard_of(composed.out).values())
    assert len(shards) >= 4
    files = {
        segment["file"]
        for _, _, sample in loader.samples(composed.out)
        for segment in sample["segments"]
    }
    assert {c.source.name for c in composed.corpora} <= files  # names: bytes never hold folders


def test_dataloader_two_workers_every_sample_once_per_epoch_with_the_right_images(composed):
    keys = manifest_keys(composed.out)
    shards = shard_of(composed.out)
    data = loader.dataset(composed.out, style="canonical", decode=False, with_sample=True)
    batches = torch.utils.data.DataLoader(data, batch_size=None, num_workers=2)
    for _epoch in range(2):
        seen = []
        checked = 0
        for messages, images, sample in batches:
            seen.append(sample["key"])
            assert [sha256(blob) for blob in images] == [i["sha256"] for i in sample["images"]]
            texts = [message["content"] for message in messages]
            checked += check_references(texts, images, composed.marker_of_sha)
        assert Counter(seen) == Counter(keys)  # every sample, exactly once
        assert checked > 100
        # The DataLoader takes samples from its workers in turn: worker 0 reads the first shard,
        # worker 1 the second, so the first two samples come from different shards.
        assert shards[seen[0]] != shards[seen[1]]


def test_decoded_images_are_loaded_pil_images_of_the_stored_bytes(composed):
    for (_, images), (_, blobs, sample) in zip(
        loader.dataset(composed.out), loader.samples(composed.out), strict=True
    ):
        assert len(images) == len(blobs) == len(sample["images"])
        for image, blob, entry in zip(images, blobs, sample["images"], strict=True):
            assert isinstance(image, Image.Image)
            assert image.size == (entry["width"], entry["height"])
            assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(blob))))


def test_shuffle_keeps_every_sample_once_and_is_seeded(composed):
    def order(seed):
        data = loader.dataset(composed.out, decode=False, shuffle=8, seed=seed, with_sample=True)
        return [sample["key"] for _, _, sample in data]

    keys = manifest_keys(composed.out)
    first, again, other = order(1), order(1), order(2)
    assert sorted(first) == sorted(keys) == sorted(other)
    assert first == again
    assert first != keys and first != other


@pytest.mark.parametrize("target", ["canonical", "mmdu", "llava", "openai"])
@pytest.mark.parametrize("written", ["mmdu", "openai"])
def test_every_style_renders_the_same_conversation(composed, composed_openai, written, target):
    out = (composed if written == "mmdu" else composed_openai).out
    reference = {
        sample["key"]: (messages, sample)
        for messages, _, sample in loader.samples(composed.out, style="canonical")
    }
    assert manifest_keys(out) == sorted(reference)
    for messages, blobs, sample in loader.samples(out, style=target):
        canonical, reference_sample = reference[sample["key"]]
        assert [m["role"] for m in messages] == [m["role"] for m in canonical]
        as_written = {**sample, "style": target, "messages": messages}
        assert loader.canonical_texts(as_written) == [m["content"] for m in canonical]
        assert [sha256(b) for b in blobs] == [i["sha256"] for i in reference_sample["images"]]
        if target in ("mmdu", "llava"):
            placeholder = tags.MMDU_PLACEHOLDER if target == "mmdu" else tags.LLAVA_PLACEHOLDER
            shown = sum(m["content"].count(placeholder) for m in messages)
            assert shown == len(blobs)
            assert "<image-" not in "".join(m["content"] for m in messages)


def test_random_access_by_key_and_position_matches_the_stream(composed):
    index = loader.SampleIndex(composed.out, style="llava", decode=False)
    keys = manifest_keys(composed.out)
    assert len(index) == len(keys) and index.keys == keys
    streamed = {
        sample["key"]: (messages, blobs)
        for messages, blobs, sample in loader.samples(composed.out, style="llava")
    }
    for position in (0, len(keys) // 2, len(keys) - 1, -1):
        key = keys[position]
        assert index[key] == streamed[key]
        assert index[position] == streamed[key]
    with pytest.raises(KeyError, match="no sample with key 'nope'"):
        index["nope"]
    with pytest.raises(IndexError):
        index[len(keys)]


def test_random_access_serves_a_map_style_dataloader(composed):
    index = loader.SampleIndex(composed.out, decode=False)
    batches = torch.utils.data.DataLoader(
        index, batch_size=4, num_workers=2, shuffle=True, collate_fn=identity
    )
    seen = [sha256(b"".join(images)) for batch in batches for _, images in batch]
    expected = [sha256(b"".join(images)) for _, images, _ in loader.samples(composed.out)]
    assert Counter(seen) == Counter(expected)


def test_folder_index_file_and_url_list_give_the_same_shards(composed):
    urls = loader.shard_urls(composed.out)
    assert urls == loader.shard_urls(composed.out / "shards.json")
    assert loader.shard_urls(urls) == urls
    assert [u.rsplit("/", 1)[1] for u in urls] == sorted(set(shard_of(composed.out).values()))


def test_a_missing_folder_or_bad_style_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shard index"):
        loader.dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        loader.SampleIndex(tmp_path)
    (tmp_path / "shards.json").write_text('{"shards": []}')
    with pytest.raises(ValueError, match="not a wids shard index"):
        loader.shard_urls(tmp_path)
    with pytest.raises(ValueError, match="unknown style 'chatml'"):
        loader.dataset(["x.tar"], style="chatml")


def test_a_damaged_sample_names_its_shard_and_key(tmp_path):
    messages = [
        {"role": "user", "content": "Image1: <ImageHere> what is it?"},
        {"role": "assistant", "content": "A square."},
    ]
    out = write_folder(tmp_path / "out", [("k1", "mmdu", messages, [png(1)])])
    shard = out / "shard-000000.tar"
    with tarfile.open(shard) as tar:
        member = tar.getmember("k1.json")
    data = bytearray(shard.read_bytes())
    data[member.offset_data] = ord("[")  # the JSON no longer parses
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"shard-000000.tar: sample k1: JSONDecodeError"):
        list(loader.dataset(out))
    with pytest.raises(ValueError, match="sample k1"):
        loader.SampleIndex(out)["k1"]


def test_an_image_part_naming_no_image_is_refused(tmp_path):
    messages = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "k1.009.png"}}]},
        {"role": "assistant", "content": "A square."},
    ]
    out = write_folder(tmp_path / "out", [("k1", "openai", messages, [png(1)])])
    with pytest.raises(ValueError, match="'k1.009.png' names no image of the sample"):
        list(loader.dataset(out, style="mmdu"))


# -- the canonical pivot, on generated texts ---------------------------------------------------

words = st.text(st.characters(codec="utf-8", exclude_characters="<>"), max_size=12)


@st.composite
def conversations(draw):
    """Canonical messages (user first, alternating) introducing images 1..n in order."""
    n_messages = 2 * draw(st.integers(1, 3))
    texts, number = [], 0
    for _ in range(n_messages):
        pieces = [draw(words)]
        for _ in range(draw(st.integers(0, 2))):
            number += 1
            pieces += [tags.tag(number), draw(words)]
        texts.append("".join(pieces))
    roles = ["user", "assistant"] * (n_messages // 2)
    images = [{"number": n, "member": f"k.{n:03d}.png"} for n in range(1, number + 1)]
    return roles, texts, images


@given(conversations(), st.sampled_from(tags.STYLES))
def test_render_then_canonical_is_the_identity(conversation, style):
    roles, texts, images = conversation
    messages = loader.render_messages(roles, texts, style, images)
    sample = {"key": "k", "style": style, "messages": messages, "images": images}
    assert loader.canonical_texts(sample) == texts
    if style == "openai":
        urls = [
            part["image_url"]["url"]
            for message in messages
            for part in message["content"]
            if part["type"] == "image_url"
        ]
        assert urls == [image["member"] for image in images]


def test_sample_pair_counts_images_against_the_json():
    document = {"key": "k", "style": "canonical", "images": [{"number": 1}], "messages": []}
    raw = {"__key__": "k", "__url__": "s.tar", "json": json.dumps(document).encode()}
    with pytest.raises(ValueError, match="0 image members, the sample JSON lists 1"):
        loader.sample_pair(raw)


prose = st.lists(st.sampled_from(["Image", "image", " ", "1", "2", "_", "-", "<", ">", "a"])).map(
    "".join
)


@given(st.lists(st.tuples(prose, st.integers(0, 2)), min_size=2, max_size=6), st.booleans())
def test_placeholder_numbering_agrees_with_the_tag_grammar(pieces, llava):
    """The loader numbers placeholders alone; tags.parse reads mentions too: same result."""
    style = "llava" if llava else "mmdu"
    placeholder = tags.LLAVA_PLACEHOLDER if llava else tags.MMDU_PLACEHOLDER
    texts = []
    for words, count in pieces:
        words = re.sub(r"(?i)<image", "<imag", words)  # no tag or placeholder in the prose
        texts.append(words + placeholder * count + words)
    sample = {"style": style, "messages": [{"content": t} for t in texts], "images": []}
    expected, seen = [], 0
    for text in texts:
        expected.append(tags.parse(text, style, first=seen + 1))
        seen += len(tags.introductions(expected[-1]))
    assert loader.canonical_texts(sample) == expected


def tar_bytes(members: list[tuple[str, bytes]], format=tarfile.USTAR_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def read_tar(tmp_path, data: bytes) -> list[dict]:
    path = tmp_path / "t.tar"
    path.write_bytes(data)
    return list(loader.shard_samples([{"url": str(path)}]))


def test_the_tar_stage_groups_members_as_webdataset_does(tmp_path):
    members = [("a.001.PNG", b"1"), ("a.json", b"{}"), ("dir/b.json", b"[]"), ("c.txt", b"")]
    samples = read_tar(tmp_path, tar_bytes(members))
    assert [(s["__key__"], sorted(k for k in s if not k.startswith("__"))) for s in samples] == [
        ("a", ["001.png", "json"]),
        ("dir/b", ["json"]),
        ("c", ["txt"]),
    ]
    assert samples[0]["001.png"] == b"1" and samples[2]["txt"] == b""


def test_the_tar_stage_refuses_what_is_not_a_compose_shard(tmp_path):
    pax = tar_bytes([("é" * 120 + ".json", b"{}")], format=tarfile.PAX_FORMAT)
    with pytest.raises(ValueError, match="PAX or GNU extension header"):
        read_tar(tmp_path, pax)
    damaged = bytearray(tar_bytes([("a.json", b"{}")]))
    damaged[10] ^= 1
    with pytest.raises(ValueError, match=r"t.tar: no tar header at byte 0 \(bad checksum\)"):
        read_tar(tmp_path, bytes(damaged))
    with pytest.raises(ValueError, match="member a.json is truncated"):
        read_tar(tmp_path, tar_bytes([("a.json", b"x" * 600)])[:700])
    good = tar_bytes([("a.json", b"{}"), ("a.json", b"{}")])
    with pytest.raises(ValueError, match="member a.json occurs twice in sample a"):
        read_tar(tmp_path, good)
