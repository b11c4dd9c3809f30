"""One Serve instance for the serve tests, and the annotate app on it, deployed as `ray-ser serve` does."""

from __future__ import annotations

import pytest

from ray_ser.testing.http import free_port

TOKEN = "test-token-5f2c8d"  # a test secret: the apps read it from a file, as from a mounted secret


@pytest.fixture(scope="package")
def serve_url(ray_cluster):
    """Serve's HTTP proxy on a free port of 127.0.0.1 for the serve tests. Shut down after them: its replicas
    hold CPUs of the shared test cluster, and later jobs (two vLLM engines) need them to start at all."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secrets") / "token"
    path.write_text(TOKEN + "\n")
    return path


def _small(cpus: float, batch: int = 8) -> dict:
    return {"num_cpus": cpus, "max_ongoing_requests": 8, "max_queued_requests": 64, "max_batch_size": batch,
            "request_timeout_s": 60}


@pytest.fixture(scope="session")
def endpoint_config(branch_config, token_file):
    """The tiny-branch profile with small limits (1 MB bodies, 2.5 MB of bodies in flight, 20 s clips,
    200-character text fields), a token, and deployments sized so a labeling job still fits beside them on the
    test cluster."""
    from ray_ser.config import LabelConfig

    tree = branch_config.model_dump(mode="json")
    tree["serve"].update(max_body_mb=1.0, max_inflight_body_mb=2.5, max_clip_seconds=20.0, max_text_chars=200,
                         token_file=str(token_file), require_token=True, ingress={"num_cpus": 0.25}, asr=_small(0.5))
    for branch in tree["branches"].values():
        branch["serve"] = _small(0.25)
    return LabelConfig.model_validate(tree)


@pytest.fixture(scope="package")
def endpoint(serve_url, endpoint_config):
    """(base URL, config) of the deployed annotate app and its probe."""
    from ray_ser.serve.app import deploy

    deploy(endpoint_config)
    return serve_url, endpoint_config
