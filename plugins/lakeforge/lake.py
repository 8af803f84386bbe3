"""Lake I/O: every Python read and write of the lake goes through a ``pyarrow.fs`` filesystem.

``resolve(uri)`` maps a lake URI to ``(filesystem, path)``:

- ``file:///abs/path`` or a bare path -> ``pyarrow.fs.LocalFileSystem``
- ``hdfs://host:port/path`` -> ``pyarrow.fs.HadoopFileSystem`` when libhdfs can be loaded (the
  production image ships Hadoop's native client), otherwise the ``hdfs-native`` client (pure Rust,
  no JVM) wrapped as ``pyarrow.fs.PyFileSystem(FSSpecHandler(...))``. Both speak the same
  ``pyarrow.fs`` API, so callers never branch on the backend.

``Lake`` is a small convenience over one root URI: paths are given relative to the root.

Every source owns one namespace of the lake, ``<lake root>/<source name>/`` (``source_lake``):
its raw, clean, features, quarantine, quality evidence, run reports and registry log all live
below it, so two sources can never write the same path (source names are unique: see
``lakeforge.sources``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import urlparse

import pyarrow.fs as pafs

from lakeforge.settings import get_settings
from lakeforge.uris import join_uri, normalize_root

log = logging.getLogger(__name__)
T = TypeVar("T")

# Reads and hashes stream in chunks this big: bounded memory for any file size.
CHUNK = 8 * 1024 * 1024


class LakeError(RuntimeError):
    """A lake operation that cannot be done (bad URI, unreachable HDFS, a path in the way)."""


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path within it for a lake URI."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        path = parsed.path if scheme == "file" else uri
        if scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise LakeError(f"file URIs must be local (file:///path), got {uri!r}")
        return _local(), str(Path(path).expanduser().resolve())
    if scheme == "hdfs":
        if not parsed.hostname:
            raise LakeError(f"hdfs URI needs a namenode host: {uri!r}")
        fs = _hdfs(parsed.hostname, parsed.port or 8020, get_settings().hdfs_client)
        return fs, parsed.path or "/"
    raise LakeError(f"unsupported lake URI scheme {scheme!r} in {uri!r} (use file:// or hdfs://)")


@functools.lru_cache(maxsize=1)
def _local() -> pafs.FileSystem:
    return pafs.LocalFileSystem()


@functools.lru_cache(maxsize=16)
def _hdfs(host: str, port: int, client: str) -> pafs.FileSystem:
    if client in ("auto", "libhdfs"):
        try:
            fs = pafs.HadoopFileSystem(host, port)
            log.info("HDFS %s:%s via libhdfs", host, port)
            return fs
        except OSError as exc:  # libhdfs.so or a JVM not found
            if client == "libhdfs":
                raise LakeError(f"LAKEFORGE_HDFS_CLIENT=libhdfs but libhdfs failed: {exc}") from exc
            log.info("libhdfs not usable (%s); using hdfs-native for %s:%s", exc, host, port)
    from hdfs_native.fsspec import HdfsFileSystem

    return pafs.PyFileSystem(pafs.FSSpecHandler(HdfsFileSystem(host=host, port=port)))


def backend_name(fs: pafs.FileSystem) -> str:
    """A short name of the client behind a filesystem, for logs and benchmark results."""
    if isinstance(fs, pafs.PyFileSystem):
        return f"py:{type(fs.handler.fs).__module__.split('.')[0]}"
    return fs.type_name


@dataclass(frozen=True)
class FileStat:
    path: str
    size: int


def _until_whole(attempt: Callable[[], T], whole: Callable[[T], bool], timeout: float,
                 short: Callable[[T], str]) -> T:
    """``attempt()`` again, backing off (10 ms doubling to 0.5 s), until ``whole(result)``; after
    ``timeout`` s an ``OSError`` saying ``short(result)``. HDFS's read-after-write lag."""
    import time

    deadline, pause = time.monotonic() + timeout, 0.01
    while not whole(result := attempt()):
        if time.monotonic() > deadline:
            raise OSError(f"{short(result)} after {timeout:.0f}s")
        log.warning("%s: trying again", short(result))  # rare: worth seeing in a task log
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    return result


def source_lake(source_name: str, root_uri: str | None = None) -> "Lake":
    """The lake namespace of one source: ``<root>/<source name>/`` (root: ``LAKEFORGE_LAKE_ROOT``).

    Everything a source's pipeline writes goes below it; jobs and operators build their ``Lake``
    here, never at the bare root."""
    from lakeforge.sources import check_source_name

    check_source_name(source_name)
    return Lake(join_uri(normalize_root(root_uri or get_settings().lake_root), source_name))


