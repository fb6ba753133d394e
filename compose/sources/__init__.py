"""Streaming readers, one module per input format, and the image stores they resolve against.

`base` picks a reader; the JSON readers share `records.JsonReader`, which reads through
`jsonstream` (bytes from `bytestream`, layout from `jsonlayout`, records cut by `jsonsplit` on
the `jsonscan` structure scan, each parsed by `jsonrecord`).
"""

from compose.sources.base import FORMATS, Limits, Reader, detect_format, open_source
from compose.sources.stores import ImageInfo, ImageStore, open_store

__all__ = [
    "FORMATS",
    "ImageInfo",
    "ImageStore",
    "Limits",
    "Reader",
    "detect_format",
    "open_source",
    "open_store",
]
