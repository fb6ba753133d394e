"""Where a run reads and writes: a local path, or an fsspec URL (`file://`, `memory://`, `s3://`...).

The catalog and the image stores are read from local files, so a remote input is copied once into
the run's local workspace; a remote output is written locally shard by shard and uploaded, tar
first and its stats file last, so a stats file on the remote side always vouches for a whole tar.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.core import url_to_fs

STAGE_ENV = "COMPOSE_STAGE"  # where remote outputs are staged (default: the system temp folder)
MARKER = ".source.json"  # beside a staged copy: the URL and what its source looked like


@dataclass(frozen=True, slots=True, kw_only=True)
class Staged:
    """A staged copy of a URL as a task carries it to any machine: where the driver staged it,
    and the URL and signature to stage the same bytes again where that path is not visible."""

    path: str
    url: str
    signature: str  # the marker's text: the URL, its size and modification time (or ETag)


def is_remote(path: str) -> bool:
    """A URL other than `file://`: read and written through fsspec."""
    return "://" in str(path) and not str(path).startswith("file://")


def local_path(path: str) -> str:
    """`file:///a/b` -> `/a/b`; a plain path as it is."""
    return str(path)[len("file://") :] if str(path).startswith("file://") else str(path)


def stage_root() -> Path:
    """This machine's stage: `$COMPOSE_STAGE`, or a folder in the system temp folder."""
    return Path(os.environ.get(STAGE_ENV) or Path(tempfile.gettempdir()) / "compose-stage")


def workspace(out: str) -> Path:
    """The local folder a run works in: OUT itself, or for a remote OUT a stage named after it."""
    if not is_remote(out):
        return Path(local_path(out))
    return stage_root() / hashlib.sha256(out.encode()).hexdigest()[:16]


def join(base: str, name: str) -> str:
    return f"{str(base).rstrip('/')}/{name}"


def stage_input(url: str, folder: Path, *, expect: str | None = None) -> str:
    """A local copy of a remote file or folder, made once: kept while the source's size and
    modification time (or ETag) stay the same. Returns the local path; a local path as it is.
    Processes staging the same URL into the same folder take turns: one downloads, the others
    find its copy. With `expect` (a `Staged.signature`), a source that has changed since is an
    error, not another copy."""
    if not is_remote(url):
        return local_path(url)
    fs, path = url_to_fs(url)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{url}: no such file or folder") from None
    fields = {k: str(info.get(k)) for k in ("size", "mtime", "ETag", "created", "type")}
    signature = json.dumps({"url": url, **fields}, sort_keys=True)
    if expect is not None and signature != expect:
        then = {k: v for k, v in json.loads(expect).items() if fields.get(k) != v and k != "url"}
        now = {k: fields[k] for k in then if k in fields}
        raise ValueError(f"{url}: changed since the run staged it (then {then}, now {now})")
    target = folder / hashlib.sha256(url.encode()).hexdigest()[:16] / Path(path).name
    marker = target.with_name(target.name + MARKER)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(target.name + ".lock")):
        if target.exists() and marker.exists() and marker.read_text() == signature:
            return str(target)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.unlink(missing_ok=True)
        if info["type"] == "directory":
            fs.get(path.rstrip("/") + "/", str(partial), recursive=True)
        else:
            fs.get_file(path, str(partial))
        if target.is_dir():
            shutil.rmtree(target)
        target.unlink(missing_ok=True)
        os.replace(partial, target)
        marker.write_text(signature)
    return str(target)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if need be) between processes and threads."""
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def portable(path: str) -> str | Staged:
    """An input as a task names it: a copy `stage_input` made, with the URL it came from (so a
    machine that cannot see the copy stages its own); any other path as it is."""
    try:
        signature = Path(path + MARKER).read_text()
        url = json.loads(signature)["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return path
    return Staged(path=path, url=url, signature=signature)


def local_copy(store: str | Staged) -> str:
    """A local path to an input on this machine: the driver's staged copy when it is visible
    here and still the same, else a copy staged once per machine in its `COMPOSE_STAGE`."""
    if isinstance(store, str):
        return store
    try:
        if Path(store.path + MARKER).read_text() == store.signature and Path(store.path).exists():
            return store.path
    except OSError:
        pass  # not on this machine
    return stage_input(store.url, stage_root() / "inputs", expect=store.signature)


def upload(local: Path, url: str) -> None:
    """Copy a local file to `url`; a failed copy (a full volume) leaves nothing there, since
    fsspec files commit what they hold when closed, even on an error."""
    fs, path = url_to_fs(url)
    try:
        fs.put_file(str(local), path)
    except BaseException:
        remove(url)
        raise


def read_bytes(url: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    fs, path = url_to_fs(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def size(url: str) -> int | None:
    fs, path = url_to_fs(url)
    try:
        return int(fs.size(path))
    except FileNotFoundError:
        return None


def sha256(url: str, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def remove(url: str) -> None:
    fs, path = url_to_fs(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def listdir(url: str) -> list[str]:
    """File names directly inside a remote folder ([] when it does not exist)."""
    fs, path = url_to_fs(url)
    try:
        return sorted(Path(p).name for p in fs.ls(path, detail=False))
    except FileNotFoundError:
        return []


class Folder:
    """A finished output read file by file, from a local folder or a URL: what `compose
    validate` reads. A remote file wanted as a local path (a shard, the manifest) is downloaded
    into this machine's stage and deleted when done with, so disk and memory hold one at a time."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self.remote = is_remote(self.root)
        if self.remote:
            self._fs, self._path = url_to_fs(self.root)
            self._fs.invalidate_cache()  # another process may have written there since
        else:
            self._local = Path(local_path(self.root))

    def where(self, name: str) -> str:
        """How messages name the file: its path, or its URL."""
        return join(self.root, name) if self.remote else str(self._local / name)

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes; OSError (FileNotFoundError) when it cannot be read."""
        if not self.remote:
            return (self._local / name).read_bytes()
        return self._fs.cat_file(join(self._path, name))

    def size(self, name: str) -> int | None:
        """The file's size, or None when there is no such file."""
        if not self.remote:
            path = self._local / name
            return path.stat().st_size if path.is_file() else None
        try:
            info = self._fs.info(join(self._path, name))
        except FileNotFoundError:
            return None
        return int(info["size"]) if info.get("type") == "file" else None

    def names(self, pattern: str = "*") -> list[str]:
        """File names directly in the folder matching a glob pattern, sorted."""
        if not self.remote:
            return sorted(p.name for p in self._local.glob(pattern) if p.is_file())
        try:
            found = self._fs.ls(self._path, detail=True)
        except FileNotFoundError:
            return []
        names = (Path(e["name"]).name for e in found if e.get("type") == "file")
        return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))

    @contextmanager
    def local(self, name: str) -> Iterator[Path]:
        """A local path holding the file: itself, or a download removed on exit.
        FileNotFoundError when there is no such file."""
        if not self.remote:
            path = self._local / name
            if not path.is_file():
                raise FileNotFoundError(self.where(name))
            yield path
            return
        stage = stage_root()
        stage.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="fetched-", dir=stage) as folder:
            path = Path(folder) / name
            try:
                self._fs.get_file(join(self._path, name), str(path))
            except FileNotFoundError:
                raise FileNotFoundError(self.where(name)) from None
            yield path
