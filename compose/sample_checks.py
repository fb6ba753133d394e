"""Checks of one composed sample: run by every worker on what it builds, and by `validate`."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema_rs
import numpy as np
from PIL import Image

from compose import canonical, tags
from compose.tokens import ImageTokenModel, TextTokenizer

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
    """Every message in canonical form, whatever style it was rendered in; an image part that
    names no image of the sample reads as `<image-0>`, for the reference checks to report."""
    return canonical.canonical_texts(sample, strict=False)


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
