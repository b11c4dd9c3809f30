"""The HTTP endpoint: a Ray Serve deployment around the annotation core (ray_ser/core/annotator.py).

    POST {prefix}annotate   body: an audio file (any Content-Type but JSON), or JSON
                            {"audio_base64": "...", "transcript": "optional", "speaker": "optional"}
    GET  {prefix}health     {"status": "ok", "branches": [...]}

Every client mistake is a 4xx with a JSON body {"error": reason}.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from ray_ser.config import LabelConfig

__all__ = ["BadRequest", "EmotionEndpoint", "decode_clip", "build_app", "run_server"]


@dataclass
class BadRequest(Exception):
    status: int
    reason: str


def decode_clip(payload: bytes, max_clip_seconds: float) -> tuple[np.ndarray, float]:
    """A request's audio as 16 kHz samples and its duration, or BadRequest saying what is wrong."""
    from ray_ser.io.audio import TARGET_SAMPLE_RATE, AudioDecodeError, decode_audio

    if not payload:
        raise BadRequest(400, "empty body: send an audio file (wav, flac, mp3, ogg)")
    try:
        audio = decode_audio(payload)
    except AudioDecodeError as exc:
        raise BadRequest(400, f"audio could not be decoded: {exc}") from None
    seconds = audio.size / TARGET_SAMPLE_RATE
    if seconds > max_clip_seconds:
        raise BadRequest(413, f"clip is {seconds:.1f} s; this endpoint takes at most "
                              f"{max_clip_seconds:.0f} s (use the labeling job for long audio)")
    if seconds < 0.1:
        raise BadRequest(400, f"clip is {seconds * 1000:.0f} ms; at least 100 ms of audio is needed")
    return audio, seconds


class EmotionEndpoint:
    def __init__(self, config: dict) -> None:
        from ray_ser.config import LabelConfig
        from ray_ser.core.annotator import Annotator

        self.cfg = LabelConfig.model_validate(config)
        self.annotator = Annotator.load(self.cfg)
        self.max_body = int(self.cfg.serve.max_body_mb * 1024 * 1024)

    async def _parse(self, request) -> tuple[bytes, str | None, str | None]:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise BadRequest(413, f"body is {int(declared)} bytes; the limit is {self.max_body}")
        body = await request.body()
        if len(body) > self.max_body:
            raise BadRequest(413, f"body is {len(body)} bytes; the limit is {self.max_body}")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return body, None, None
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise BadRequest(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("audio_base64"), str):
            raise BadRequest(400, 'JSON body needs a string field "audio_base64"')
        for field in ("transcript", "speaker"):
            if payload.get(field) is not None and not isinstance(payload[field], str):
                raise BadRequest(400, f'"{field}" must be a string when given')
        try:
            return base64.b64decode(payload["audio_base64"], validate=True), payload.get("transcript"), \
                payload.get("speaker")
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(400, f'"audio_base64" is not valid base64: {exc}') from None

    def annotate(self, payload: bytes, transcript: str | None = None, speaker: str | None = None) -> dict:
        """The response body for one clip: label, confidence, agreement, transcript and each branch's vote.

        speaker: an id from the training manifest; speaker-normalised branches then move the clip
        by that speaker's profile from its training clips (one clip makes no profile of its own).
        """
        from ray_ser.core.branch import Clip

        audio, seconds = decode_clip(payload, self.cfg.serve.max_clip_seconds)
        result = self.annotator.annotate([Clip(audio, transcript, speaker)])[0]
        return {"label": result.label, "confidence": result.confidence, "agreement": result.agreement,
                "transcript": result.transcript, "duration": seconds, "branches": result.branch_body(),
                "warnings": result.warnings}

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        route = request.url.path[len(self.cfg.serve.route_prefix.rstrip("/")):].strip("/")
        try:
            if route == "health":
                if request.method != "GET":
                    raise BadRequest(405, "use GET for /health")
                return JSONResponse({"status": "ok", "branches": list(self.cfg.branches)})
            if route != "annotate":
                raise BadRequest(404, f"no route /{route}; use POST /annotate or GET /health")
            if request.method != "POST":
                raise BadRequest(405, "use POST for /annotate")
            audio, transcript, speaker = await self._parse(request)
            result = await asyncio.to_thread(self.annotate, audio, transcript, speaker)
            return JSONResponse(result)
        except BadRequest as exc:
            return JSONResponse({"error": exc.reason}, status_code=exc.status)


def http_options(cfg: LabelConfig) -> dict:
    """Where Serve's HTTP proxy listens."""
    return {"host": cfg.serve.host, "port": cfg.serve.port}


def deployment_options(cfg: LabelConfig) -> dict:
    """Serve deployment options from cfg.serve: the one place Serve resources are read."""
    s = cfg.serve
    return {"num_replicas": s.num_replicas, "max_ongoing_requests": s.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": s.num_cpus, "num_gpus": s.num_gpus}}


def build_app(cfg: LabelConfig):
    """The Serve application, scheduled as deployment_options says."""
    from ray import serve

    deployment = serve.deployment(EmotionEndpoint, name="ray_ser").options(**deployment_options(cfg))
    return deployment.bind(cfg.model_dump(mode="json"))


def run_server(cfg: LabelConfig, blocking: bool = True):
    """`ray-ser serve`: start Serve on cfg.serve.host:port and deploy the endpoint."""
    from ray import serve

    from ray_ser.runtime import ray_session

    cfg.require_checkpoints()
    with ray_session(cfg.ray):
        serve.start(http_options=http_options(cfg))
        handle = serve.run(build_app(cfg), name="ray_ser", route_prefix=cfg.serve.route_prefix, blocking=blocking)
        return handle
