"""A sample under construction, the lookahead pool it fills from, and `Fit`, what it is cut
against: the state the assembler, the probe picker and the tail share, so that each of them is a
plain function of it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compose.planning.config import Budgets
from compose.planning.mentions import Mentions
from compose.planning.table import Size, Table


@dataclass(slots=True)
class Sample:
    """A sample under construction: its segments as (dialogue, prefix length, stream position).

    The first `fixed` segments are never re-cut, extended or dropped: a lead-in, then the probe
    sources, the last `len(probe_cost)` of them. The probe of source k asks QA turn
    `length[k]` (0-based) of dialogue `dialogue[k]` after all the segments.
    """

    dialogue: np.ndarray
    length: np.ndarray
    position: np.ndarray
    correction: np.ndarray  # text tokens added by re-indexed mentions, per segment
    trimmed: bool = False
    fixed: int = 0
    probe_cost: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    probe_correction: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def append(self, dialogue: int, length: int, position: int) -> None:
        self.dialogue = np.append(self.dialogue, dialogue)
        self.length = np.append(self.length, length)
        self.position = np.append(self.position, position)
        self.correction = np.append(self.correction, 0)

    def remove(self, segment: int) -> None:
        keep = np.arange(len(self.dialogue)) != segment
        self.dialogue = self.dialogue[keep]
        self.length = self.length[keep]
        self.position = self.position[keep]
        self.correction = self.correction[keep]

    @property
    def sources(self) -> slice:
        """The probe sources: the last segments of the frozen prefix."""
        return slice(self.fixed - len(self.probe_cost), self.fixed)


@dataclass(slots=True)
class Pool:
    """The seeded lookahead: upcoming stream dialogues and all their usable prefixes."""

    dialogue: np.ndarray  # per pool entry
    position: np.ndarray  # per pool entry: stream position
    candidate: np.ndarray  # per prefix: candidate index
    owner: np.ndarray  # per prefix: pool entry
    taken: np.ndarray  # per pool entry

    def open(self) -> np.ndarray:
        return np.flatnonzero(~self.taken[self.owner])


@dataclass(slots=True)
class Assembly:
    samples: list[Sample] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)  # the token budget of each sample
    set_aside: int = 0
    last_try: tuple[int, int] = (0, 0)  # tokens and images of the last sample that failed


@dataclass(frozen=True, slots=True, kw_only=True)
class Fit:
    """What the sample being cut must respect: the candidate table at its token budget."""

    table: Table
    size: Size  # the table at this sample's token budget
    budgets: Budgets  # this sample's budgets (`size.budgets`)
    floor: int
    reach: int  # tokens every probe must reach back; 0 without probes
    max_images: int  # the image ceiling, or a count no sample reaches
    most_images: int  # images of the most image-rich candidate: a key width for the tail
    mentions: Mentions | None  # None: no mention correction

    @classmethod
    def at(cls, size: Size, *, table: Table, mentions: Mentions | None) -> Fit:
        budgets = size.budgets
        return cls(
            table=table,
            size=size,
            budgets=budgets,
            floor=budgets.floor,
            reach=budgets.reach() if budgets.probes else 0,
            max_images=budgets.max_images if budgets.max_images is not None else 2**40,
            most_images=int(table.images.max(initial=0)),
            mentions=mentions,
        )
