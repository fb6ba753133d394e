"""compose.export: every format round-trips through `compose ingest`, and VLMEvalKit's TSV reads
with pandas into the columns its MMDUDataset expects. From and to URLs (memory://, file://, and
s3:// against moto's server on loopback) an export writes the bytes a local export writes."""

from __future__ import annotations

import ast
import base64
import json
import re
import sqlite3
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import cli
from compose import ecosystem, export, loader, storage, tags
from compose.catalog import Catalog
from compose.sources.vlmevalkit import unpack_images
from tests.composed import check_references, compose_folder, png, sha256, write_folder
from tests.test_s3 import BUCKET, s3_endpoint

SUFFIX = {"llava": "json", "mmdu": "json", "vlmevalkit": "tsv", "openai": "jsonl"}


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    return compose_folder(tmp_path_factory.mktemp("export"), style="mmdu")


@pytest.fixture(scope="module")
def source(composed):
    """key -> (roles, canonical texts, image sha256s) of every composed sample."""
    return {
        sample["key"]: (
            [m["role"] for m in messages],
            [m["content"] for m in messages],
            [image["sha256"] for image in sample["images"]],
        )
        for messages, _, sample in loader.samples(composed.out, style="canonical")
    }


def invoke(*args: str):
    result = CliRunner().invoke(cli.app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def ingest(path, images, out) -> dict[str, dict]:
    """`compose ingest` the export; the catalog's rows by dialogue id."""
    args = ["ingest", str(path), "--out", str(out), "--json"]
    if images is not None:
        args += ["--images", str(images)]
    summary = json.loads(invoke(*args).stdout)
    assert summary["rejected"] == {}, summary
    catalog = Catalog.open(out)
    rows = catalog.rows(range(summary["accepted"]))
    return {row["id"]: row for row in rows}


def check_round_trip(rows: dict, source: dict, *, labelled: bool) -> None:
    assert sorted(rows) == sorted(source)
    for key, (roles, texts, shas) in source.items():
        row = rows[key]
        expected = [export.label_introductions(t) for t in texts] if labelled else texts
        assert [turn["role"] for turn in row["turns"]] == roles
        assert [turn["text"] for turn in row["turns"]] == expected
        assert [image["sha256"] for image in row["images"]] == shas


@pytest.mark.parametrize("format", ["llava", "mmdu", "openai"])
def test_export_then_ingest_gives_the_source_samples(composed, source, tmp_path, format):
    out = tmp_path / f"export.{SUFFIX[format]}"
    summary = json.loads(
        invoke("export", str(composed.out), "--format", format, "--out", str(out), "--json").stdout
    )
    assert summary["samples"] == len(source)
    assert summary["images"] == sum(len(shas) for _, _, shas in source.values())
    rows = ingest(out, summary["images_folder"], tmp_path / "catalog")
    check_round_trip(rows, source, labelled=format == "mmdu")
    rows_default_root = ingest(out, None, tmp_path / "catalog-default-root")
    assert sorted(rows_default_root) == sorted(source)  # paths resolve beside the file too


def test_llava_uses_its_own_field_names_and_placeholders(composed, tmp_path):
    out = tmp_path / "llava.json"
    export.export(composed.out, out, format="llava")
    items = json.loads(out.read_text())
    for item in items:
        assert set(item) <= {"id", "image", "conversations"}
        assert [t["from"] for t in item["conversations"]][:2] == ["human", "gpt"]
        text = "".join(t["value"] for t in item["conversations"])
        paths = item.get("image", [])
        paths = [paths] if isinstance(paths, str) else paths
        assert text.count("<image>") == len(paths)
        assert "<ImageHere>" not in text and "<image-" not in text
        assert all((tmp_path / path).is_file() for path in paths)


def test_mmdu_is_the_benchmark_object_with_labelled_introductions(composed, tmp_path):
    out = tmp_path / "bench.json"
    export.export(composed.out, out, format="mmdu")
    items = json.loads(out.read_text())
    assert isinstance(items, dict)
    for item in items.values():
        assert set(item) == {"image", "conversations"}
        assert {t["from"] for t in item["conversations"]} == {"user", "assistant"}
        assert all(path.startswith("/bench_images/") for path in item["image"])
        text = "".join(t["value"] for t in item["conversations"])
        labels = re.findall(r"(?i)image[ _-]?(\d+)\s*[:.]?\s*<ImageHere>", text)
        assert [int(n) for n in labels] == list(range(1, len(item["image"]) + 1))


def test_vlmevalkit_tsv_reads_with_pandas_into_mmdudataset_columns(composed, source, tmp_path):
    out = tmp_path / "MMDU_compose.tsv"
    export.export(composed.out, out, format="vlmevalkit")
    data = pd.read_csv(out, sep="\t")  # exactly how VLMEvalKit's load() reads a .tsv
    assert list(data.columns) == ["index", "image", "image_path", "question", "answer"]
    assert len(data) == len(source)
    for _, line in data.iterrows():
        roles, texts, shas = source[line["index"]]
        questions = ast.literal_eval(line["question"])
        answers = ast.literal_eval(line["answer"])
        assert len(questions) == len(answers) == len(texts) // 2
        assert sum(q.count("<ImageHere>") for q in questions) == len(shas)
        assert not any("<ImageHere>" in a for a in answers)
        many = len(shas) > 1
        images = ast.literal_eval(line["image"]) if many else [line["image"]]
        names = ast.literal_eval(line["image_path"]) if many else [line["image_path"]]
        assert all(len(image) > 64 for image in images)  # never read as a row reference
        assert [sha256(base64.b64decode(image)) for image in images] == shas
        assert len(set(names)) == len(names) == len(shas)


def test_vlmevalkit_round_trip_through_ingest(composed, source, tmp_path):
    out = tmp_path / "mmdu.tsv"
    summary = export.export(composed.out, out, format="vlmevalkit")
    written = unpack_images(out, tmp_path / "images")
    assert written == summary.images
    rows = ingest(out, tmp_path / "images", tmp_path / "catalog")
    check_round_trip(rows, source, labelled=True)


def test_openai_data_urls_carry_the_image_bytes(composed, source, tmp_path):
    out = tmp_path / "chat.jsonl"
    summary = export.export(composed.out, out, format="openai", images="data-url")
    assert summary.images_folder is None and not (tmp_path / "chat_images").exists()
    lines = out.read_text().splitlines()
    assert len(lines) == len(source)
    for line in lines:
        record = json.loads(line)
        roles, texts, shas = source[record["id"]]
        urls, canonical = [], []
        for message in record["messages"]:
            pieces = []
            for part in message["content"]:
                if part["type"] == "text":
                    pieces.append(part["text"])
                else:
                    urls.append(part["image_url"]["url"])
                    pieces.append(tags.tag(len(urls)))
            canonical.append("".join(pieces))
        assert canonical == texts
        assert all(re.match(r"data:image/(png|jpeg);base64,", url) for url in urls)
        assert [sha256(base64.b64decode(url.split(",", 1)[1])) for url in urls] == shas
    # compose reads images from a folder or zip: data urls are refused, with the reason.
    result = CliRunner().invoke(
        cli.app, ["ingest", str(out), "--out", str(tmp_path / "c"), "--json"]
    )
    assert json.loads(result.stdout)["rejected"] == {"missing_image": len(source)}


def test_exported_text_still_points_at_the_right_images(composed, tmp_path):
    out = tmp_path / "l.json"
    export.export(composed.out, out, format="llava")
    checked = 0
    for item in json.loads(out.read_text()):
        paths = item.get("image", [])
        paths = [paths] if isinstance(paths, str) else paths
        blobs = [(tmp_path / path).read_bytes() for path in paths]
        texts = loader.canonical_texts(
            {
                "style": "llava",
                "messages": [{"content": t["value"]} for t in item["conversations"]],
                "images": [],
            }
        )
        checked += check_references(texts, blobs, composed.marker_of_sha)
    assert checked > 100


def test_vlmevalkit_refuses_an_image_in_an_answer_and_leaves_no_file(tmp_path):
    messages = [
        {"role": "user", "content": "Image1: <ImageHere> and?"},
        {"role": "assistant", "content": "Here: <ImageHere>"},
    ]
    folder = write_folder(tmp_path / "out", [("bad1", "mmdu", messages, [png(1), png(2)])])
    out = tmp_path / "x.tsv"
    with pytest.raises(ValueError, match="sample bad1: message 2 .assistant. introduces an image"):
        export.export(folder, out, format="vlmevalkit")
    assert not out.exists() and list(tmp_path.glob(".x.tsv*")) == []
    export.export(folder, tmp_path / "x.json", format="mmdu")  # MMDU JSON can hold it


def test_vlmevalkit_refuses_an_image_too_small_to_tell_from_a_reference(tmp_path):
    messages = [
        {"role": "user", "content": "<ImageHere> tiny"},
        {"role": "assistant", "content": "Yes."},
    ]
    folder = write_folder(tmp_path / "out", [("t1", "mmdu", messages, [b"\x89PNG" + bytes(30)])])
    with pytest.raises(ValueError, match="sample t1: image 1 is only 34 bytes"):
        export.export(folder, tmp_path / "t.tsv", format="vlmevalkit")


def test_usage_errors_are_clear(composed, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'sharegpt'"):
        export.export(composed.out, tmp_path / "x", format="sharegpt")
    with pytest.raises(ValueError, match="needs an output file"):
        export.export(composed.out, None, format="llava")
    with pytest.raises(ValueError, match="data-url images are for the openai format only"):
        export.export(composed.out, tmp_path / "x", format="llava", images="data-url")
    with pytest.raises(ValueError, match="energon metadata goes beside the shards"):
        export.export(composed.out, tmp_path / "elsewhere", format="energon")


# -- labels ------------------------------------------------------------------------------------

prose = st.text(st.sampled_from("ab :.\n-_Ii"), max_size=6)


@st.composite
def canonical_text(draw):
    pieces, number = [draw(prose)], draw(st.integers(0, 3))
    for _ in range(draw(st.integers(0, 4))):
        number += 1
        if draw(st.booleans()):
            pieces.append(
                draw(st.sampled_from(["Image{}: ", "Image {}:", "image_{} ", "Image{}."]))
            )
            pieces[-1] = pieces[-1].format(number)
        pieces += [tags.tag(number), draw(prose)]
    return "".join(pieces)


@given(canonical_text())
def test_labels_keep_the_images_and_label_each_exactly_once(text):
    labelled = export.label_introductions(text)
    assert tags.introductions(labelled) == tags.introductions(text)
    assert export.label_introductions(labelled) == labelled
    for match in re.finditer(r"<image-(\d+)>", labelled):
        before = labelled[: match.start()]
        label = re.search(r"(?i)(?<![\w<])image[ _-]?0*(\d+)\s*[:.]?\s*\Z", before)
        assert label is not None and label.group(1) == match.group(1)
    # Only labels were added, each right before its tag.
    kept, added = re.split(r"<image-\d+>", text), re.split(r"<image-\d+>", labelled)
    numbers = tags.introductions(text)
    for position, (old, new) in enumerate(zip(kept, added, strict=True)):
        assert new.startswith(old)
        inserted = new[len(old) :]
        if position < len(numbers):
            assert inserted in ("", f"Image{numbers[position]}: ", f" Image{numbers[position]}: ")
        else:
            assert inserted == ""


def test_labels_on_examples():
    assert export.label_introductions("<image-3>\nWhat?") == "Image3: <image-3>\nWhat?"
    assert export.label_introductions("Image 3: <image-3>.") == "Image 3: <image-3>."
    assert export.label_introductions("Image2: <image-3>") == "Image2: Image3: <image-3>"
    assert export.label_introductions("myImage3: <image-3>") == "myImage3: Image3: <image-3>"
    assert export.label_introductions("see<image-1>") == "see Image1: <image-1>"


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long messages


def test_the_cli_reports_bad_usage_with_exit_code_1(composed, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli.app, ["export", str(composed.out), "--format", "llava"])
    assert result.exit_code == 1 and "needs an output file (--out)" in flat(result.output)
    result = runner.invoke(
        cli.app, ["export", str(tmp_path), "--format", "mmdu", "--out", str(tmp_path / "x.json")]
    )
    assert result.exit_code == 1 and "no shard index" in flat(result.output)
    assert not (tmp_path / "x.json").exists()
    result = runner.invoke(cli.app, ["export", str(composed.out), "--format", "energon", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["out"].endswith(".nv-meta")


# -- from and to URLs ---------------------------------------------------------------------------

memory = fsspec.filesystem("memory")


@pytest.fixture
def stage(tmp_path, monkeypatch):
    """Shards fetched from a URL are staged under the test's folder, not the system temp."""
    monkeypatch.setenv(storage.STAGE_ENV, str(tmp_path / "stage"))
    return tmp_path / "stage"


@pytest.fixture
def in_memory(composed):
    """The composed folder copied to a memory:// URL of its own, removed afterwards."""
    root = f"/export-{uuid.uuid4().hex[:8]}"
    for path in composed.out.iterdir():
        if path.is_file():
            memory.pipe_file(f"{root}/src/{path.name}", path.read_bytes())
    yield f"memory:/{root}"
    memory.rm(root, recursive=True)


def memory_files(url: str) -> dict[str, bytes]:
    """Every file under a memory:// URL, by its path relative to it."""
    root = url.removeprefix("memory:/")
    return {path[len(root) + 1 :]: memory.cat_file(path) for path in memory.find(root)}


def local_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(
    ("format", "images"),
    [("llava", "files"), ("mmdu", "files"), ("vlmevalkit", "files"), ("openai", "files"),
     ("openai", "data-url")],
)  # fmt: skip
def test_an_export_from_and_to_a_memory_url_is_the_local_export(
    composed, in_memory, stage, tmp_path, format, images
):
    name = f"train.{SUFFIX[format]}"
    local = export.export(composed.out, tmp_path / "local" / name, format=format, images=images)
    expected = local_files(tmp_path / "local")
    assert len(expected) == (
        1 if images == "data-url" or format == "vlmevalkit" else 1 + local.images
    )
    fetched: list[int] = []  # staged shards on disk after each sample
    summary = export.export(
        f"{in_memory}/src",
        f"{in_memory}/out/{name}",
        format=format,
        images=images,
        on_sample=lambda _: fetched.append(len(list(stage.glob("fetched-*/*")))),
    )
    assert memory_files(f"{in_memory}/out") == expected
    assert (summary.samples, summary.images, summary.bytes) == (
        local.samples,
        local.images,
        local.bytes,
    )
    assert summary.out == f"{in_memory}/out/{name}"
    assert max(fetched) == 1 and len(fetched) == local.samples  # one shard at a time
    assert list(stage.glob("fetched-*")) == []  # and each deleted once read
    # A memory:// output from a local folder, and a file:// output from a memory:// folder.
    export.export(composed.out, f"{in_memory}/again/{name}", format=format, images=images)
    assert memory_files(f"{in_memory}/again") == expected
    export.export(f"{in_memory}/src", f"file://{tmp_path}/url/{name}", format=format, images=images)
    assert local_files(tmp_path / "url") == expected


def test_energon_metadata_at_a_url_is_the_local_metadata(composed, in_memory, stage):
    local = ecosystem.write_energon(composed.out)
    expected = {Path(path).relative_to(composed.out).as_posix(): path for path in local.files}
    result = CliRunner().invoke(
        cli.app, ["export", f"{in_memory}/src", "--format", "energon", "--json", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["out"] == f"{in_memory}/src/.nv-meta"
    assert (summary["samples"], summary["bytes"]) == (local.samples, local.bytes)
    written = {
        name: data
        for name, data in memory_files(f"{in_memory}/src").items()
        if name.startswith(".nv-meta/") or name.endswith(".tar.idx")
    }
    assert sorted(written) == sorted(expected)
    for name, path in expected.items():
        if name.endswith("index.sqlite"):  # sqlite pages are not byte-stable: compare rows
            (stage / "remote.sqlite").write_bytes(written[name])
            assert sqlite_rows(stage / "remote.sqlite") == sqlite_rows(path)
        else:
            assert written[name] == Path(path).read_bytes(), name
    assert list(stage.glob("*/*")) == []  # nothing left in the stage


def sqlite_rows(path) -> dict[str, list]:
    with sqlite3.connect(path) as db:
        return {
            table: sorted(db.execute(f"SELECT * FROM {table}").fetchall())
            for table in ("samples", "sample_parts")
        }


def test_a_refused_export_leaves_nothing_at_the_url(tmp_path, stage):
    messages = [
        {"role": "user", "content": "Image1: <ImageHere> and?"},
        {"role": "assistant", "content": "Here: <ImageHere>"},
    ]
    folder = write_folder(tmp_path / "out", [("bad1", "mmdu", messages, [png(1), png(2)])])
    url = f"memory://refused-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match="sample bad1: message 2 .assistant. introduces an image"):
        export.export(folder, f"{url}/x.tsv", format="vlmevalkit")
    assert memory_files(url) == {}


def test_a_damaged_or_missing_shard_at_a_url_is_named_by_its_url(in_memory, stage):
    source = f"{in_memory}/src"
    shard = f"{source.removeprefix('memory:/')}/shard-000001.tar"
    data = memory.cat_file(shard)
    memory.pipe_file(shard, data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{source}/shard-000001.tar: ")) as caught:
        export.export(source, f"{in_memory}/out/x.json", format="llava")
    assert str(stage) not in str(caught.value)  # named by its URL, not by its download
    memory.rm_file(shard)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{source}/shard-000001.tar: missing")):
        export.export(source, f"{in_memory}/out/x.json", format="llava")
    # No export file, finished or temporary (images of samples before the failure may stay).
    assert [n for n in memory_files(f"{in_memory}/out") if not n.startswith("x_images/")] == []
    assert list(stage.glob("fetched-*")) == []


BAD_URLS = [
    ("nosuch://corpus/out", "x.json", "nosuch://corpus/out: not a folder or a URL compose can"),
    ("memory://absent", "x.json", "memory://absent/shards.json: no shard index"),
    ("COMPOSED", "nosuch://exports/x.json", "nosuch://exports/x.json: not a path or a URL"),
    ("nosuch://corpus/out", None, "nosuch://corpus/out: not a folder or a URL compose can"),
]


@pytest.mark.parametrize(("directory", "out", "message"), BAD_URLS)
def test_a_bad_url_is_named_in_the_message(composed, tmp_path, directory, out, message):
    directory = str(composed.out) if directory == "COMPOSED" else directory
    arguments = ["export", directory, "--format", "llava" if out else "energon", "--quiet"]
    if out:
        arguments += ["--out", out if "://" in out else str(tmp_path / out)]
    result = CliRunner().invoke(cli.app, arguments)
    assert result.exit_code == 1 and message in flat(result.output), result.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_s3_round_trip_gives_the_local_bytes(composed, tmp_path, stage):
    """compose export from an s3:// output to an s3:// file through moto's S3 server on
    127.0.0.1, then energon's metadata beside the shards in the bucket."""
    local = export.export(composed.out, tmp_path / "local" / "train.jsonl", format="openai")
    with pytest.MonkeyPatch.context() as patch, s3_endpoint(patch, tmp_path) as (_, fs):
        source, target = f"s3://{BUCKET}/composed", f"s3://{BUCKET}/exports/train.jsonl"
        fs.put(f"{composed.out}/", f"{source}/", recursive=True)
        result = CliRunner().invoke(
            cli.app, ["export", source, "--format", "openai", "--out", target, "--json", "--quiet"]
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["images_folder"] == f"s3://{BUCKET}/exports/train_images"
        fs.invalidate_cache()
        fs.get(f"s3://{BUCKET}/exports/", str(tmp_path / "back"), recursive=True)
        assert local_files(tmp_path / "back") == local_files(tmp_path / "local")
        assert summary["bytes"] == local.bytes
        energon = CliRunner().invoke(cli.app, ["export", source, "--format", "energon", "--quiet"])
        assert energon.exit_code == 0, energon.output
        fs.invalidate_cache()
        assert fs.cat_file(f"{source}/.nv-meta/dataset.yaml") == ecosystem.DATASET_YAML.encode()
        assert fs.exists(f"{source}/shard-000000.tar.idx")
        missing = CliRunner().invoke(
            cli.app, ["export", source, "--format", "llava", "--out", "s3://no-such-bucket/x.json"]
        )
        assert missing.exit_code == 1
        assert "s3://no-such-bucket/x.json: cannot write the export" in flat(missing.output)
    assert list(stage.glob("*/*")) == []
