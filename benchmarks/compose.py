"""Benchmark: plan and compose shards from a generated MMDU-45k-shaped corpus, beside `tar`.

    python -m benchmarks.compose                       # 4,500 dialogues, real-size images
    python -m benchmarks.compose --dialogues 45000 --image-size 64-160
    python -m benchmarks.compose --dialogues 300 --json  # a quick run

The corpus (`python -m benchmarks.generate ... --images`) and its catalog are made once and kept
under the temp folder. Plan is timed in this process (read the catalog columns, check, plan).
Compose runs as the `compose` command in a child process (`--catalog`, so no ingest), its peak
memory sampled as the summed RSS of the command and its workers (psutil, every 50 ms). The floor
is GNU `tar cf` over the same image bytes: every image member of the shards, written out as
files first (not timed), archived into the same file system. Both write through the page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.generate import parse_size
from compose.catalog import Catalog
from compose.plan import (
    PLAN_COLUMNS,
    Budgets,
    Policy,
    check_feasible,
    make_plan,
    parse_tokens,
)
from compose.tokens import load_tokenizer

NAME = "mmdu-45k"


class PeakRss:
    """Samples the memory of a process and all its descendants until it ends: the summed RSS,
    the summed anonymous RSS (heap and stacks, without file pages mapped from the page cache,
    such as the memory-mapped catalog rows) and the largest single process."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid, self.every = pid, every
        self.total = 0  # bytes: the largest sum over the process tree at one instant
        self.anon = 0  # bytes: the same for anonymous memory only
        self.largest = 0  # bytes: the largest single process seen
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
            while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
                sizes, anon = [], 0
                for process in [root, *root.children(recursive=True)]:
                    try:
                        sizes.append(process.memory_info().rss)
                        anon += _anon_rss(process.pid)
                    except (psutil.Error, OSError):
                        pass
                self.total = max(self.total, sum(sizes))
                self.anon = max(self.anon, anon)
                self.largest = max([self.largest, *sizes])
                time.sleep(self.every)
        except psutil.Error:
            pass

    def mb(self) -> tuple[float, float, float]:
        """(summed RSS, summed anonymous RSS, largest process RSS) in MiB."""
        self._thread.join()
        return tuple(round(v / 2**20, 1) for v in (self.total, self.anon, self.largest))


def _anon_rss(pid: int) -> int:
    """RssAnon from /proc (Linux), in bytes; 0 where there is no such file."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


ROOT = Path(tempfile.gettempdir()) / "compose-bench"  # benchmarks.ingest's corpora live here too


def corpus(dialogues: int, image_size: tuple[int, int], seed: int = 0, root: Path = ROOT) -> Path:
    """The generated corpus folder under `root`, made unless a complete one is there."""
    size = f"{image_size[0]}-{image_size[1]}"
    folder = root / f"{NAME}-{dialogues}-seed{seed}-img{size}"
    if (folder / "generate.json").is_file() and (folder / f"{NAME}.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "benchmarks.generate", "--dialogues", str(dialogues), "--images",
        "--image-size", size, "--seed", str(seed), "--out", str(folder),
    ]  # fmt: skip
    print(f"generating: {' '.join(command[1:])}", file=sys.stderr)
    summary = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    (folder / "generate.json").write_text(summary)
    return folder


def images_of(folder: Path) -> Path:
    """The corpus's image store: the generated zip, or a folder of the same name without
    `.zip` (the full-size corpus is kept unpacked: its zip and a tar of it do not both fit)."""
    unpacked = folder / f"{NAME}_pics"
    return unpacked if unpacked.is_dir() else folder / f"{NAME}_pics.zip"


def catalog(folder: Path) -> Path:
    """The corpus's catalog, ingested once (`compose ingest` keeps it while inputs match)."""
    path = folder / "catalog"
    images = images_of(folder)
    try:  # a catalog records absolute paths: one of a folder since moved is made again
        usable = Catalog.open(path).meta["sources"][0]["images"] == str(images.resolve())
    except (FileNotFoundError, ValueError, KeyError, IndexError):  # ValueError: older version
        usable = False
    if not usable:
        command = [
            *_compose(), "ingest", str(folder / f"{NAME}.json"), "--images", str(images),
            "--out", str(path), "--quiet", "--json", "--force",
        ]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return path


