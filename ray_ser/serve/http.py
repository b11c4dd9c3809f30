"""Reading a request the way an untrusted client sends it: limits first, then parsing, each mistake a 4xx.

Order matters. The media type is checked before any byte of the body is read (415), the declared
Content-Length before streaming (413), and the streamed byte count against the limit chunk by chunk,
so a chunked body past the limit is refused without being held. Only then is the body parsed, as
raw audio, a multipart upload or JSON; a JSON body of any shape (wrong types, unknown fields, deep
nesting, text fields past the limit) is a 400 that names the field and never echoes its value.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from starlette.requests import Request

    from ray_ser.config import ServeConfig

__all__ = ["ClientError", "RequestLimits", "BodyBudget", "AnnotateInput", "AnnotateJson", "body_kind",
           "read_body", "parse_annotate", "scrub"]

_RAW_TYPES = ("application/octet-stream",)
_JSON = "application/json"
_MULTIPART = "multipart/form-data"
_HOW = ("send an audio file (Content-Type audio/wav, audio/flac, audio/mpeg, audio/ogg or "
        "application/octet-stream), a multipart/form-data upload with a `file` part, or application/json "
        'with "audio_base64"')
# A path-like token (/a/b, C:\a\b) in a reason that came from an exception: replaced before it leaves.
_PATH = re.compile(r"(?:[A-Za-z]:\\|/)[\w.\-]+(?:[/\\][\w.\-]+)+")


@dataclass
class ClientError(Exception):
    """A request the client can fix (4xx), or a service condition it can retry (503/504): status + reason."""

    status: int
    reason: str
    headers: dict[str, str] | None = None


def scrub(text: str, limit: int = 300) -> str:
    """A reason safe to send: one line, bounded, internal paths replaced."""
    return _PATH.sub("<path>", " ".join(str(text).split()))[:limit]


@dataclass(frozen=True)
class RequestLimits:
    """What one request may carry; built from the profile by the Serve app builder."""

    max_body_bytes: int
    max_inflight_body_bytes: int
    max_clip_seconds: float
    max_text_chars: int
    min_clip_seconds: float = 0.1

    @classmethod
    def from_config(cls, serve: ServeConfig) -> RequestLimits:
        return cls(int(serve.max_body_mb * 2**20), int(serve.max_inflight_body_mb * 2**20), serve.max_clip_seconds,
                   serve.max_text_chars)


class BodyBudget:
    """The bytes of request bodies one replica holds at once, over all its requests.

    A request reserves its body's bytes as they arrive (the declared length at once) and gives them back
    when it is done with the body; one that would pass the budget is refused at once with 503, rather
    than waiting while Serve's proxy keeps reading its body. Used from the replica's event loop only.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self) -> _Reservation:
        return _Reservation(self)


class _Reservation:
    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held = 0

    def add(self, n: int) -> None:
        if self.budget.held + n > self.budget.limit:
            raise ClientError(503, "too many large request bodies are in flight; retry later", {"Retry-After": "1"})
        self.budget.held += n
        self.held += n

    def __enter__(self) -> _Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self.budget.held -= self.held
        self.held = 0


@dataclass(frozen=True)
class AnnotateInput:
    """One parsed annotate request: the encoded audio and the optional fields."""

    audio: bytes
    transcript: str | None = None
    speaker: str | None = None


class AnnotateJson(BaseModel):
    """The JSON form of POST /v1/annotate."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    audio_base64: str = Field(..., description="The audio file (wav, flac, mp3, ogg), base64-encoded.")
    transcript: str | None = Field(None, description="A transcript to use instead of the ASR's (ASR is skipped).")
    speaker: str | None = Field(None, description="A training speaker's id: speaker-normalised branches move the "
                                "clip by that speaker's profile.")


def body_kind(content_type: str | None) -> str:
    """'json', 'multipart' or 'raw' from the Content-Type header, or ClientError 415 before any body is read."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == _JSON:
        return "json"
    if media == _MULTIPART:
        return "multipart"
    if not media or media.startswith("audio/") or media in _RAW_TYPES:
        return "raw"
    raise ClientError(415, f"unsupported Content-Type {media[:80]!r}: {_HOW}")


