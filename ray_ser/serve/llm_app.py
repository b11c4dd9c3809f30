"""The speech LLM behind an OpenAI-compatible API, with ``ray.serve.llm``.

`ray-ser serve-llm --branch NAME` deploys a speech_llm branch's checkpoint as an
OpenAI chat-completions server (audio in ``input_audio`` parts) under
``serve.llm_route_prefix``. Any client can call it; the service's own endpoint uses it
when the branch says ``llm.engine: openai`` with ``llm.openai_url`` pointing there.

The ingress is ray.serve.llm's own, guarded (ray_ser/serve/llm_ingress.py): the bearer token of the
annotate app, and audio URLs fetched only from serve.llm_allowed_media_domains (never ``file://``, never a
private address); vLLM gets the same domain list and follows no redirects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_ser.config import LabelConfig

__all__ = ["build_llm_app", "run_llm_server", "served_model_id", "llm_config_arguments"]


def _speech_llm_branch(cfg: LabelConfig, branch_name: str):
    from ray_ser.config import ConfigError

    branch = cfg.branch(branch_name)
    if branch.family != "speech_llm" or not branch.checkpoint:
        raise ConfigError(f"serve-llm needs a trained speech_llm branch; {branch_name!r} is {branch.family} "
                          f"with checkpoint {branch.checkpoint!r}")
    return branch


def served_model_id(cfg: LabelConfig, branch_name: str) -> str:
    return _speech_llm_branch(cfg, branch_name).llm.served_model or branch_name


def llm_config_arguments(cfg: LabelConfig, branch_name: str, model_source: str) -> dict:
    """``ray.serve.llm.LLMConfig`` arguments for a speech_llm branch: engine settings from its llm section,
    replicas from serve.llm_replicas (the one place the speech-LLM server's resources are read)."""
    from ray_ser.branches.speech_llm.engines import vllm_cpu_env, vllm_engine_kwargs

    branch = _speech_llm_branch(cfg, branch_name)
    on_cpu = branch.device == "cpu"
    engine = vllm_engine_kwargs(branch.llm, branch.device, branch.max_shots)
    if cfg.serve.llm_allowed_media_domains:  # vLLM's own check too; an empty list would mean "any" to vLLM
        engine["allowed_media_domains"] = list(cfg.serve.llm_allowed_media_domains)
    # A listed host must not redirect the fetch to a private address.
    env = {**(vllm_cpu_env(branch.llm) if on_cpu else {}), "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "0"}
    return {
        "model_loading_config": {"model_id": served_model_id(cfg, branch_name), "model_source": model_source},
        "engine_kwargs": engine,
        # Without this, Serve LLM asks the cluster for a GPU and waits forever on CPU nodes.
        "accelerator_config": {"kind": "cpu" if on_cpu else "gpu"},
        "deployment_config": {"num_replicas": cfg.serve.llm_replicas},
        "runtime_env": {"env_vars": env},
    }


def build_llm_app(cfg: LabelConfig, branch_name: str):
    """An OpenAI app for one speech_llm branch, its checkpoint fetched to this node first if remote."""
    from ray.serve.llm import LLMConfig, build_openai_app

    from ray_ser.branches.speech_llm.engines import model_directory
    from ray_ser.io.storage import localize_directory
    from ray_ser.serve.auth import TokenSource
    from ray_ser.serve.llm_ingress import GuardedOpenAiIngress

    branch = _speech_llm_branch(cfg, branch_name)
    local = localize_directory(branch.checkpoint, cfg.storage, cfg.resolved_cache_dir())
    config = LLMConfig(**llm_config_arguments(cfg, branch_name, str(model_directory(local))))
    return build_openai_app({"llm_configs": [config], "ingress_cls_config": {
        "ingress_cls": GuardedOpenAiIngress, "ingress_extra_kwargs": {
            "allowed_media_domains": list(cfg.serve.llm_allowed_media_domains),
            "token": TokenSource.from_config(cfg.serve)}}})


def run_llm_server(cfg: LabelConfig, branch_name: str, blocking: bool = True):
    """`ray-ser serve-llm`: the OpenAI app on cfg.serve.host:port under serve.llm_route_prefix."""
    from ray import serve

    from ray_ser.runtime import ray_session
    from ray_ser.serve.app import http_options
    from ray_ser.serve.auth import TokenSource

    if cfg.ray.address is None:  # as run_server: a missing token fails here when replicas share this environment
        TokenSource.from_config(cfg.serve).resolve()
    with ray_session(cfg.ray):
        serve.start(http_options=http_options(cfg))
        return serve.run(build_llm_app(cfg, branch_name), name=f"llm_{branch_name}",
                         route_prefix=cfg.serve.llm_route_prefix, blocking=blocking)
