"""Ordering policies: topic signatures and clusters, the topic and length orders, and that every
order keeps every budget."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import cli
from compose import order as ordering
from compose.plan import Budgets, Infeasible, Policy, make_plan
from tests.corpus import write_mmdu45k
from tests.frames import catalog

VOCABULARIES = (
    "castle tower bridge river stone medieval fortress moat gate wall knight banner",
    "volcano lava crater magma eruption ash basalt caldera summit smoke island peak",
    "violin cello orchestra concert melody symphony bow string conductor stage note tune",
)


def planted(n_per_topic: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Questions drawn from three topic vocabularies, with MMDU-style image lines."""
    rng = np.random.default_rng(seed)
    texts, topic = [], []
    for t, words in enumerate(VOCABULARIES):
        vocab = words.split()
        for _ in range(n_per_topic):
            picked = " ".join(rng.choice(vocab, 6))
            texts.append(f"Image1: <image-1>\nImage 2: <image-2>\nWhat links {picked} in Image1?")
            topic.append(t)
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], np.array(topic)[order]


# --- signatures and clusters ---------------------------------------------------------------


def test_signatures_are_unit_tf_idf_rows_of_content_words():
    texts = [
        "Image1: <image-1> castle tower bridge",
        "<image-3> Describe the castle, the tower and the bridge in Image 3.",
        "volcano lava crater",
        "volcano lava crater",
        "a unique word nowhere else",
        "",
    ]
    vectors = ordering.signatures(texts)
    assert vectors.shape[0] == len(texts)
    gram = (vectors @ vectors.T).toarray()
    assert gram[0, 1] == pytest.approx(1.0)  # tags, mentions and stop words do not count
    assert gram[2, 3] == pytest.approx(1.0)
    assert gram[0, 2] == 0.0  # no word in common
    assert np.allclose(np.diag(gram), [1, 1, 1, 1, 0, 0])  # words found once are dropped


def test_clusters_recover_planted_topics():
    texts, topic = planted(40)
    labels = ordering.clusters(ordering.signatures(texts), 3, np.random.default_rng(0))
    for t in range(3):
        mine = labels[topic == t]
        assert np.bincount(mine).max() >= 0.95 * len(mine)
    assert len(set(labels.tolist())) == 3
    empty = ordering.clusters(ordering.signatures(["", "", "x"]), 2, np.random.default_rng(0))
    assert empty.tolist() == [-1, -1, -1]


def test_coherence_is_higher_when_topics_sit_together():
    texts, topic = planted(30, seed=1)
    sample = np.arange(len(texts)) // 10
    together = [texts[i] for i in np.argsort(topic, kind="stable")]
    assert ordering.coherence(together, sample) > 2 * ordering.coherence(texts, sample)
    assert ordering.coherence(texts[:1], [0]) is None


# --- the orders ----------------------------------------------------------------------------


def runs(values: np.ndarray) -> int:
    return int(1 + (values[1:] != values[:-1]).sum()) if len(values) else 0


def test_topic_order_keeps_each_cluster_together_and_follows_the_seed():
    rng = np.random.default_rng(3)
    labels = rng.integers(-1, 7, 500)
    ids = np.arange(500)
    cost = np.ones(500)
    first = ordering.arrange(ids, "topic", np.random.default_rng(1), cost=cost, labels=labels)
    assert sorted(first.tolist()) == ids.tolist()
    assert runs(labels[first]) == len(np.unique(labels))
    again = ordering.arrange(ids, "topic", np.random.default_rng(1), cost=cost, labels=labels)
    other = ordering.arrange(ids, "topic", np.random.default_rng(2), cost=cost, labels=labels)
    assert first.tolist() == again.tolist() != other.tolist()


def test_length_order_sorts_each_block_largest_first():
    ids = np.arange(1000) + 5
    cost = np.zeros(1005)
    cost[ids] = np.random.default_rng(4).integers(1, 10_000, 1000)
    arranged = ordering.length_order(ids, cost, np.random.default_rng(0), 64)
    assert sorted(arranged.tolist()) == ids.tolist()
    for start in range(0, 1000, 64):
        block = cost[arranged[start : start + 64]]
        assert (np.diff(block) <= 0).all()
    shuffled = ordering.arrange(ids, "random", np.random.default_rng(0), cost=cost)
    assert runs(np.diff(cost[shuffled]) <= 0) > runs(np.diff(cost[arranged]) <= 0)