async def read_body(request: Request, limit: int, reservation: _Reservation | None = None) -> bytes:
    """The whole body, refused with 413 as soon as the declared length or the bytes received pass limit.
    reservation: the replica's BodyBudget, charged as the bytes arrive (503 when it is spent)."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ClientError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise ClientError(413, f"body is {int(declared)} bytes; the limit is {limit}")
        if reservation is not None:
            reservation.add(int(declared))
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise ClientError(413, f"body is over the limit of {limit} bytes")
            if reservation is not None and (declared is None or received > int(declared)):
                reservation.add(len(chunk))
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientError(400, "the client disconnected before the body was complete") from None
    return b"".join(chunks)


def _check_text(name: str, value: str | None, limits: RequestLimits) -> str | None:
    if value is not None and len(value) > limits.max_text_chars:
        raise ClientError(400, f'"{name}" is {len(value)} characters; the limit is {limits.max_text_chars}')
    return value


def _json_reason(err: ValidationError) -> str:
    """The first problem of a JSON body, named by field, without the offending value."""
    item = err.errors(include_input=False, include_url=False, include_context=False)[0]
    where = ".".join(str(p) for p in item["loc"])
    if item["type"] == "json_invalid":
        return f"body is not valid JSON: {item['msg'].removeprefix('Invalid JSON: ')}"
    if item["type"] == "model_type":
        return 'JSON body must be an object with a string field "audio_base64"'
    if item["type"] == "extra_forbidden":
        return f'unknown field "{where}"; the fields are audio_base64, transcript, speaker'
    if item["type"] == "missing":
        return f'JSON body needs the field "{where}"'
    return f'"{where}": {item["msg"]}'


def _parse_json(body: bytes, limits: RequestLimits) -> AnnotateInput:
    try:
        payload = AnnotateJson.model_validate_json(body)
    except ValidationError as err:
        raise ClientError(400, _json_reason(err)) from None
    transcript = _check_text("transcript", payload.transcript, limits)
    speaker = _check_text("speaker", payload.speaker, limits)
    try:
        audio = base64.b64decode(payload.audio_base64, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(400, '"audio_base64" is not valid base64') from None
    return AnnotateInput(audio, transcript, speaker)


async def _parse_multipart(request: Request, body: bytes, limits: RequestLimits) -> AnnotateInput:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def replay():
        yield body

    # Text fields are bounded in bytes here (UTF-8: at most 4 per character) and in characters below.
    parser = MultiPartParser(request.headers, replay(), max_files=1, max_fields=2,
                             max_part_size=4 * limits.max_text_chars)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ClientError(400, f"multipart body: {scrub(exc.message)}") from None
    try:
        unknown = sorted(set(form.keys()) - {"file", "transcript", "speaker"})
        if unknown:
            raise ClientError(400, f"unknown form field {unknown[0][:40]!r}; the fields are file, transcript, speaker")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ClientError(400, "multipart body needs a file part named `file`")
        texts = {}
        for name in ("transcript", "speaker"):
            value = form.get(name)
            if value is not None and not isinstance(value, str):
                raise ClientError(400, f"`{name}` must be a text field, not a file")
            texts[name] = _check_text(name, value, limits)
        return AnnotateInput(await upload.read(), texts["transcript"], texts["speaker"])
    finally:
        await form.close()


async def parse_annotate(request: Request, limits: RequestLimits,
                         reservation: _Reservation | None = None) -> AnnotateInput:
    """An annotate request's audio and fields, or ClientError: 415 by media type, 413 by size, 400 by shape."""
    kind = body_kind(request.headers.get("content-type"))
    body = await read_body(request, limits.max_body_bytes, reservation)
    if not body:
        raise ClientError(400, f"empty body: {_HOW}")
    if kind == "json":
        parsed = _parse_json(body, limits)
    elif kind == "multipart":
        parsed = await _parse_multipart(request, body, limits)
    else:
        parsed = AnnotateInput(body)
    if not parsed.audio:
        raise ClientError(400, "the audio is empty")
    return parsed
