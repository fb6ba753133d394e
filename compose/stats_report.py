"""What `compose stats` finds, as data: the config, one distribution, the report and its JSON.

Kept apart from the computing and the drawing so that both read one plain structure: the metrics
fill a `StatsReport`, the plots and the terminal tables only read it (docs/stats.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from compose import __version__


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsConfig:
    """What to compute. Toxicity is on by default; coherence needs the `coherence` extra."""

    toxicity: bool = True
    toxicity_threshold: float = 0.5
    coherence: bool = False
    coherence_pairs: int | None = None  # score a seeded random subset of this many QA pairs
    embedding_model: str | None = None  # a sentence-transformers folder; default: all-MiniLM-L6-v2
    image_tokens: str = "llava-1.5"  # catalogs only: image-token model of "tokens per dialogue"
    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Distribution:
    """Summary of one per-sample (or per-probe) quantity; percentiles interpolate linearly."""

    count: int
    sum: float
    mean: float
    std: float
    min: float
    p1: float
    p5: float
    p25: float
    p50: float
    p75: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> Distribution:
        v = np.asarray(values, dtype=np.float64)
        q = np.percentile(v, [1, 5, 25, 50, 75, 95, 99]) if v.size else [np.nan] * 7
        return cls(
            count=int(v.size),
            sum=float(v.sum()),
            mean=float(v.mean()) if v.size else float("nan"),
            std=float(v.std()) if v.size else float("nan"),
            min=float(v.min()) if v.size else float("nan"),
            p1=float(q[0]),
            p5=float(q[1]),
            p25=float(q[2]),
            p50=float(q[3]),
            p75=float(q[4]),
            p95=float(q[5]),
            p99=float(q[6]),
            max=float(v.max()) if v.size else float("nan"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """How a distribution is named, what one value belongs to, and if values are whole numbers."""

    label: str
    per: str  # one value per ...: "sample", "dialogue", "probe", "QA pair"
    discrete: bool = True


@dataclass(slots=True, kw_only=True)
class StatsReport:
    """Everything `compose stats` found; `to_json` is the stats.json document."""

    kind: str  # "catalog" or "shards"
    path: str
    unit: str  # what a row of the input is: "dialogue" (catalog) or "sample" (shards)
    counts: dict[str, int]
    distributions: dict[str, Distribution]
    metrics: dict[str, Metric]
    values: dict[str, np.ndarray] = field(repr=False)
    markers: dict[str, dict[str, float]] = field(default_factory=dict)
    quality: dict[str, dict] = field(default_factory=dict)
    sources: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    def add(self, name: str, metric: Metric, values: np.ndarray) -> None:
        """One more distribution; an empty one is left out (no row, no plot)."""
        values = np.asarray(values, dtype=np.float64)
        if values.size:
            self.metrics[name] = metric
            self.values[name] = values
            self.distributions[name] = Distribution.of(values)

    def to_json(self) -> dict:
        return {
            "tool": f"compose {__version__}",
            "kind": self.kind,
            "path": self.path,
            "unit": self.unit,
            "counts": self.counts,
            "distributions": {
                name: {
                    "label": self.metrics[name].label,
                    "per": self.metrics[name].per,
                    **_finite(asdict(dist)),
                }
                for name, dist in self.distributions.items()
            },
            "quality": self.quality,
            "sources": self.sources,
            "notes": self.notes,
            "plots": self.plots,
        }


def _finite(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}