class Lake:
    """A lake rooted at one URI; all paths are relative to that root (``"raw/flights"``)."""

    def __init__(self, root_uri: str | None = None):
        self.root_uri = normalize_root(root_uri or get_settings().lake_root)
        self.fs, self.root = resolve(self.root_uri)

    def __repr__(self) -> str:
        return f"Lake({self.root_uri!r})"

    # -- names -------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if parts else self.root

    def uri(self, *parts: str) -> str:
        """The full URI of a lake path (what Spark and Airflow assets are given)."""
        return join_uri(self.root_uri, *parts)

    # -- queries -----------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def is_dir(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.Directory

    def _list(self, selector: "pafs.FileSelector") -> list["pafs.FileInfo"]:
        try:
            return self.fs.get_file_info(selector)
        except FileNotFoundError:
            # pyarrow raises when the directory did not exist as it listed it but exists right
            # after (another writer created it meanwhile, e.g. a table's _trash): list again.
            return self.fs.get_file_info(selector)

    def listdir(self, rel: str) -> list[str]:
        """Names directly under a directory (sorted); empty if it does not exist."""
        info = self._list(pafs.FileSelector(self.path(rel), allow_not_found=True))
        return sorted(posixpath.basename(i.path.rstrip("/")) for i in info)

    def file_times(self, rel: str) -> dict[str, tuple[int, float]]:
        """Files directly under a directory: name -> (bytes, modification time, 0 where the file
        system reports none); empty if the directory does not exist."""
        info = self._list(pafs.FileSelector(self.path(rel), allow_not_found=True))
        return {posixpath.basename(i.path): (i.size, i.mtime.timestamp() if i.mtime else 0.0)
                for i in info if i.type == pafs.FileType.File}

    def files(self, rel: str) -> list[FileStat]:
        """Every file below a directory, recursively, with sizes (sorted by path)."""
        base = self.path(rel)
        infos = self._list(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        out = [
            FileStat(posixpath.relpath(i.path, base), i.size)
            for i in infos
            if i.type == pafs.FileType.File
        ]
        return sorted(out, key=lambda f: f.path)

    # -- bytes -------------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def write_bytes(self, rel: str, data: bytes, make_parents: bool = True) -> None:
        """Write a whole file (parents created unless the caller knows they exist). Not atomic on
        its own: see lakeforge.publish."""
        target = self.path(rel)
        if make_parents:
            self.fs.create_dir(posixpath.dirname(target), recursive=True)
        with self.fs.open_output_stream(target) as f:
            f.write(data)
        if data and self.root_uri.startswith("hdfs://"):
            self._wait_until_visible(rel, len(data))

    def _wait_until_visible(self, rel: str, size: int, timeout: float = 10.0) -> None:
        """Read-after-write on HDFS: a close may return while the last block is only committed
        (``dfs.namenode.file.close.num-committed-allowed``), and readers then see a shorter file
        for a moment: the listing can already report the whole length while a reader (hdfs-native
        takes the length from the block locations) still gets less, and CI once hashed a
        just-written file as empty that way. Wait until a reader is given the whole length."""
        _until_whole(lambda: self._readable_size(rel), lambda readable: readable == size, timeout,
                     lambda readable: f"{self.uri(rel)}: wrote {size} bytes, a reader still gets {readable}")

    def _readable_size(self, rel: str) -> int:
        """The length a reader opening the file now is given (no data is read)."""
        with self.fs.open_input_file(self.path(rel)) as f:
            return f.size()

    def sha256(self, rel: str, size: int | None = None, timeout: float = 10.0) -> str:
        """sha256 of a file's bytes. ``size``: its length as listed; a read that returns fewer
        bytes is retried until it sees them all (``timeout`` s, then ``OSError``). On HDFS a file
        just closed can be listed whole while a reader still gets a shorter file (its last block
        committed, not yet readable: CI once hashed a just-written raw file as empty with the
        hdfs-native client), and a manifest must never record the hash of a partial read."""

        def read() -> tuple[str, int]:
            digest, got = hashlib.sha256(), 0
            with self.fs.open_input_stream(self.path(rel)) as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    got += len(chunk)
            return digest.hexdigest(), got

        digest, _ = _until_whole(read, lambda r: size is None or r[1] == size, timeout,
                                 lambda r: f"{self.uri(rel)}: read {r[1]} of its {size} bytes")
        return digest

    # -- structure ---------------------------------------------------------------------------
    def makedirs(self, rel: str) -> None:
        self.fs.create_dir(self.path(rel), recursive=True)

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst``; refuses to replace anything at ``dst``.

        A directory rename is one metadata operation on HDFS and on a local disk, which is what
        makes publishing atomic. Local ``rename(2)`` would silently replace an empty directory,
        HDFS refuses: check first so both backends behave the same.
        """
        if self.exists(dst):
            raise LakeError(f"cannot move {src} -> {dst}: target exists")
        self.fs.create_dir(posixpath.dirname(self.path(dst)), recursive=True)
        self.fs.move(self.path(src), self.path(dst))

    def delete(self, rel: str) -> None:
        """Delete a file or a directory tree; nothing to delete is fine."""
        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(rel))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(rel))
