"""The report on disk: stats.json and one labelled PNG histogram per distribution.

matplotlib is imported only when a plot is drawn (its Agg canvas, no display), so reading or
printing a report never pays for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from compose.stats_report import Metric, StatsReport

HISTOGRAM_BINS = 60


def write_outputs(report: StatsReport, out: str | Path) -> list[Path]:
    """stats.json and one PNG histogram per distribution, inside `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, values in report.values.items():
        target = out / f"{name}.png"
        histogram(values, report.metrics[name], target, markers=report.markers.get(name, {}))
        written.append(target)
    report.plots = [p.name for p in written]
    stats_path = out / "stats.json"
    stats_path.write_text(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    return [stats_path, *written]


def histogram(values: np.ndarray, metric: Metric, path: Path, *, markers: dict[str, float]) -> None:
    """A labelled histogram PNG: counts per bin, mean and median lines, budget lines if any."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    values = np.asarray(values, dtype=np.float64)
    figure = Figure(figsize=(7.5, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.hist(values, bins=_bins(values, metric.discrete), color="#4c72b0", edgecolor="white")
    mean, median = float(values.mean()), float(np.median(values))
    axes.axvline(mean, color="#dd8452", linestyle="--", linewidth=1.5, label=f"mean {mean:,.4g}")
    axes.axvline(median, color="#55a868", linewidth=1.5, label=f"median {median:,.4g}")
    for (name, value), color in zip(markers.items(), ("#c44e52", "#8172b2"), strict=False):
        axes.axvline(value, color=color, linestyle=":", linewidth=1.5, label=f"{name} {value:,.4g}")
    axes.set_title(f"{metric.label} per {metric.per}: {values.size:,} {metric.per}s")
    axes.set_xlabel(metric.label)
    axes.set_ylabel(f"number of {metric.per}s")
    axes.grid(axis="y", alpha=0.3)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if metric.discrete:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    axes.legend(loc="best", fontsize="small")
    figure.savefig(path, metadata={"Software": None})


def _bins(values: np.ndarray, discrete: bool):
    low, high = float(values.min()), float(values.max())
    if discrete and high - low <= HISTOGRAM_BINS:
        return np.arange(low - 0.5, high + 1.5)
    edges = np.histogram_bin_edges(values, bins="auto")
    return edges if len(edges) <= HISTOGRAM_BINS + 1 else HISTOGRAM_BINS
