"""The Ray Serve endpoint's settings (`serve` in a profile): the ingress and what guards it.
Its own module so that config.py stays readable; config.py re-exports both classes."""

from __future__ import annotations

from pydantic import Field, model_validator

from ray_ser.config_types import Frozen, ServeDeployment, ServeModelDeployment

__all__ = ["ServeIngressDeployment", "ServeConfig"]


class ServeIngressDeployment(ServeDeployment):
    """The HTTP ingress: parses, authenticates and decodes, then awaits the model deployments; light on CPU,
    so it holds more requests than the models do (a request waiting on a model costs it no CPU)."""

    num_cpus: float = Field(0.25, ge=0, description="Logical CPUs per ingress replica.")
    max_ongoing_requests: int = Field(32, ge=1, description="Requests an ingress replica holds at once.")
    max_queued_requests: int = Field(64, ge=1, description="Requests waiting for an ingress replica; past it "
                                     "Serve's proxy answers 503.")
    request_timeout_s: float = Field(60.0, gt=0, description="End-to-end limit of one HTTP request.")


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServeConfig(Frozen):
    """The Ray Serve endpoint for single clips (`ray-ser serve`): an ingress, an ASR deployment and one
    deployment per branch (each branch's own `serve` section), each scaled on its own."""

    host: str = Field("127.0.0.1", description="Address the HTTP proxy binds. Anything but loopback needs "
                      "require_token: true.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    route_prefix: str = Field("/", description="URL prefix of the application (its routes are under it).")
    token_env: str = Field("RAY_SER_TOKEN", min_length=1, description="Environment variable (on the ingress "
                           "replicas' nodes) holding the bearer token; when it is set, every route but the "
                           "probes and the docs needs `Authorization: Bearer <token>`.")
    token_file: str | None = Field(None, description="A file holding the bearer token (e.g. a mounted secret); "
                                   "wins over token_env.")
    require_token: bool = Field(False, description="Refuse to start without a token (from token_file or "
                                "token_env). Required when host is not a loopback address.")
    max_body_mb: float = Field(20.0, gt=0, description="Larger request bodies get 413, counted while the body "
                               "streams in (chunked bodies included).")
    max_inflight_body_mb: float = Field(
        24.0, gt=0, description="Request bodies one ingress replica holds at once, summed over its requests; a "
        "request that would pass it gets 503 at once (retry later). Bounds the ingress's memory however many "
        "large uploads arrive together. A body costs its replica several times its size while it is read (Serve "
        "hands it over pickled, it is joined, then parsed), so the default admits one body at max_body_mb and "
        "smaller ones beside it; 3 s clips (~100 KB) never meet it.")
    max_clip_seconds: float = Field(30.0, gt=0, description="Longer clips get 413, from the file header where "
                                    "it says the duration, and decoding stops there otherwise. 30 s is Whisper's "
                                    "window: a longer clip would be transcribed in part; long audio belongs in the "
                                    "labeling job, which cuts it at pauses.")
    max_text_chars: int = Field(2000, ge=1, description="Longest `transcript` or `speaker` a request may send "
                                "(400 past it).")
    ingress: ServeIngressDeployment = Field(ServeIngressDeployment(), description="The HTTP ingress deployment.")
    asr: ServeModelDeployment = Field(ServeModelDeployment(), description="The ASR deployment.")
    llm_route_prefix: str = Field("/llm", description="`ray-ser serve-llm`: URL prefix of the OpenAI-compatible "
                                  "speech-LLM app (its API is under PREFIX/v1).")
    llm_replicas: int = Field(1, ge=1, description="`ray-ser serve-llm`: replicas of the speech-LLM server.")
    llm_allowed_media_domains: tuple[str, ...] = Field(
        (), description="`ray-ser serve-llm`: host names whose http(s) audio URLs the server may fetch. Empty: "
        "no URL is fetched (audio travels inline). file:// and private addresses are always refused.")

    @model_validator(mode="after")
    def _consistent(self) -> ServeConfig:
        if self.max_inflight_body_mb < self.max_body_mb:
            raise ValueError(f"max_inflight_body_mb ({self.max_inflight_body_mb}) must be >= max_body_mb "
                             f"({self.max_body_mb}), or the largest body allowed is always refused")
        if self.host not in _LOOPBACK and not self.host.startswith("127.") and not self.require_token:
            raise ValueError(f"host {self.host!r} exposes the endpoint beyond this machine: set "
                             f"serve.require_token: true (the token comes from ${self.token_env} or "
                             "serve.token_file)")
        return self
