"""Schema and semantic checks of composed samples, one at a time or over a finished output.

During a run a failing sample is a bug: the engine stops and names the sample and the check.
`compose validate DIR` runs the same checks over finished shards, plus checksums and the
manifest, and reports every problem it finds, not only the first.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema_rs
import numpy as np
import polars as pl
from PIL import Image

from compose import shards, storage, tags
from compose.tokens import ImageTokenModel, TextTokenizer, image_model, load_tokenizer

SCHEMAS = ("sample", "manifest-row", "catalog-row", "run")


@dataclass(frozen=True, slots=True)
class Problem:
    """One failed check: where (file, sample), which check, and what was seen."""

    where: str
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.check}: {self.detail}"


class SampleInvalid(RuntimeError):
    """Raised by the engine when a sample it just built fails a check."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleBudgets:
    """What a sample must respect: the hard ceilings and the floors of the run."""

    tokens: int | None = None
    floor: int = 0
    max_images: int | None = None
    min_images: int = 0
    probes: int | None = None  # probes every sample must end with (None: not checked)
    min_reach: int = 0  # tokens every probe must reach back


@cache
def schema(name: str) -> jsonschema_rs.Draft202012Validator:
    """The named schema from the installed package (or the source tree when not installed),
    compiled once: jsonschema-rs checks a 100-image sample in about 0.1 ms where the
    pure-Python `jsonschema` took 9-26 ms, which was a third of a run's CPU."""
    filename = f"{name}.schema.json"
    try:
        text = resources.files("compose.schemas").joinpath(filename).read_text()
    except ModuleNotFoundError:
        text = (Path(__file__).parent.parent / "schemas" / filename).read_text()
    document = json.loads(text)
    jsonschema_rs.meta.validate(document)
    return jsonschema_rs.Draft202012Validator(document)


def schema_problems(document: object, name: str, where: str) -> list[Problem]:
    validator = schema(name)
    if validator.is_valid(document):
        return []
    return [
        Problem(
            where,
            f"schema:{name}",
            f"{'/'.join(map(str, e.instance_path)) or '(root)'}: {e.message}",
        )
        for e in validator.iter_errors(document)
    ]


def check_sample(
    sample: dict,
    *,
    where: str | None = None,
    budgets: SampleBudgets | None = None,
    tokenizer: TextTokenizer | None = None,
    image_model: ImageTokenModel | None = None,
    blobs: dict[str, bytes] | None = None,
    decode_images: bool = True,
    images_verified: bool = False,
) -> list[Problem]:
    """Every check of the design on one sample; an empty list means it is valid.

    `decode_images=False` checks an image's header size but does not decode it (decoding
    every image again cost half of a run's CPU). The run itself passes `images_verified`: its
    reader proved the bytes are those ingest probed, by their CRC-32, so their sha256 and size
    are the catalog's and only their presence is checked. `compose validate` hashes and
    decodes every image.
    """
    where = where or str(sample.get("key", "?"))
    problems = schema_problems(sample, "sample", where)
    if problems:
        return problems  # the semantic checks below rely on the shape
    problems += _check_roles(sample, where)
    canonical = canonical_texts(sample)
    problems += _check_references(sample, canonical, where)
    problems += _check_probes(sample, canonical, where)
    problems += _check_tokens(sample, canonical, where, tokenizer, image_model)
    if budgets is not None:
        problems += _check_budgets(sample, where, budgets)
    if blobs is not None:
        problems += _check_images(sample, where, blobs, decode_images, images_verified)
    return problems


def _check_roles(sample: dict, where: str) -> list[Problem]:
    roles = [m["role"] for m in sample["messages"]]
    for i, role in enumerate(roles):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            return [Problem(where, "roles", f"message {i + 1} is {role!r}, expected {expected!r}")]
    if roles[-1] != "assistant":
        return [Problem(where, "roles", "the conversation ends on a user message")]
    return []


def canonical_texts(sample: dict) -> list[str]:
    """Bring every message back to canonical form, whatever style it was rendered in."""
    style = sample["style"]
    if style == "openai":
        number_of = {image["member"]: image["number"] for image in sample["images"]}
        texts = []
        for message in sample["messages"]:
            content = message["content"]
            if isinstance(content, str):
                texts.append(content)
                continue
            texts.append(
                "".join(
                    part["text"]
                    if part["type"] == "text"
                    else tags.tag(number_of.get(part["image_url"]["url"], 0))
                    for part in content
                )
            )
        return texts
    texts = []
    counter = 0
    for message in sample["messages"]:
        text = tags.parse(message["content"], style, first=counter + 1)
        counter += len(tags.introductions(text)) if style != "canonical" else 0
        texts.append(text)
    return texts


