"""S3 end to end against a real S3 protocol endpoint: moto's server, in this process on
127.0.0.1 and a free port, reached through s3fs the way a user reaches any S3-compatible store,
by configuration alone: `FSSPEC_S3_ENDPOINT_URL` (fsspec's configuration) or `AWS_ENDPOINT_URL_S3`
(botocore's), credentials from the usual AWS variables. The corpus is uploaded, `compose` reads
and writes only `s3://` URLs, and what it wrote is read back and compared with a local run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import fsspec
import fsspec.config
import pytest
import requests
import s3fs
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

import cli
from compose import storage
from tests.corpus import Corpus, write_mmdu45k
from tests.processes import invoke_json as invoke
from tests.processes import remote_args as args

BUCKET = "compose-test"
SOURCE = f"s3://{BUCKET}/corpus/mmdu-45k.json"
IMAGES = f"s3://{BUCKET}/corpus/mmdu-45k_pics.zip"
OUT = f"s3://{BUCKET}/composed/run"


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    url: str  # http://127.0.0.1:PORT
    fs: s3fs.S3FileSystem
    corpus: Corpus
    stage: Path  # COMPOSE_STAGE: where this "machine" stages remote inputs and outputs


@contextmanager
def s3_endpoint(patch: pytest.MonkeyPatch, root: Path) -> Iterator[tuple[str, s3fs.S3FileSystem]]:
    """Moto's S3 server on 127.0.0.1, and this process's environment (so every process it starts)
    set to reach it and nothing else: test credentials, no profile, no instance metadata."""
    for name in [n for n in os.environ if n.startswith(("AWS_", "FSSPEC_S3"))]:
        patch.delenv(name)  # no developer profile, region or endpoint leaks in
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance for credentials
    patch.setenv("AWS_CONFIG_FILE", str(root / "absent"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "absent"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        patch.setenv("FSSPEC_S3_ENDPOINT_URL", url)  # fsspec reads it when imported...
        patch.setitem(fsspec.config.conf, "s3", {"endpoint_url": url})  # ...as here it was
        fs = fsspec.filesystem("s3")  # configured by the above alone, like compose's
        assert fs.endpoint_url == url
        fs.mkdir(BUCKET)
        yield url, fs
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        requests.post(f"{url}/moto-api/reset", timeout=10)  # moto keeps buckets per process
        server.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3")
    corpus = write_mmdu45k(root, 50, seed=21, zip=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(storage.STAGE_ENV, str(root / "stage"))
        with s3_endpoint(patch, root) as (url, fs):
            fs.put_file(str(corpus.source), SOURCE)
            fs.put_file(str(corpus.images), IMAGES)
            yield Endpoint(url=url, fs=fs, corpus=corpus, stage=root / "stage")


def run_process(arguments: list[str], env: dict[str, str]) -> dict:
    """`compose` in a fresh process: it sees only its environment, as a user's shell gives it."""
    command = [sys.executable, "-c", "import cli; cli.main()", *arguments]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def remote_files(fs: s3fs.S3FileSystem, url: str) -> dict[str, bytes]:
    fs.invalidate_cache()  # other processes wrote there
    return {Path(p).name: fs.cat_file(p) for p in fs.ls(url, detail=False)}


def digests(files: dict[str, bytes]) -> dict[str, str]:
    """Every shard, stats file and the manifest: what must not depend on where they are."""
    return {
        name: hashlib.sha256(data).hexdigest()
        for name, data in sorted(files.items())
        if name.endswith((".tar", ".stats.json")) or name == "manifest.parquet"
    }


def staged(s3: Endpoint, name: str) -> Path:
    """The local copy of a remote input, found where the run staged it."""
    (copy,) = s3.stage.glob(f"*/inputs/*/{name}")
    return copy


@pytest.fixture(scope="module")
def s3_run(s3):
    record = invoke(args(SOURCE, IMAGES, OUT, "--workers", "2"))  # spawned workers upload
    return remote_files(s3.fs, OUT), record


def test_s3_inputs_and_output_give_the_bytes_of_a_local_run(s3, s3_run, tmp_path):
    files, record = s3_run
    shards = record["summary"]["shards"]
    assert record["summary"]["samples"] > 6 and shards > 2
    assert {"run.json", "manifest.parquet", "shards.json", "plan.parquet", "resume.json"} <= set(
        files
    )
    assert len(digests(files)) == 2 * shards + 1
    assert not [n for n in files if n.startswith(".") or n.endswith((".tmp", ".partial"))]
    assert json.loads(files["run.json"])["summary"]["samples"] == record["summary"]["samples"]
    source, images = staged(s3, "mmdu-45k.json"), staged(s3, "mmdu-45k_pics.zip")
    assert source.read_bytes() == s3.corpus.source.read_bytes()  # the download is exact
    assert images.read_bytes() == s3.corpus.images.read_bytes()
    local = tmp_path / "local"  # the same inputs at the same paths, every file local
    invoke(args(str(source), str(images), str(local), "--workers", "1"))
    expected = {p.name: p.read_bytes() for p in local.iterdir() if p.is_file()}
    assert digests(files) == digests(expected)


