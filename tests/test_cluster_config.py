"""cluster.yaml through Ray's own code: the autoscaler's config preparation and schema validation as
`ray up` applies them, each `ray start` line parsed by Ray's CLI, and the production profile's
resources (as the one helper per runtime turns them into Ray arguments) placeable on its node types."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
LABEL_TYPES = ("gpu_label", "gpu_label_tp")


@pytest.fixture(scope="module")
def prepared() -> dict:
    """cluster.yaml as `ray up` sees it: prepare_config (defaults, merged setup commands, docker
    checks, per-type worker bounds), then validate_config (the JSON schema and its own checks)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(yaml.safe_load((REPO / "cluster.yaml").read_text())))
    validate_config(config)
    return config


def _ray_start(command: str) -> dict:
    """The parameters `ray start` would run with, parsed by Ray's own CLI (an unknown flag fails)."""
    from ray.scripts.scripts import start

    words = shlex.split(command.replace("$RAY_HEAD_IP", "10.0.0.1"))
    argv = words[words.index("start", words.index("ray")) + 1:]
    argv = argv[:argv.index(";")] if ";" in argv else argv
    return start.make_context("start", argv).params


def _start_lines(commands: list[str]) -> list[str]:
    return [c for c in commands if "ray start" in c]


def test_cluster_yaml_validates_through_the_autoscalers_own_code(prepared):
    from ray.autoscaler._private.util import validate_config

    assert prepared["head_node_type"] == "head"
    broken = copy.deepcopy(prepared)
    broken["available_node_types"]["gpu_label"]["resources"] = {"GPU": 0.5}  # the schema wants whole units
    with pytest.raises(Exception):
        validate_config(broken)


def test_gpu_worker_types_for_labeling_and_training_scale_from_zero(prepared):
    types = prepared["available_node_types"]
    for name in (*LABEL_TYPES, "gpu_train"):
        node = types[name]
        assert node["resources"]["GPU"] >= 1 and node["min_workers"] == 0 and node["max_workers"] >= 1, name
        assert 0 < node["idle_timeout_s"] <= prepared["idle_timeout_minutes"] * 60, name
    assert all(node["min_workers"] == 0 for name, node in types.items() if name != "head")
    assert types["head"]["resources"] == {"CPU": 0}


def test_every_node_installs_the_gpu_profile(prepared):
    import ray

    assert prepared["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-")
    assert prepared["docker"]["image"].endswith("-gpu")
    for key in ("head_setup_commands", "worker_setup_commands"):  # merged from setup_commands by prepare_config
        install = [c for c in prepared[key] if "requirements-gpu.txt" in c]
        assert install, key
        assert (REPO / install[0].split("/home/ray/ray_ser/")[1].split()[0]).is_file()


def test_object_store_and_spilling_are_set_on_every_node(prepared):
    for command in _start_lines(prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]):
        params = _ray_start(command)
        assert params["object_spilling_directory"] == "/home/ray/spill"
        assert params["metrics_export_port"] == 8080
        assert "RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION=0.3" in command