def _compose() -> list[str]:
    return [sys.executable, "-c", "import cli; cli.main()"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanRun:
    dialogues: int
    samples: int
    seconds: float  # read the plan columns, check feasibility, plan
    read_seconds: float  # of which reading the catalog's plan columns
    cpu_seconds: float  # user + system of this process over the same steps (all threads)
    fill_mean: float


def measure_plan(path: Path, tokens: str, seed: int = 0) -> PlanRun:
    started, cpu = time.perf_counter(), time.process_time()
    cat = Catalog.open(path)
    frame = cat.frame(PLAN_COLUMNS)
    read = time.perf_counter() - started
    budgets, policy = Budgets(tokens=parse_tokens(tokens)), Policy(seed=seed)
    check_feasible(frame, budgets, policy)
    digits = load_tokenizer(cat.meta["tokenizer"]["spec"]).digit_tokens
    plan = make_plan(frame, budgets, policy, digit_tokens=digits)
    seconds = time.perf_counter() - started
    return PlanRun(
        dialogues=frame.height,
        samples=plan.report.samples,
        seconds=round(seconds, 3),
        read_seconds=round(read, 3),
        cpu_seconds=round(time.process_time() - cpu, 3),
        fill_mean=round(plan.report.fill.mean, 4),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ComposeRun:
    samples: int
    shards: int
    shard_bytes: int
    image_bytes: int
    images: int
    seconds: float  # wall time of the command: interpreter start, plan and shards
    cpu_seconds: float  # user + system of the command and its workers: less sensitive to load
    system_seconds: float  # of which in the kernel (reading, writing, page cache)
    engine_seconds: float  # the shard-writing part, as the run reports it
    peak_rss_mb: float  # summed over the command and its workers
    peak_anon_mb: float  # the same, anonymous memory only (no page-cache file pages)
    peak_process_rss_mb: float
    workers: int


def measure_compose(
    path: Path, out: Path, tokens: str, workers: int, engine: str, cold: bool = False
) -> ComposeRun:
    shutil.rmtree(out, ignore_errors=True)
    if cold:
        drop_caches()
    command = [
        *_compose(), "--catalog", str(path), "--out", str(out), "--tokens", tokens,
        "--workers", str(workers), "--engine", engine, "--quiet", "--json",
    ]  # fmt: skip
    started, cpu, system = time.perf_counter(), _children_cpu(), _children_cpu(system=True)
    child = subprocess.Popen(command, stdout=subprocess.PIPE)
    peak = PeakRss(child.pid)
    stdout, _ = child.communicate()
    seconds = time.perf_counter() - started
    cpu, system = _children_cpu() - cpu, _children_cpu(system=True) - system
    if child.returncode:
        raise SystemExit(f"compose failed with exit code {child.returncode}")
    record = json.loads(stdout)
    summary = record["summary"]
    total, anon, largest = peak.mb()
    image_bytes = _image_bytes(out)
    return ComposeRun(
        samples=summary["samples"],
        shards=summary["shards"],
        shard_bytes=summary["bytes"],
        image_bytes=image_bytes,
        images=summary["images"],
        seconds=round(seconds, 2),
        cpu_seconds=round(cpu, 2),
        system_seconds=round(system, 2),
        engine_seconds=round(summary["seconds"], 2),
        peak_rss_mb=total,
        peak_anon_mb=anon,
        peak_process_rss_mb=largest,
        workers=workers,
    )


def _children_cpu(system: bool = False) -> float:
    """User + system (or system only) seconds of every child process waited for, their
    workers included."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_stime + (0 if system else usage.ru_utime)


def _image_members(out: Path):
    import tarfile

    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if not member.name.endswith(".json"):
                    yield member.name, tar.extractfile(member).read()


def _image_bytes(out: Path) -> int:
    return sum(len(data) for _, data in _image_members(out))


@dataclass(frozen=True, slots=True, kw_only=True)
class TarRun:
    files: int
    bytes: int
    seconds: float
    cpu_seconds: float  # user + system of tar


def measure_tar(out: Path, scratch: Path, store: Path, cold: bool = False) -> TarRun:
    """GNU tar over the same image bytes as files: the image folder compose read (every image
    of the corpus), or else the shards' image members, written out first (not timed)."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    if store.is_dir():
        parent, name = store.parent, store.name
        sizes = [p.stat().st_size for p in store.rglob("*") if p.is_file()]
        files, total = len(sizes), sum(sizes)
    else:
        parent, name = scratch, "images"
        (scratch / name).mkdir()
        files = total = 0
        for member, data in _image_members(out):
            (scratch / name / member).write_bytes(data)
            files, total = files + 1, total + len(data)
    if cold:
        drop_caches()
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(["tar", "cf", str(scratch / "images.tar"), "-C", str(parent), name], check=True)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    shutil.rmtree(scratch)
    return TarRun(files=files, bytes=total, seconds=round(seconds, 3), cpu_seconds=round(cpu, 2))


def drop_caches() -> None:
    """Write back dirty pages and empty the page cache (Linux, as root), so that a command
    reads its input from disk, as it would on a corpus larger than memory."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        raise SystemExit(f"--cold needs root on Linux to drop the page cache ({error})") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    dialogues: int
    tokens: str
    plan: PlanRun
    compose: ComposeRun
    tar: TarRun
    throughput_mb_s: float  # image bytes per second of the compose command
    tar_mb_s: float
    fraction_of_tar: float  # tar seconds / compose seconds over the same image bytes
    fraction_of_tar_engine: float  # the same, with the shard-writing time only
    cores: int
    cold: bool  # the page cache emptied before compose and before tar
    floor_input: str  # what tar read: the image folder compose read, or the shards' members
    load_before: tuple[float, ...]
    load_after: tuple[float, ...]


def measure(
    dialogues: int,
    *,
    image_size: tuple[int, int] = (320, 1024),
    tokens: str = "64k",
    workers: int | None = None,
    engine: str = "local",
    seed: int = 0,
    root: Path = ROOT,
    cold: bool = False,
) -> Result:
    cores = len(os.sched_getaffinity(0))
    folder = corpus(dialogues, image_size, seed, root)
    path = catalog(folder)
    load_before = os.getloadavg()
    plan = measure_plan(path, tokens, seed)
    out = folder / "bench-out"
    run = measure_compose(path, out, tokens, workers or cores, engine, cold)
    store = images_of(folder)
    if store.is_dir():
        shutil.rmtree(out)  # room for the tar: at full size both do not fit beside the corpus
    tar = measure_tar(out, folder / "bench-tar", store, cold)
    shutil.rmtree(out, ignore_errors=True)
    return Result(
        dialogues=dialogues,
        tokens=tokens,
        plan=plan,
        compose=run,
        tar=tar,
        throughput_mb_s=round(run.image_bytes / 2**20 / run.seconds, 1),
        tar_mb_s=round(tar.bytes / 2**20 / max(tar.seconds, 1e-9), 1),
        fraction_of_tar=round(tar.seconds / run.seconds, 4),
        fraction_of_tar_engine=round(tar.seconds / max(run.engine_seconds, 1e-9), 4),
        cores=cores,
        cold=cold,
        floor_input="image folder" if store.is_dir() else "shard image members as files",
        load_before=tuple(round(v, 2) for v in load_before),
        load_after=tuple(round(v, 2) for v in os.getloadavg()),
    )


def report(result: Result) -> str:
    c, t, p = result.compose, result.tar, result.plan
    rows = [
        ("machine", f"{platform.processor() or platform.machine()}, {result.cores} cores"),
        ("plan", f"{p.dialogues:,} dialogues -> {p.samples:,} samples of {result.tokens} "
                 f"in {p.seconds:.2f} s ({p.read_seconds:.2f} s reading the catalog; "
                 f"fill {p.fill_mean:.4f}; target < 5 s at 45k)"),
        ("compose", f"{c.samples:,} samples, {c.shards} shards, {c.shard_bytes / 1e9:.3f} GB "
                    f"({c.images:,} images, {c.image_bytes / 1e9:.3f} GB) in {c.seconds:.2f} s "
                    f"wall, {c.engine_seconds:.2f} s writing shards, {c.workers} workers; "
                    f"{c.cpu_seconds:.1f} s CPU, {c.system_seconds:.1f} s of it in the kernel"),
        ("floor (tar cf)", f"{t.files:,} files ({result.floor_input}), {t.bytes / 1e9:.3f} GB "
                           f"in {t.seconds:.2f} s ({t.cpu_seconds:.1f} s CPU)"),
        ("page cache", "emptied before each (--cold)" if result.cold else "as it was (warm)"),
        ("throughput", f"compose {result.throughput_mb_s:,.1f} MB/s, tar {result.tar_mb_s:,.1f} "
                       "MB/s of image bytes"),
        ("compose / tar", f"{result.fraction_of_tar:.1%} of tar throughput "
                          f"({result.fraction_of_tar_engine:.1%} counting shard writing only; "
                          "target >= 70%)"),
        ("peak RSS", f"{c.peak_rss_mb:,.0f} MB all processes ({c.peak_anon_mb:,.0f} MB "
                     f"anonymous), {c.peak_process_rss_mb:,.0f} MB largest process"),
        ("load average before/after", f"{result.load_before} / {result.load_after}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compose",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dialogues", type=int, default=4500)
    parser.add_argument("--image-size", type=parse_size, default=(320, 1024), metavar="MIN-MAX")
    parser.add_argument("--tokens", default="64k")
    parser.add_argument("--workers", type=int, help="default: all cores")
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=ROOT, help="where corpora are kept")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="empty the page cache before compose and before tar (root, Linux)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.dialogues < 1:
        parser.error("--dialogues must be >= 1")
    result = measure(
        args.dialogues,
        image_size=args.image_size,
        tokens=args.tokens,
        workers=args.workers,
        engine=args.engine,
        seed=args.seed,
        root=args.root,
        cold=args.cold,
    )
    print(json.dumps(asdict(result), indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
