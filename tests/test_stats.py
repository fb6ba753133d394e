"""compose stats: Distinct-n against hand counts, toxicity on known lines, the CLI on demo output,
probe columns, bad input, and the coherence extra loading offline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

import cli
from compose.stats import Metric, StatsConfig, compute_stats, write_outputs
from compose.stats_quality import (
    DistinctCounter,
    ToxicityCounter,
    distinct_n,
    profanity_scorer,
    sentences,
    turn_toxicity,
)

TOXIC = "You are a fucking idiot and your work is shit."
CLEAN = "The lantern festival lights up the river at dusk, and families gather on the bridges."
LONG_CLEAN = (
    "Image3 shows a harbour at dawn with fishing boats moored along the quay. The light is soft "
    "and the water is calm, so the reflections of the masts are sharp. In the background a row of "
    "painted houses climbs the hill, and a church tower marks the centre of the village. "
) * 4


def invoke(args: list[str]):
    return CliRunner().invoke(cli.app, args, catch_exceptions=False)


# --- Distinct-n --------------------------------------------------------------------------------


def test_distinct_matches_hand_count():
    texts = ["The cat sat on the mat.", "the cat sat", "A dog!"]
    # words: [the cat sat on the mat] [the cat sat] [a dog]  -> 11 words, 7 distinct
    # bigrams: the-cat cat-sat sat-on on-the the-mat | the-cat cat-sat | a-dog -> 8, 6 distinct
    # trigrams: the-cat-sat cat-sat-on sat-on-the on-the-mat | the-cat-sat | (none) -> 5, 4 distinct
    # no n-gram spans two texts: "mat the" and "sat a" are never counted
    assert distinct_n(texts) == {1: 7 / 11, 2: 6 / 8, 3: 4 / 5}


def test_distinct_tokens_are_lowercased_word_runs():
    counter = DistinctCounter()
    counter.add(["Image_3's DON'T  don't -- image_3"])
    result = counter.result()
    # image_3, s, don, t, don, t, image_3: 7 words, 4 distinct
    assert result["tokens"] == 7
    assert result["unique"]["1"] == 4
    assert result["ngrams"] == {"1": 7, "2": 6, "3": 5}


def test_distinct_without_ngrams_is_none():
    assert distinct_n(["", "one", "..."]) == {1: 1.0, 2: None, 3: None}
    assert distinct_n([]) == {1: None, 2: None, 3: None}


def _reference(texts: list[str], n: int) -> tuple[int, int]:
    grams = []
    for text in texts:
        words = re.findall(r"\w+", text.lower())
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)), len(grams)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet="abAB c.'_\n", max_size=30), max_size=6), min_size=1, max_size=4
    )
)
def test_distinct_batched_equals_reference(batches):
    counter = DistinctCounter()
    for batch in batches:
        counter.add(batch)
    result = counter.result()
    every = [text for batch in batches for text in batch]
    for n in (1, 2, 3):
        unique, total = _reference(every, n)
        assert (result["unique"][str(n)], result["ngrams"][str(n)]) == (unique, total)
        assert result[f"distinct_{n}"] == (unique / total if total else None)


# --- toxicity ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer():
    return profanity_scorer()


def test_toxicity_flags_a_toxic_line_and_passes_a_clean_one(scorer):
    per_turn, *_ = turn_toxicity([TOXIC, CLEAN], scorer)
    assert per_turn[0] >= 0.5
    assert per_turn[1] < 0.5


def test_toxicity_finds_one_toxic_sentence_in_a_long_answer(scorer):
    answer = LONG_CLEAN + TOXIC + " " + LONG_CLEAN
    assert scorer([answer])[0] < 0.5  # the whole answer dilutes it: why turns are split
    per_turn, flat, owner, probability = turn_toxicity([answer], scorer)
    assert per_turn[0] >= 0.5
    assert flat[int(probability.argmax())] == TOXIC
    assert set(owner) == {0}


def test_toxicity_rate_counts_turns(scorer):
    counter = ToxicityCounter(0.5, scorer)
    counter.add([TOXIC, CLEAN, LONG_CLEAN, ""], ["a", "b", "c", "d"])
    result = counter.result()
    assert (result["turns"], result["flagged"], result["rate"]) == (4, 1, 0.25)
    assert result["examples"][0]["where"] == "a"
    assert result["examples"][0]["sentence"].startswith("You are a")


def test_sentences_split_after_end_marks_and_at_line_breaks():
    assert sentences("One. Two!  Three?\nFour\n\nfive 3.5 six") == [
        "One.",
        "Two!",
        "Three?",
        "Four",
        "five 3.5 six",
    ]


# --- the command on composed demo output -------------------------------------------------------


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    args = ["--tokens", "16k", "--max-images", "30", "--samples", "4", "--shard-size", "2"]
    result = invoke([*args, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_stats_on_demo_output_prints_the_table_and_writes_plots(demo_out, tmp_path):
    result = invoke(["stats", str(demo_out), "--out", str(tmp_path / "st"), "--quiet"])
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    for label in ("distributions (per sample)", "QA turns", "fill", "Distinct-3", "toxicity rate"):
        assert label in shown
    report = json.loads((tmp_path / "st" / "stats.json").read_text())
    manifest = pl.read_parquet(demo_out / "manifest.parquet")
    assert report["kind"] == "shards"
    assert report["counts"]["samples"] == manifest.height == 4
    assert report["counts"]["shards"] == 2
    assert report["distributions"]["tokens"]["max"] == manifest["tokens"].max() <= 16 * 1024
    assert report["quality"]["distinct"]["texts"] == manifest["turns"].sum()
    assert 0 < report["quality"]["distinct"]["distinct_3"] <= 1
    assert report["quality"]["toxicity"]["turns"] == manifest["turns"].sum()
    expected = {"tokens", "text_tokens", "image_tokens", "images", "turns", "segments", "fill"}
    assert {p.removesuffix(".png") for p in report["plots"]} == expected
    for name in report["plots"]:
        with Image.open(tmp_path / "st" / name) as png:
            assert png.format == "PNG"
            assert png.size[0] >= 600 and png.size[1] >= 400
            assert len(png.getcolors(1 << 16) or range(300)) > 10  # drawn, not blank


def test_stats_json_flag_and_catalog_input(demo_out, tmp_path):
    result = invoke(["stats", str(demo_out / "catalog"), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "catalog"
    assert report["counts"]["dialogues"] == 520
    assert report["quality"]["distinct"]["texts"] == report["counts"]["qa_turns"]
    assert report["distributions"]["images"]["min"] >= 1
    assert report["sources"][0]["share"] == 1.0
    tokens = report["distributions"]["tokens"]
    assert tokens["sum"] == report["counts"]["text_tokens"] + report["counts"]["image_tokens"]


def test_a_catalog_report_owns_its_metrics(demo_out):
    """A distribution added to one report (coherence does) must not reach the next one: it
    would name a column the catalog does not have."""
    config = StatsConfig(toxicity=False)
    first = compute_stats(demo_out / "catalog", config)
    first.add("coherence", Metric(label="coherence", per="QA pair", discrete=False), [0.5])
    second = compute_stats(demo_out / "catalog", config)
    assert "coherence" not in second.metrics
    assert second.distributions.keys() == first.distributions.keys() - {"coherence"}


def test_probe_columns_are_reported(demo_out, tmp_path):
    manifest = pl.read_parquet(demo_out / "manifest.parquet")
    reach = [[40_000, 52_000], [], [61_000], [30_500]]
    copy = tmp_path / "probed"
    copy.mkdir()
    for name in {*manifest["shard"], "run.json"}:
        (copy / name).symlink_to(demo_out / name)
    manifest.with_columns(
        probes=pl.Series([2, 0, 1, 1], dtype=pl.Int64),
        probe_reach_tokens=pl.Series(reach, dtype=pl.List(pl.Int64)),
        probe_reach_images=pl.Series([[9, 12], [], [20], [4]], dtype=pl.List(pl.Int64)),
        probe_dialogues=pl.Series([["1", "2"], [], ["3"], ["4"]]),
    ).write_parquet(copy / "manifest.parquet")
    report = compute_stats(copy, StatsConfig(toxicity=False))
    assert report.counts["probes"] == 4
    reach_tokens = report.distributions["probe_reach_tokens"]
    assert (reach_tokens.count, reach_tokens.min, reach_tokens.max) == (4, 30_500, 61_000)
    assert report.distributions["probe_reach_images"].p50 == 10.5
    assert "probe_dialogues" not in report.distributions
    written = {p.name for p in write_outputs(report, tmp_path / "st")}
    assert {"probes.png", "probe_reach_tokens.png", "probe_reach_images.png"} <= written


def test_not_a_catalog_or_shard_folder_is_refused(tmp_path):
    result = invoke(["stats", str(tmp_path), "--out", str(tmp_path / "st")])
    assert result.exit_code == 1
    assert "neither a shard folder" in " ".join(result.output.split())


def test_a_broken_sample_names_the_shard_and_key(tmp_path):
    shard = tmp_path / "shard-000000.tar"
    member = tmp_path / "s1.json"
    member.write_bytes(b'{"style": "mmdu", "messages": [')
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(member, arcname="s1.json")
    columns = {"tokens": 1, "text_tokens": 1, "image_tokens": 0, "images": 0, "turns": 1}
    pl.DataFrame(
        {"key": ["s1"], "shard": [shard.name], "offset": [0], **columns, "segments": 1, "fill": 0.5}
    ).write_parquet(tmp_path / "manifest.parquet")
    with pytest.raises(ValueError, match=r"shard-000000\.tar s1\.json: unreadable sample"):
        compute_stats(tmp_path, StatsConfig(toxicity=False))


def test_an_unreadable_catalog_part_names_the_file(demo_out, tmp_path):
    catalog = tmp_path / "catalog"
    shutil.copytree(demo_out / "catalog", catalog)
    part = sorted((catalog / "dialogues").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    result = invoke(["stats", str(catalog), "--out", str(tmp_path / "st"), "--no-toxicity"])
    assert result.exit_code == 1
    assert "parts: cannot read" in " ".join(result.output.split())


COHERENCE_CHECK = """
import json, sys
from compose.stats import StatsConfig, compute_stats
from compose.stats_quality import cosine_pairs, load_embedder
model = load_embedder()
question = ["What animal is in Image1?"]
related = cosine_pairs(model, question, ["Image1 shows a brown dog on a lawn."])
unrelated = cosine_pairs(model, question, ["Interest rates rose in March."])
report = compute_stats(sys.argv[1], StatsConfig(toxicity=False, coherence=True, coherence_pairs=6))
print(json.dumps([float(related[0]), float(unrelated[0]), report.quality["coherence"]]))
"""


def test_coherence_loads_offline_and_scores_related_pairs_higher(demo_out):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")  # no way out
    done = subprocess.run(
        [sys.executable, "-c", COHERENCE_CHECK, str(demo_out / "catalog")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    related, unrelated, coherence = json.loads(done.stdout.strip().splitlines()[-1])
    assert related > 0.4 > unrelated
    assert coherence["pairs"] == 6
    assert coherence["of_pairs"] == 2916
    assert -1 <= coherence["mean"] <= 1
