import yaml


def test_cluster_yaml_is_a_consistent_autoscaler_config():
    cfg = yaml.safe_load(open("cluster.yaml"))
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert sum(t.get("max_workers", 0) for t in cfg["available_node_types"].values()) >= cfg["max_workers"]
    assert {"cpu_decode", "gpu_infer", "gpu_train"} <= set(cfg["available_node_types"])
    assert any("requirements-gpu.txt" in c for c in cfg["setup_commands"])
