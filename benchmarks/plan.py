"""Benchmark: plan an MMDU-45k-shaped catalog into 64k-token samples, with and without an image
ceiling.

    python -m benchmarks.plan [--dialogues 45000] [--tokens 64k] [--repeat 3]
    python -m benchmarks.plan --catalog PATH [--order random] [--repeat 3]   # time and memory

The catalog frame is generated with numpy in the shape of MMDU-45k (MMDU paper, Table 1): 2-5
images per dialogue (mean 3), mean 9 QA turns (max 27), about 520 text tokens per QA turn, image
sides of 300-1000 px, and most dialogues introducing all their images in the first question.
Only the columns the planner reads are built. The baseline beside each timing is the time to
build the frame and to sort its flattened QA token column (numpy), as a scale for the machine.

With `--catalog`, it runs `compose plan CATALOG` as a user would, in a child process, and reports
its wall time, its peak RSS (psutil, every 50 ms) and the sha256 of the plan.parquet it wrote:
equal digests from two revisions mean byte-identical plans.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from compose.plan import Budgets, Policy, make_plan, parse_tokens
from compose.tokens import load_tokenizer


def _lists(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)


def synthetic_catalog(dialogues: int, seed: int = 0) -> pl.DataFrame:
    """Catalog dialogue rows shaped like MMDU-45k, with the columns the planner reads."""
    rng = np.random.default_rng(seed)
    n_images = rng.choice([2, 3, 4, 5], size=dialogues, p=[0.4, 0.3, 0.2, 0.1])
    n_qa = np.clip(rng.poisson(8.0, size=dialogues) + 1, 1, 27)
    qa_start = np.concatenate(([0], np.cumsum(n_qa)))
    total_qa = int(qa_start[-1])
    text = np.clip(rng.normal(520, 160, size=total_qa), 40, 1600).astype(np.int32)

    # 80% introduce every image in the first question; the rest hold some back for one later turn.
    first = np.where(
        (rng.random(dialogues) < 0.8) | (n_qa == 1),
        n_images,
        rng.integers(1, n_images, endpoint=False),
    )
    later = qa_start[:-1] + 1 + (rng.random(dialogues) * np.maximum(n_qa - 1, 1)).astype(np.int64)
    new = np.zeros(total_qa, dtype=np.int32)
    new[qa_start[:-1]] = first
    held = n_images - first
    np.add.at(new, later[held > 0], held[held > 0])

    image_start = np.concatenate(([0], np.cumsum(n_images)))
    total_images = int(image_start[-1])
    sizes = rng.integers(300, 1001, size=(2, total_images)).astype(np.int32)
    images = pa.StructArray.from_arrays(
        [
            pa.array(np.arange(total_images) - np.repeat(image_start[:-1], n_images) + 1),
            pa.array(sizes[0]),
            pa.array(sizes[1]),
        ],
        names=["number", "width", "height"],
    )

    # Two messages per QA turn; each mentions 0-2 images already introduced by then.
    turn_start = 2 * qa_start
    known = np.cumsum(new) - np.repeat(np.concatenate(([0], np.cumsum(new)))[qa_start[:-1]], n_qa)
    turn_known = np.repeat(known, 2)
    mention_count = np.where(turn_known > 0, rng.integers(0, 3, size=2 * total_qa), 0)
    mention_start = np.concatenate(([0], np.cumsum(mention_count)))
    mention_of = np.repeat(turn_known, mention_count)
    mentions = (rng.random(len(mention_of)) * mention_of).astype(np.int32) + 1
    turns = pa.StructArray.from_arrays(
        [_lists(mention_start, pa.array(mentions, pa.int32()))], names=["mentions"]
    )

    table = pa.table(
        {
            "row": pa.array(np.arange(dialogues, dtype=np.int64)),
            "id": pa.array([f"synthetic:{i}" for i in range(dialogues)]),
            "n_images": pa.array(n_images.astype(np.int32)),
            "n_qa": pa.array(n_qa.astype(np.int32)),
            "qa_text_tokens": _lists(qa_start, pa.array(text)),
            "qa_new_images": _lists(qa_start, pa.array(new)),
            "images": _lists(image_start, images),
            "turns": _lists(turn_start, turns),
        }
    )
    return pl.from_arrow(table)


def measure_command(catalog: Path, tokens: str, order: str, seed: int) -> dict:
    """`compose plan` on a real catalog in a child process: wall seconds, peak RSS in MiB
    (summed and anonymous), samples, and the plan file's sha256."""
    from benchmarks.compose import PeakRss  # psutil sampling, shared with the compose benchmark

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "plan.parquet"
        command = [
            sys.executable, "-c", "import cli; cli.main()", "plan", str(catalog),
            "--tokens", tokens, "--order", order, "--seed", str(seed), "--out", str(out),
            "--json",
        ]  # fmt: skip
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE)
        peak = PeakRss(child.pid)
        stdout, _ = child.communicate()
        seconds = time.perf_counter() - started
        if child.returncode:
            raise SystemExit(f"compose plan failed with exit code {child.returncode}")
        total, anon, _ = peak.mb()
        return {
            "seconds": round(seconds, 2),
            "peak_mb": total,
            "peak_anon_mb": anon,
            "samples": json.loads(stdout)["samples"],
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        }


