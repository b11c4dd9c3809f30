"""One way to reach local paths and s3:// URIs: pyarrow filesystems built from StorageConfig."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    import pyarrow.fs

    from ray_ser.config import StorageConfig

__all__ = ["is_s3", "filesystem_for", "path_in_filesystem", "FileReader"]


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
    """Reads whole files from local paths and s3:// URIs, with one filesystem client per scheme."""

    def __init__(self, storage: StorageConfig) -> None:
        self.storage = storage
        self._filesystems: dict[bool, pyarrow.fs.FileSystem] = {}

    def read(self, uri: str) -> bytes:
        s3 = is_s3(uri)
        if s3 not in self._filesystems:
            self._filesystems[s3] = filesystem_for(uri, self.storage)[0]
        with self._filesystems[s3].open_input_stream(path_in_filesystem(uri)) as handle:
            return handle.read()
