"""LLaVA instruction data (JSON array or JSON lines): ``<image>`` placeholders, human/gpt turns.

Item: ``{"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations":
[{"from": "human", "value": "<image>\\nWhat is in the picture?"}, {"from": "gpt", ...}]}``.
``image`` is one path or a list (multi-image variants); a record without it is a text-only
dialogue. The k-th ``<image>`` of the dialogue is image k.

MMDU took over this record shape, so its reader is this one with `allow_str` off (mmdu.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from compose.model import Dialogue, Origin
from compose.sources.conversations import read_conversations
from compose.sources.records import JsonReader, build_dialogue, image_paths, meta_of, need_dict
from compose.sources.records import record_id as read_id

KNOWN_FIELDS = ("id", "image", "conversations")


@dataclass(frozen=True, slots=True, kw_only=True)
class LlavaReader(JsonReader):
    """Records of ``id``, ``image`` and ``conversations``; `allow_str`: ``image`` may be one path
    instead of a list (LLaVA), else a string there is a `wrong_type` reject (MMDU)."""

    allow_str: bool = True

    def convert(self, value: object, *, origin: Origin, fallback_id: str) -> Dialogue:
        record = need_dict(value)
        fallback = origin.record_id if origin.record_id is not None else fallback_id
        return build_dialogue(
            id=read_id(record, fallback),
            origin=origin,
            format=self.format,
            images=image_paths(record.get("image"), allow_str=self.allow_str),
            turns=read_conversations(record),
            meta=meta_of(record, KNOWN_FIELDS),
        )
