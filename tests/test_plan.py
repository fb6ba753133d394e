"""The planner: every budget holds on random catalogs, segments are prefixes, plans are seeded.

Catalogs are generated with numpy from a seed; every property is re-derived here from the
frame itself (not from the plan's own columns) before it is compared.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compose.catalog import Catalog, SourceSpec, ingest
from compose.plan import (
    Budgets,
    Infeasible,
    Plan,
    PlanReport,
    Policy,
    check_feasible,
    load_plan,
    make_plan,
    parse_tokens,
    plan_columns,
    save_plan,
)
from tests.corpus import write_exmodd, write_mmdu45k
from tests.frames import catalog, digits_alone

SCHEMA = {
    "row": pl.Int64,
    "id": pl.String,
    "n_images": pl.Int32,
    "n_qa": pl.Int32,
    "qa_text_tokens": pl.List(pl.Int32),
    "qa_new_images": pl.List(pl.Int32),
    "images": pl.List(pl.Struct({"number": pl.Int32, "width": pl.Int32, "height": pl.Int32})),
    "turns": pl.List(pl.Struct({"mentions": pl.List(pl.Int32)})),
}


def mmdu_like(dialogues: int, seed: int = 0) -> pl.DataFrame:
    """MMDU-45k's shape: 2-5 images (mean 3), mean 9 QA turns, ~520 text tokens per QA turn,
    300-1000 px images, most dialogues introducing all images in the first question."""
    rng = np.random.default_rng(seed)
    n_images = rng.choice([2, 3, 4, 5], size=dialogues, p=[0.4, 0.3, 0.2, 0.1])
    n_qa = np.clip(rng.poisson(8.0, size=dialogues) + 1, 1, 27)
    first = np.where(rng.random(dialogues) < 0.8, n_images, 1)
    columns = {name: [] for name in SCHEMA}
    for d in range(dialogues):
        new = np.zeros(n_qa[d], dtype=np.int64)
        new[0] = first[d] if n_qa[d] > 1 else n_images[d]
        new[-1] += n_images[d] - new[0]
        sizes = rng.integers(300, 1001, (n_images[d], 2))
        columns["row"].append(d)
        columns["id"].append(f"mmdu:{d}")
        columns["n_images"].append(int(n_images[d]))
        columns["n_qa"].append(int(n_qa[d]))
        columns["qa_text_tokens"].append(
            np.clip(rng.normal(520, 160, n_qa[d]), 40, 1600).astype(int).tolist()
        )
        columns["qa_new_images"].append(new.tolist())
        columns["images"].append(
            [{"number": i + 1, "width": int(w), "height": int(h)} for i, (w, h) in enumerate(sizes)]
        )
        columns["turns"].append([{"mentions": []}] * (2 * int(n_qa[d])))
    return pl.DataFrame(columns, schema=SCHEMA)


def check(
    plan: Plan,
    frame: pl.DataFrame,
    budgets: Budgets,
    per_image: int,
    digit_tokens=None,
) -> None:
    """Every rule of the plan, recomputed from the catalog frame."""
    by_row = {r["row"]: r for r in frame.iter_rows(named=True)}
    seg = plan.segments
    assert seg.schema["sample"] == pl.Int64 and seg.schema["position"] == pl.Int32
    assert seg.equals(seg.sort("sample", "position"))
    floor = math.ceil(budgets.tokens * (1 - budgets.tolerance))
    uses: dict[int, int] = {}
    samples = seg.partition_by("sample", maintain_order=True)
    assert [int(s["sample"][0]) for s in samples] == list(range(len(samples)))
    for sample in samples:
        assert sample["position"].to_list() == list(range(sample.height))
        dialogues = sample["dialogue"].to_list()
        assert len(set(dialogues)) == len(dialogues), "a dialogue twice in one sample"
        offset = 0
        tokens = 0
        for s in sample.iter_rows(named=True):
            r = by_row[s["dialogue"]]
            j = s["last_turn"] + 1
            assert s["first_turn"] == 0 and 1 <= j <= r["n_qa"], "not a prefix"
            images = sum(r["qa_new_images"][:j])
            assert s["images"] == images
            assert s["image_offset"] == offset, "offsets are not the running sums"
            text = sum(r["qa_text_tokens"][:j])
            if digit_tokens is not None:
                for turn in r["turns"][: 2 * j]:
                    for n in turn["mentions"]:
                        text += int(digit_tokens(np.array([n + offset]))[0])
                        text -= int(digit_tokens(np.array([n]))[0])
            assert s["text_tokens"] == text
            assert s["image_tokens"] == images * per_image
            total = text + images * per_image + budgets.message_overhead * 2 * j
            assert s["tokens"] == total
            offset += images
            tokens += total
            uses[s["dialogue"]] = uses.get(s["dialogue"], 0) + 1
        assert floor <= tokens <= budgets.tokens
        assert budgets.min_images <= offset
        if budgets.max_images is not None:
            assert offset <= budgets.max_images
    assert all(count <= budgets.reuse for count in uses.values())
    report = plan.report
    assert report.samples == len(samples) >= 1
    assert report.over_budget == 0 and report.under_floor == 0
    assert report.dialogues_used == len(uses)
    assert report.dialogues_used + report.dialogues_unused == frame.height
    if budgets.samples is not None:
        assert report.samples <= budgets.samples


budget_cases = st.fixed_dictionaries(
    {
        "tokens": st.integers(300, 12_000),
        "tolerance": st.sampled_from([0.0, 0.01, 0.02, 0.05, 0.2, 0.5]),
        "max_images": st.one_of(st.none(), st.integers(0, 40)),
        "min_images": st.sampled_from([0, 0, 1, 3, 8]),
        "samples": st.one_of(st.none(), st.integers(1, 8)),
        "reuse": st.integers(1, 3),
        "message_overhead": st.sampled_from([0, 0, 3, 17]),
    }
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    dialogues=st.integers(1, 60),
    per_image=st.sampled_from([0, 1, 64, 256]),
    budget=budget_cases,
    plan_seed=st.integers(0, 1000),
    order=st.sampled_from(["random", "input"]),
)
def test_budgets_hold_on_random_catalogs(seed, dialogues, per_image, budget, plan_seed, order):
    frame = catalog(seed, dialogues)
    if budget["max_images"] is not None and budget["min_images"] > budget["max_images"]:
        budget["min_images"] = budget["max_images"]
    budgets = Budgets(**budget)
    policy = Policy(image_tokens=f"fixed:{per_image}", order=order, seed=plan_seed)
    try:
        plan = make_plan(frame, budgets, policy)
    except Infeasible as error:
        event(f"infeasible: {str(error)[:20]}")
        return
    event("planned")
    check(plan, frame, budgets, per_image)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    per_image=st.sampled_from([1, 20]),
    tokens=st.integers(3_000, 30_000),
    overhead=st.sampled_from([0, 5]),
)
def test_mention_correction_is_exact_and_keeps_the_ceiling(seed, per_image, tokens, overhead):
    frame = catalog(seed, 80, images=(0, 5), text=(5, 400), all_first=0.3)
    budgets = Budgets(tokens=tokens, tolerance=0.05, message_overhead=overhead)
    policy = Policy(image_tokens=f"fixed:{per_image}", seed=seed % 97)
    try:
        plan = make_plan(frame, budgets, policy, digit_tokens=digits_alone)
    except Infeasible:
        event("infeasible")
        return
    event("trimmed" if plan.report.samples_trimmed else "planned")
    check(plan, frame, budgets, per_image, digit_tokens=digits_alone)


def test_mention_correction_changes_text_tokens_past_offset_nine():
    frame = catalog(3, 200, images=(0, 5), text=(5, 100), all_first=1.0)
    budgets = Budgets(tokens=4000, tolerance=0.05)
    plan = make_plan(frame, budgets, Policy(image_tokens="fixed:10"), digit_tokens=digits_alone)
    check(plan, frame, budgets, 10, digit_tokens=digits_alone)
    assert plan.report.segments_corrected > 0
    plain = make_plan(frame, budgets, Policy(image_tokens="fixed:10"))
    assert plain.report.segments_corrected == 0


def test_reuse_uses_dialogues_again_but_never_twice_in_a_sample():
    frame = catalog(5, 30, text=(100, 900))
    budgets = Budgets(tokens=6000, tolerance=0.1, reuse=3)
    plan = make_plan(frame, budgets, Policy(image_tokens="fixed:64", seed=4))
    check(plan, frame, budgets, 64)
    counts = plan.segments["dialogue"].value_counts()["count"]
    assert counts.max() == 3
    once = make_plan(frame, Budgets(tokens=6000, tolerance=0.1), Policy(image_tokens="fixed:64"))
    assert once.segments["dialogue"].value_counts()["count"].max() == 1
    assert plan.report.samples > once.report.samples


def test_samples_limit_and_offsets():
    frame = catalog(9, 100, text=(50, 600))
    budgets = Budgets(tokens=5000, samples=7)
    plan = make_plan(frame, budgets, Policy(image_tokens="fixed:100"))
    check(plan, frame, budgets, 100)
    assert plan.report.samples == 7
    running = plan.segments.with_columns(
        expected=(pl.col("images").cum_sum() - pl.col("images")).over("sample")
    )
    assert (running["expected"] == running["image_offset"]).all()


def test_same_seed_same_plan_other_seed_other_plan():
    frame = catalog(11, 200, text=(50, 800))
    budgets = Budgets(tokens=8000, max_images=12)
    first = make_plan(frame, budgets, Policy(image_tokens="fixed:200", seed=1))
    again = make_plan(frame, budgets, Policy(image_tokens="fixed:200", seed=1))
    other = make_plan(frame, budgets, Policy(image_tokens="fixed:200", seed=2))
    assert first.segments.equals(again.segments)
    assert first.report == again.report
    assert not first.segments.equals(other.segments)


@pytest.mark.parametrize("max_images", [None, 100])
def test_mmdu_shaped_catalog_fills_64k(max_images):
    frame = mmdu_like(3000)
    budgets = Budgets(tokens=parse_tokens("64k"), max_images=max_images)
    plan = make_plan(frame, budgets, Policy())  # llava-1.5: 576 tokens per image
    report = plan.report
    assert report.fill.mean >= 0.99
    assert report.over_budget == 0 and report.under_floor == 0
    assert report.tokens.max <= 65536 and report.tokens.min >= budgets.floor
    assert report.dialogues_used >= 0.99 * frame.height
    if max_images is None:
        assert report.segments_truncated < 0.2 * report.segments  # whole dialogues, mostly
    else:
        # 100 images need 57,600 image tokens; short prefixes get as close as the text allows.
        assert report.images.max <= 100
        assert report.images.mean >= 80
        assert report.segments_truncated > 0.9 * report.segments
    check(plan, frame, budgets, 576)


def test_image_rich_catalog_reaches_the_image_ceiling():
    frame = mmdu_like(2000, seed=3)
    budgets = Budgets(tokens=65536, max_images=100)
    plan = make_plan(frame, budgets, Policy(image_tokens="fixed:64"))
    assert plan.report.images.max <= 100
    assert plan.report.images.p50 >= 98
    assert plan.report.fill.mean >= 0.99


def test_min_images_floor_is_met():
    frame = mmdu_like(2000, seed=4)
    budgets = Budgets(tokens=65536, min_images=60)
    plan = make_plan(frame, budgets, Policy())
    assert plan.report.images.min >= 60
    assert plan.report.fill.mean >= 0.99


# --- infeasible budgets: each reported before any work, with its numbers --------------------


def small_catalog() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "row": [0, 1],
            "id": ["a", "b"],
            "n_images": [2, 3],
            "n_qa": [2, 1],
            "qa_text_tokens": [[300, 400], [500]],
            "qa_new_images": [[2, 0], [3]],
            "images": [
                [{"number": 1, "width": 500, "height": 500}] * 2,
                [{"number": 1, "width": 500, "height": 500}] * 3,
            ],
            "turns": [[{"mentions": []}] * 4, [{"mentions": []}] * 2],
        },
        schema=SCHEMA,
    )


@pytest.mark.parametrize(
    ("budgets", "policy", "message"),
    [
        (
            Budgets(tokens=1024),
            Policy(),
            "the smallest segment (one QA turn with its images) is 1,452 tokens "
            "but --tokens is 1k (1,024)",
        ),
        (
            Budgets(tokens=2048, max_images=1),
            Policy(image_tokens="fixed:10"),
            "brings at least 2 images (its first QA turn's) but --max-images is 1",
        ),
        (
            Budgets(tokens=16384, min_images=50),
            Policy(),
            "--min-images 50 needs at least 28,800 image tokens (llava-1.5: 576 per image) "
            "but --tokens is 16k (16,384)",
        ),
        (
            Budgets(tokens=16384, tolerance=0.95, min_images=6),
            Policy(image_tokens="fixed:10"),
            "--min-images 6 but the segments that fit hold only 5 images",
        ),
        (
            Budgets(tokens=1024, min_images=5),
            Policy(image_tokens="fixed:100"),
            "--min-images 5 cannot fit in --tokens 1k (1,024): packing the corpus's most "
            "image-dense QA turns (the best: one image per 250 tokens) gives at most 3 images",
        ),
        (
            Budgets(tokens=65536),
            Policy(image_tokens="fixed:10"),
            "the corpus holds 1,250 tokens, less than one sample's floor of 64,226",
        ),
        (
            Budgets(tokens=1000, samples=5),
            Policy(image_tokens="fixed:10"),
            "--samples 5 needs about 8 dialogues (segments average 625 tokens) but the corpus "
            "has 2; use --reuse",
        ),
        (
            Budgets(tokens=4000, min_images=5, max_images=4),
            Policy(),
            "--min-images 5 is above --max-images 4",
        ),
    ],
)
def test_infeasible_budgets_say_why(budgets, policy, message):
    with pytest.raises(Infeasible) as caught:
        check_feasible(small_catalog(), budgets, policy)
    assert message in str(caught.value)
    with pytest.raises(Infeasible):
        make_plan(small_catalog(), budgets, policy)


def test_budgets_that_no_sample_can_close_are_infeasible():
    # Three one-turn dialogues of 1,000 tokens: one is under the floor, two are over the ceiling.
    frame = catalog(0, 3, max_qa=1, images=(0, 0), text=(1000, 1000))
    budgets = Budgets(tokens=1500, tolerance=0.01)
    check_feasible(frame, budgets, Policy())
    closing = "no sample meets every budget: 2 tries failed, the last holding 1,000 tokens"
    with pytest.raises(Infeasible, match=closing):
        make_plan(frame, budgets, Policy())


def test_feasible_budgets_pass_the_check():
    check_feasible(small_catalog(), Budgets(tokens=1800, tolerance=0.5), Policy())


@pytest.mark.parametrize(
    "bad",
    [
        {"tokens": 0},
        {"tokens": 100, "tolerance": 1.0},
        {"tokens": 100, "tolerance": -0.1},
        {"tokens": 100, "max_images": -1},
        {"tokens": 100, "samples": 0},
        {"tokens": 100, "reuse": 0},
    ],
)
def test_budgets_refuse_nonsense(bad):
    with pytest.raises(ValueError):
        Budgets(**bad)


def test_policy_refuses_unknown_order():
    with pytest.raises(ValueError, match="order"):
        Policy(order="shortest")


def test_bad_catalog_rows_name_the_row():
    frame = small_catalog().with_columns(pl.Series("n_qa", [2, 2], dtype=pl.Int32))
    with pytest.raises(ValueError, match="catalog row 1, id 'b': qa_text_tokens"):
        make_plan(frame, Budgets(tokens=4000), Policy())
    with pytest.raises(ValueError, match="lacks columns images"):
        make_plan(small_catalog().drop("images"), Budgets(tokens=4000), Policy())


# --- parse_tokens, save/load ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64k", 65536),
        ("128K", 131072),
        ("64000", 64000),
        ("1.5k", 1536),
        (" 32k ", 32768),
        ("1m", 1048576),
        ("0.5k", 512),
    ],
)
def test_parse_tokens(text, value):
    assert parse_tokens(text) == value


@pytest.mark.parametrize("text", ["", "k", "64kb", "-5", "1.5", "1.0001k", "0", "sixty", "6 4k"])
def test_parse_tokens_refuses(text):
    with pytest.raises(ValueError):
        parse_tokens(text)


def test_save_and_load_round_trip(tmp_path):
    frame = catalog(21, 120, text=(50, 700))
    budgets = Budgets(tokens=6000, max_images=20, reuse=2, message_overhead=3)
    policy = Policy(image_tokens="fixed:128", seed=9)
    plan = make_plan(frame, budgets, policy)
    written = save_plan(plan, tmp_path)
    assert written == tmp_path / "plan.parquet"
    loaded = load_plan(written)
    assert loaded.segments.equals(plan.segments)
    assert loaded.report == plan.report
    assert loaded.budgets == budgets and loaded.policy == policy
    assert not list(tmp_path.glob(".*partial"))


def test_load_refuses_a_parquet_that_is_not_a_plan(tmp_path):
    path = tmp_path / "other.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(path)
    with pytest.raises(ValueError, match="not a compose plan"):
        load_plan(path)


def test_report_json_has_the_distributions():
    plan = make_plan(catalog(2, 50, text=(50, 700)), Budgets(tokens=3000), Policy())
    data = json.loads(json.dumps(plan.report.to_json()))
    for name in ("fill", "images", "tokens", "segments_per_sample"):
        assert set(data[name]) == {"mean", "min", "p1", "p50", "max"}
    assert data["over_budget"] == 0 and data["samples"] == plan.report.samples
    assert data["budgets"]["tokens"] == 3000 and data["policy"]["image_tokens"] == "llava-1.5"
    assert PlanReport.from_dict(data) == plan.report


def test_image_sizes_the_model_refuses_name_the_row():
    frame = small_catalog().with_columns(
        pl.Series(
            "images",
            [
                [{"number": 1, "width": 500, "height": 500}] * 2,
                [{"number": 1, "width": 0, "height": 500}] * 3,
            ],
            dtype=SCHEMA["images"],
        )
    )
    with pytest.raises(ValueError, match="catalog row 1, id 'b': image size refused"):
        check_feasible(frame, Budgets(tokens=4000), Policy())


# --- the planner's columns: a slim read of the catalog plans what the whole rows plan -------

# What the planner read before it named nested fields: every turn's text and image's path too.
WHOLE_COLUMNS = ["row", "id", "n_images", "n_qa", "qa_text_tokens", "qa_new_images", "images"]
WHOLE_COLUMNS += ["turns", "source"]


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory) -> Catalog:
    """A real catalog: MMDU-45k-like dialogues (several images, prose mentions, first
    questions) and EXMODD-like ones (one image), as sources 0 and 1."""
    root = tmp_path_factory.mktemp("slim")
    (root / "m45").mkdir()
    (root / "ex").mkdir()
    m45 = write_mmdu45k(root / "m45", 90, seed=41, zip=True)
    exmodd = write_exmodd(root / "ex", 120, seed=42)
    specs = [SourceSpec(path=str(c.source), images=str(c.images)) for c in (m45, exmodd)]
    ingest(specs, root / "catalog")
    return Catalog.open(root / "catalog")


SLIM_CASES = {
    "random": (Budgets(tokens=4096), Policy(image_tokens="fixed:64", seed=1)),
    "input": (Budgets(tokens=4096, reuse=2), Policy(image_tokens="fixed:64", order="input")),
    "topic": (Budgets(tokens=4096), Policy(image_tokens="fixed:64", order="topic", seed=2)),
    "length": (Budgets(tokens=4096), Policy(image_tokens="fixed:64", order="length", seed=3)),
    "probes": (
        Budgets(tokens=4096, probes=2, min_reach_share=0.3),
        Policy(image_tokens="fixed:64", seed=4),
    ),
    "mixing": (Budgets(tokens=4096), Policy(image_tokens="fixed:64", weights=(0.6, 0.4))),
    "lengths": (
        Budgets(tokens=8192, lengths=(2048, 4096, 8192), message_overhead=3),
        Policy(image_tokens="fixed:64", seed=5),
    ),
    "images": (
        Budgets(tokens=8192, max_images=20, min_images=4),
        Policy(image_tokens="llava-1.5", seed=6),
    ),
}


@pytest.mark.parametrize("case", list(SLIM_CASES))
def test_the_slim_read_plans_byte_for_byte_what_whole_rows_plan(two_sources, tmp_path, case):
    budgets, policy = SLIM_CASES[case]
    whole = two_sources.frame(WHOLE_COLUMNS)
    slim = two_sources.frame(plan_columns(policy))
    assert "text" not in [f.name for f in slim.schema["turns"].inner.fields]
    assert ("turns[0].text" in slim.columns) == (policy.order == "topic")
    assert slim.estimated_size() < whole.estimated_size() / 3
    check_feasible(slim, budgets, policy)
    plans = [make_plan(f, budgets, policy, digit_tokens=digits_alone) for f in (whole, slim)]
    assert plans[1].segments.equals(plans[0].segments)
    assert plans[1].report == plans[0].report
    written = [save_plan(p, tmp_path / f"{n}.parquet") for n, p in enumerate(plans)]
    assert written[0].read_bytes() == written[1].read_bytes()
    report = plans[0].report
    assert report.samples >= 3 and report.segments_corrected > 0  # mentions were read
    assert (report.probes > 0) == (case == "probes")
    assert (report.coherence is not None) == (case == "topic")
    assert all(m["segments"] > 0 for m in report.mix)  # both sources planned


def test_topic_order_without_the_first_question_says_so(two_sources):
    policy = Policy(image_tokens="fixed:64", order="topic")
    frame = two_sources.frame(plan_columns(Policy()))
    with pytest.raises(ValueError, match="turns has no text"):
        make_plan(frame, Budgets(tokens=4096), policy)
