"""The HTTP ingress (FastAPI under ``@serve.ingress``) and the liveness probe.

    POST /v1/annotate   raw audio, a multipart upload (`file`, optional `transcript`, `speaker`), or JSON
                        {"audio_base64", "transcript"?, "speaker"?} -> label, confidence, agreement,
                        transcript, language, each branch's label and distribution, checkpoint ids, timing
    GET  /v1/labels     the emotions (the order of every distribution) and the voting branches
    GET  /readyz        200 when every model deployment answers (models loaded), else 503
    GET  /healthz       liveness: a separate app with its own replica and slots (ProbeIngress), so it
                        answers while every annotate slot is busy
    GET  /docs, /openapi.json

The ingress does no model work: it authenticates (headers only), reads the body under its limits,
decodes the audio in a thread, then awaits the ASR deployment and the branch deployments through
DeploymentHandles (audio-only branches start at once, beside ASR; the ones reading the transcript
start when it arrives) and runs the shared vote. Every refusal is ``{"error": reason}`` with a 4xx
(client mistakes) or 503/504 (busy, retry); nothing else leaves, no trace and no internal path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from ray_ser import __version__
from ray_ser.schema import SAMPLE_RATE
from ray_ser.serve.api_models import (ANNOTATE_REQUEST_BODY, ERROR_RESPONSES, AnnotateResponse, LabelsResponse,
                                      ReadyResponse)
from ray_ser.serve.auth import TokenGate, TokenSource
from ray_ser.serve.http import BodyBudget, ClientError, RequestLimits, parse_annotate, scrub

if TYPE_CHECKING:
    from ray_ser.core.fusion import Fusion
    from ray.serve.handle import DeploymentHandle

    from ray_ser.core.branch import Clip

__all__ = ["IngressPlan", "EmotionIngress", "ProbeIngress", "app"]

logger = logging.getLogger("ray.serve")
_READY_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class IngressPlan:
    """Everything the ingress needs from the profile, as plain values (built by ray_ser.serve.app)."""

    limits: RequestLimits
    token: TokenSource
    branch_kinds: dict[str, str]           # branch name -> input kind, in the profile's (vote) order
    weights: dict[str, float]
    priority: tuple[str, ...]
    asr_timeout_s: float | None            # None: ASR is off
    branch_timeouts: dict[str, float]
    classes: tuple[str, ...]               # the taxonomy, the order of every distribution
    fusion: Fusion | None = None           # the fitted fusion that decides the label, where the profile has one


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def _with_json_errors(api: FastAPI) -> FastAPI:
    """Routing and validation errors in the API's one error shape; anything unexpected a bare 500."""

    @api.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> JSONResponse:
        return _error(exc.status, exc.reason, exc.headers)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reasons = {404: f"no route {scrub(request.url.path, 80)}; see /docs",
                   405: f"{request.method} is not allowed on {scrub(request.url.path, 80)}"}
        return _error(exc.status_code, reasons.get(exc.status_code, scrub(str(exc.detail))))

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "the request does not match the API; see /docs")

    @api.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal error")

    return api


app = _with_json_errors(FastAPI(
    title="ray_ser", version=__version__, docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
    description="Speech-emotion annotation of single clips: ASR, the voting branches and their vote."))