def test_dashboard_and_jobs_api_only_through_the_tunnel_and_the_token(prepared):
    [head] = _start_lines(prepared["head_start_ray_commands"])
    params = _ray_start(head)
    assert params["head"] and params["dashboard_host"] == "127.0.0.1"
    for command in _start_lines(prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]):
        assert "RAY_AUTH_MODE=token" in command
    assert prepared["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"


def test_production_resources_fit_the_node_types(prepared):
    """Every actor, trainer worker and Serve replica of the production profile fits a worker type,
    so the autoscaler can start a node for it (one that fits nowhere would wait forever)."""
    from ray_ser.config import load_config
    from ray_ser.pipeline import label_plan, stage_arguments
    from ray_ser.serve.app import deployment_options
    from ray_ser.train.loop import scaling_arguments, trainable_branches

    cfg = load_config("production", [f"branches.{n}.checkpoint=s3://ckpt/{n}" for n in
                                     load_config("production").branches])
    types = {n: t["resources"] for n, t in prepared["available_node_types"].items() if n != "head"}

    def fits(need: dict[str, float]) -> list[str]:
        return [n for n, have in types.items() if all(need.get(k, 0) <= have.get(k, 0) for k in need)]

    for plan in label_plan(cfg, "s3://out", "run"):
        args = stage_arguments(plan)
        need = {"CPU": args.get("num_cpus") or 0, "GPU": args.get("num_gpus") or 0}
        assert fits(need), f"stage {plan.name} asks {need}"
        if need["GPU"]:
            assert set(fits(need)) <= {*LABEL_TYPES, "gpu_train"}, plan.name
    for name in trainable_branches(cfg):
        scaling = scaling_arguments(cfg.branch(name).train)
        worker = {**scaling["resources_per_worker"], "GPU": 1 if scaling["use_gpu"] else 0}
        total = {k: v * scaling["num_workers"] for k, v in worker.items()}
        assert fits(worker), f"a training worker of {name} asks {worker}"
        assert fits(total) or not scaling["use_gpu"], f"{name}'s workers ({total}) fit on no single node"
    for deployment, options in deployment_options(cfg).items():
        replica = options["ray_actor_options"]
        assert fits({"CPU": replica.get("num_cpus", 0), "GPU": replica.get("num_gpus", 0)}), deployment


# The KubeRay RayJob: the same job for Kubernetes.

RAYJOB = REPO / "jobs" / "kuberay" / "rayjob.yaml"


def _strict(schema: dict) -> dict:
    """A CRD's openAPIV3Schema as JSON Schema that, like `kubectl apply --validate=strict`, rejects
    fields the CRD does not declare (Kubernetes would silently prune them)."""
    if not isinstance(schema, dict):
        return schema
    out = {k: (_strict(v) if isinstance(v, dict) else [_strict(i) for i in v] if isinstance(v, list) else v)
           for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in out and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def test_rayjob_is_valid_against_the_rayjob_crd_when_one_is_at_hand():
    import os

    import jsonschema

    crd_path = os.environ.get("KUBERAY_RAYJOB_CRD")
    if not crd_path:
        pytest.skip("no RayJob CRD offline: set KUBERAY_RAYJOB_CRD to KubeRay's ray.io_rayjobs.yaml "
                    "(ray-operator/config/crd/bases), or run `kubectl apply --dry-run=server -f` against a cluster")
    crd = yaml.safe_load(Path(crd_path).read_text())
    manifest = yaml.safe_load(RAYJOB.read_text())
    group = crd["spec"]["group"]
    version = next(v for v in crd["spec"]["versions"] if f"{group}/{v['name']}" == manifest["apiVersion"])
    jsonschema.validate(manifest, _strict(version["schema"]["openAPIV3Schema"]))


def test_rayjob_runs_the_same_job_as_cluster_yaml():
    import ray

    from ray_ser.cli import build_parser
    from ray_ser.config import load_config

    job = yaml.safe_load(RAYJOB.read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec, cluster = job["spec"], job["spec"]["rayClusterSpec"]
    words = shlex.split(spec["entrypoint"])
    assert words[:2] == ["python", "/home/ray/ray_ser/jobs/label.py"] and (REPO / "jobs" / "label.py").is_file()
    args = build_parser().parse_args(["label", *words[2:]])  # the entrypoint's arguments, as the job parses them
    load_config(args.config, args.set)
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"] == {"mode": "token"}
    assert spec["shutdownAfterJobFinishes"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert all(g["minReplicas"] == 0 and g["replicas"] == 0 for g in groups.values())
    for name in ("gpu-label", "gpu-label-tp"):
        [container] = groups[name]["template"]["spec"]["containers"]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    images = {c["image"] for g in [cluster["headGroupSpec"], *groups.values()]
              for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1


def test_rayjob_image_installs_the_gpu_profile_on_cluster_yamls_base():
    dockerfile = (REPO / "jobs" / "kuberay" / "Dockerfile").read_text()
    base = yaml.safe_load((REPO / "cluster.yaml").read_text())["docker"]["image"]
    assert f"FROM {base}\n" in dockerfile
    assert "COPY scripts/requirements-gpu.txt" in dockerfile and "pip install --no-cache-dir -r" in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            assert all((REPO / source).exists() for source in line.split()[1:-1]), line
