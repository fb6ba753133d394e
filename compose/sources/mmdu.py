"""MMDU-45k and the MMDU benchmark: multi-image dialogues with ``<ImageHere>`` placeholders.

Item: ``{"id": 64, "image": ["mmdu-45k_pics/a.jpg", ...], "conversations": [{"from": "user",
"value": "Image1: <ImageHere>\\nImage2: <ImageHere>\\n..."}, {"from": "assistant", ...}]}``.
The benchmark has the same item shape, as an object keyed by id or as an array, with paths like
``/mmdu_pics/a.jpg`` and images introduced progressively: the k-th ``<ImageHere>`` of the whole
dialogue is image k, whichever turn it stands in.

That is LLaVA's record shape with ``image`` always a list, so the LLaVA reader reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from compose.sources.llava import LlavaReader


@dataclass(frozen=True, slots=True, kw_only=True)
class MmduReader(LlavaReader):
    """`format` is ``mmdu`` (MMDU-45k) or ``mmdu-bench``; both read alike."""

    allow_str: bool = False
