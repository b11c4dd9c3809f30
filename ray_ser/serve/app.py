"""The Serve application builder: the one place Serve resources, scaling and limits are read from the profile.

    ingress (FastAPI) --handle--> asr            (batched Whisper)
                      --handle--> branch_<name>  (one per branch, batched BranchRunner)
    probe   (its own app at PREFIX/healthz: liveness that shares no slot with annotate)

Each deployment scales on its own (serve.ingress, serve.asr, branches.NAME.serve): autoscaling bounds
and target, max_ongoing_requests, max_queued_requests (a full queue answers 503 at once) and
request_timeout_s (the ingress answers 504 past it). The ingress itself is described in
ray_ser/serve/ingress.py, the model deployments in ray_ser/serve/deployments.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_ser.config import LabelConfig, ServeDeployment, ServeModelDeployment
    from ray_ser.serve.ingress import IngressPlan

__all__ = ["APP_NAME", "PROBE_APP_NAME", "deployment_options", "batch_options", "http_options", "ingress_plan",
           "probe_route", "build_app", "build_probe_app", "deploy", "run_server"]

APP_NAME = "ray_ser"
PROBE_APP_NAME = "ray_ser_probe"
# The probe answers a constant: it reserves no CPU and takes many requests at once.
_PROBE_OPTIONS = {"num_replicas": 1, "max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0}}


def _options(deployment: ServeDeployment) -> dict:
    scaling = deployment.autoscaling
    return {
        "autoscaling_config": {"min_replicas": scaling.min_replicas, "max_replicas": scaling.max_replicas,
                               "target_ongoing_requests": scaling.target_ongoing_requests},
        "max_ongoing_requests": deployment.max_ongoing_requests,
        "max_queued_requests": deployment.max_queued_requests,
        "ray_actor_options": {"num_cpus": deployment.num_cpus, "num_gpus": deployment.num_gpus},
    }


def deployment_options(cfg: LabelConfig) -> dict[str, dict]:
    """``serve.deployment(...).options(**...)`` per deployment name, from cfg.serve."""
    out = {"ingress": _options(cfg.serve.ingress)}
    if cfg.asr.enabled:
        out["asr"] = _options(cfg.serve.asr)
    for name in cfg.branches:
        out[f"branch_{name}"] = _options(cfg.branch(name).serve)
    out["probe"] = dict(_PROBE_OPTIONS)
    return out


def batch_options(deployment: ServeModelDeployment) -> dict:
    """A model deployment's ``@serve.batch`` settings (its constructor applies them)."""
    return {"max_batch_size": deployment.max_batch_size, "batch_wait_timeout_s": deployment.batch_wait_timeout_s}


def http_options(cfg: LabelConfig) -> dict:
    """Where Serve's HTTP proxy listens, and its end-to-end request timeout."""
    return {"host": cfg.serve.host, "port": cfg.serve.port, "request_timeout_s": cfg.serve.ingress.request_timeout_s}


def ingress_plan(cfg: LabelConfig) -> IngressPlan:
    from ray_ser.core.annotator import load_fusion_for
    from ray_ser.serve.auth import TokenSource
    from ray_ser.serve.http import RequestLimits
    from ray_ser.serve.ingress import IngressPlan

    return IngressPlan(
        limits=RequestLimits.from_config(cfg.serve),
        token=TokenSource.from_config(cfg.serve),
        branch_kinds={name: cfg.branch(name).input_kind() for name in cfg.branches},
        weights=cfg.vote_weights(),
        priority=tuple(cfg.vote.priority),
        asr_timeout_s=cfg.serve.asr.request_timeout_s if cfg.asr.enabled else None,
        branch_timeouts={name: cfg.branch(name).serve.request_timeout_s for name in cfg.branches},
        classes=tuple(cfg.labels.classes),
        fusion=load_fusion_for(cfg),
    )


def probe_route(cfg: LabelConfig) -> str:
    return cfg.serve.route_prefix.rstrip("/") + "/healthz"


def build_app(cfg: LabelConfig):
    """The annotate application: the ingress bound to the ASR deployment and one deployment per branch."""
    from ray import serve

    from ray_ser.serve.deployments import AsrServer, BranchServer
    from ray_ser.serve.ingress import EmotionIngress

    cfg.require_checkpoints()
    options = deployment_options(cfg)
    config = cfg.model_dump(mode="json")
    asr = None
    if cfg.asr.enabled:
        asr = serve.deployment(AsrServer, name="asr").options(**options["asr"]).bind(
            config, **batch_options(cfg.serve.asr))
    branches = {name: serve.deployment(BranchServer, name=f"branch_{name}").options(**options[f"branch_{name}"])
                .bind(config, name, **batch_options(cfg.branch(name).serve)) for name in cfg.branches}
    return serve.deployment(EmotionIngress, name="ingress").options(**options["ingress"]).bind(
        ingress_plan(cfg), asr, branches)


def build_probe_app(cfg: LabelConfig):
    """The liveness probe's application (deploy it at probe_route(cfg))."""
    from ray import serve

    from ray_ser.serve.ingress import ProbeIngress

    return serve.deployment(ProbeIngress, name="probe").options(**deployment_options(cfg)["probe"]).bind()


def deploy(cfg: LabelConfig, blocking: bool = False):
    """Deploy the probe and the annotate app on a running Serve; returns the ingress's handle."""
    from ray import serve

    serve.run(build_probe_app(cfg), name=PROBE_APP_NAME, route_prefix=probe_route(cfg), blocking=False)
    return serve.run(build_app(cfg), name=APP_NAME, route_prefix=cfg.serve.route_prefix, blocking=blocking)


def run_server(cfg: LabelConfig, blocking: bool = True):
    """`ray-ser serve`: start Serve on cfg.serve.host:port and deploy both apps."""
    from ray import serve

    from ray_ser.runtime import ray_session
    from ray_ser.serve.auth import TokenSource

    cfg.require_checkpoints()
    if cfg.ray.address is None:
        # A local cluster's replicas see this process's environment: a missing token fails here, at once.
        # On a cluster the token lives on the nodes, and the ingress replicas check it when they start.
        TokenSource.from_config(cfg.serve).resolve()
    with ray_session(cfg.ray):
        serve.start(http_options=http_options(cfg))
        return deploy(cfg, blocking=blocking)
