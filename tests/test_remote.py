"""Remote storage: --source, --images and --out as fsspec URLs (memory://, file://), end to end.
The shards written through a URL hold the same samples as a local run of the same inputs: image
bytes identical, sample JSON identical but for the source file's path in the provenance (a copied
remote source is read from its local copy), and a re-run is byte-identical to the first run."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from typer.testing import CliRunner

import cli
from compose import storage, validate
from tests.corpus import write_mmdu45k
from tests.processes import invoke_json as invoke
from tests.processes import remote_args as args


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    (root / "m45").mkdir()
    return write_mmdu45k(root / "m45", 50, seed=21, zip=True)


@pytest.fixture(autouse=True)
def stage(tmp_path, monkeypatch):
    """Remote outputs are staged under the test's folder, not the system temp folder."""
    monkeypatch.setenv(storage.STAGE_ENV, str(tmp_path / "stage"))


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {
        name: hashlib.sha256(data).hexdigest()
        for name, data in files.items()
        if name.endswith(".tar") or name == "manifest.parquet"
    }


def samples(files: dict[str, bytes]) -> dict[str, object]:
    """Every member of every shard; sample JSON with each segment's source file as its name."""
    members: dict[str, object] = {}
    for name in sorted(n for n in files if n.endswith(".tar")):
        with tarfile.open(fileobj=io.BytesIO(files[name])) as tar:
            for member in tar:
                data = tar.extractfile(member).read()
                if member.name.endswith(".json"):
                    data = json.loads(data)
                    for segment in data["segments"]:
                        segment["file"] = Path(segment["file"]).name
                members[f"{name}/{member.name}"] = data
    return members


def local_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def memory_files(url: str) -> dict[str, bytes]:
    fs = fsspec.filesystem("memory")
    root = url.removeprefix("memory://")
    return {Path(p).name: fs.cat_file(p) for p in fs.ls(root, detail=False)}


@pytest.fixture(scope="module")
def local_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    record = invoke(args(str(corpus.source), str(corpus.images), str(out)))
    return local_files(out), record


@pytest.fixture
def in_memory(corpus):
    fs = fsspec.filesystem("memory")
    source, images = f"/corpus/{corpus.source.name}", f"/corpus/{corpus.images.name}"
    fs.pipe_file(source, corpus.source.read_bytes())
    fs.pipe_file(images, corpus.images.read_bytes())  # dialogues name images by the zip's name
    yield f"memory:/{source}", f"memory:/{images}"
    for folder in ("/corpus", "/out"):
        if fs.exists(folder):
            fs.rm(folder, recursive=True)


def test_memory_urls_end_to_end_give_the_local_bytes(in_memory, local_run):
    expected, local_record = local_run
    url = "memory://out/run"
    record = invoke(args(*in_memory, url))
    files = memory_files(url)
    assert samples(files) == samples(expected)
    assert len(samples(files)) > 20
    assert {"run.json", "manifest.parquet", "shards.json", "plan.parquet", "resume.json"} <= set(
        files
    )
    assert json.loads(files["run.json"])["summary"]["samples"] == record["summary"]["samples"]
    assert record["summary"]["samples"] == local_record["summary"]["samples"] > 0
    assert not [name for name in files if name.startswith(".") or name.endswith(".tmp")]


def test_a_rerun_on_a_remote_output_keeps_verified_shards(in_memory):
    url = "memory://out/again"
    first = invoke(args(*in_memory, url))
    expected = digests(memory_files(url))
    shards = first["summary"]["shards"]
    fs = fsspec.filesystem("memory")
    fs.rm_file("/out/again/shard-000001.stats.json")  # that shard is no longer vouched for
    tar = "/out/again/shard-000002.tar"
    fs.pipe_file(tar, fs.cat_file(tar)[:-1] + b"x")  # nor is a damaged one
    second = invoke(args(*in_memory, url, "--resume"))
    assert second["summary"]["skipped_shards"] == shards - 2
    assert digests(memory_files(url)) == expected