def _check_references(sample: dict, canonical: list[str], where: str) -> list[Problem]:
    problems = []
    n = len(sample["images"])
    numbers = [image["number"] for image in sample["images"]]
    if numbers != list(range(1, n + 1)):
        problems.append(Problem(where, "image numbers", f"images are numbered {numbers[:20]}"))
    key = sample["key"]
    for image in sample["images"]:
        stem = image["member"].split(".")
        if (
            len(stem) != 3
            or stem[0] != key
            or not stem[1].isdigit()
            or int(stem[1]) != image["number"]
        ):
            problems.append(
                Problem(where, "image member", f"image {image['number']} is {image['member']!r}")
            )
    introduced: dict[int, int] = {}
    order: list[int] = []
    for index, text in enumerate(canonical):
        for number in tags.introductions(text):
            order.append(number)
            if number in introduced:
                problems.append(
                    Problem(
                        where,
                        "introductions",
                        f"image {number} introduced twice "
                        f"(messages {introduced[number] + 1} and {index + 1})",
                    )
                )
            introduced.setdefault(number, index)
    if order != list(range(1, n + 1)):
        problems.append(
            Problem(where, "introductions", f"{n} images but introductions run {order[:20]}")
        )
    for index, text in enumerate(canonical):
        for number in tags.mentions(text):
            if not 1 <= number <= n:
                problems.append(
                    Problem(
                        where,
                        "mentions",
                        f"message {index + 1} mentions image {number} outside 1..{n}",
                    )
                )
            elif introduced.get(number, len(canonical)) > index:
                problems.append(
                    Problem(
                        where,
                        "mentions",
                        f"message {index + 1} mentions image {number} before it is introduced",
                    )
                )
    return problems


def _check_tokens(
    sample: dict,
    canonical: list[str],
    where: str,
    tokenizer: TextTokenizer | None,
    image_model: ImageTokenModel | None,
) -> list[Problem]:
    problems = []
    tokens = sample["tokens"]
    per_message = sample["message_tokens"]
    image_sum = sum(image["tokens"] for image in sample["images"])
    overhead_ok = len(sample["messages"]) == 0 or tokens["overhead"] % len(sample["messages"]) == 0
    if len(per_message) != len(sample["messages"]):
        problems.append(Problem(where, "tokens", "message_tokens and messages differ in length"))
    if sum(per_message) != tokens["text"]:
        problems.append(
            Problem(where, "tokens", f"text {tokens['text']} != sum of messages {sum(per_message)}")
        )
    if image_sum != tokens["image"]:
        problems.append(
            Problem(where, "tokens", f"image {tokens['image']} != sum over images {image_sum}")
        )
    if not overhead_ok or tokens["text"] + tokens["image"] + tokens["overhead"] != tokens["total"]:
        problems.append(Problem(where, "tokens", "total != text + image + overhead"))
    if tokenizer is not None:
        recount = tokenizer.count_batch([tags.strip_tags(t) for t in canonical]).tolist()
        if recount != per_message:
            bad = next(
                i for i, (a, b) in enumerate(zip(recount, per_message, strict=True)) if a != b
            )
            problems.append(
                Problem(
                    where,
                    "tokens",
                    f"message {bad + 1} counts {recount[bad]} "
                    f"tokens, the sample says {per_message[bad]}",
                )
            )
    if image_model is not None and sample["images"]:
        w = np.array([i["width"] for i in sample["images"]], dtype=np.int64)
        h = np.array([i["height"] for i in sample["images"]], dtype=np.int64)
        expected = image_model.count(w, h).tolist()
        if expected != [i["tokens"] for i in sample["images"]]:
            problems.append(
                Problem(where, "tokens", f"image tokens differ from {image_model.name}")
            )
    return problems


def _check_budgets(sample: dict, where: str, budgets: SampleBudgets) -> list[Problem]:
    problems = []
    total = sample["tokens"]["total"]
    n = len(sample["images"])
    if budgets.tokens is not None and total > budgets.tokens:
        problems.append(Problem(where, "budget", f"{total} tokens > --tokens {budgets.tokens}"))
    if total < budgets.floor:
        problems.append(Problem(where, "budget", f"{total} tokens < floor {budgets.floor}"))
    if budgets.max_images is not None and n > budgets.max_images:
        problems.append(Problem(where, "budget", f"{n} images > --max-images {budgets.max_images}"))
    if n < budgets.min_images:
        problems.append(Problem(where, "budget", f"{n} images < --min-images {budgets.min_images}"))
    probes = sample.get("probes", [])
    if budgets.probes is not None and len(probes) != budgets.probes:
        problems.append(
            Problem(where, "budget", f"{len(probes)} probes, --probes {budgets.probes}")
        )
    for k, probe in enumerate(probes):
        if probe["reach_tokens"] < budgets.min_reach:
            problems.append(
                Problem(
                    where,
                    "budget",
                    f"probe {k + 1} reaches back {probe['reach_tokens']} tokens "
                    f"< --min-reach {budgets.min_reach}",
                )
            )
    return problems


def _message_spans(sample: dict, canonical: list[str]) -> list[tuple[int, int]]:
    """(start, end) token positions of each message: text, introduced images, overhead."""
    messages = sample["messages"]
    overhead = sample["tokens"]["overhead"] // len(messages) if messages else 0
    image_tokens = {image["number"]: image["tokens"] for image in sample["images"]}
    spans, position = [], 0
    for text, count in zip(canonical, sample["message_tokens"], strict=False):
        size = count + overhead + sum(image_tokens.get(n, 0) for n in tags.introductions(text))
        spans.append((position, position + size))
        position += size
    return spans