def validate(target: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli.app, ["validate", target, "--json", "--quiet"])
    return result.exit_code, json.loads(result.stdout)


def test_compose_validate_reads_the_bucket_as_it_reads_a_downloaded_copy(s3, s3_run, tmp_path):
    files, record = s3_run
    code, report = validate(OUT)
    assert code == 0, report["problems"]
    assert report["shards"] == record["summary"]["shards"]
    assert report["samples"] == record["summary"]["samples"]
    assert report["images"] == record["summary"]["images"] > 0
    s3.fs.get(f"{OUT}/", str(tmp_path / "copy"), recursive=True)
    assert validate(str(tmp_path / "copy")) == (0, report)
    assert not list(s3.stage.glob("fetched-*"))  # every fetched shard was deleted


def test_compose_validate_names_a_tampered_shard_in_the_bucket(s3, s3_run):
    """A copy of the output with one byte of a shard changed and another shard gone."""
    files, record = s3_run
    url = f"s3://{BUCKET}/composed/tampered"
    for name, data in files.items():
        s3.fs.pipe_file(f"{url}/{name}", data)
    tar = bytearray(files["shard-000001.tar"])
    tar[len(tar) // 2] ^= 0xFF
    s3.fs.pipe_file(f"{url}/shard-000001.tar", bytes(tar))
    s3.fs.rm_file(f"{url}/shard-000002.tar")
    code, report = validate(url)
    assert code == 1
    assert report["shards"] == record["summary"]["shards"]
    where = {(p["where"], p["check"]) for p in report["problems"]}
    assert ("shard-000001.tar", "checksum") in where
    assert ("shard-000002.tar", "shards") in where
    assert {p["where"].split()[0] for p in report["problems"]} <= {
        "shard-000001.tar",
        "shard-000002.tar",
        "manifest.parquet",
    }  # the untouched shards pass
    detail = next(p["detail"] for p in report["problems"] if p["check"] == "checksum")
    assert detail.startswith(f"{url}/shard-000001.tar: sha256 ")  # named by its URL


def test_a_fresh_process_resumes_with_botocores_endpoint_variable(s3, s3_run):
    """Another process, the endpoint from `AWS_ENDPOINT_URL_S3` alone and one worker (so the
    driver's own s3fs instance, which listed OUT first, checks the shards): a shard whose stats
    file is gone and a damaged one are written again, every other shard is kept."""
    files, record = s3_run
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSSPEC_S3")}
    env["AWS_ENDPOINT_URL_S3"] = s3.url
    s3.fs.rm_file(f"{OUT}/shard-000001.stats.json")
    damaged = f"{OUT}/shard-000002.tar"
    s3.fs.pipe_file(damaged, s3.fs.cat_file(damaged)[:-1] + b"x")
    again = run_process(args(SOURCE, IMAGES, OUT, "--workers", "1", "--resume"), env)
    assert again["summary"]["skipped_shards"] == record["summary"]["shards"] - 2
    assert digests(remote_files(s3.fs, OUT)) == digests(files)


def test_the_bytes_do_not_depend_on_where_a_machine_stages_inputs(s3, monkeypatch, tmp_path):
    """Two machines (two COMPOSE_STAGE folders) write the same bytes for the same command."""
    url = f"s3://{BUCKET}/composed/moved"
    monkeypatch.setenv(storage.STAGE_ENV, str(tmp_path / "machine-a"))
    invoke(args(SOURCE, IMAGES, url, "--workers", "1"))
    expected = digests(remote_files(s3.fs, url))
    monkeypatch.setenv(storage.STAGE_ENV, str(tmp_path / "machine-b"))
    invoke(args(SOURCE, IMAGES, url, "--workers", "1"))
    assert digests(remote_files(s3.fs, url)) == expected


def test_another_machine_resumes_the_run(s3, monkeypatch, tmp_path):
    url = f"s3://{BUCKET}/composed/elsewhere"
    monkeypatch.setenv(storage.STAGE_ENV, str(tmp_path / "machine-a"))
    first = invoke(args(SOURCE, IMAGES, url, "--workers", "1"))
    monkeypatch.setenv(storage.STAGE_ENV, str(tmp_path / "machine-b"))
    again = invoke(args(SOURCE, IMAGES, url, "--workers", "1", "--resume"))
    assert again["summary"]["skipped_shards"] == first["summary"]["shards"]
