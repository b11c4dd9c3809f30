"""The v1 HTTP API's bodies, as FastAPI documents them at /docs and /openapi.json."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ray_ser.serve.http import AnnotateJson

__all__ = ["API_VERSION", "ErrorBody", "BranchAnswer", "Timing", "AnnotateResponse", "LabelsResponse",
           "ReadyResponse", "ANNOTATE_REQUEST_BODY", "ERROR_RESPONSES"]

API_VERSION = "v1"


class ErrorBody(BaseModel):
    error: str = Field(..., description="Why the request was refused, in one line.")


class BranchAnswer(BaseModel):
    label: str = Field(..., description="The branch's emotion.")
    probs: dict[str, float] = Field(..., description="The branch's distribution over the emotions (sums to 1).")


class Timing(BaseModel):
    decode_ms: float = Field(..., description="Reading and decoding the audio in the ingress.")
    asr_ms: float = Field(..., description="Waiting for the ASR deployment (0 when a transcript was given).")
    branches_ms: float = Field(..., description="From the first branch call to the last branch answer.")
    total_ms: float = Field(..., description="The whole request inside the ingress.")


class AnnotateResponse(BaseModel):
    label: str | None = Field(..., description="The vote's emotion; null when no branch could label the clip "
                              "(see warnings).")
    confidence: float | None = Field(..., description="The winner's mean probability across voting branches.")
    agreement: float | None = Field(..., description="The share of voting branches that chose the winner.")
    transcript: str | None = Field(..., description="The ASR's transcript, or the one the request gave.")
    language: str | None = Field(..., description="The language the ASR detected (or was set to); null when "
                                 "the request gave the transcript.")
    duration_s: float = Field(..., description="Seconds of audio after decoding.")
    branches: dict[str, BranchAnswer] = Field(..., description="Each voting branch's label and distribution; "
                                              "a branch that abstained or failed is absent (see warnings).")
    checkpoints: dict[str, str] = Field(..., description="What produced the answer: the ASR model and each "
                                        "branch's checkpoint id (a content fingerprint).")
    timing: Timing
    warnings: list[str] = Field(..., description="ASR failures, unknown speakers, branch failures.")


class LabelsResponse(BaseModel):
    api_version: str = API_VERSION
    labels: list[str] = Field(..., description="The emotions, in the order of every distribution.")
    branches: list[str] = Field(..., description="The voting branches.")


class ReadyResponse(BaseModel):
    ready: bool
    checkpoints: dict[str, str] = Field(..., description="The loaded models' ids (ASR and branches).")


# The annotate route reads the raw request (so limits apply while the body streams); its body is described here.
ANNOTATE_REQUEST_BODY = {
    "required": True,
    "content": {
        "audio/wav": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": "The audio file."},
            "transcript": {"type": "string"}, "speaker": {"type": "string"}}}},
        "application/json": {"schema": AnnotateJson.model_json_schema()},
    },
}

_ERRORS = {400: "Malformed request (JSON, fields, base64, empty body)", 401: "Missing or invalid bearer token",
           413: "Body or clip over the limit", 415: "Unsupported Content-Type", 422: "Undecodable or unusable audio",
           503: "Busy or not ready: retry later", 504: "A model deployment did not answer in time"}
ERROR_RESPONSES = {code: {"model": ErrorBody, "description": text} for code, text in _ERRORS.items()}