def _check_probes(sample: dict, canonical: list[str], where: str) -> list[Problem]:
    """Each probe continues an earlier segment of the sample: the next QA turn of its
    dialogue, introducing no image, every reference pointing at images its source segment
    introduced before it; its reach-back is what the message token counts say."""
    probes = sample.get("probes", [])
    segments = sample["segments"]
    marked = [i for i, s in enumerate(segments) if s.get("probe")]
    problems = []

    def bad(k: int, detail: str) -> None:
        problems.append(Problem(where, "probes", f"probe {k + 1}: {detail}"))

    if len(marked) != len(probes):
        problems.append(
            Problem(where, "probes", f"{len(marked)} segments marked probe, {len(probes)} probes")
        )
        return problems
    spans = _message_spans(sample, canonical)
    introduced_in = {}
    for index, text in enumerate(canonical):
        for number in tags.introductions(text):
            introduced_in.setdefault(number, index)
    n_messages = len(sample["messages"])
    for k, (probe, own) in enumerate(zip(probes, marked, strict=True)):
        question, answer = probe["messages"]
        entry, source = segments[own], probe["segment"]
        if answer != question + 1 or question % 2 or answer >= n_messages:
            bad(k, f"messages {probe['messages']} are not one QA turn of the sample")
            continue
        if entry["messages"] != [question, question + 2]:
            bad(k, f"its segment entry covers messages {entry['messages']}")
            continue
        if not 0 <= source < len(segments) or segments[source].get("probe"):
            bad(k, f"segment {source} is not a segment of the sample")
            continue
        src = segments[source]
        turn = probe["turn"]
        same = (
            (src["row"], src["dialogue"])
            == (probe["row"], probe["dialogue"])
            == (
                entry["row"],
                entry["dialogue"],
            )
        )
        if not same or src["last_turn"] != turn - 1 or entry["first_turn"] != turn:
            bad(k, f"turn {turn} does not continue segment {source} (turns ..{src['last_turn']})")
        if entry["image_offset"] != src["image_offset"] or entry["images"] != 0:
            bad(k, "not re-indexed by its source segment's image offset")
        if src["messages"][1] > question:
            bad(k, f"asked at message {question + 1}, inside or before its source segment")
            continue
        first = src["image_offset"] + 1
        expected = list(range(first, first + src["images"]))
        if probe["images"] != expected:
            bad(k, f"images {probe['images']}, its source segment has {expected}")
        texts = canonical[question : answer + 1]
        if any(tags.introductions(t) for t in texts):
            bad(k, "a probe turn introduces an image")
        named = sorted({n for t in texts for n in tags.mentions(t)})
        if named != probe["mentions"]:
            bad(k, f"mentions {probe['mentions']}, the messages name {named}")
        for number in named:
            if number not in expected or introduced_in.get(number, n_messages) >= question:
                bad(k, f"mentions image {number}, not introduced by its source segment before it")
        reach = spans[question][0] - spans[src["messages"][1] - 1][1]
        if probe["reach_tokens"] != reach:
            bad(k, f"reach_tokens {probe['reach_tokens']}, the messages give {reach}")
        between = sum(len(tags.introductions(t)) for t in canonical[:question]) - (
            first - 1 + src["images"]
        )
        if probe["reach_images"] != between:
            bad(k, f"reach_images {probe['reach_images']}, the messages give {between}")
    return problems


def _check_images(
    sample: dict, where: str, blobs: dict[str, bytes], decode: bool = True, verified: bool = False
) -> list[Problem]:
    problems = []
    for image in sample["images"]:
        data = blobs.get(image["member"])
        if data is None:
            problems.append(Problem(where, "images", f"{image['member']} is not in the shard"))
            continue
        if verified:
            continue
        if hashlib.sha256(data).hexdigest() != image["sha256"]:
            problems.append(Problem(where, "images", f"{image['member']}: sha256 differs"))
            continue
        try:
            with Image.open(io.BytesIO(data)) as decoded:
                if decode:
                    decoded.load()
                size = decoded.size
        except Exception as error:  # noqa: BLE001 - any decoder failure is the finding
            problems.append(Problem(where, "images", f"{image['member']} does not decode: {error}"))
            continue
        if size != (image["width"], image["height"]):
            problems.append(
                Problem(
                    where,
                    "images",
                    f"{image['member']} is {size[0]}x{size[1]}, "
                    f"the sample says {image['width']}x{image['height']}",
                )
            )
    extra = set(blobs) - {image["member"] for image in sample["images"]}
    if extra:
        problems.append(Problem(where, "images", f"members not in the sample: {sorted(extra)}"))
    return problems


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
                found = shards.verify_shard(path, stats)
                report.problems += [
                    Problem(name, "checksum", p.replace(str(path), directory.where(name)))
                    for p in found
                ]
            try:
                groups = list(group_samples(shards.read_members(path)))
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