def main_catalog(args: argparse.Namespace) -> None:
    for _ in range(args.repeat):
        result = measure_command(args.catalog, args.tokens, args.order, args.seed)
        print(
            f"compose plan --order {args.order} --tokens {args.tokens}: {result['seconds']:.2f} s, "
            f"peak {result['peak_mb']:,.0f} MB (anonymous {result['peak_anon_mb']:,.0f}), "
            f"{result['samples']:,} samples, plan sha256 {result['sha256'][:16]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=45_000)
    parser.add_argument("--tokens", default="64k")
    parser.add_argument("--max-images", type=int, default=100)
    parser.add_argument("--image-tokens", default="llava-1.5")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catalog", type=Path, help="time `compose plan` on this catalog")
    parser.add_argument("--order", default="random", help="with --catalog: the plan order")
    args = parser.parse_args()
    if args.catalog is not None:
        main_catalog(args)
        return

    started = time.perf_counter()
    frame = synthetic_catalog(args.dialogues, seed=args.seed)
    built = time.perf_counter() - started
    started = time.perf_counter()
    flat = frame["qa_text_tokens"].explode().to_numpy()
    np.sort(flat)
    baseline = time.perf_counter() - started
    print(
        f"catalog: {frame.height:,} dialogues, {int(frame['n_qa'].sum()):,} QA turns, "
        f"{int(frame['n_images'].sum()):,} images; built in {built:.2f} s; "
        f"baseline (explode + sort the QA token column) {baseline * 1000:.1f} ms"
    )
    tokens = parse_tokens(args.tokens)
    digits = load_tokenizer().digit_tokens  # cl100k_base: numbers are split into 3-digit pieces
    policy = Policy(image_tokens=args.image_tokens, seed=args.seed)
    cases = [
        ("--tokens only", Budgets(tokens=tokens), None),
        (
            f"--max-images {args.max_images}",
            Budgets(tokens=tokens, max_images=args.max_images),
            None,
        ),
        ("--tokens, cl100k digit fix", Budgets(tokens=tokens), digits),
    ]
    header = (
        f"{'case':<28} {'best s':>6} {'samples':>7} {'fill mean':>9} {'fill p1':>7} "
        f"{'fill min':>8} {'img mean':>8} {'img p1':>6} {'img max':>7} {'used':>7} {'over':>4}"
    )
    print(header)
    for name, budgets, digit_tokens in cases:
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            plan = make_plan(frame, budgets, policy, digit_tokens=digit_tokens)
            times.append(time.perf_counter() - started)
        r = plan.report
        print(
            f"{name:<28} {min(times):>6.2f} {r.samples:>7,} {r.fill.mean:>9.4f} "
            f"{r.fill.p1:>7.4f} {r.fill.min:>8.4f} {r.images.mean:>8.1f} {r.images.p1:>6.0f} "
            f"{r.images.max:>7.0f} {r.dialogues_used:>7,} {r.over_budget:>4}"
        )


if __name__ == "__main__":
    main()
