"""What a plan must respect (`Budgets`) and how it chooses (`Policy`): frozen values checked when
they are built, so nonsense never reaches the planner, and the one error it raises for budgets
no plan can meet (`Infeasible`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from compose.order import ORDERS


@dataclass(frozen=True, slots=True, kw_only=True)
class Budgets:
    """What every sample must respect. `tokens` is both the hard ceiling and the target.

    With several `lengths` (context lengths), samples take them in turn and `tokens` is the
    largest; every other budget applies to each sample at its own length.
    """

    tokens: int
    tolerance: float = 0.02  # floor = ceil(tokens * (1 - tolerance))
    max_images: int | None = None  # hard ceiling
    min_images: int = 0  # floor
    samples: int | None = None  # None: as many as the corpus gives
    reuse: int = 1  # how many times a dialogue may be used in the whole plan (epochs)
    message_overhead: int = 0  # tokens added per message
    lengths: tuple[int, ...] = ()  # several token budgets, taken in turn; () = just `tokens`
    probes: int = 0  # long-range probe turns at the end of each sample
    min_reach: int = 0  # tokens between a probe and the earlier turns of its dialogue
    min_reach_share: float = 0.0  # the same, as a share of the sample's token budget

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ValueError(f"--tokens must be at least 1, got {self.tokens}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"--tolerance must be in [0, 1), got {self.tolerance}")
        if self.max_images is not None and self.max_images < 0:
            raise ValueError(f"--max-images must be >= 0, got {self.max_images}")
        if self.min_images < 0:
            raise ValueError(f"--min-images must be >= 0, got {self.min_images}")
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"--samples must be at least 1, got {self.samples}")
        if self.reuse < 1:
            raise ValueError(f"--reuse must be at least 1, got {self.reuse}")
        if self.message_overhead < 0:
            raise ValueError(f"message overhead must be >= 0, got {self.message_overhead}")
        lengths = tuple(int(t) for t in self.lengths)
        object.__setattr__(self, "lengths", lengths if len(lengths) > 1 else ())
        if lengths and (min(lengths) < 1 or len(set(lengths)) != len(lengths)):
            raise ValueError(f"--tokens lengths must be distinct and >= 1, got {lengths}")
        if lengths and max(lengths) != self.tokens:
            raise ValueError(f"tokens {self.tokens} is not the largest of lengths {lengths}")
        if self.probes < 0:
            raise ValueError(f"--probes must be >= 0, got {self.probes}")
        if self.min_reach < 0 or not 0.0 <= self.min_reach_share < 1.0:
            raise ValueError(
                f"--min-reach must be >= 0 tokens or a share in [0%, 100%), got "
                f"{self.min_reach} tokens, {self.min_reach_share:.0%}"
            )

    @property
    def floor(self) -> int:
        """The fewest tokens a sample may hold: the ceiling less the tolerance, rounded up."""
        return math.ceil(self.tokens * (1 - self.tolerance))

    @property
    def sizes(self) -> tuple[int, ...]:
        """The token budgets samples take in turn (one unless `lengths` is given)."""
        return self.lengths or (self.tokens,)

    def at(self, tokens: int) -> Budgets:
        """These budgets for samples of one length."""
        return dataclasses.replace(self, tokens=tokens, lengths=())

    def reach(self, tokens: int | None = None) -> int:
        """The reach-back every probe of a sample with this token budget must have."""
        budget = self.tokens if tokens is None else tokens
        return max(self.min_reach, math.ceil(self.min_reach_share * budget))


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How the plan chooses: image-token model, dialogue order, seed, source weights.

    `order`: `random` (seeded shuffle per epoch), `input` (catalog order), `topic` (dialogues
    with similar first questions together), `length` (large and small dialogues in turn, for
    fill). `weights`: one per catalog source (its `source` number), the share of tokens each
    brings; () = no mixing, the catalog as it is.
    """

    image_tokens: str = "llava-1.5"
    order: str = "random"
    seed: int = 0
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        weights = tuple(float(w) for w in self.weights)
        if any(not (math.isfinite(w) and w > 0) for w in weights):
            raise ValueError(f"source weights must be positive numbers, got {weights}")
        object.__setattr__(self, "weights", weights)


class Infeasible(ValueError):
    """The budgets cannot be met with this catalog and image model; the message says why."""
