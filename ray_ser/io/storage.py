"""One way to reach local paths and s3:// URIs: pyarrow filesystems built from StorageConfig."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    import pyarrow.fs

    from ray_ser.config import StorageConfig

__all__ = ["is_s3", "filesystem_for", "path_in_filesystem", "FileReader", "localize_directory"]


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def path_in_filesystem(uri: str) -> str:
    """The path to hand to the filesystem that filesystem_for returns for uri."""
    import os

    if is_s3(uri):
        return uri[len("s3://"):].rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"unsupported URI scheme in {uri!r}; use a local path or s3://")
    local = uri[len("file://"):] if uri.startswith("file://") else uri
    return os.path.abspath(os.path.expanduser(local))


def filesystem_for(uri: str, storage: StorageConfig) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem that holds uri and the path to pass to it."""
    import pyarrow.fs as pafs

    path = path_in_filesystem(uri)
    if is_s3(uri):
        kwargs: dict[str, object] = {"region": storage.s3_region, "allow_bucket_creation": True}
        if storage.s3_endpoint_url:
            parsed = urlparse(storage.s3_endpoint_url)
            kwargs["endpoint_override"] = parsed.netloc or parsed.path
            kwargs["scheme"] = parsed.scheme or "https"
        return pafs.S3FileSystem(**kwargs), path
    return pafs.LocalFileSystem(), path


class FileReader:
    """Reads files from local paths and s3:// URIs, with one filesystem client per scheme.

    A transient failure (I/O, timeout, dropped connection) is tried again ``storage.io_attempts``
    times with doubling waits (ray_ser/core/errors.py); a missing file fails at once.
    """

    def __init__(self, storage: StorageConfig) -> None:
        self.storage = storage
        self._filesystems: dict[bool, pyarrow.fs.FileSystem] = {}

    def _filesystem(self, uri: str) -> pyarrow.fs.FileSystem:
        s3 = is_s3(uri)
        if s3 not in self._filesystems:
            self._filesystems[s3] = filesystem_for(uri, self.storage)[0]
        return self._filesystems[s3]

    def _retrying(self, call):
        from ray_ser.core.errors import with_retries

        return with_retries(call, self.storage.io_attempts, self.storage.io_backoff_s)

    def read(self, uri: str) -> bytes:
        def whole() -> bytes:
            with self._filesystem(uri).open_input_stream(path_in_filesystem(uri)) as handle:
                return handle.read()

        return self._retrying(whole)

    def open(self, uri: str) -> pyarrow.NativeFile:
        """A seekable handle (read, seek, tell), for reading a long recording a window at a time."""
        return self._retrying(lambda: self._filesystem(uri).open_input_file(path_in_filesystem(uri)))


def localize_directory(uri: str, storage: StorageConfig, cache_dir: str | Path) -> Path:
    """A local copy of a directory (a checkpoint): the path itself if local, else a cached download.

    The download lands in a temporary directory that is renamed into place when complete,
    so concurrent actors on one node never load a half-copied checkpoint.
    """
    import hashlib
    import os
    import tempfile

    import pyarrow.fs as pafs

    if not is_s3(uri):
        local = Path(path_in_filesystem(uri))
        if not local.is_dir():
            raise FileNotFoundError(f"checkpoint directory {uri} does not exist")
        return local
    target = Path(cache_dir) / "checkpoints" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fs, path = filesystem_for(uri, storage)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"checkpoint directory {uri} does not exist")
    staging = tempfile.mkdtemp(dir=target.parent, prefix=".partial-")
    pafs.copy_files(path, staging, source_filesystem=fs)
    try:
        os.rename(staging, target)
    except OSError:  # another actor finished first; its copy is identical
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return target
