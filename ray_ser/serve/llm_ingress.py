"""The speech-LLM app's ingress: ray.serve.llm's OpenAI ingress with the bearer token and the media-URL rule.

Every route that takes a body checks the token first (the same TokenGate as the annotate app) and
refuses media URLs the server must not fetch (ray_ser/serve/media_urls.py) before the request
reaches vLLM. Errors keep the OpenAI error shape the ingress already uses.
"""

# No `from __future__ import annotations`: FastAPI reads these methods' annotations as real types.
from typing import Annotated, Optional, Sequence

from fastapi import Form, Request
from ray.llm._internal.serve.core.configs.openai_api_models import (ChatCompletionRequest, CompletionRequest,
                                                                   DetokenizeRequest, EmbeddingRequest,
                                                                   OpenAIHTTPException, ScoreRequest,
                                                                   TokenizeCompletionRequest, TranscriptionRequest)
from ray.serve.llm.ingress import OpenAiIngress

from ray_ser.serve.auth import TokenGate, TokenSource
from ray_ser.serve.http import ClientError
from ray_ser.serve.media_urls import MediaUrlRefused, check_media_urls

__all__ = ["GuardedOpenAiIngress"]


class GuardedOpenAiIngress(OpenAiIngress):
    def __init__(self, llm_deployments, model_cards, *, allowed_media_domains: Sequence[str] = (),
                 token: Optional[TokenSource] = None, **kwargs) -> None:
        super().__init__(llm_deployments, model_cards, **kwargs)
        self._allowed_media_domains = tuple(allowed_media_domains)
        self._gate = TokenGate(token.resolve() if token is not None else None)

    def _admit(self, request: Request, body=None) -> None:
        try:
            self._gate.check(request.headers)
        except ClientError as exc:
            raise OpenAIHTTPException(status_code=401, message=exc.reason, type="AuthenticationError") from None
        if body is None:
            return
        try:
            check_media_urls(body.model_dump(exclude_none=True), self._allowed_media_domains)
        except MediaUrlRefused as exc:
            raise OpenAIHTTPException(status_code=400, message=str(exc), type="BadRequestError") from None

    async def chat(self, body: ChatCompletionRequest, request: Request):
        self._admit(request, body)
        return await super().chat(body, request)

    async def completions(self, body: CompletionRequest, request: Request):
        self._admit(request, body)
        return await super().completions(body, request)

    async def transcriptions(self, body: Annotated[TranscriptionRequest, Form()], request: Request):
        self._admit(request)
        return await super().transcriptions(body, request)

    async def embeddings(self, body: EmbeddingRequest, request: Request):
        self._admit(request, body)
        return await super().embeddings(body, request)

    async def score(self, body: ScoreRequest, request: Request):
        self._admit(request, body)
        return await super().score(body, request)

    async def tokenize(self, body: TokenizeCompletionRequest, request: Request):
        self._admit(request, body)
        return await super().tokenize(body, request)

    async def detokenize(self, body: DetokenizeRequest, request: Request):
        self._admit(request, body)
        return await super().detokenize(body, request)
