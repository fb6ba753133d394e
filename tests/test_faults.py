"""Faults of the machine, not of the input: a full disk, a read-only output folder, Ctrl-C, and a
catalog or plan damaged on disk.

Each must end in a clear error (or a clean stop), leave nothing that looks complete but is not,
and let the same command, run again, finish with exactly the bytes of an uninterrupted run.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from typer.testing import CliRunner

import cli
from compose import shard_reader, shards
from compose.catalog import Catalog
from compose.plan import load_plan, save_plan
from compose.validate import validate_output
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
    root = tmp_path_factory.mktemp("faults")
    return write_mmdu45k(root, 160, seed=23, zip=True)


def args(corpus, out: str | Path, *extra: str) -> list[str]:
    return small_run(corpus, out, *extra, tokens="1k", max_images=16, image_tokens="fixed:48")


def shards_are_whole(out: Path) -> int:
    """Every tar in `out` has a stats file it verifies against; returns how many there are."""
    tars = sorted(out.glob("shard-*.tar"))
    for tar in tars:
        index = int(tar.name.split("-")[1].split(".")[0])
        stats = shards.load_stats(out, "shard", index)
        assert stats is not None, f"{tar.name} has no stats file: it must not be there"
        assert shard_reader.verify_shard(tar, stats) == []
    return len(tars)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    digests = run_to_the_end(args(corpus, out), out)
    assert shard_count(digests) >= 20
    return digests


# -- disk full ------------------------------------------------------------------------------------


class FullDisk:
    """`open` for files written by the shard writer, and its descriptor writes (`writev`),
    failing with ENOSPC once `room` bytes have been written in all: a disk that fills up
    during a run."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.failures = 0

    def open(self, path, mode="r", *args, **kwargs):
        file = builtins.open(path, mode, *args, **kwargs)
        return file if not set(mode) & set("wxa") else _Limited(file, self)

    def write_all(self, fd: int, chunks) -> None:
        for chunk in chunks:
            size = memoryview(chunk).nbytes
            if size > self.room:
                os.write(fd, memoryview(chunk)[: self.room])
                self.room = 0
                self.failures += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= size
            shards_write_all(fd, [chunk])


shards_write_all = shards._write_all


