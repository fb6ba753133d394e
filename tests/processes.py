"""What the fault and resume tests share: the CLI in-process and as a process to signal, and what
a finished, uninterrupted run leaves in its output folder to compare against."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

import cli

ROOT = Path(__file__).resolve().parents[1]
POLL = 0.005  # seconds between looks at the output folder
PATIENCE = 60.0  # seconds a run may take to reach the point it is signalled at


def small_run(
    corpus, out: str | Path, *extra: str, tokens: str, max_images: int, image_tokens: str
) -> list[str]:
    """The main job's arguments for a run of one sample per shard on one worker: shards finish
    one at a time, so a fault or a signal can land between any two."""
    return [
        "--source", str(corpus.source), "--images", str(corpus.images),
        "--tokens", tokens, "--max-images", str(max_images), "--image-tokens", image_tokens,
        "--shard-size", "1", "--workers", "1", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def invoke(arguments: list[str]):
    return CliRunner().invoke(cli.app, arguments, catch_exceptions=False)


def invoke_json(arguments: list[str]) -> dict:
    """The CLI's --json record of a run that must succeed."""
    result = invoke(arguments)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def remote_args(source: str, images: str, out: str, *extra: str) -> list[str]:
    """A small run of the remote-storage tests: 2k-token samples of at most 24 images."""
    return [
        "--source", source, "--images", images, "--out", out,
        "--tokens", "2k", "--max-images", "24", "--image-tokens", "fixed:64",
        "--shard-size", "3", "--quiet", "--json", *extra,
    ]  # fmt: skip


def signal_when(
    arguments: list[str], ready: Callable[[], bool], sig: signal.Signals, *, group: bool = False
) -> tuple[int, str]:
    """Start the CLI in a subprocess and send it `sig` as soon as `ready()` holds; its exit code
    and stderr once it has ended.

    With `group`, the CLI leads a process group of its own and the whole group gets the signal,
    as Ctrl-C does to workers too. Without, only the CLI process gets it, and its stderr is not
    read (a worker it leaves behind could hold the pipe open): "" is returned.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", *arguments],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if group else subprocess.DEVNULL,
        text=True,
        start_new_session=group,
    )
    deadline = time.monotonic() + PATIENCE
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if ready():
                (os.killpg if group else os.kill)(process.pid, sig)
                break
            time.sleep(POLL)
        else:
            assert process.poll() is not None, "the run never reached the point to signal it at"
    finally:
        try:
            _, stderr = process.communicate(timeout=PATIENCE)
        finally:
            if process.poll() is None:  # it outlived its patience: leave nothing running
                process.kill()
                process.wait()
    return process.returncode, stderr or ""


def run_to_the_end(arguments: list[str], out: Path) -> dict[str, str]:
    """Run the CLI in-process, uninterrupted; the `outputs` it wrote to `out`."""
    result = invoke(arguments)
    assert result.exit_code == 0, result.output
    return outputs(out)


def outputs(out: Path) -> dict[str, str]:
    """sha256 of every shard, stats file and the manifest."""
    names = [
        p
        for p in sorted(out.iterdir())
        if p.suffix == ".tar" or p.name.endswith(".stats.json") or p.name == "manifest.parquet"
    ]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in names}


def shard_count(digests: dict[str, str]) -> int:
    """How many shards `outputs` found."""
    return len([name for name in digests if name.endswith(".tar")])


def leftovers(out: Path) -> list[str]:
    """Temporary files and folders anywhere under `out`."""
    return sorted(
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.name.startswith(".") or p.suffix in (".tmp", ".partial") or ".partial" in p.name
    )


def stats_files(out: Path) -> int:
    """Shards finished so far: a shard's stats file is written after its tar."""
    return len(list(out.glob("shard-*.stats.json")))
