"""Distribution control: weighted source mixing and several context lengths in one run."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import cli
from compose.order import mix, source_weights, split_weight
from compose.plan import Budgets, Infeasible, Policy, make_plan, parse_lengths
from tests.corpus import write_exmodd, write_mmdu45k
from tests.frames import catalog

# --- weights on the command line -----------------------------------------------------------


def test_a_weight_is_the_number_after_the_last_colon(tmp_path):
    assert split_weight("a.json:0.7") == ("a.json", 0.7)
    assert split_weight("a.json:2") == ("a.json", 2.0)
    assert split_weight("s3://bucket/a.json:.5") == ("s3://bucket/a.json", 0.5)
    assert split_weight("a.json") == ("a.json", None)
    assert split_weight("a.json:x") == ("a.json:x", None)
    odd = tmp_path / "odd:1"
    odd.write_text("[]")
    assert split_weight(str(odd)) == (str(odd), None)  # a file of that name is taken whole
    for bad in ("a.json:0", "a.json:0.0", "a.json:1e999"):
        with pytest.raises(ValueError, match="positive"):
            split_weight(bad)


def test_every_source_has_a_weight_or_none_has():
    assert source_weights(["a.json", "b.json"]) == ()
    assert source_weights(["a.json:3", "b.json:1"]) == (3.0, 1.0)
    with pytest.raises(ValueError, match="--source b.json has no :WEIGHT"):
        source_weights(["a.json:0.7", "b.json"])


# --- the mix -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    costs=st.lists(st.lists(st.integers(1, 500), min_size=1, max_size=40), min_size=1, max_size=4),
    raw=st.lists(st.floats(0.05, 10), min_size=4, max_size=4),
)
def test_every_prefix_of_the_mix_follows_the_weights(costs, raw):
    weights = raw[: len(costs)]
    parts = [np.arange(len(c)) + 1000 * s for s, c in enumerate(costs)]
    merged, dropped = mix(parts, [np.array(c) for c in costs], weights)
    source = merged // 1000
    position = merged % 1000
    # each source keeps its own order, and entries are only ever dropped at a source's end
    kept = [position[source == s] for s in range(len(costs))]
    for mine in kept:
        assert mine.tolist() == list(range(len(mine)))
    assert dropped == sum(len(c) for c in costs) - len(merged)
    horizon = min(sum(c) / w for c, w in zip(costs, weights, strict=True))
    pairs = zip(costs, weights, strict=True)
    scarce = [s for s, (c, w) in enumerate(pairs) if sum(c) / w == horizon]
    assert any(len(kept[s]) == len(costs[s]) for s in scarce), "the scarcest source is used up"
    # at every point, each source has brought tokens in proportion to its weight, to within
    # one of its entries: tokens / weight never pass the merge's clock, and adding the
    # source's next kept entry would reach it
    used = np.zeros(len(costs))
    taken = [0] * len(costs)
    for s, p in zip(source.tolist(), position.tolist(), strict=True):
        used[s] += costs[s][p]
        taken[s] += 1
        clock = used[s] / weights[s]
        for other in range(len(costs)):
            assert used[other] / weights[other] <= clock * (1 + 1e-9)
            if taken[other] < len(kept[other]):
                step = costs[other][taken[other]]
                assert (used[other] + step) / weights[other] >= clock * (1 - 1e-9)


def two_sources() -> pl.DataFrame:
    """Large multi-image dialogues (source 0) and small single-image ones (source 1)."""
    large = catalog(1, 300, images=(1, 4), text=(200, 1200), source=0, row_base=0)
    small = catalog(2, 600, max_qa=2, images=(1, 1), text=(40, 200), source=1, row_base=300)
    return pl.concat([large, small])


def test_the_plan_achieves_the_weighted_mix_and_reports_it():
    frame = two_sources()
    for weights in ((0.7, 0.3), (0.5, 0.5)):
        plan = make_plan(
            frame,
            Budgets(tokens=8_000, tolerance=0.05),
            Policy(image_tokens="fixed:64", weights=weights),
        )
        report = plan.report
        assert report.over_budget == report.under_floor == 0
        shares = [m["share"] for m in report.mix]
        assert [m["weight"] for m in report.mix] == list(weights)
        # within a few points: a sample's last segment is often a cut-down large dialogue
        assert np.allclose(shares, np.array(weights) / sum(weights), atol=0.05), shares
        # the report's tokens per source are the plan's own
        owner = dict(zip(frame["row"], frame["source"], strict=True))
        by_source = plan.segments.group_by(
            pl.col("dialogue").replace_strict(owner).alias("source")
        ).agg(pl.col("tokens").sum())
        counted = dict(zip(by_source["source"], by_source["tokens"], strict=True))
        assert [m["tokens"] for m in report.mix] == [counted.get(s, 0) for s in (0, 1)]
        assert report.mix_dropped > 0  # one source runs out first; the rest is left out


def test_without_weights_the_catalog_mix_is_reported():
    plan = make_plan(two_sources(), Budgets(tokens=8_000), Policy(image_tokens="fixed:64"))
    assert [m["weight"] for m in plan.report.mix] == [None, None]
    assert plan.report.mix_dropped == 0
    assert sum(m["share"] for m in plan.report.mix) == pytest.approx(1.0, abs=1e-5)


def test_weights_that_do_not_fit_the_catalog_are_refused():
    frame = two_sources()
    with pytest.raises(Infeasible, match="2 sources: give every --source a weight"):
        make_plan(frame, Budgets(tokens=8_000), Policy(image_tokens="fixed:64", weights=(1.0,)))
    too_big = frame.with_columns(
        pl.when(pl.col("source") == 1)
        .then(pl.col("qa_text_tokens").list.eval(pl.element() + 9_000))
        .otherwise(pl.col("qa_text_tokens"))
    )
    with pytest.raises(Infeasible, match="source 2 has weight 0.3 but no dialogue that fits"):
        make_plan(
            too_big, Budgets(tokens=8_000), Policy(image_tokens="fixed:64", weights=(0.7, 0.3))
        )
    with pytest.raises(ValueError, match="positive"):
        Policy(weights=(1.0, -1.0))


# --- several lengths -----------------------------------------------------------------------


def test_lengths_are_lists_and_ranges():
    assert parse_lengths("64k") == (65_536,)
    assert parse_lengths("32k,64k,128k") == (32_768, 65_536, 131_072)
    assert parse_lengths("32k..128k") == (32_768, 65_536, 98_304, 131_072)
    assert parse_lengths("8k,32k..64k:16k") == (8_192, 32_768, 49_152, 65_536)
    for bad in ("32k,32k", "64k..32k", "32k..100k", "1k..2k:0.5", "lots"):
        with pytest.raises(ValueError):
            parse_lengths(bad)
    with pytest.raises(ValueError, match="not the largest"):
        Budgets(tokens=1000, lengths=(500, 2000))
    assert Budgets(tokens=500, lengths=(500,)).lengths == ()


@pytest.mark.parametrize("samples", [None, 7])
def test_samples_take_the_lengths_in_turn(samples):
    frame = catalog(3, 400, text=(50, 900))
    sizes = (2_000, 6_000, 4_000)
    budgets = Budgets(tokens=6_000, lengths=sizes, samples=samples, probes=1)
    plan = make_plan(frame, budgets, Policy(image_tokens="fixed:64"))
    per_sample = (
        plan.segments.group_by("sample", maintain_order=True)
        .agg(pl.col("tokens").sum(), pl.col("budget").unique(), pl.col("probe").sum())
        .sort("sample")
    )
    assert per_sample["budget"].list.len().max() == 1
    budget = per_sample["budget"].list.first().to_numpy()
    assert budget.tolist() == [sizes[i % 3] for i in range(len(budget))]
    tokens = per_sample["tokens"].to_numpy()
    floors = np.ceil(budget * 0.98)
    assert ((floors <= tokens) & (tokens <= budget)).all()
    assert (per_sample["probe"] == 1).all()
    counts = {x["tokens"]: x["samples"] for x in plan.report.lengths}
    assert counts == {s: int((budget == s).sum()) for s in sizes}
    if samples is not None:
        assert [counts[s] for s in sizes] == [3, 2, 2]
    assert plan.report.fill.min >= 0.98


# --- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    (root / "m45").mkdir()
    (root / "ex").mkdir()
    m45 = write_mmdu45k(root / "m45", 100, seed=21, zip=True)
    exmodd = write_exmodd(root / "ex", 150, seed=22)
    out = root / "out"
    args = [
        "--source", f"{m45.source}:0.7", "--images", str(m45.images),
        "--source", f"{exmodd.source}:0.3", "--images", str(exmodd.images),
        "--tokens", "4k,8k", "--samples", "6", "--image-tokens", "fixed:64",
        "--tolerance", "0.05", "--shard-size", "4", "--out", str(out), "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(cli.app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return m45, exmodd, out


def test_a_mixed_run_of_two_lengths(mixed):
    m45, exmodd, out = mixed
    manifest = pl.read_parquet(out / "manifest.parquet").sort("key")
    assert manifest["budget"].to_list() == [4096, 8192] * 3
    assert (manifest["tokens"] <= manifest["budget"]).all()
    assert (manifest["tokens"] >= (manifest["budget"] * 0.95).ceil()).all()
    files = (
        manifest.select(pl.col("source_files").explode(), pl.col("source_tokens").explode())
        .group_by("source_files")
        .agg(pl.col("source_tokens").sum())
    )
    tokens = dict(zip(files["source_files"], files["source_tokens"], strict=True))
    # the manifest names a source by its path or, since splice keeps paths out of the bytes, its
    # file name: the two inputs' names differ either way
    (exmodd_file,) = [f for f in tokens if f.rsplit("/", 1)[-1] == exmodd.source.name]
    share = tokens[exmodd_file] / sum(tokens.values())
    assert abs(share - 0.3) < 0.06, tokens
    assert int(manifest["source_tokens"].list.sum().sum()) == int(manifest["tokens"].sum())
    record = json.loads((out / "run.json").read_text())
    assert record["summary"]["lengths"] == {"4096": 3, "8192": 3}
    assert record["config"]["weights"] == [0.7, 0.3]
    assert [m["weight"] for m in record["summary"]["mix"]] == [0.7, 0.3]
    result = CliRunner().invoke(cli.app, ["validate", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_a_weight_on_only_some_sources_is_a_usage_error(mixed, tmp_path):
    m45, exmodd, _ = mixed
    args = [
        "--source", f"{m45.source}:0.7", "--images", str(m45.images),
        "--source", str(exmodd.source), "--images", str(exmodd.images),
        "--out", str(tmp_path / "x"), "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2
    assert "has no :WEIGHT" in result.output
