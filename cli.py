"""The `compose` command: parses options, builds the config once, calls the library, reports.

No logic of its own lives here: every step is a call into `compose`.
Exit codes: 0 done, 1 bad input or impossible budgets (the message says why), 2 usage error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from compose import __version__, demo
from compose.catalog import Catalog, IngestConfig, IngestSummary, SourceSpec, ingest
from compose.engine import (
    ENGINES,
    Output,
    default_workers,
    run,
    run_record,
    stage_sources,
    write_run_record,
)
from compose.order import ORDERS, source_weights, split_weight
from compose.plan import (
    Budgets,
    Infeasible,
    Plan,
    Policy,
    check_feasible,
    make_plan,
    parse_lengths,
    parse_reach,
    plan_columns,
    save_plan,
)
from compose.show import write_page
from compose.sources import Limits
from compose.stats import StatsConfig, compute_stats, write_outputs
from compose.stats import tables as stats_tables
from compose.storage import workspace
from compose.tokens import load_tokenizer
from compose.validate import SampleInvalid, validate_output


class _KeepArgs(typer.core.TyperGroup):
    """Keeps the raw arguments: `--images` belongs to the `--source` before it, an order that
    parsed option lists lose."""

    def parse_args(self, ctx, args):
        ctx.meta["raw_args"] = list(args)
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_KeepArgs,
    add_completion=False,
    no_args_is_help=False,
    invoke_without_command=True,
    rich_markup_mode=None,
    help="Compose long multi-image conversations from MMDU-style dialogues into WebDataset shards.",
)
err = Console(stderr=True)
out = Console()


class BadInput(Exception):
    """A problem with what the user gave: printed without a traceback, exit code 1."""


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def reported():
    """Turn the library's bad-input errors into a clear message and exit code 1."""
    try:
        yield
    except Infeasible as error:
        fail(f"impossible budgets: {error}")
    except SampleInvalid as error:
        if all(p.check == "images" for p in error.problems):
            fail(
                f"an image is damaged inside (its header read fine at ingest): {error}; "
                "re-ingest with `compose ingest --decode-images` to reject such records"
            )
        fail(f"a composed sample failed validation (a bug, please report it): {error}")
    except (BadInput, FileNotFoundError, ValueError, OSError, ImportError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted: finished shards are kept; run the same command with --resume", 130)


def progress_bar(quiet: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )


def pair_sources(argv: Sequence[str]) -> list[SourceSpec]:
    """`--images` and `--format` belong to the `--source` before them, in command-line order."""
    specs: list[dict] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, _, inline = arg.partition("=")
        if name in ("--source", "--images", "--format"):
            value = inline if inline else (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if inline else 2
            if name == "--source":
                specs.append({"path": split_weight(value)[0]})
            elif not specs:
                raise typer.BadParameter(f"{name} {value} comes before any --source")
            elif name[2:] in specs[-1]:
                raise typer.BadParameter(f"two {name} for --source {specs[-1]['path']}")
            else:
                specs[-1][name[2:]] = value
            continue
        i += 1
    return [SourceSpec(**spec) for spec in specs]


def source_weights_of(argv: Sequence[str]) -> tuple[float, ...]:
    """`--source a.json:0.7 --source b.json:0.3`: the weights, in --source order."""
    args = list(argv)
    values = [
        inline or (args[i + 1] if i + 1 < len(args) else "")
        for i, (name, _, inline) in enumerate(a.partition("=") for a in args)
        if name == "--source"
    ]
    try:
        return source_weights(values)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--source") from None


def check_inputs(specs: Sequence[SourceSpec]) -> None:
    for spec in specs:
        if not Path(spec.path).is_file():
            raise BadInput(f"--source {spec.path}: no such file")
        if spec.images is not None and not Path(spec.images).exists():
            raise BadInput(f"--images {spec.images}: no such folder or zip file")


def ingest_report(summary: IngestSummary, title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("catalog", summary.catalog + (" (reused)" if summary.reused else ""))
    table.add_row("records read", f"{summary.read:,}")
    table.add_row("accepted", f"{summary.accepted:,}")
    for reason, count in sorted(summary.rejected.items()):
        table.add_row(f"rejected: {reason}", f"{count:,}")
    table.add_row("images (distinct)", f"{summary.images:,} ({summary.unique_images:,})")
    table.add_row("QA turns", f"{summary.qa_turns:,}")
    table.add_row("text tokens", f"{summary.text_tokens:,}")
    table.add_row("time", f"{summary.seconds:.2f} s")
    return table


def run_ingest(
    specs: Sequence[SourceSpec],
    catalog: Path,
    tokenizer: str,
    quiet: bool,
    force: bool = False,
    limits: Limits | None = None,
    decode_images: bool = False,
) -> IngestSummary:
    check_inputs(specs)
    with progress_bar(quiet) as bar:
        task = bar.add_task("ingest", total=None)

        class Advance:
            def advance(self, records: int) -> None:
                bar.advance(task, records)

        config = IngestConfig(
            tokenizer=tokenizer, limits=limits or Limits(), decode_images=decode_images
        )
        summary = ingest(specs, catalog, config, progress=Advance(), force=force)
        bar.update(task, total=summary.read, completed=summary.read)
    return summary


def plan_report(plan: Plan, budgets: Budgets) -> Table:
    """The figures a user decides on: how many samples, how full, how many images."""
    r = plan.report
    table = Table(title="plan", title_justify="left")
    for column in ("", "mean", "min", "p1", "median", "max"):
        table.add_column(column, justify="left" if not column else "right")
    for name, dist, fmt in (
        ("tokens / sample", r.tokens, "{:,.0f}"),
        ("fill (tokens / budget)", r.fill, "{:.4f}"),
        ("images / sample", r.images, "{:,.1f}"),
        ("segments / sample", r.segments_per_sample, "{:,.1f}"),
        ("probe reach-back (tokens)", r.reach_tokens, "{:,.0f}"),
        ("probe reach-back (images)", r.reach_images, "{:,.1f}"),
    ):
        if dist is None:
            continue
        table.add_row(
            name, *(fmt.format(v) for v in (dist.mean, dist.min, dist.p1, dist.p50, dist.max))
        )
    ceiling = f", max {budgets.max_images} images" if budgets.max_images else ""
    sizes = f"{budgets.floor:,}..{budgets.tokens:,} tokens"
    if budgets.lengths:
        sizes = " / ".join(f"{x['tokens']:,}" for x in r.lengths) + " tokens in turn"
    probes = ""
    if budgets.probes:
        probes = f", {budgets.probes} probe{'s' if budgets.probes > 1 else ''} each"
    mix = ""
    if plan.policy.weights:
        mix = "; mix " + " / ".join(f"{m['share']:.3f}" for m in r.mix) + " of tokens"
    table.caption = (
        f"{r.samples:,} samples of {sizes}{ceiling}{probes}; "
        f"{r.dialogues_used:,} of {r.dialogues:,} dialogues used{mix}; "
        f"{r.over_budget} over budget, {r.under_floor} under the floor"
    )
    table.caption_justify = "left"
    return table


def build_budgets(options: dict) -> Budgets:
    """The budget options the main job and `compose plan` share, by name from click's
    `ctx.params`, so neither command lists them again in a positional call."""
    try:
        lengths = parse_lengths(options["tokens"])
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--tokens") from None
    try:
        reach, share = parse_reach(options["min_reach"])
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--min-reach") from None
    if not 0 <= options["tolerance"] < 1:
        raise typer.BadParameter("must be in [0, 1)", param_hint="--tolerance")
    return Budgets(
        tokens=max(lengths),
        tolerance=options["tolerance"],
        max_images=options["max_images"],
        min_images=options["min_images"],
        samples=options["samples"],
        reuse=options["reuse"],
        message_overhead=options["message_overhead"],
        lengths=lengths,
        probes=options["probes"],
        min_reach=reach,
        min_reach_share=share,
    )


def build_policy(image_tokens: str, seed: int, order: str, weights=()) -> Policy:
    if order not in ORDERS:
        raise typer.BadParameter(f"one of {', '.join(ORDERS)}", param_hint="--order")
    return Policy(image_tokens=image_tokens, seed=seed, order=order, weights=weights)


Tokens = Annotated[
    str,
    typer.Option(
        "--tokens",
        help="Token budget per sample: 64k, 128k, 64000. Hard ceiling and target (k = 1024). "
        "Several lengths, taken by samples in turn: 32k,64k,128k or 32k..128k[:STEP].",
    ),
]
Probes = Annotated[
    int,
    typer.Option(
        min=0,
        help="Long-range probes per sample: the next QA turn of an early segment's dialogue, "
        "asked at the end.",
    ),
]
MinReach = Annotated[
    str,
    typer.Option(
        "--min-reach",
        help="Tokens every probe reaches back: 30k, or 50% of the sample's token budget.",
    ),
]
Order = Annotated[
    str,
    typer.Option(help="Dialogue order: random (seeded), topic, length, input."),
]
Tolerance = Annotated[
    float, typer.Option(help="Floor below the budget, as a fraction: 0.02 means >= 98%.")
]
MaxImages = Annotated[
    int | None, typer.Option("--max-images", min=1, help="Hard ceiling on images per sample.")
]
MinImages = Annotated[int, typer.Option("--min-images", min=0, help="Floor on images per sample.")]
Samples = Annotated[
    int | None,
    typer.Option(min=1, help="Samples to make (default: as many as the corpus gives)."),
]
Reuse = Annotated[
    int, typer.Option(min=1, help="Times a dialogue may be used in all (1 = once per run).")
]
Overhead = Annotated[
    int, typer.Option("--message-overhead", min=0, help="Tokens added per message (chat template).")
]
ImageTokens = Annotated[
    str,
    typer.Option(
        "--image-tokens",
        help="Image-token model: llava-1.5, llava-next, qwen2-vl, internvl, gpt-4o, claude, "
        "fixed:N.",
    ),
]
Seed = Annotated[int, typer.Option(help="Seed of every random choice.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]


@app.callback()
def main_job(
    ctx: typer.Context,
    source: Annotated[
        list[str] | None,
        typer.Option(help="Dialogue file (repeatable). Default: the embedded demo corpus."),
    ] = None,
    images: Annotated[
        list[str] | None, typer.Option(help="Image folder or zip of the --source before it.")
    ] = None,
    format: Annotated[
        list[str] | None,
        typer.Option(
            help="Format of the --source before it: mmdu, mmdu-bench, llava, exmodd "
            "(default: detected)."
        ),
    ] = None,
    tokens: Tokens = "64k",  # the budget options, to min_reach: build_budgets reads them
    tolerance: Tolerance = 0.02,
    max_images: MaxImages = None,
    min_images: MinImages = 0,
    samples: Samples = None,
    reuse: Reuse = 1,
    message_overhead: Overhead = 0,
    probes: Probes = 0,
    min_reach: MinReach = "0",
    order: Order = "random",
    tokenizer: Annotated[
        str, typer.Option(help="cl100k_base (offline) or a path to a Hugging Face tokenizer.json.")
    ] = "cl100k_base",
    image_tokens: ImageTokens = "llava-1.5",
    style: Annotated[
        str,
        typer.Option(
            help="How images appear in text: mmdu (<ImageHere>), llava (<image>), "
            "canonical (<image-N>), openai (content parts)."
        ),
    ] = "mmdu",
    seed: Seed = 0,
    shard_size: Annotated[
        int, typer.Option("--shard-size", min=1, help="Samples per shard.")
    ] = 100,
    prefix: Annotated[str, typer.Option(help="Shard file name prefix.")] = "shard",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Worker processes (default: all cores; with Ray, CPUs of a local cluster)."
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="What runs the shard tasks: local (process pool) or ray.")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Join this Ray cluster (default: start a local one)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the run in OUT; refuse if OUT holds another run's shards."),
    ] = False,
    out: Annotated[
        str,
        typer.Option(help="Output folder or fsspec URL (everything is written inside it)."),
    ] = "compose-out",
    catalog: Annotated[
        Path | None,
        typer.Option(help="Use this catalog instead of ingesting (default: OUT/catalog, cached)."),
    ] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Ingest (cached), plan and write shards: the main job. Subcommands: ingest, plan, validate."""
    if version:
        print(f"compose {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is not None:
        return
    if style not in ("mmdu", "llava", "canonical", "openai"):
        raise typer.BadParameter(f"unknown style {style!r}", param_hint="--style")
    if engine not in ENGINES:
        raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
    budgets = build_budgets(ctx.params)
    weights = source_weights_of(ctx.meta["raw_args"]) if source else ()
    policy = build_policy(image_tokens, seed, order, weights)
    quiet = quiet or as_json
    with reported():
        specs = pair_sources(ctx.meta["raw_args"]) if source else [_demo_spec()]
        work = workspace(out)  # OUT itself, or a local stage for a URL
        specs = stage_sources(specs, out)
        catalog_path = catalog if catalog is not None else work / "catalog"
        if catalog is None:
            summary = run_ingest(specs, catalog_path, tokenizer, quiet)
            if not quiet:
                err.print(ingest_report(summary, "ingest"))
        cat = Catalog.open(catalog_path)
        frame = cat.frame(plan_columns(policy))
        check_feasible(frame, budgets, policy)
        tok = load_tokenizer(cat.meta["tokenizer"]["spec"])
        plan = make_plan(frame, budgets, policy, digit_tokens=tok.digit_tokens)
        del frame  # planned: the catalog's columns are not held while shards are written
        work.mkdir(parents=True, exist_ok=True)
        save_plan(plan, work / "plan.parquet")
        output = Output(
            out=out,
            prefix=prefix,
            shard_size=shard_size,
            style=style,
            workers=workers or default_workers(),
            engine=engine,
            ray_address=ray_address,
            resume=resume,
        )
        with progress_bar(quiet) as bar:
            task = bar.add_task("shards", total=plan.report.samples)
            result = run(
                str(catalog_path),
                plan,
                budgets,
                policy,
                output,
                on_shard=lambda stats, skipped: bar.advance(task, stats.samples),
            )
        record = run_record(
            catalog=cat,
            plan=plan,
            budgets=budgets,
            policy=policy,
            output=output,
            result=result,
            argv=ctx.meta["raw_args"],
        )
        write_run_record(out, record)
    if as_json:
        print(json.dumps(record, indent=2, sort_keys=True))
    else:
        err.print(plan_report(plan, budgets))
        out_table = Table(title=f"wrote {out}", show_header=False, title_justify="left")
        out_table.add_column(style="bold")
        out_table.add_column(justify="right")
        s = record["summary"]
        out_table.add_row("samples", f"{s['samples']:,}")
        out_table.add_row("shards", f"{s['shards']:,} ({result.skipped} already done)")
        out_table.add_row("images", f"{s['images']:,}")
        out_table.add_row("tokens", f"{s['tokens']:,}")
        out_table.add_row("bytes", f"{s['bytes']:,}")
        for tokens in budgets.sizes:
            at = budgets.at(tokens)
            count = f" ({s['lengths'][str(tokens)]:,} samples)" if budgets.lengths else ""
            out_table.add_row("floor / ceiling", f"{at.floor:,} / {at.tokens:,}{count}")
        if budgets.probes:
            out_table.add_row("probes", f"{s['probes']:,}")
        out_table.add_row("time", f"{result.seconds:.2f} s")
        err.print(out_table)


def _demo_spec() -> SourceSpec:
    dialogues, pics = demo.paths()
    return SourceSpec(path=str(dialogues), images=str(pics), format="mmdu")


@app.command("ingest")
def ingest_command(
    sources: Annotated[list[Path], typer.Argument(help="Dialogue files.")],
    images: Annotated[
        list[str] | None,
        typer.Option(
            help="Image folder or zip, one per SOURCE in order (default: the source's folder)."
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(help="Force the format of every SOURCE: mmdu, mmdu-bench, llava, exmodd."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Catalog folder.")] = Path("catalog"),
    tokenizer: Annotated[
        str, typer.Option(help="cl100k_base or a path to tokenizer.json.")
    ] = "cl100k_base",
    force: Annotated[
        bool, typer.Option(help="Rebuild even if the catalog matches its inputs.")
    ] = False,
    max_record_bytes: Annotated[
        int, typer.Option(min=1, help="Records longer than this are rejected (too_large).")
    ] = Limits().max_record_bytes,
    max_depth: Annotated[
        int, typer.Option(min=1, help="Records nested deeper than this are rejected (too_large).")
    ] = Limits().max_depth,
    max_string_bytes: Annotated[
        int, typer.Option(min=1, help="Records with a longer string are rejected (too_large).")
    ] = Limits().max_string_bytes,
    max_image_bytes: Annotated[
        int, typer.Option(min=1, help="Larger image files are rejected (image_too_large).")
    ] = Limits().max_image_bytes,
    max_image_pixels: Annotated[
        int, typer.Option(min=1, help="Images with more pixels are rejected, never decoded.")
    ] = Limits().max_image_pixels,
    decode_images: Annotated[
        bool, typer.Option(help="Decode every image (slow): damage inside any image is a reject.")
    ] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Read sources into a Parquet catalog; bad records go to OUT/rejects.jsonl with a reason.
    The limits bound untrusted input (docs/reliability.md)."""
    images = images or []
    if images and len(images) != len(sources):
        raise typer.BadParameter(
            f"{len(images)} --images for {len(sources)} sources: give one per source, in order"
        )
    specs = [
        SourceSpec(path=str(s), images=images[i] if images else None, format=format)
        for i, s in enumerate(sources)
    ]
    limits = Limits(
        max_record_bytes=max_record_bytes,
        max_depth=max_depth,
        max_string_bytes=max_string_bytes,
        max_image_bytes=max_image_bytes,
        max_image_pixels=max_image_pixels,
    )
    with reported():
        summary = run_ingest(specs, out, tokenizer, quiet or as_json, force, limits, decode_images)
    if as_json:
        print(json.dumps(summary.to_json(), indent=2, sort_keys=True))
    else:
        err.print(ingest_report(summary, "ingest"))


@app.command("plan")
def plan_command(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="Catalog folder from `compose ingest`.")],
    tokens: Tokens = "64k",  # the budget options, to min_reach: build_budgets reads them
    tolerance: Tolerance = 0.02,
    max_images: MaxImages = None,
    min_images: MinImages = 0,
    samples: Samples = None,
    reuse: Reuse = 1,
    message_overhead: Overhead = 0,
    probes: Probes = 0,
    min_reach: MinReach = "0",
    order: Order = "random",
    image_tokens: ImageTokens = "llava-1.5",
    seed: Seed = 0,
    out: Annotated[Path, typer.Option(help="Plan file.")] = Path("plan.parquet"),
    as_json: AsJson = False,
) -> None:
    """Budgets -> plan.parquet, with a feasibility report before any work."""
    budgets = build_budgets(ctx.params)
    policy = build_policy(image_tokens, seed, order)
    with reported():
        cat = Catalog.open(catalog)
        frame = cat.frame(plan_columns(policy))
        check_feasible(frame, budgets, policy)
        tok = load_tokenizer(cat.meta["tokenizer"]["spec"])
        plan = make_plan(frame, budgets, policy, digit_tokens=tok.digit_tokens)
        save_plan(plan, out)
    if as_json:
        print(json.dumps(plan.report.to_json(), indent=2, sort_keys=True))
    else:
        err.print(plan_report(plan, budgets))
        err.print(f"wrote {out}")


@app.command("validate")
def validate_command(
    directory: Annotated[
        str, typer.Argument(help="A folder written by `compose`, or its URL (s3://...).")
    ],
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Schemas, semantic checks, checksums and the manifest, over finished shards."""
    with reported():
        with progress_bar(quiet or as_json) as bar:
            task = bar.add_task("validate", total=None)
            report = validate_output(
                directory,
                on_shard=lambda done, total: bar.update(task, completed=done, total=total),
            )
    if as_json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for problem in report.problems[:200]:
            err.print(f"[red]✗[/] {problem}", highlight=False)
        if len(report.problems) > 200:
            err.print(f"... and {len(report.problems) - 200} more")
        verdict = "[green]valid[/]" if report.ok else f"[red]{len(report.problems)} problems[/]"
        err.print(
            f"{directory}: {report.shards} shards, {report.samples} samples, "
            f"{report.images} images: {verdict}"
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command("export")
def export_command(
    directory: Annotated[
        str, typer.Argument(help="A folder written by `compose`, or its URL (s3://...).")
    ],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="llava, mmdu, vlmevalkit, openai; or energon (Megatron-Energon metadata "
            "written beside the shards).",
        ),
    ],
    out: Annotated[
        str | None,
        typer.Option(
            help="Output file or URL; images go to {stem}_images/ beside it (not for energon)."
        ),
    ] = None,
    images: Annotated[
        str, typer.Option(help="openai only: image files (files) or data urls (data-url).")
    ] = "files",
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Export the samples of a composed folder for other tools (docs/export.md)."""
    from compose.export import export  # webdataset imports torch when present: ~1 s

    with reported():
        with progress_bar(quiet or as_json) as bar:
            task = bar.add_task(f"export {format}", total=None)
            summary = export(
                directory,
                out,
                format=format,
                images=images,
                on_sample=lambda done: bar.update(task, completed=done),
            )
    if as_json:
        print(json.dumps(summary.to_json(), indent=2, sort_keys=True))
    else:
        err.print(
            f"wrote {summary.out}: {summary.samples:,} samples, {summary.images:,} images, "
            f"{summary.bytes:,} bytes"
        )


@app.command("stats")
def stats_command(
    path: Annotated[Path, typer.Argument(help="A catalog or a folder written by `compose`.")],
    out: Annotated[Path, typer.Option(help="Folder for stats.json and the PNG plots.")] = Path(
        "stats"
    ),
    toxicity: Annotated[
        bool, typer.Option(help="Toxicity rate of the answers (alt-profanity-check).")
    ] = True,
    coherence: Annotated[
        bool,
        typer.Option(help="Question/answer embedding cosine (needs the coherence extra)."),
    ] = False,
    coherence_pairs: Annotated[
        int | None,
        typer.Option("--coherence-pairs", min=1, help="Score a seeded sample of N QA pairs."),
    ] = None,
    image_tokens: ImageTokens = "llava-1.5",
    seed: Seed = 0,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Counts, distributions, Distinct-1/2/3, toxicity, coherence; stats.json and PNG plots."""
    config = StatsConfig(
        toxicity=toxicity,
        coherence=coherence,
        coherence_pairs=coherence_pairs,
        image_tokens=image_tokens,
        seed=seed,
    )
    with reported():
        with progress_bar(quiet or as_json) as bar:
            task = bar.add_task("stats", total=None)
            report = compute_stats(
                path,
                config,
                on_batch=lambda done, total: bar.update(task, completed=done, total=total),
            )
        written = write_outputs(report, out)
    if as_json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for table in stats_tables(report):
            err.print(table)
        err.print(f"wrote {written[0]} and {len(written) - 1} plots in {out}")


@app.command("show")
def show_command(
    directory: Annotated[Path, typer.Argument(help="A folder written by `compose`.")],
    sample: Annotated[
        str | None, typer.Option(help="Key of the sample (default: the first).")
    ] = None,
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("sample.html"),
) -> None:
    """One sample as a self-contained HTML page: images inline, mentions linked, segments."""
    with reported():
        page = write_page(directory, out, key=sample)
    err.print(f"wrote {page}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