async def _await(response: Any, component: str, timeout_s: float) -> Any:
    """A DeploymentHandle call's result, or ClientError 503/504 saying which component was busy or slow."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

    try:
        return await asyncio.wait_for(response, timeout_s)
    except asyncio.CancelledError:  # the request ended another way (a sibling call failed): stop this one too
        response.cancel()
        raise
    except asyncio.TimeoutError:
        response.cancel()
        raise ClientError(504, f"{component} did not answer within {timeout_s:g} s", {"Retry-After": "1"}) from None
    except BackPressureError:
        raise ClientError(503, f"{component} is at capacity; retry later", {"Retry-After": "1"}) from None
    except (DeploymentUnavailableError, ReplicaUnavailableError, RayActorError):
        raise ClientError(503, f"{component} is unavailable; retry later", {"Retry-After": "5"}) from None


@serve.ingress(app)
class EmotionIngress:
    def __init__(self, plan: IngressPlan, asr: DeploymentHandle | None,
                 branches: dict[str, DeploymentHandle]) -> None:
        self.plan = plan
        self.gate = TokenGate(plan.token.resolve())  # MissingToken stops the replica from starting
        self.budget = BodyBudget(plan.limits.max_inflight_body_bytes)
        self.asr = asr
        self.branches = branches

    def _observe(self, route: str, status: int, started: float) -> None:
        """Every request ends here once: the place for request metrics (latency and status by route)."""
        logger.debug("%s %d %.1f ms", route, status, (time.perf_counter() - started) * 1000)

    @app.post("/v1/annotate", response_model=AnnotateResponse, responses=ERROR_RESPONSES,
              openapi_extra={"requestBody": ANNOTATE_REQUEST_BODY}, summary="Annotate one clip")
    async def annotate(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            self.gate.check(request.headers)
            body = await self._annotate(request, started)
            response = JSONResponse(body)
        except ClientError as exc:
            response = _error(exc.status, exc.reason, exc.headers)
        self._observe("/v1/annotate", response.status_code, started)
        return response

    async def _annotate(self, request: Request, started: float) -> dict:
        from ray_ser.core.branch import Clip
        from ray_ser.serve.audio import decode_clip

        limits = self.plan.limits
        with self.budget.reserve() as reservation:  # the body's bytes count until it is decoded
            parsed = await parse_annotate(request, limits, reservation)
            clip = Clip(await asyncio.to_thread(decode_clip, parsed.audio, limits.max_clip_seconds,
                                                limits.min_clip_seconds), parsed.transcript, parsed.speaker)
            del parsed  # the encoded bytes are not needed past here: free them before the models run
        decoded = time.perf_counter()
        annotation, checkpoints, asr_s, branches_s = await self._run_models(clip)
        return {
            "label": annotation.label, "confidence": annotation.confidence, "agreement": annotation.agreement,
            "transcript": annotation.transcript, "language": annotation.language,
            "duration_s": clip.audio.size / SAMPLE_RATE, "branches": annotation.branch_body(),
            "checkpoints": checkpoints,
            "timing": {"decode_ms": (decoded - started) * 1000, "asr_ms": asr_s * 1000,
                       "branches_ms": branches_s * 1000, "total_ms": (time.perf_counter() - started) * 1000},
            "warnings": [scrub(w) for w in annotation.warnings],
        }

    def _branch_call(self, name: str, clip: Clip) -> asyncio.Task:
        from ray_ser.core.branch import Clip

        if self.plan.branch_kinds[name] == "text":  # a text branch reads the transcript: the audio stays here
            clip = Clip(None, clip.transcript, clip.speaker)
        response = self.branches[name].run.remote(clip)
        return asyncio.ensure_future(_await(response, f"branch {name}", self.plan.branch_timeouts[name]))

    async def _run_models(self, clip: Clip):
        """ASR and every branch through their deployments, then the vote: the core's assembly, as the job does."""
        from ray_ser.core.annotator import assemble_annotation, with_transcript

        plan = self.plan
        first = time.perf_counter()
        calls = {name: self._branch_call(name, clip) for name, kind in plan.branch_kinds.items() if kind == "audio"}
        transcript = failure = None
        checkpoints: dict[str, str] = {}
        try:
            if self.asr is not None and clip.transcript is None:
                transcript, failure, checkpoints["asr"] = await _await(
                    self.asr.transcribe.remote(clip.audio), "asr", plan.asr_timeout_s)
            asr_s = time.perf_counter() - first
            read = with_transcript(clip, transcript)
            calls.update({name: self._branch_call(name, read) for name in plan.branch_kinds if name not in calls})
            answers = {name: await calls[name] for name in plan.branch_kinds}
        finally:
            for call in calls.values():
                call.cancel()
        results, notes = {}, []
        for name, (result, speaker_notes, checkpoint) in answers.items():
            results[name] = result
            notes += speaker_notes
            checkpoints[name] = checkpoint
        annotation = assemble_annotation(read, transcript, failure, results, notes, plan.weights, plan.priority,
                                         plan.classes, plan.fusion)
        return annotation, checkpoints, asr_s, time.perf_counter() - first

    @app.get("/v1/labels", response_model=LabelsResponse, responses={401: ERROR_RESPONSES[401]},
             summary="The emotions and the voting branches")
    async def labels(self, request: Request) -> JSONResponse:
        self.gate.check(request.headers)
        return JSONResponse({"api_version": "v1", "labels": list(self.plan.classes),
                             "branches": list(self.plan.branch_kinds)})

    @app.get("/readyz", response_model=ReadyResponse, responses={503: ERROR_RESPONSES[503]},
             summary="Readiness: every model deployment is loaded and answering")
    async def readyz(self) -> JSONResponse:
        handles = {name: handle for name, handle in self.branches.items()}
        if self.asr is not None:
            handles["asr"] = self.asr
        try:
            found = await asyncio.gather(*(_await(h.describe.remote(), n, _READY_TIMEOUT_S)
                                           for n, h in handles.items()))
        except ClientError as exc:
            return _error(503, f"not ready: {exc.reason}", {"Retry-After": "5"})
        checkpoints = {key: value for answer in found for key, value in answer.items()}
        return JSONResponse({"ready": True, "checkpoints": checkpoints})


class ProbeIngress:
    """Liveness on its own replica: it shares no slot with annotate, so it answers under any load.

    A plain HTTP deployment (no FastAPI routing): its app's route prefix is the probe's path itself."""

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method not in ("GET", "HEAD"):
            return _error(405, f"{request.method} is not allowed on the probe; use GET")
        return JSONResponse({"status": "ok"})