def topical(n_per_topic: int, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    texts, topic = planted(n_per_topic, seed)
    frame = catalog(seed, len(texts), images=(1, 3), text=(300, 1200), questions=texts)
    return frame, topic


def neighbours_same(plan, topic: np.ndarray) -> float:
    rows = plan.segments.filter(~pl.col("probe"))
    t = topic[rows["dialogue"].to_numpy() - 1000]
    same = rows["sample"].to_numpy()
    pair = same[1:] == same[:-1]
    return float((t[1:] == t[:-1])[pair].mean())


def test_topic_order_puts_related_dialogues_in_the_same_sample():
    frame, topic = topical(60)
    budgets = Budgets(tokens=12_000, tolerance=0.05)
    topical_plan = make_plan(frame, budgets, Policy(image_tokens="fixed:64", order="topic"))
    random_plan = make_plan(frame, budgets, Policy(image_tokens="fixed:64", order="random"))
    assert neighbours_same(topical_plan, topic) > 0.85
    assert neighbours_same(random_plan, topic) < 0.5
    assert topical_plan.report.coherence > 2 * ordering.coherence(
        ordering.first_questions(frame)[
            random_plan.segments.filter(~pl.col("probe"))["dialogue"].to_numpy() - 1000
        ],
        random_plan.segments.filter(~pl.col("probe"))["sample"].to_numpy(),
    )
    assert random_plan.report.coherence is None  # measured only where the plan has signatures


def test_topic_order_needs_text():
    frame = catalog(1, 20).with_columns(
        pl.col("turns").list.eval(pl.element().struct.field("mentions").alias("x"))
    )
    with pytest.raises(ValueError, match="turns"):
        make_plan(frame, Budgets(tokens=3_000), Policy(image_tokens="fixed:64", order="topic"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    tokens=st.integers(1_500, 15_000),
    tolerance=st.sampled_from([0.01, 0.02, 0.1]),
    max_images=st.one_of(st.none(), st.integers(1, 30)),
    reuse=st.integers(1, 2),
    order=st.sampled_from(ordering.ORDERS),
)
def test_every_order_keeps_every_budget(seed, tokens, tolerance, max_images, reuse, order):
    texts, _ = planted(20, seed % 7)
    frame = catalog(seed, len(texts), text=(50, 1200), questions=texts)
    budgets = Budgets(tokens=tokens, tolerance=tolerance, max_images=max_images, reuse=reuse)
    try:
        plan = make_plan(frame, budgets, Policy(image_tokens="fixed:32", order=order, seed=seed))
    except Infeasible:
        event("infeasible")
        return
    per_sample = plan.segments.group_by("sample").agg(
        pl.col("tokens").sum(), pl.col("images").sum(), pl.col("dialogue").n_unique(), pl.len()
    )
    assert (per_sample["tokens"] <= tokens).all()
    assert (per_sample["tokens"] >= budgets.floor).all()
    assert max_images is None or (per_sample["images"] <= max_images).all()
    assert (per_sample["dialogue"] == per_sample["len"]).all()
    assert plan.segments["dialogue"].value_counts()["count"].max() <= reuse
    assert plan.report.over_budget == plan.report.under_floor == 0


# --- the command line ----------------------------------------------------------------------


def test_order_on_the_command_line(tmp_path):
    (tmp_path / "c").mkdir()
    corpus = write_mmdu45k(tmp_path / "c", 80, seed=31, zip=True)
    base = [
        "--source", str(corpus.source), "--images", str(corpus.images), "--tokens", "2k",
        "--image-tokens", "fixed:64", "--quiet",
    ]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(cli.app, [*base, "--order", "topic", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["config"]["order"] == "topic"
    assert record["plan"]["coherence"] is not None
    # `compose plan` on the run's catalog reads the first questions the same way: the same plan
    again = tmp_path / "again.parquet"
    args = ["plan", str(tmp_path / "t" / "catalog"), "--tokens", "2k", "--order", "topic"]
    args += ["--image-tokens", "fixed:64", "--out", str(again), "--json"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == (tmp_path / "t" / "plan.parquet").read_bytes()
    result = runner.invoke(cli.app, [*base, "--order", "alphabetical", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--order" in result.output
