"""Kill and resume: the CLI is SIGKILLed at several points of a run (during ingest, after the
first shard, half way, with every shard written), then the same command is run again. The
output must be byte-identical to an uninterrupted run, with no temporary file left behind."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from compose.catalog import Catalog
from tests.corpus import write_mmdu45k
from tests.processes import (
    invoke,
    leftovers,
    outputs,
    run_to_the_end,
    shard_count,
    signal_when,
    small_run,
    stats_files,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    (root / "m45").mkdir()
    return write_mmdu45k(root / "m45", 80, seed=11, zip=True)


def args(corpus, out: Path, *extra: str) -> list[str]:
    return small_run(corpus, out, *extra, tokens="2k", max_images=24, image_tokens="fixed:64")


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    digests = run_to_the_end(args(corpus, out), out)
    assert shard_count(digests) >= 8
    return digests


def kill_when(arguments: list[str], ready) -> bool:
    """SIGKILL the CLI (not its workers) as soon as `ready()` holds; True if it was killed
    before it finished on its own."""
    code, _ = signal_when(arguments, ready, signal.SIGKILL)
    return code == -signal.SIGKILL


def test_kill_during_ingest_leaves_no_catalog_that_looks_complete(corpus, reference, tmp_path):
    out = tmp_path / "out"
    killed = kill_when(args(corpus, out), lambda: (out / "catalog.partial").exists())
    assert killed
    if (out / "catalog" / "catalog.json").exists():  # only a complete catalog may be there
        catalog = Catalog.open(out / "catalog")
        assert all(path.exists() for path in catalog.part_paths)
    assert not (out / "run.json").exists()
    result = invoke(args(corpus, out))
    assert result.exit_code == 0, result.output
    assert outputs(out) == reference
    assert leftovers(out) == []


@pytest.mark.parametrize("written", [1, 4, "mid-write", "all"])
def test_kill_after_shards_then_resume_gives_the_same_bytes(corpus, reference, tmp_path, written):
    out = tmp_path / "out"
    total = shard_count(reference)
    if written == "mid-write":  # a shard's temporary file is there: kill while it is written
        ready = lambda: stats_files(out) >= 2 and any(out.glob(".shard-*.tmp"))  # noqa: E731
    else:
        wanted = total if written == "all" else written
        ready = lambda: stats_files(out) >= wanted  # noqa: E731
    killed = kill_when(args(corpus, out), ready)
    if written in (1, 4):  # the other kill points may race with the shard or the run ending
        assert killed
        assert not (out / "run.json").exists()
        assert written <= stats_files(out) < total
    result = invoke(args(corpus, out, "--resume", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    if killed:
        assert 1 <= summary["skipped_shards"] < total or written == "all"
    assert outputs(out) == reference
    assert leftovers(out) == []
    assert (out / "run.json").exists()


def test_resume_refuses_a_folder_of_another_run(corpus, reference, tmp_path):
    out = tmp_path / "out"
    assert invoke(args(corpus, out, "--seed", "5")).exit_code == 0
    result = invoke(args(corpus, out, "--resume"))
    assert result.exit_code == 1
    assert "--resume" in result.output
    result = invoke(args(corpus, out))  # without --resume the folder is rewritten
    assert result.exit_code == 0, result.output
    assert outputs(out) == reference
