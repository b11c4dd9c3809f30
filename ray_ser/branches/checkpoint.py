"""One checkpoint codec for every branch family: ``branch.json`` names the family, the format version
and the settings the branch was trained with; reading checks the first two before anything loads.

    {"family": "prosody", "format_version": 1, "classes": ["neutral", ...],
     "settings": {...the family's train section...}}

``classes`` is the taxonomy the branch predicts, in the order of its probability vectors.

The rest of a checkpoint directory is the family's own (weights, tokenizer, ``speakers.npz``).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ray_ser.config import StorageConfig
    from ray_ser.config_types import Frozen

__all__ = ["MANIFEST_NAME", "FORMAT_VERSION", "CheckpointError", "CheckpointManifest", "write_manifest",
           "read_manifest", "read_remote_manifest"]

MANIFEST_NAME = "branch.json"
FORMAT_VERSION = 1

T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint directory is not what it claims to be; the message names the directory and why."""


@dataclass(frozen=True)
class CheckpointManifest:
    family: str
    format_version: int
    settings: dict[str, Any]
    classes: tuple[str, ...]

    def parse(self, settings_type: type[T]) -> T:
        """The settings as the family's typed train section."""
        return settings_type.model_validate(self.settings)  # type: ignore[attr-defined]

    @property
    def speaker_normalised(self) -> bool:
        return bool(self.settings.get("speaker_normalization", False))


def write_manifest(directory: str | Path, family: str, settings: Frozen, classes: tuple[str, ...]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    body = {"family": family, "format_version": FORMAT_VERSION, "classes": list(classes),
            "settings": settings.model_dump(mode="json")}
    (directory / MANIFEST_NAME).write_text(json.dumps(body, indent=1))


def _decode(text: str, where: str, family: str | None) -> CheckpointManifest:
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {MANIFEST_NAME} is not valid JSON ({exc})") from None
    if not isinstance(body, dict) or "format_version" not in body or "settings" not in body:
        raise CheckpointError(f"{where}: {MANIFEST_NAME} has no format_version; it was written before "
                              f"checkpoint format {FORMAT_VERSION}: train the branch again")
    version = body["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{where}: checkpoint format {version!r} is newer than this ray_ser reads "
                              f"({FORMAT_VERSION}); upgrade ray_ser")
    if family is not None and body.get("family") != family:
        raise CheckpointError(f"{where} is a {body.get('family')!r} checkpoint, not {family!r}: check "
                              "the branch's family and checkpoint in the config")
    from ray_ser.labels import EMOTIONS

    return CheckpointManifest(str(body.get("family")), version, dict(body["settings"]),
                              tuple(body.get("classes") or EMOTIONS))


def read_manifest(directory: str | Path, family: str | None = None) -> CheckpointManifest:
    """The manifest of a local checkpoint directory, checked against the expected family."""
    path = Path(directory) / MANIFEST_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CheckpointError(f"{directory} is not a branch checkpoint: it has no {MANIFEST_NAME}") from None
    return _decode(text, str(directory), family)


def read_remote_manifest(uri: str, storage: StorageConfig, family: str | None = None) -> CheckpointManifest:
    """The manifest of a checkpoint anywhere (local or s3://) without copying the checkpoint."""
    from ray_ser.io.storage import FileReader

    try:
        text = FileReader(storage).read(posixpath.join(uri, MANIFEST_NAME)).decode()
    except FileNotFoundError:
        raise CheckpointError(f"{uri} is not a branch checkpoint: it has no {MANIFEST_NAME}") from None
    return _decode(text, uri, family)