def test_validate_reads_a_memory_url_and_names_a_tampered_shard(in_memory, tmp_path):
    url = "memory://out/checked"
    record = invoke(args(*in_memory, url))["summary"]
    fetched = []  # the stage at each progress step: every fetched shard is already deleted
    progress = []

    def on_shard(done: int, total: int) -> None:
        progress.append((done, total))
        fetched.extend((tmp_path / "stage").glob("fetched-*"))

    report = validate.validate_output(url, on_shard=on_shard)
    assert report.ok, report.problems
    assert (report.shards, report.samples, report.images) == (
        record["shards"],
        record["samples"],
        record["images"],
    )
    assert progress == [(n, record["shards"]) for n in range(1, record["shards"] + 1)]
    assert not fetched
    fs = fsspec.filesystem("memory")
    tar = "/out/checked/shard-000001.tar"
    data = bytearray(fs.cat_file(tar))
    data[700] ^= 0x01  # inside the first member's bytes
    fs.pipe_file(tar, bytes(data))
    result = CliRunner().invoke(cli.app, ["validate", url])
    assert result.exit_code == 1
    assert f"shard-000001.tar: checksum: {url}/shard-000001.tar: sha256" in result.output
    assert f"{url}: {record['shards']} shards" in result.output
    problems = validate.validate_output(url).problems
    assert problems and {p.where.split()[0] for p in problems} == {"shard-000001.tar"}


def test_file_urls_read_and_write_in_place(corpus, local_run, tmp_path):
    expected, _ = local_run
    out = tmp_path / "out"
    invoke(args(f"file://{corpus.source}", f"file://{corpus.images}", f"file://{out}"))
    assert digests(local_files(out)) == digests(expected)  # the same paths: the same bytes
    assert not (out / "inputs").exists()  # file:// inputs are not copied


def test_a_remote_source_is_staged_once(in_memory, tmp_path):
    folder = tmp_path / "inputs"
    first = storage.stage_input(in_memory[0], folder)
    remote = fsspec.filesystem("memory").cat_file(in_memory[0].removeprefix("memory:/"))
    assert Path(first).read_bytes() == remote
    stamp = Path(first).stat().st_mtime_ns
    assert storage.stage_input(in_memory[0], folder) == first
    assert Path(first).stat().st_mtime_ns == stamp  # not copied again
    with pytest.raises(FileNotFoundError, match="memory://corpus/absent.json"):
        storage.stage_input("memory://corpus/absent.json", folder)


def test_a_machine_that_cannot_see_the_drivers_copy_stages_its_own_once(
    in_memory, tmp_path, monkeypatch
):
    """What a task carries for a staged image store: its driver's copy where that is visible,
    else one copy per machine, downloaded under a lock that every other task waits on."""
    url = in_memory[1]
    driver = storage.stage_input(url, tmp_path / "driver")
    store = storage.portable(driver)
    assert store == storage.Staged(path=driver, url=url, signature=store.signature)
    assert storage.portable(str(tmp_path / "plain.zip")) == str(tmp_path / "plain.zip")
    fs = fsspec.filesystem("memory")
    downloads = []
    get_file = MemoryFileSystem.get_file  # fsspec makes an instance per thread: patch the class

    def counted(self, remote: str, local: str, **kwargs) -> None:
        with open(local.removesuffix(".partial") + ".lock") as lock:
            with pytest.raises(BlockingIOError):  # another task would wait here
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        downloads.append(local)
        get_file(self, remote, local, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "get_file", counted)
    assert storage.local_copy(store) == driver and not downloads  # visible: used as it is
    Path(driver).parent.rename(tmp_path / "gone")  # the driver is another machine
    monkeypatch.setenv(storage.STAGE_ENV, str(tmp_path / "node"))
    with ThreadPoolExecutor(4) as pool:
        copies = set(pool.map(lambda _: storage.local_copy(store), range(8)))
    (copy,) = copies
    assert Path(copy).is_relative_to(tmp_path / "node" / "inputs")
    assert Path(copy).read_bytes() == fs.cat_file(url.removeprefix("memory:/"))
    assert len(downloads) == 1


def test_a_store_changed_since_the_driver_staged_it_is_refused(in_memory, tmp_path, monkeypatch):
    url = in_memory[1]
    store = storage.portable(storage.stage_input(url, tmp_path / "driver"))
    fs = fsspec.filesystem("memory")
    path = url.removeprefix("memory:/")
    fs.pipe_file(path, fs.cat_file(path) + b"appended")
    monkeypatch.setenv(storage.STAGE_ENV, str(tmp_path / "node"))
    Path(store.path).unlink()
    with pytest.raises(ValueError, match=f"{url}: changed since the run staged it"):
        storage.local_copy(store)
    assert not list((tmp_path / "node").rglob("*.zip"))


def test_urls_and_paths_are_told_apart():
    assert storage.is_remote("s3://bucket/x") and storage.is_remote("memory://x")
    assert not storage.is_remote("file:///tmp/x") and not storage.is_remote("/tmp/x")
    assert storage.local_path("file:///tmp/x") == "/tmp/x"
    assert storage.workspace("/tmp/x") == Path("/tmp/x")
    assert storage.workspace("memory://a") != storage.workspace("memory://b")
