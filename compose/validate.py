"""Checks of a finished output: `compose validate DIR` over its shards, manifest and run.json.

During a run a failing sample is a bug: the engine stops and names the sample and the check.
`compose validate DIR` runs the same checks over finished shards, plus checksums and the
manifest, and reports every problem it finds, not only the first. The checks of one sample are
in `compose.sample_checks`; their public names are importable from here too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from compose import shard_reader, shards, storage
from compose.sample_checks import (
    SCHEMAS,
    Problem,
    SampleBudgets,
    SampleInvalid,
    canonical_texts,
    check_sample,
    schema,
    schema_problems,
)
from compose.tokens import ImageTokenModel, TextTokenizer, image_model, load_tokenizer

__all__ = [
    "SCHEMAS",
    "OutputReport",
    "Problem",
    "SampleBudgets",
    "SampleInvalid",
    "canonical_texts",
    "check_sample",
    "group_samples",
    "run_budgets",
    "schema",
    "schema_problems",
    "validate_output",
]


def group_samples(members: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group tar members into samples the way webdataset does: key = name before the first dot."""
    key: str | None = None
    group: dict[str, bytes] = {}
    for name, data in members:
        base = name.rsplit("/", 1)[-1]
        this = base.split(".", 1)[0]
        if key is not None and this != key:
            yield key, group
            group = {}
        key = this
        group[base] = data
    if key is not None:
        yield key, group


@dataclass(slots=True, kw_only=True)
class OutputReport:
    """What `compose validate DIR` found."""

    shards: int = 0
    samples: int = 0
    images: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "shards": self.shards,
            "samples": self.samples,
            "images": self.images,
            "problems": [
                {"where": p.where, "check": p.check, "detail": p.detail} for p in self.problems
            ],
        }


def validate_output(
    directory: str | Path, *, on_shard: Callable[[int, int], None] | None = None
) -> OutputReport:
    """Check a finished output folder, local or at an fsspec URL (each remote shard is fetched,
    checked and deleted in turn), against everything a consumer relies on."""
    directory = storage.Folder(directory)
    report = OutputReport()
    record = _load_json(directory, "run.json", report)
    if isinstance(record, dict):
        report.problems += schema_problems(record, "run", "run.json")
    elif record is not None:
        report.problems.append(Problem("run.json", "files", "not a JSON object"))
    # Without run.json's settings the shards, checksums, manifest, index and images are still
    # checked; only budgets and token counts, which need those settings, are not.
    config = record.get("config") if isinstance(record, dict) else None
    config = config if isinstance(config, dict) else None
    tokenizer, model = _counters(config, report)
    manifest = _load_manifest(directory, report)
    prefix = config.get("prefix", "shard") if config else "shard"
    prefix = prefix if isinstance(prefix, str) and prefix else "shard"
    names = _shard_names(record, directory, prefix, report)
    seen: set[str] = set()
    for done, name in enumerate(names, start=1):
        report.shards += 1
        _validate_shard(directory, name, prefix, manifest, seen, config, tokenizer, model, report)
        if on_shard is not None:
            on_shard(done, len(names))
    for key in sorted(set(manifest) - seen):
        report.problems.append(Problem("manifest.parquet", "manifest", f"{key} is in no shard"))
    stray = [name for name in directory.names(f"{prefix}-*.tar") if name not in names]
    for name in stray:
        report.problems.append(Problem(name, "shards", "a shard not listed in run.json"))
    _check_index(directory, names, prefix, report)
    return report


def _counters(config: dict | None, report: OutputReport):
    """The run's tokenizer and image-token model, or None (not recounted) when unknown."""
    if config is None:
        return None, None
    try:
        tokenizer = load_tokenizer(config.get("tokenizer", "cl100k_base"))
        model = image_model(config.get("image_tokens", "llava-1.5"))
    except (ValueError, OSError, TypeError) as error:
        report.problems.append(Problem("run.json", "config", f"tokens not recounted: {error}"))
        return None, None
    return tokenizer, model


