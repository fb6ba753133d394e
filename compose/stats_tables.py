"""The report in the terminal: rich tables of the counts, distributions, quality and sources.

Formatting only: every number comes from a `StatsReport` as computed.
"""

from __future__ import annotations

from rich.table import Table

from compose.stats_quality import ORDERS
from compose.stats_report import Metric, StatsReport


def tables(report: StatsReport) -> list[Table]:
    """The report as rich tables: counts, distributions, quality."""
    counts = Table(title=f"stats: {report.path} ({report.kind})", title_justify="left")
    counts.add_column("count")
    counts.add_column("value", justify="right")
    for name, value in report.counts.items():
        counts.add_row(name.replace("_", " ").replace("qa ", "QA "), f"{value:,}")
    dist = Table(title=f"distributions (per {report.unit})", title_justify="left")
    for column in ("", "mean", "min", "p5", "median", "p95", "max"):
        dist.add_column(column, justify="left" if not column else "right")
    for name, d in report.distributions.items():
        fmt = "{:,.0f}" if report.metrics[name].discrete else "{:.4f}"
        mean = f"{d.mean:,.1f}" if report.metrics[name].discrete else fmt.format(d.mean)
        dist.add_row(
            _row_label(report.metrics[name], report.unit),
            mean,
            *(fmt.format(v) for v in (d.min, d.p5, d.p50, d.p95, d.max)),
        )
    return [counts, dist, _quality_table(report), _sources_table(report)]


def _quality_table(report: StatsReport) -> Table:
    quality = Table(title="quality (assistant turns)", title_justify="left")
    quality.add_column("metric")
    quality.add_column("value", justify="right")
    quality.add_column("from", justify="right")
    d = report.quality.get("distinct", {})
    for n in ORDERS:
        value = d.get(f"distinct_{n}")
        shown = "n/a" if value is None else f"{value:.4f}"
        quality.add_row(f"Distinct-{n}", shown, f"{d.get('ngrams', {}).get(str(n), 0):,} {n}-grams")
    t = report.quality.get("toxicity")
    if t is not None:
        rate = "n/a" if t["rate"] is None else f"{t['rate']:.4%}"
        quality.add_row(
            "toxicity rate",
            rate,
            f"{t['flagged']:,} of {t['turns']:,} turns (P >= {t['threshold']})",
        )
    c = report.quality.get("coherence")
    if c is not None:
        mean = "n/a" if c["mean"] is None else f"{c['mean']:.4f}"
        quality.add_row(
            "coherence (mean cosine)", mean, f"{c['pairs']:,} of {c['of_pairs']:,} pairs"
        )
    return quality


def _sources_table(report: StatsReport) -> Table:
    sources = Table(title="sources", title_justify="left")
    sources.add_column("file")
    counted = "segments" if report.kind == "shards" else "dialogues"
    for column in (counted, "QA turns", "share"):
        sources.add_column(column, justify="right")
    for source in report.sources:
        sources.add_row(
            source["file"],
            f"{source[counted]:,}",
            f"{source['qa_turns']:,}",
            f"{source['share']:.1%}",
        )
    return sources


def _row_label(metric: Metric, unit: str) -> str:
    return metric.label if metric.per == unit else f"{metric.label} (per {metric.per})"
