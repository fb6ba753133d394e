"""The benchmark suite: ingest, plan, compose and load at 1x and 4x a generated corpus, each beside
its floor in the same run, with ratios, peak memory and how time grows with the input.

    python -m benchmarks.run --quick                     # CI: a small corpus, under 2 minutes
    python -m benchmarks.run --dialogues 11250           # 1x = 11,250, 4x = 45,000 (full size)
    python -m benchmarks.run --dialogues 45000 --json    # 1x = full size, 4x = 180,000

Floors: ingest beside tiktoken alone on the same text on all cores (benchmarks.ingest); compose
beside GNU `tar cf` over the same image bytes (benchmarks.compose); load (`compose.loader`, raw
bytes) beside plain `webdataset` iteration over the same shards. Plan has no floor: its target
is absolute (45k dialogues in under 5 s). The corpora are generated once and kept under the temp
folder (see benchmarks.compose). `--quick` fails (exit 1) when a stage fails, never on a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import compose as bench
from benchmarks.generate import parse_size

LINEAR = 4.6  # 4x the input within 4.6x the time


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """One stage at one size: its time, its floor's time, and peak memory where measured."""

    name: str
    dialogues: int
    seconds: float
    cpu_seconds: float | None  # user + system: the growth measure least moved by other load
    floor_seconds: float | None
    ratio: float | None  # seconds / floor_seconds (load, ingest); compose: tar / compose
    peak_rss_mb: float | None
    detail: str


def ingest_stage(folder: Path, dialogues: int, image_size: tuple[int, int], seed: int) -> Stage:
    """benchmarks.ingest's measurement: `compose ingest` beside tiktoken on the same text."""
    from benchmarks import ingest

    args = argparse.Namespace(
        dialogues=dialogues, seed=seed, image_size=image_size, corpus=folder, profile=None
    )
    run = ingest.measure(args)
    return Stage(
        name="ingest",
        dialogues=dialogues,
        seconds=run.ingest_seconds,
        cpu_seconds=run.ingest_cpu_seconds,
        floor_seconds=run.floor_seconds,
        ratio=run.ratio,
        peak_rss_mb=run.peak_rss_mb,
        detail=f"{run.json_bytes / 1e6:,.0f} MB JSON, {run.text_tokens:,} tokens; "
        f"floor: tiktoken on {run.cores} cores; target ratio <= 1.5, peak < 1024 MB",
    )


def plan_stage(catalog: Path, tokens: str, seed: int) -> Stage:
    run = bench.measure_plan(catalog, tokens, seed)
    return Stage(
        name="plan",
        dialogues=run.dialogues,
        seconds=run.seconds,
        cpu_seconds=run.cpu_seconds,
        floor_seconds=None,
        ratio=None,
        peak_rss_mb=None,
        detail=f"{run.samples:,} samples of {tokens}, fill {run.fill_mean:.4f}, "
        f"{run.read_seconds:.2f} s of it reading the catalog columns; "
        "target < 5 s at 45k dialogues",
    )


def compose_stage(run: bench.ComposeRun, tar: bench.TarRun, dialogues: int) -> Stage:
    return Stage(
        name="compose",
        dialogues=dialogues,
        seconds=run.seconds,
        cpu_seconds=run.cpu_seconds,
        floor_seconds=tar.seconds,
        ratio=round(tar.seconds / run.seconds, 4),
        peak_rss_mb=run.peak_rss_mb,
        detail=f"{run.samples:,} samples, {run.shard_bytes / 1e6:,.0f} MB of shards, "
        f"{run.image_bytes / 1e6:,.0f} MB of images; {run.engine_seconds:.2f} s writing shards "
        f"({run.workers} workers); {run.peak_anon_mb:,.0f} MB anonymous; "
        "ratio = fraction of tar throughput, target >= 0.70",
    )


def load_stage(out: Path, dialogues: int) -> Stage:
    """compose.loader (raw image bytes, every sample parsed) beside plain webdataset iteration."""
    import webdataset as wds

    urls = [str(p) for p in sorted(out.glob("*.tar"))]

    def iterate() -> tuple[float, int]:
        started, total = time.perf_counter(), 0
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            total += sum(len(v) for v in sample.values() if isinstance(v, bytes))
        return time.perf_counter() - started, total

    iterate()  # the shards were just written: both readers find them in the page cache
    floor_seconds, plain = iterate()
    try:
        from compose import loader
    except ImportError:
        return Stage(
            name="load",
            dialogues=dialogues,
            seconds=floor_seconds,
            cpu_seconds=None,
            floor_seconds=floor_seconds,
            ratio=None,
            peak_rss_mb=None,
            detail="compose.loader is not installed: plain webdataset iteration only",
        )
    started, cpu = time.perf_counter(), time.process_time()
    count = 0
    for _messages, images in loader.dataset(str(out), decode=False):
        count += len(images)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Stage(
        name="load",
        dialogues=dialogues,
        seconds=round(seconds, 3),
        cpu_seconds=round(cpu, 3),
        floor_seconds=round(floor_seconds, 3),
        ratio=round(seconds / floor_seconds, 3),
        peak_rss_mb=None,
        detail=f"{len(urls)} shards, {plain / 1e6:,.0f} MB, {count:,} images; one process, "
        "no decoding",
    )


