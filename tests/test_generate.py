"""The synthetic corpus generator: MMDU-45k shape, determinism, images, the committed demo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks.corpus import CorpusConfig, generate, render_records, write_array
from benchmarks.demo import DEMO_DIR, IMAGE_SIDES, build_demo
from benchmarks.generate import main, parse_size
from benchmarks.images import ZIP_DATE, base_pool, personalise
from benchmarks.textgen import DEMO, MMDU_45K, Shape, make_dialogue
from compose.tags import parse_dialogue

PLACEHOLDER = "<ImageHere>"
MENTION = re.compile(r"(?<![\w<])image[ _-]?(\d+)(?!\w)", re.IGNORECASE)
SMALL = 80


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    config = CorpusConfig(dialogues=SMALL, seed=7, images=True, image_size=(48, 160), workers=1)
    generate(config, out)
    return out


@pytest.fixture(scope="module")
def records(corpus: Path) -> list[dict]:
    return json.loads((corpus / "mmdu-45k.json").read_bytes())


def check_dialogue(record: dict) -> None:
    """Every structural promise of a generated dialogue, checked independently of the generator."""
    assert list(record) == ["id", "image", "conversations"]
    images, turns = record["image"], record["conversations"]
    assert 2 <= len(images) <= 5
    assert len(turns) >= 2 and len(turns) % 2 == 0
    assert [t["from"] for t in turns] == ["user", "assistant"] * (len(turns) // 2)
    assert all(list(t) == ["from", "value"] and t["value"].strip() for t in turns)

    introduced = 0
    for index, turn in enumerate(turns):
        text = turn["value"]
        count = text.count(PLACEHOLDER)
        if index % 2:
            assert count == 0, "answers never introduce images"
        labels = [int(n) for n in re.findall(r"Image ?(\d+): " + re.escape(PLACEHOLDER), text)]
        assert labels == list(range(introduced + 1, introduced + count + 1))
        introduced += count
        for number in MENTION.findall(text):
            assert 1 <= int(number) <= introduced, f"turn {index} mentions image {number} early"
    assert introduced == len(images), "one placeholder per image"
    assert turns[0]["value"].startswith(f"Image1: {PLACEHOLDER}")
    parse_dialogue([t["value"] for t in turns], len(images))  # the engine's grammar agrees


def test_json_is_one_array_of_mmdu_records(records: list[dict]) -> None:
    assert len(records) == SMALL
    assert [r["id"] for r in records] == list(range(SMALL))
    for record in records:
        check_dialogue(record)


def test_paths_are_unique_and_in_the_pics_folder(records: list[dict]) -> None:
    paths = [p for r in records for p in r["image"]]
    assert len(paths) == len(set(paths))
    assert all(re.fullmatch(r"mmdu-45k_pics/\d{6}_\d_[a-z0-9-]+\.(jpg|png)", p) for p in paths)


def test_both_introduction_styles_and_varied_mentions_occur(records: list[dict]) -> None:
    later = [
        t["value"] for r in records for t in r["conversations"][2::2] if PLACEHOLDER in t["value"]
    ]
    assert later and all(re.match(r"(Image \d+: <ImageHere>\. )+\S", text) for text in later)
    spellings = {
        re.sub(r"\d+", "N", m.group(0))
        for r in records
        for t in r["conversations"]
        for m in MENTION.finditer(t["value"])
    }
    assert {"ImageN", "Image N", "image-N", "Image_N"} <= spellings


def test_file_is_exactly_what_json_dump_indent_4_writes(corpus: Path, records: list) -> None:
    assert (corpus / "mmdu-45k.json").read_bytes() == json.dumps(records, indent=4).encode()


def test_empty_corpus_is_an_empty_array() -> None:
    out = io.BytesIO()
    assert write_array(out, iter(())) == 0
    assert out.getvalue() == json.dumps([], indent=4).encode()


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    generate(CorpusConfig(dialogues=450, seed=3, workers=1), one)
    generate(CorpusConfig(dialogues=450, seed=3, workers=2), two)
    generate(CorpusConfig(dialogues=450, seed=4, workers=1), other)
    assert sha256(one / "mmdu-45k.json") == sha256(two / "mmdu-45k.json")
    assert sha256(one / "mmdu-45k.json") != sha256(other / "mmdu-45k.json")


def test_zip_members_match_the_json_and_decode(corpus: Path, records: list[dict]) -> None:
    paths = sorted(p for r in records for p in r["image"])
    with zipfile.ZipFile(corpus / "mmdu-45k_pics.zip") as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == paths
        digests = set()
        for info in infos:
            assert info.date_time == ZIP_DATE and info.compress_type == zipfile.ZIP_STORED
            data = archive.read(info)
            digests.add(hashlib.sha256(data).hexdigest())
            with Image.open(io.BytesIO(data)) as image:
                assert image.format == ("PNG" if info.filename.endswith(".png") else "JPEG")
                assert 48 <= max(image.size) <= 160
                image.load()
    assert len(digests) == len(paths), "every image file has distinct bytes"


def test_personalised_images_keep_their_pixels() -> None:
    pool = base_pool(0, (40, 60), count=6)
    for base in (pool["jpg"][0], pool["png"][0]):
        a, b = personalise(base, "a.jpg"), personalise(base, "b.jpg")
        assert a != b
        with Image.open(io.BytesIO(base)) as original, Image.open(io.BytesIO(a)) as marked:
            assert original.tobytes() == marked.tobytes()
    with pytest.raises(ValueError, match="neither JPEG nor PNG"):
        personalise(b"GIF89a", "x.gif")


@settings(max_examples=60, deadline=None)
@given(index=st.integers(0, 10**6), seed=st.integers(0, 2**31), demo=st.booleans())
def test_any_dialogue_keeps_the_invariants(index: int, seed: int, demo: bool) -> None:
    shape = DEMO if demo else MMDU_45K
    record = make_dialogue(index, seed=seed, shape=shape, folder="pics")
    check_dialogue(record)
    assert record["id"] == index
    assert shape.qa_min <= len(record["conversations"]) // 2 <= shape.qa_max
    assert record == make_dialogue(index, seed=seed, shape=shape, folder="pics")


def test_distributions_follow_mmdu_45k() -> None:
    """Table 1 of the MMDU paper: ~3 images (2-5), ~9 QA turns (max 27), ~31-word questions."""
    records = [make_dialogue(i, seed=0, shape=MMDU_45K, folder="p") for i in range(600)]
    images = [len(r["image"]) for r in records]
    turns = [len(r["conversations"]) // 2 for r in records]
    questions = [len(t["value"].split()) for r in records for t in r["conversations"][0::2]]
    progressive = sum(
        any(PLACEHOLDER in t["value"] for t in r["conversations"][2::2]) for r in records
    )
    assert 2.8 <= sum(images) / len(images) <= 3.3
    assert 8.3 <= sum(turns) / len(turns) <= 9.7 and max(turns) <= 27
    assert 27 <= sum(questions) / len(questions) <= 35
    assert 0.10 <= progressive / len(records) <= 0.20


def test_a_shape_is_obeyed() -> None:
    shape = Shape(qa_min=2, qa_max=3, image_weights=(0, 0, 0, 1), progressive=0.0, png=1.0)
    for index in range(30):
        record = make_dialogue(index, seed=1, shape=shape, folder="p")
        assert len(record["image"]) == 5 and all(p.endswith(".png") for p in record["image"])
        assert 2 <= len(record["conversations"]) // 2 <= 3
        assert all(PLACEHOLDER not in t["value"] for t in record["conversations"][1:])


def test_render_records_of_nothing_is_empty() -> None:
    assert render_records([]) == ""


def test_parse_size() -> None:
    assert parse_size("512") == (512, 512)
    assert parse_size("320-1024") == (320, 1024)
    for bad in ("big", "900-300", "0", "1-99999"):
        with pytest.raises(Exception, match="image size"):
            parse_size(bad)


def test_command_line_writes_corpus_and_summary(tmp_path: Path, capsys) -> None:
    assert main(["--dialogues", "6", "--seed", "2", "--workers", "1", "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dialogues"] == 6 and summary["json_bytes"] > 0
    assert len(json.loads((tmp_path / "mmdu-45k.json").read_bytes())) == 6
    assert not (tmp_path / "mmdu-45k_pics.zip").exists()
    with pytest.raises(SystemExit):
        main(["--dialogues", "6"])


@pytest.fixture(scope="module")
def rebuilt_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("demo")
    return out, build_demo(out)


def test_committed_demo_matches_a_fresh_rebuild(rebuilt_demo) -> None:
    """Text and layout must match exactly. Compressed and encoded bytes depend on the zlib and
    libjpeg builds, so images are compared by name, format and size, not by bytes."""
    out, _ = rebuilt_demo
    stale = "compose/demo is stale: run `python -m benchmarks.generate --demo`"
    committed, fresh = DEMO_DIR / "mmdu-demo.json.gz", out / "mmdu-demo.json.gz"
    assert gzip.decompress(committed.read_bytes()) == gzip.decompress(fresh.read_bytes()), stale

    def readme(path: Path) -> str:  # file sizes depend on the encoders, the rest must not
        return re.sub(r"[\d,]+ bytes", "N bytes", (path / "README.md").read_text())

    assert readme(DEMO_DIR) == readme(out), stale

    def images(path: Path) -> list[tuple[str, str, tuple[int, int]]]:
        with zipfile.ZipFile(path) as archive:
            found = []
            for name in archive.namelist():
                with Image.open(io.BytesIO(archive.read(name))) as image:
                    found.append((name, image.format, image.size))
            return found

    assert images(DEMO_DIR / "mmdu-demo_pics.zip") == images(out / "mmdu-demo_pics.zip"), stale


def test_demo_is_valid_small_and_big_enough(rebuilt_demo) -> None:
    out, stats = rebuilt_demo
    raw = (out / "mmdu-demo.json.gz").read_bytes()
    assert raw[3] & 0x08 == 0 and raw[4:8] == b"\0\0\0\0", "no file name, mtime 0"
    records = json.loads(gzip.decompress(raw))
    for record in records:
        check_dialogue(record)
        assert all(p.startswith("mmdu-demo_pics/") for p in record["image"])
    with zipfile.ZipFile(out / "mmdu-demo_pics.zip") as archive:
        names = archive.namelist()
        assert names == sorted(p for r in records for p in r["image"])
        for name in names[::25]:
            with Image.open(io.BytesIO(archive.read(name))) as image:
                assert IMAGE_SIDES[0] <= max(image.size) <= IMAGE_SIDES[1]
                image.load()
    total = sum((out / n).stat().st_size for n in ("mmdu-demo.json.gz", "mmdu-demo_pics.zip"))
    assert total <= 4_000_000
    # 15 samples of 64k tokens (576 per image), even when a planner takes ~90 images a sample
    assert stats.text_tokens + 576 * stats.images >= 15 * 65_536
    assert stats.images >= 15 * 95
