"""Reading what `compose stats` describes: a catalog (`catalog.json` + `dialogues/*.parquet`) or a
shard folder (`manifest.parquet` + shards).

Counts come from columns (the catalog's, or the manifest's), never from per-record Python; the
texts are handed out one part file or shard at a time, so memory follows the largest part, not
the corpus. A file that does not read is a ValueError that names it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from compose import shard_reader, tags
from compose.stats_report import StatsConfig
from compose.tokens import image_model


@dataclass(slots=True, kw_only=True)
class TextBatch:
    """The texts of one part file or shard: QA pairs in reading order, tags removed."""

    questions: list[str]
    answers: list[str]
    where: list[str]  # per pair: the sample or dialogue and the turn, for messages and examples


@dataclass(slots=True, kw_only=True)
class Texts:
    """The text of an input, to be read once: its batches, how many, and how many QA pairs."""

    batches: Iterator[TextBatch]
    count: int
    pairs: int


def input_kind(path: Path) -> str:
    """``shards`` or ``catalog``, from the file that marks each; anything else is refused."""
    if (path / "manifest.parquet").is_file():
        return "shards"
    if (path / "catalog.json").is_file():
        return "catalog"
    raise FileNotFoundError(
        f"{path}: neither a shard folder (no manifest.parquet) nor a catalog (no catalog.json)"
    )


def catalog_parts(path: Path) -> list[Path]:
    """The catalog's part files, in catalog order."""
    return [path / part for part in catalog_meta(path).get("parts", [])]


def catalog_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / "catalog.json").read_text())
    except ValueError as error:
        raise ValueError(f"{path / 'catalog.json'}: not JSON ({error})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path / 'catalog.json'}: not a JSON object")
    return meta


def read_parquet(paths: Path | list[Path], columns: list[str] | None = None) -> pl.DataFrame:
    """A Parquet file (or several) as a frame; any failure names the file."""
    try:
        return pl.read_parquet(paths, columns=columns)
    except (pl.exceptions.PolarsError, OSError) as error:
        where = paths if isinstance(paths, Path) else f"{paths[0].parent} parts"
        raise ValueError(f"{where}: cannot read ({type(error).__name__}: {error})") from None


def catalog_frame(path: Path, config: StatsConfig) -> pl.DataFrame:
    """Per dialogue: source, text and image tokens, images, QA turns."""
    parts = catalog_parts(path)
    if not parts:
        raise ValueError(f"{path}: the catalog holds no dialogues")
    frame = read_parquet(parts, columns=["source", "n_images", "n_qa", "turns", "images"])
    text = frame["turns"].list.eval(pl.element().struct.field("text_tokens")).list.sum()
    sizes = (
        frame.select("images")
        .with_row_index("position")
        .explode("images")
        .drop_nulls("images")
        .unnest("images")
    )
    per_image = image_model(config.image_tokens).count(
        sizes["width"].to_numpy(), sizes["height"].to_numpy()
    )
    image = np.bincount(sizes["position"].to_numpy(), weights=per_image, minlength=frame.height)
    return pl.DataFrame(
        {
            "source": frame["source"],
            "text_tokens": text.cast(pl.Int64),
            "image_tokens": image.astype(np.int64),
            "images": frame["n_images"].cast(pl.Int64),
            "turns": frame["n_qa"].cast(pl.Int64),
        }
    ).with_columns(tokens=pl.col("text_tokens") + pl.col("image_tokens"))


def catalog_batches(path: Path) -> Iterator[TextBatch]:
    """One batch per part file: every QA pair of every dialogue, in catalog order."""
    for part in catalog_parts(path):
        frame = (
            read_parquet(part, columns=["id", "turns"])
            .with_columns(pl.int_ranges(pl.col("turns").list.len()).alias("turn"))
            .explode("turns", "turn")
            .unnest("turns")
            .select("id", "turn", "role", "text")
        )
        users = frame.filter(pl.col("role") == "user")
        assistants = frame.filter(pl.col("role") == "assistant")
        if users.height != assistants.height:
            raise ValueError(f"{part}: {users.height} questions but {assistants.height} answers")
        yield TextBatch(
            questions=[tags.strip_tags(t) for t in users["text"]],
            answers=[tags.strip_tags(t) for t in assistants["text"]],
            where=[f"dialogue {i} turn {t + 1}" for i, t in assistants.select("id", "turn").rows()],
        )


def message_text(content: str | list, style: str) -> str:
    """The words of a message: placeholders and tags removed, prose mentions kept."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return tags.strip_tags(tags.parse(content, style) if style != "canonical" else content)


def shard_batches(path: Path, manifest: pl.DataFrame) -> Iterator[tuple[TextBatch, Counter]]:
    """One batch per shard (in manifest order), with the segments and QA turns per input file."""
    for shard in manifest["shard"].unique(maintain_order=True):
        expected = set(manifest.filter(pl.col("shard") == shard)["key"])
        batch = TextBatch(questions=[], answers=[], where=[])
        files: Counter = Counter()
        seen = 0
        for name, data in shard_reader.read_members(path / shard):
            if not name.endswith(".json"):
                continue
            key = name[: -len(".json")]
            where = f"{shard} {key}"
            if key not in expected:
                raise ValueError(f"{where}: not in manifest.parquet (run `compose validate`)")
            seen += 1
            try:
                sample = orjson.loads(data)
                style = sample["style"]
                messages = sample["messages"]
                for segment in sample["segments"]:
                    files[(segment["file"], "segments")] += not segment.get("probe", False)
                    files[(segment["file"], "turns")] += (
                        segment["last_turn"] - segment["first_turn"] + 1
                    )
            except (orjson.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{where}.json: unreadable sample ({error!r})") from None
            _add_pairs(batch, messages, style, where)
        if seen != len(expected):
            raise ValueError(
                f"{shard}: {seen} samples, manifest.parquet lists {len(expected)} "
                "(run `compose validate`)"
            )
        yield batch, files


def _add_pairs(batch: TextBatch, messages: list, style: str, where: str) -> None:
    for i in range(0, len(messages) - 1, 2):
        question, answer = messages[i], messages[i + 1]
        if question.get("role") != "user" or answer.get("role") != "assistant":
            raise ValueError(f"{where}: messages {i + 1} and {i + 2} are not a user/assistant pair")
        batch.questions.append(message_text(question["content"], style))
        batch.answers.append(message_text(answer["content"], style))
        batch.where.append(f"{where} message {i + 2}")


def run_config(path: Path) -> dict:
    """The config of the run that wrote a shard folder (budget lines); {} when run.json is not there
    or does not read: the counts never depend on it."""
    try:
        return json.loads((path / "run.json").read_text()).get("config", {})
    except (OSError, ValueError, AttributeError):
        return {}