def measure(
    dialogues: int,
    *,
    image_size: tuple[int, int],
    tokens: str,
    workers: int | None,
    seed: int = 0,
    root: Path = bench.ROOT,
) -> list[Stage]:
    """Every stage at one corpus size; each is printed on stderr as it completes."""
    stages = []
    folder = bench.corpus(dialogues, image_size, seed, root)
    try:
        stages.append(_done(ingest_stage(folder, dialogues, image_size, seed)))
    except ImportError:
        print("benchmarks.ingest is absent: ingest is not measured", file=sys.stderr)
    catalog = bench.catalog(folder)
    stages.append(_done(plan_stage(catalog, tokens, seed)))
    out = folder / "bench-out"
    cores = len(os.sched_getaffinity(0))
    run = bench.measure_compose(catalog, out, tokens, workers or cores, "local")
    load = load_stage(out, dialogues)
    tar = bench.measure_tar(out, folder / "bench-tar", bench.images_of(folder))
    stages += [_done(compose_stage(run, tar, dialogues)), _done(load)]
    shutil.rmtree(out)
    return stages


def _done(stage: Stage) -> Stage:
    print(json.dumps(asdict(stage)), file=sys.stderr, flush=True)
    return stage


def scaling(small: list[Stage], large: list[Stage]) -> dict[str, dict[str, float | None]]:
    """Time at 4x over time at 1x, per stage, wall and CPU (linear is 4)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(b / a, 2) if a and b is not None else None

    return {
        a.name: {"wall": ratio(a.seconds, b.seconds), "cpu": ratio(a.cpu_seconds, b.cpu_seconds)}
        for a, b in zip(small, large, strict=True)
    }


def table(small: list[Stage], large: list[Stage], growth: dict) -> str:
    header = (
        f"{'stage':<8} {'dialogues':>9} {'seconds':>9} {'floor s':>9} {'ratio':>7} "
        f"{'peak MB':>8} | {'dialogues':>9} {'seconds':>9} {'floor s':>9} {'ratio':>7} "
        f"{'peak MB':>8} | {'4x/1x':>6} {'CPU':>6}"
    )
    lines = [header, "-" * len(header)]

    def cells(s: Stage) -> str:
        floor = f"{s.floor_seconds:.2f}" if s.floor_seconds is not None else "-"
        ratio = f"{s.ratio:.3f}" if s.ratio is not None else "-"
        peak = f"{s.peak_rss_mb:,.0f}" if s.peak_rss_mb is not None else "-"
        return f"{s.dialogues:>9,} {s.seconds:>9.2f} {floor:>9} {ratio:>7} {peak:>8}"

    for a, b in zip(small, large, strict=True):
        wall, cpu = (growth[a.name][k] for k in ("wall", "cpu"))
        cpu_text = f"{cpu:>6.2f}" if cpu is not None else f"{'-':>6}"
        lines.append(f"{a.name:<8} {cells(a)} | {cells(b)} | {wall:>6.2f} {cpu_text}")
    lines.append("")
    lines += [f"{s.name} ({s.dialogues:,}): {s.detail}" for s in [*small, *large]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dialogues", type=int, default=11_250, help="1x size (4x is 4 times)")
    parser.add_argument("--image-size", type=parse_size, default=(64, 160), metavar="MIN-MAX")
    parser.add_argument("--tokens", default="64k")
    parser.add_argument("--workers", type=int, help="compose workers (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=bench.ROOT, help="where corpora are kept")
    parser.add_argument("--quick", action="store_true", help="150 and 600 dialogues, 16k tokens")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.dialogues, args.tokens = 150, "16k"
    if args.dialogues < 1:
        parser.error("--dialogues must be >= 1")
    started = time.perf_counter()
    load_before = os.getloadavg()
    options = dict(
        image_size=args.image_size, tokens=args.tokens, workers=args.workers, root=args.root
    )
    small = measure(args.dialogues, seed=args.seed, **options)
    large = measure(4 * args.dialogues, seed=args.seed, **options)
    growth = scaling(small, large)
    context = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        stages = {"1x": [asdict(s) for s in small], "4x": [asdict(s) for s in large]}
        print(json.dumps({**context, "stages": stages, "growth": growth}, indent=2))
    else:
        print(table(small, large, growth))
        print(
            f"\n{context['date']}; {context['machine']}; load average "
            f"{context['load_before']} -> {context['load_after']}; "
            f"{context['seconds']} s in all; linear growth is 4x/1x <= {LINEAR}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
