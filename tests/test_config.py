import pytest

from pydantic import ValidationError

from ray_ser.config import ConfigError, LabelConfig, load_config


def test_profiles_load_and_differ():
    demo, prod = load_config("demo"), load_config("production")
    assert demo.asr.device == "cpu" and demo.asr.resources.num_gpus == 0
    assert prod.asr.device == "cuda" and prod.asr.resources.num_gpus == 1
    assert load_config("configs/production-whisperx.yaml").asr.runtime_env == {"pip": ["whisperx==3.8.6"]}


def test_bad_field_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("asr:\n  resources: {batch_size: 0}\n")
    with pytest.raises(ConfigError, match=r"asr\.resources\.batch_size"):
        load_config(bad)


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match=r"asr\.batchsize"):
        load_config(None, ["asr.batchsize=4"])


def test_pool_bounds_checked():
    with pytest.raises(ConfigError, match="max_actors"):
        load_config(None, ["decode.resources.min_actors=3", "decode.resources.max_actors=2"])


def test_overrides_and_frozen():
    cfg = load_config("demo", ["asr.language=null", "sink.rows_per_file=7"])
    assert cfg.asr.language is None and cfg.sink.rows_per_file == 7
    with pytest.raises(Exception):
        cfg.sink.rows_per_file = 3


def test_every_field_documents_itself():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                walk(sub)
    walk(LabelConfig)


def test_missing_profile_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no profile 'nosuch'"):
        load_config("nosuch")
    broken = tmp_path / "x.yaml"
    broken.write_text("asr: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_speech_llm_resources_follow_the_engine():
    from ray_ser.branches import parse_branch

    gpu = {"family": "speech_llm", "device": "cuda", "llm": {"tensor_parallel_size": 2}}
    assert parse_branch({**gpu, "resources": {"num_gpus": 2}}).llm.tensor_parallel_size == 2
    with pytest.raises(ValidationError, match="resources.num_gpus=2"):
        parse_branch({**gpu, "resources": {"num_gpus": 1}})
    with pytest.raises(ValidationError, match="must not hold GPUs"):
        parse_branch({"family": "speech_llm", "resources": {"num_gpus": 1}})
    # A family's sections belong to it alone: llm on a speech encoder is an unknown field there.
    with pytest.raises(ValidationError, match=r"speech_encoder\.llm"):
        parse_branch({"family": "speech_encoder", "llm": {"engine": "vllm"}})
    with pytest.raises(ValidationError, match=r"speech_llm\.train\.finetune"):
        parse_branch({"family": "speech_llm", "train": {"base_model": "x", "finetune": "head"}})
    prod = load_config("production")
    for name in ("selm", "selm_audio"):
        branch = prod.branches[name]
        assert branch.resources.num_gpus == branch.llm.tensor_parallel_size == 2
    assert prod.branches["selm_audio"].llm.use_transcript is False