def _shard_names(
    record: object, directory: storage.Folder, prefix: str, report: OutputReport
) -> list[str]:
    """The shards run.json lists (every name checked: it is joined to the folder), or, without
    a usable list, the shards found in the folder."""
    listed = record.get("shards") if isinstance(record, dict) else None
    if not isinstance(listed, list):
        return directory.names(f"{prefix}-*.tar")
    pattern = re.compile(re.escape(prefix) + r"-\d{6,}\.tar")
    names = []
    for name in listed:
        if isinstance(name, str) and pattern.fullmatch(name):
            names.append(name)
        else:
            report.problems.append(
                Problem("run.json", "shards", f"{name!r} is not a shard name ({prefix}-NNNNNN.tar)")
            )
    return names


def _check_index(
    directory: storage.Folder, names: list[str], prefix: str, report: OutputReport
) -> None:
    """shards.json (what random-access loaders read) against the shards and their stats."""
    try:
        index = json.loads(directory.read_bytes(shards.INDEX_NAME))
        listed = {entry["url"]: entry for entry in index["shardlist"]}
        if index.get("__kind__") != shards.WIDS_KIND:
            raise ValueError(f"__kind__ is {index.get('__kind__')!r}, not {shards.WIDS_KIND!r}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        report.problems.append(Problem(shards.INDEX_NAME, "index", f"cannot read: {error!r}"))
        return
    for name in sorted(set(listed) - set(names)):
        report.problems.append(Problem(shards.INDEX_NAME, "index", f"lists {name!r}, not a shard"))
    for name in names:
        entry = listed.get(name)
        if entry is None:
            report.problems.append(Problem(shards.INDEX_NAME, "index", f"does not list {name}"))
            continue
        stats = _load_stats(directory, prefix, int(name[len(prefix) + 1 : -4]))
        if stats is None:
            continue  # reported with the shard
        found = {k: entry.get(k) for k in ("nsamples", "filesize", "sha256")}
        if found != {"nsamples": stats.samples, "filesize": stats.bytes, "sha256": stats.sha256}:
            report.problems.append(
                Problem(shards.INDEX_NAME, "index", f"{name}: {found} differs from its stats")
            )


def run_budgets(config: dict, budget: int | None = None) -> SampleBudgets:
    """What a sample of a run must respect, from run.json's config; `budget` is the sample's
    own token budget when the run had several lengths."""
    tokens = budget if budget is not None else config.get("tokens")
    return SampleBudgets(
        tokens=tokens,
        floor=int(np.ceil((tokens or 0) * (1 - config.get("tolerance", 0)))),
        max_images=config.get("max_images"),
        min_images=config.get("min_images", 0),
        probes=config.get("probes", 0),
        min_reach=max(
            config.get("min_reach", 0),
            int(np.ceil(config.get("min_reach_share", 0.0) * (tokens or 0))),
        ),
    )


def _sample_budgets(config: dict, sample: dict, where: str, report: OutputReport):
    """With several lengths, a sample is held to the one it records, which must be listed.
    None (no budget checked) when the run's settings are unknown."""
    if config is None:
        return None
    lengths = config.get("lengths") or []
    if not lengths:
        return run_budgets(config)
    tokens = sample.get("tokens") if isinstance(sample, dict) else None
    budget = tokens.get("budget") if isinstance(tokens, dict) else None
    if budget not in lengths:
        report.problems.append(
            Problem(where, "budget", f"token budget {budget!r} is not one of --tokens {lengths}")
        )
        return run_budgets(config)
    return run_budgets(config, budget)


def _load_json(directory: storage.Folder, name: str, report: OutputReport) -> dict | None:
    try:
        return json.loads(directory.read_bytes(name))
    except (OSError, ValueError) as error:
        report.problems.append(Problem(name, "files", f"cannot read: {error}"))
        return None


def _load_manifest(directory: storage.Folder, report: OutputReport) -> dict[str, dict]:
    name = shards.MANIFEST_NAME
    try:
        with directory.local(name) as path:
            rows = pl.read_parquet(path).to_dicts()
    except Exception as error:  # noqa: BLE001 - an unreadable manifest is the finding
        report.problems.append(Problem(name, "files", f"cannot read: {error}"))
        return {}
    by_key: dict[str, dict] = {}
    for row in rows:
        report.problems += schema_problems(
            row, "manifest-row", f"manifest.parquet {row.get('key')}"
        )
        if not isinstance(row.get("key"), str):
            continue  # the schema problem says so
        if row["key"] in by_key:
            report.problems.append(Problem("manifest.parquet", "manifest", f"{row['key']} twice"))
        by_key[row["key"]] = row
    return by_key


def _load_stats(directory: storage.Folder, prefix: str, index: int) -> shards.ShardStats | None:
    """The shard's stats if it is complete (as `shards.load_stats`, from a folder or a URL)."""
    name = shards.shard_name(prefix, index)
    try:
        stats = shards.ShardStats.from_json(
            json.loads(directory.read_bytes(shards.stats_name(prefix, index)))
        )
    except (OSError, ValueError):
        return None
    if stats.name != name or directory.size(name) != stats.bytes:
        return None
    return stats


def _validate_shard(
    directory: storage.Folder,
    name: str,
    prefix: str,
    manifest: dict[str, dict],
    seen: set[str],
    config: dict,
    tokenizer: TextTokenizer,
    model: ImageTokenModel,
    report: OutputReport,
) -> None:
    index = int(name[len(prefix) + 1 :].split(".")[0])
    stats = _load_stats(directory, prefix, index)
    try:
        with directory.local(name) as path:
            if stats is None:
                report.problems.append(Problem(name, "checksum", "no readable stats file"))
            else:  # a fetched copy is named by its URL
                found = shard_reader.verify_shard(path, stats)
                report.problems += [
                    Problem(name, "checksum", p.replace(str(path), directory.where(name)))
                    for p in found
                ]
            try:
                groups = list(group_samples(shard_reader.read_members(path)))
            except Exception as error:  # noqa: BLE001 - a tar that does not read is the finding
                report.problems.append(Problem(name, "tar", f"cannot read: {error}"))
                return
    except FileNotFoundError:
        report.problems.append(Problem(name, "shards", "missing"))
        return
    if stats is not None and len(groups) != stats.samples:
        report.problems.append(
            Problem(name, "checksum", f"{len(groups)} samples, the stats file says {stats.samples}")
        )
    for position, (key, blobs) in enumerate(groups):
        where = f"{name} {key}"
        report.samples += 1
        seen.add(key)
        raw = blobs.pop(f"{key}.json", None)
        if raw is None:
            report.problems.append(Problem(where, "members", f"no {key}.json"))
            continue
        try:
            sample = json.loads(raw)
        except ValueError as error:
            report.problems.append(Problem(where, "members", f"{key}.json is not JSON: {error}"))
            continue
        if not isinstance(sample, dict):
            report.problems.append(Problem(where, "members", f"{key}.json is not an object"))
            continue
        report.images += len(blobs)
        report.problems += check_sample(
            sample,
            where=where,
            budgets=_sample_budgets(config, sample, where, report),
            tokenizer=tokenizer,
            image_model=model,
            blobs=blobs,
        )
        row = manifest.get(key)
        if row is None:
            report.problems.append(Problem(where, "manifest", "not in manifest.parquet"))
            continue
        offset = stats.offsets[position] if stats and position < len(stats.offsets) else None
        _compare_row(sample, row, name, offset, where, report)


def _compare_row(sample: dict, row: dict, shard: str, offset, where: str, report) -> None:
    tokens, images, messages = (sample.get(k) for k in ("tokens", "images", "messages"))
    expected = {
        "shard": shard,
        "tokens": tokens.get("total") if isinstance(tokens, dict) else None,
        "images": len(images) if isinstance(images, list) else None,
        "turns": len(messages) // 2 if isinstance(messages, list) else None,
    }
    if offset is not None:
        expected["offset"] = offset
    for field_name, value in expected.items():
        if row.get(field_name) != value:
            report.problems.append(
                Problem(
                    where,
                    "manifest",
                    f"{field_name} is {row.get(field_name)!r} in the "
                    f"manifest but {value!r} in the shard",
                )
            )
