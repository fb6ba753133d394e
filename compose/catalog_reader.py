"""A finished catalog: its format (the row schema and version), the checks of catalog.json and
its parts, and reading its rows. What every later stage needs of the corpus, apart from how
ingest builds it (`compose.catalog`)."""

from __future__ import annotations

import hashlib
import itertools
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from compose.sources import open_store
from compose.sources.base import Limits
from compose.sources.stores import ImageStore

if TYPE_CHECKING:
    import polars as pl

CATALOG_VERSION = 3  # 3: images carry crc32

TURN_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("text", pa.string()),
        ("text_tokens", pa.int32()),
        ("introduces", pa.list_(pa.int32())),
        ("mentions", pa.list_(pa.int32())),
        ("explanation", pa.string()),
    ]
)
IMAGE_TYPE = pa.struct(
    [
        ("number", pa.int32()),
        ("path", pa.string()),
        ("member", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("sha256", pa.string()),
        ("crc32", pa.int64()),
    ]
)
SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("source", pa.int32()),
        ("file", pa.string()),
        ("index", pa.int64()),
        ("offset", pa.int64()),
        ("format", pa.string()),
        ("n_images", pa.int32()),
        ("n_qa", pa.int32()),
        ("qa_text_tokens", pa.list_(pa.int32())),
        ("qa_new_images", pa.list_(pa.int32())),
        ("turns", pa.list_(TURN_TYPE)),
        ("images", pa.list_(IMAGE_TYPE)),
        ("meta", pa.string()),
    ]
)


