"""The engine: shard tasks cut from the plan, the same bytes whatever runs them (1, 2, 4 local
workers, a local Ray cluster), ordered bounded execution, the streamed manifest, stale shards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compose import catalog_reader, engine, shard_index, shards
from compose.catalog import Catalog, SourceSpec, ingest
from compose.plan import Budgets, Policy, make_plan
from compose.tasks import row_cache
from compose.tokens import load_tokenizer
from tests.corpus import write_mmdu45k

BUDGETS = Budgets(tokens=2048, max_images=24)
POLICY = Policy(image_tokens="fixed:64", seed=3)
PLAN_COLUMNS = ["row", "id", "n_images", "n_qa", "qa_text_tokens", "qa_new_images", "images"]
PLAN_COLUMNS += ["turns"]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    (root / "m45").mkdir()
    corpus = write_mmdu45k(root / "m45", 60, seed=5, zip=True)
    catalog = root / "catalog"
    ingest([SourceSpec(path=str(corpus.source), images=str(corpus.images))], catalog)
    cat = Catalog.open(catalog)
    digit_tokens = load_tokenizer(cat.meta["tokenizer"]["spec"]).digit_tokens
    plan = make_plan(cat.frame(PLAN_COLUMNS), BUDGETS, POLICY, digit_tokens=digit_tokens)
    assert plan.report.samples >= 8
    return str(catalog), plan


def run(planned, out: Path, **options) -> engine.RunResult:
    catalog, plan = planned
    output = engine.Output(out=str(out), shard_size=3, **options)
    return engine.run(catalog, plan, BUDGETS, POLICY, output)


def digests(out: Path) -> dict[str, str]:
    names = [p for p in sorted(out.iterdir()) if p.suffix == ".tar" or p.name == "manifest.parquet"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in names}


@pytest.fixture(scope="module")
def reference(planned, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    result = run(planned, out, workers=1)
    return out, result


def test_one_worker_writes_every_sample_in_order(planned, reference):
    out, result = reference
    _, plan = planned
    assert result.samples == plan.report.samples
    assert len(result.shards) == -(-plan.report.samples // 3)
    assert [s.name for s in result.shards] == sorted(s.name for s in result.shards)
    manifest = pl.read_parquet(out / "manifest.parquet")
    assert manifest["key"].to_list() == sorted(manifest["key"].to_list())
    assert manifest["key"].to_list() == [k for s in result.shards for k in s.keys]
    assert result.images == manifest["images"].sum() > 0
    assert result.tokens == manifest["tokens"].sum()
    index = json.loads((out / "shards.json").read_text())
    assert [s["url"] for s in index["shardlist"]] == [s.name for s in result.shards]
    assert not list(out.glob(".*")) and not list(out.glob("catalog-rows-*"))


@pytest.mark.parametrize("workers", [2, 4])
def test_any_number_of_local_workers_gives_the_same_bytes(planned, reference, tmp_path, workers):
    out = tmp_path / f"w{workers}"
    result = run(planned, out, workers=workers)
    assert result.skipped == 0
    assert digests(out) == digests(reference[0])


def test_a_local_ray_cluster_gives_the_same_bytes(planned, reference, tmp_path):
    out = tmp_path / "ray"
    result = run(planned, out, workers=2, engine="ray")
    assert result.skipped == 0
    assert digests(out) == digests(reference[0])


def test_manifest_equals_the_one_shards_writes_from_all_rows(reference, tmp_path):
    out, result = reference
    rows = [r for s in result.shards for r in engine.rows_from_shard(out / s.name, s)]
    shard_index.write_manifest(tmp_path, rows)
    expected = pl.read_parquet(tmp_path / "manifest.parquet")
    streamed = pl.read_parquet(out / "manifest.parquet")
    assert streamed.columns == expected.columns
    assert streamed.to_dicts() == expected.to_dicts()  # types may differ where all are empty


def test_tasks_are_cut_lazily_into_consecutive_samples(planned, reference, tmp_path):
    catalog, plan = planned
    cat = Catalog.open(catalog)
    output = engine.Output(out=str(tmp_path), shard_size=4, workers=1)
    rows = row_cache(cat, tmp_path)
    tasks = engine.shard_tasks(cat, rows, plan, BUDGETS, POLICY, output)
    assert iter(tasks) is tasks  # a generator: tasks are made as they are consumed
    tasks = list(tasks)
    keys = [k for t in tasks for k in t.keys]
    samples = sorted(set(plan.segments["sample"].to_list()))
    assert keys == [engine.sample_key(s) for s in samples]
    assert all(len(t.keys) == 4 for t in tasks[:-1]) and 1 <= len(tasks[-1].keys) <= 4
    for task in tasks:
        used = set(task.segments["dialogue"].to_pylist())
        assert set(task.rows["row"].to_pylist()) == used  # exactly the catalog rows it needs
        assert [
            engine.sample_key(s) for s in dict.fromkeys(task.segments["sample"].to_pylist())
        ] == list(task.keys)


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(0, 40),
    window=st.integers(1, 6),
    delays=st.lists(st.integers(0, 5), min_size=40, max_size=40),
)
def test_results_come_in_task_order_with_a_bounded_window(count, window, delays):
    submitted: list[int] = []
    outstanding = {"now": 0, "most": 0}

    def submit(task):
        submitted.append(task)
        outstanding["now"] += 1
        outstanding["most"] = max(outstanding["most"], outstanding["now"])
        return (task, delays[task])  # a "future" whose delay does not change the order

    def result(future):
        outstanding["now"] -= 1
        return future[0] * 10

    got = list(engine._in_order(iter(range(count)), submit, result, window))
    assert got == [t * 10 for t in range(count)]
    assert outstanding["most"] <= window
    assert submitted == list(range(count))


def test_a_rerun_keeps_verified_shards_and_redoes_a_damaged_one(planned, reference, tmp_path):
    out = tmp_path / "again"
    run(planned, out, workers=1)
    victim = out / shards.shard_name("shard", 1)
    data = bytearray(victim.read_bytes())
    data[700] ^= 0xFF
    victim.write_bytes(bytes(data))
    (out / shards.stats_name("shard", 2)).unlink()
    result = run(planned, out, workers=1)
    assert result.skipped == len(result.shards) - 2
    assert digests(out) == digests(reference[0])


def test_a_different_run_into_the_same_folder_rewrites_everything(planned, reference, tmp_path):
    out = tmp_path / "other"
    run(planned, out, workers=1, style="llava")
    with pytest.raises(ValueError, match="--resume"):
        run(planned, out, workers=1, resume=True)  # the folder holds another run's shards
    result = run(planned, out, workers=1)
    assert result.skipped == 0
    assert digests(out) == digests(reference[0])


def test_shards_of_an_earlier_larger_run_are_removed(planned, reference, tmp_path):
    out = tmp_path / "stale"
    run(planned, out, workers=1)
    count = len(reference[1].shards)
    for index in (count, count + 1):
        (out / shards.shard_name("shard", index)).write_bytes(b"old")
        (out / shards.stats_name("shard", index)).write_text("{}")
    run(planned, out, workers=1)
    assert not (out / shards.shard_name("shard", count)).exists()
    assert not (out / shards.stats_name("shard", count + 1)).exists()
    assert digests(out) == digests(reference[0])


def test_bad_engine_settings_are_refused():
    with pytest.raises(ValueError, match="engine"):
        engine.Output(out="x", engine="spark")
    with pytest.raises(ValueError, match="workers"):
        engine.Output(out="x", workers=0)
    assert engine.Output(out="x").workers == engine.default_workers() >= 1


@pytest.mark.parametrize("zipped", [True, False])
def test_an_image_changed_since_ingest_stops_the_run_naming_it(tmp_path, zipped):
    """The run checks every image against the catalog's CRC-32 (not its sha256): an image
    rewritten after ingest, same size and name, stops the run before its shard is written."""
    corpus = write_mmdu45k(tmp_path, 12, seed=9, zip=zipped)
    catalog = tmp_path / "catalog"
    ingest([SourceSpec(path=str(corpus.source), images=str(corpus.images))], catalog)
    cat = Catalog.open(catalog)
    plan = make_plan(cat.frame(PLAN_COLUMNS), BUDGETS, POLICY)
    victim = cat.rows([int(plan.segments["dialogue"][0])])[0]["images"][0]
    if zipped:
        import zipfile

        with zipfile.ZipFile(corpus.images) as old:
            entries = [(i, old.read(i)) for i in old.infolist()]
        with zipfile.ZipFile(corpus.images, "w") as new:
            for info, data in entries:
                changed = info.filename.endswith(victim["member"])
                new.writestr(info, data[:-1] + bytes([data[-1] ^ 1]) if changed else data)
    else:
        path = Path(corpus.images) / victim["member"]
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    output = engine.Output(out=str(tmp_path / "out"), shard_size=3, workers=1)
    with pytest.raises(ValueError, match=rf"{victim['member']}.*changed since the catalog"):
        engine.run(str(catalog), plan, BUDGETS, POLICY, output)
    assert not list((tmp_path / "out").glob("*.tar"))


def test_a_catalog_of_another_version_is_refused(planned, tmp_path):
    import shutil

    copy = tmp_path / "catalog"
    shutil.copytree(planned[0], copy)
    meta = json.loads((copy / "catalog.json").read_text())
    meta["catalog_version"] = 2  # as a compose before image CRC-32s wrote it, checksum and all
    meta["checksum"] = catalog_reader.meta_digest(meta)
    (copy / "catalog.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version 2, this compose reads version 3.*--force"):
        Catalog.open(copy)


def test_the_same_corpus_in_another_folder_gives_the_same_bytes(tmp_path):
    """Samples name their source file without its folders, so moving the corpus (or running on
    another machine) changes no shard byte; run.json keeps each input's full path."""
    outs = []
    for place in ("here", "there/deeper"):
        folder = tmp_path / place
        folder.mkdir(parents=True)
        corpus = write_mmdu45k(folder, 20, seed=11, zip=True)
        catalog = folder / "catalog"
        ingest([SourceSpec(path=str(corpus.source), images=str(corpus.images))], catalog)
        cat = Catalog.open(catalog)
        plan = make_plan(cat.frame(PLAN_COLUMNS), BUDGETS, POLICY)
        out = folder / "out"
        engine.run(str(catalog), plan, BUDGETS, POLICY, engine.Output(out=str(out), workers=1))
        outs.append(out)
    assert digests(outs[0]) == digests(outs[1]) and len(digests(outs[0])) >= 2