class _Limited:
    def __init__(self, file, disk: FullDisk) -> None:
        self._file, self._disk = file, disk

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self._disk.room:
            self._file.write(memoryview(data)[: self._disk.room])
            self._disk.room = 0
            self._disk.failures += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._file.name)
        self._disk.room -= size
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def test_a_full_disk_stops_with_a_clear_error_and_resumes(corpus, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    disk = FullDisk(room=500_000)  # room for a few shards, not for all
    monkeypatch.setattr(shards, "open", disk.open, raising=False)
    monkeypatch.setattr(shards, "_write_all", disk.write_all)
    result = CliRunner().invoke(cli.app, args(corpus, out))
    assert disk.failures == 1
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "Traceback" not in result.output
    written = shards_are_whole(out)  # the shard being written when the disk filled is gone
    assert 0 < written < shard_count(reference)
    assert leftovers(out) == [] and not (out / "run.json").exists()
    monkeypatch.undo()  # space is freed: the same command finishes the run
    result = invoke(args(corpus, out, "--resume", "--json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["skipped_shards"] == written
    assert outputs(out) == reference and leftovers(out) == []


class QuotaFileSystem(MemoryFileSystem):
    """An in-memory filesystem that holds at most `quota` bytes of file data: writes past it
    fail with ENOSPC, as a full bucket or volume does."""

    protocol = "quota"
    quota = 0
    root_marker = "/"

    def _open(self, path, mode="rb", **kwargs):
        file = super()._open(path, mode, **kwargs)
        if "r" in mode:
            return file
        write = file.write

        def limited(data):
            used = sum(len(f.getbuffer()) for f in self.store.values())
            if used + len(data) + len(file.getbuffer()) > self.quota:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            return write(data)

        file.write = limited
        return file


def test_a_full_remote_volume_leaves_no_tar_without_its_stats(
    corpus, reference, tmp_path, monkeypatch
):
    fsspec.register_implementation("quota", QuotaFileSystem, clobber=True)
    QuotaFileSystem.store.clear()
    QuotaFileSystem.quota = 600_000
    monkeypatch.setenv("COMPOSE_STAGE", str(tmp_path / "stage"))
    result = CliRunner().invoke(cli.app, args(corpus, "quota://out"))
    assert result.exit_code == 1
    assert "No space left on device" in result.output
    remote = fsspec.filesystem("quota")
    names = sorted(Path(p).name for p in remote.ls("quota://out", detail=False))
    tars = [n for n in names if n.endswith(".tar")]
    assert tars, names
    for tar in tars:  # a tar on the volume is whole and vouched for by its stats file
        assert tar.replace(".tar", ".stats.json") in names, names
    assert "run.json" not in names
    QuotaFileSystem.quota = 1 << 40
    result = invoke(args(corpus, "quota://out", "--resume"))
    assert result.exit_code == 0, result.output
    local = tmp_path / "copy"
    remote.get("quota://out/", str(local), recursive=True)
    assert outputs(local) == reference


# -- a read-only output folder --------------------------------------------------------------------


@contextmanager
def read_only(folder: Path):
    """Make `folder` unwritable for this process: by its mode for a normal user; root ignores
    modes, so there a read-only bind mount is used (the kernel then refuses every write)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_output_folder_is_a_clear_error(corpus, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        result = CliRunner().invoke(cli.app, args(corpus, out))
        assert result.exit_code == 1
        assert re.search(r"Permission denied|Read-only file system", result.output), result.output
        assert str(out) in result.output and "Traceback" not in result.output
        assert list(out.iterdir()) == []


# -- Ctrl-C ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_cleanly_and_the_run_resumes(corpus, reference, tmp_path, workers):
    out = tmp_path / "out"
    total = shard_count(reference)
    arguments = args(corpus, out)
    arguments[arguments.index("--workers") + 1] = workers
    # Ctrl-C reaches the whole process group: the CLI and its workers
    code, stderr = signal_when(arguments, lambda: stats_files(out) >= 2, signal.SIGINT, group=True)
    assert code != 0, "the run ended before Ctrl-C reached it"
    assert "Traceback" not in stderr, stderr[-3000:]
    written = shards_are_whole(out)
    assert 2 <= written < total
    assert leftovers(out) == [] and not (out / "run.json").exists()
    result = invoke(args(corpus, out, "--resume", "--json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["skipped_shards"] >= 2
    assert outputs(out) == reference and leftovers(out) == []


# -- damage on disk, found by checksum ------------------------------------------------------------


def flip_a_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_catalog_part_is_found_and_not_used(corpus, reference, tmp_path):
    out = tmp_path / "out"
    assert invoke(args(corpus, out)).exit_code == 0
    part = Catalog.open(out / "catalog").part_paths[0]
    flip_a_byte(part)
    again = tmp_path / "again"
    result = CliRunner().invoke(cli.app, [*args(corpus, again), "--catalog", str(out / "catalog")])
    assert result.exit_code == 1
    assert "checksum" in result.output and part.name in result.output
    assert not again.exists() or not list(again.glob("*.tar"))


def test_a_damaged_cached_catalog_is_rebuilt_not_reused(corpus, reference, tmp_path):
    out = tmp_path / "out"
    assert invoke(args(corpus, out)).exit_code == 0
    flip_a_byte(Catalog.open(out / "catalog").part_paths[0])
    result = invoke(args(corpus, out, "--json"))
    assert result.exit_code == 0, result.output
    assert outputs(out) == reference
    assert validate_output(out).ok


def test_a_damaged_plan_is_found_by_its_checksum(corpus, tmp_path):
    out = tmp_path / "out"
    assert invoke(args(corpus, out)).exit_code == 0
    plan = load_plan(out / "plan.parquet")
    save_plan(plan, tmp_path / "plan.parquet")
    assert load_plan(tmp_path / "plan.parquet").segments.equals(plan.segments)
    raw = (tmp_path / "plan.parquet").read_bytes()
    table_end = raw.rfind(b"PAR1")  # the footer: flip a byte of the data, not of the metadata
    damaged = bytearray(raw)
    damaged[table_end // 3] ^= 0x01
    (tmp_path / "plan.parquet").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="damaged plan"):
        load_plan(tmp_path / "plan.parquet")


def test_a_damaged_catalog_json_is_not_used(corpus, reference, tmp_path):
    out = tmp_path / "out"
    assert invoke(args(corpus, out)).exit_code == 0
    meta = out / "catalog" / "catalog.json"
    text = meta.read_text()
    assert '"part_rows": 4096' in text
    meta.write_text(text.replace('"part_rows": 4096', '"part_rows": 4095'))  # still valid JSON
    with pytest.raises(FileNotFoundError, match="checksum"):
        Catalog.open(out / "catalog")
    result = invoke(args(corpus, out))  # the cached catalog is rebuilt, not trusted
    assert result.exit_code == 0, result.output
    assert outputs(out) == reference