def file_sha256(path: str | Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_meta(path: Path) -> dict | None:
    """catalog.json, or None when it is missing, unreadable or fails its own checksum."""
    try:
        meta = orjson.loads((path / "catalog.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("checksum", meta_digest(meta)) != meta_digest(meta):
        return None
    return meta


def meta_digest(meta: dict) -> str:
    rest = {key: value for key, value in meta.items() if key != "checksum"}
    return hashlib.sha256(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)).hexdigest()


def damaged_parts(path: Path, meta: dict) -> list[str]:
    """Part files that are missing or whose bytes differ from the checksums in catalog.json."""
    damaged = []
    for part, digest in zip(meta.get("parts", []), meta.get("part_sha256", []), strict=False):
        try:
            found = file_sha256(path / part)
        except OSError as error:
            damaged.append(f"{path / part}: {error.strerror or error}")
            continue
        if found != digest:
            damaged.append(f"{path / part}: checksum {found[:12]}... differs from catalog.json")
    return damaged


@dataclass(slots=True)
class Catalog:
    """A finished catalog: its metadata, its rows as polars frames, random access by row."""

    path: Path
    meta: dict
    _parts: dict[int, pa.Table] = field(default_factory=dict, repr=False)
    _starts: list[int] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> Catalog:
        path = Path(path)
        meta = read_meta(path)
        if meta is None:
            raise FileNotFoundError(
                f"{path}: not a catalog (no readable catalog.json, or it fails its checksum)"
            )
        version = meta.get("catalog_version")
        if version != CATALOG_VERSION:
            raise ValueError(
                f"{path}: a catalog of version {version}, this compose reads version "
                f"{CATALOG_VERSION}: rebuild it with `compose ingest --force`"
            )
        damaged = damaged_parts(path, meta)
        if damaged:
            raise ValueError(
                f"{path}: damaged catalog, not used: {damaged[0]}"
                + (f" (and {len(damaged) - 1} more parts)" if len(damaged) > 1 else "")
                + "; rebuild it with `compose ingest --force`"
            )
        return cls(path=path, meta=meta)

    @property
    def part_paths(self) -> list[Path]:
        return [self.path / p for p in self.meta["parts"]]

    def frame(self, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """All rows, only the columns asked for. A name may reach into the structs of a list
        column: `turns.mentions` reads that field alone (`turns` then holds structs of it only),
        `turns[0].text` the text of each dialogue's first turn alone (a column of that name,
        null where there is none). Parts are read one at a time, and only those Parquet leaves
        of each, so the planner never holds the turn text (docs/planning.md, "Memory")."""
        import polars as pl  # here, so that ingest workers never load it
        import pyarrow.compute as pc

        def leaf(schema: pa.Schema, name: str) -> str:
            """The Parquet path of a name: a list's values sit under `list.<value field>`."""
            top, *fields = name.split(".")
            if top not in schema.names:
                raise ValueError(f"{self.path}: no catalog column {top!r}")
            steps, kind = [top], schema.field(top).type
            for step in fields:
                if pa.types.is_list(kind):
                    steps += ["list", kind.value_field.name]
                    kind = kind.value_type
                if not pa.types.is_struct(kind) or kind.get_field_index(step) < 0:
                    raise ValueError(f"{self.path}: catalog column {name!r} has no field {step!r}")
                steps.append(step)
                kind = kind.field(step).type
            return ".".join(steps)

        def element(file: pq.ParquetFile, name: str) -> pa.ChunkedArray:
            """`top[k].field`: one value per row, read from that leaf alone."""
            top, _, rest = name.partition("[")
            number, _, field = rest.partition("].")
            values = file.read(columns=[leaf(file.schema_arrow, f"{top}.{field}")])[top]
            k = int(number)
            one = pc.list_slice(values, k, k + 1, return_fixed_size_list=True)
            values = pc.list_element(one, 0)
            for step in field.split("."):
                values = pc.struct_field(values, step)
            return values

        def read(source) -> pl.DataFrame:
            file = pq.ParquetFile(source)
            if columns is None:
                return pl.from_arrow(file.read())
            plain = [name for name in columns if "[" not in name]
            table = file.read(columns=[leaf(file.schema_arrow, name) for name in plain])
            for name in columns:
                if "[" in name:
                    table = table.append_column(name, element(file, name))
            order = dict.fromkeys(n if "[" in n else n.split(".")[0] for n in columns)
            return pl.from_arrow(table.select(list(order)))

        if not self.part_paths:  # one empty part, so that the types are those a read gives
            buffer = pa.BufferOutputStream()
            pq.write_table(SCHEMA.empty_table(), buffer)
            return read(pa.BufferReader(buffer.getvalue()))
        return pl.concat([read(part) for part in self.part_paths], rechunk=True)

    def rows(self, rows: Sequence[int]) -> list[dict]:
        """Full rows (turns and images) for the given catalog rows, in the order asked."""
        starts = self._part_starts()
        out = []
        for row in rows:
            number = bisect_right(starts, row) - 1
            if row < 0 or number >= len(self.meta["parts"]):
                raise IndexError(f"{self.path}: no catalog row {row}")
            part = self._part(number)
            local = row - starts[number]
            if local >= len(part):
                raise IndexError(f"{self.path}: no catalog row {row}")
            out.append(part.slice(local, 1).to_pylist()[0])
        return out

    def _part_starts(self) -> list[int]:
        """The first row of each part (parts hold up to `part_rows` rows, fewer when long)."""
        if not self._starts:
            sizes = self.meta.get("part_sizes")
            if sizes is None:  # version 1: every part but the last is full
                sizes = [self.meta["part_rows"]] * len(self.meta["parts"])
            self._starts = [0, *itertools.accumulate(sizes)][:-1] or [0]
        return self._starts

    def _part(self, number: int) -> pa.Table:
        table = self._parts.get(number)
        if table is None:
            if len(self._parts) >= 4:
                self._parts.pop(next(iter(self._parts)))
            table = pq.read_table(self.path / self.meta["parts"][number])
            self._parts[number] = table
        return table

    def source_store(self, source: int, limits: Limits | None = None) -> ImageStore:
        return open_store(self.meta["sources"][source]["images"], limits or Limits())
