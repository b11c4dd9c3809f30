"""Every config field reaches the code that uses it.

The test records which fields of which config models are read, and by which code, while the
package does real work in this process: each branch family trains for an epoch (the same
``run_training`` a Ray Train worker runs), the labeling job's stages run on real espeak clips
(decode with VAD, Whisper, every branch, the speaker pass, the vote, the Parquet sink), Serve's
app builder builds both apps (every deployment's resources, scaling, queue, timeout and batch size,
the request limits and the token source are read there) and the ingress's request reading parses a
real request through its ASGI interface under those limits, and the one helper per runtime that
turns config into Ray arguments (Ray Data, Ray Train, Serve, ray.init, Serve LLM) is called. A read
counts only when it happens outside the config models' own validators and outside this test.
A field nobody reads is a setting that does nothing: the test names it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from ray_ser.config_types import Frozen

# Fields read only where a service starts; each names the test that exercises it there.
READ_ONLY_WHERE_A_SERVICE_STARTS = {
    ("ServeConfig", "llm_route_prefix"): "run_llm_server (tests/serve/test_llm_app.py serves the speech LLM)",
}

_PACKAGE = str(Path(__file__).resolve().parent.parent / "ray_ser")
_CONFIG_MODULES = ("config.py", "config_types.py", "settings.py")


def _all_fields() -> set[tuple[str, str]]:
    """(model class, field) of every config model reachable from LabelConfig, every family's included."""
    from typing import get_args

    from ray_ser.branches import FAMILIES
    from ray_ser.config import LabelConfig

    seen: set[type] = set()
    out: set[tuple[str, str]] = set()

    def walk(model: type) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            out.add((model.__name__, name))
            stack = [field.annotation]
            while stack:
                t = stack.pop()
                if isinstance(t, type) and issubclass(t, Frozen):
                    walk(t)
                stack += list(get_args(t))

    walk(LabelConfig)
    for name in FAMILIES:
        walk(FAMILIES.get(name).settings)
    return out


class _Reads:
    """Records (model class, field) reads made by package code other than the config models' validators."""

    def __init__(self) -> None:
        self.reads: set[tuple[str, str]] = set()
        self._original = None

    def __enter__(self) -> set[tuple[str, str]]:
        reads, original = self.reads, Frozen.__getattribute__

        def spy(model, name):
            if name in type(model).__pydantic_fields__:
                frame = sys._getframe(1)
                where, function = frame.f_code.co_filename, frame.f_code.co_name
                in_package = where.startswith(_PACKAGE)
                validator = where.endswith(_CONFIG_MODULES) and function.startswith("_")
                if in_package and not validator:
                    reads.add((type(model).__name__, name))
            return original(model, name)

        self._original = original
        Frozen.__getattribute__ = spy
        return reads

    def __exit__(self, *exc) -> None:
        del Frozen.__getattribute__


def _asgi_request(path: str, body: bytes, method: str = "POST", content_type: str = "audio/wav"):
    """A real starlette Request over an in-memory ASGI scope (what Serve's proxy hands the deployment)."""
    from starlette.requests import Request

    scope = {"type": "http", "method": method, "path": path, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        "query_string": b"", "root_path": ""}
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def test_every_config_field_reaches_the_code_that_uses_it(tmp_path, corpus, corpus_rows, speech_llm_dir):
    from ray_ser.branches.speech_llm.engines import vllm_cpu_env, vllm_engine_kwargs
    from ray_ser.config import load_config
    from ray_ser.core.branch import load_predictor
    from ray_ser.io.audio import to_bytes
    from ray_ser.io.storage import filesystem_for
    from ray_ser.pipeline import collect_speaker_statistics, configure_data_context, guard_plan, job_inputs, \
        label_plan, label_progress, output_lease, stage_arguments
    from ray_ser.runtime import init_arguments
    from ray_ser.serve.app import build_app, build_probe_app, deployment_options, http_options, ingress_plan, \
        probe_route
    from ray_ser.serve.audio import decode_clip
    from ray_ser.serve.http import parse_annotate
    from ray_ser.serve.llm_app import llm_config_arguments
    from ray_ser.stages.asr import AsrStage
    from ray_ser.stages.branch import BranchStage
    from ray_ser.stages.decode import DecodeStage
    from ray_ser.stages.sink import write_batch
    from ray_ser.stages.speaker import SpeakerStatisticsStage, add_batches
    from ray_ser.stages.vote import vote_batch
    from ray_ser.core.fusion import fit_fusion
    from ray_ser.labels import EMOTIONS
    from ray_ser.train.fusion import refit_output, split_for_fusion
    from ray_ser.train.loop import adaptation, scaling_arguments, trainable_branches
    from ray_ser.train.run import WorkerContext, run_training

    small = {"epochs": 1, "batch_size": 4, "num_workers": 1}
    branches = {
        # A waveform encoder reads the clip length, normalisation and LoRA settings a Whisper one does not.
        "wave": {"family": "speech_encoder", "train": {
            "base_model": "tiny-random:wavlm", "finetune": "lora", "lora_rank": 2, "max_seconds": 4,
            "normalize_audio": True, **small}},
        "speech": {"family": "speech_encoder", "train": {
            "base_model": "tiny-random:whisper", "finetune": "full", "max_seconds": 6, "max_frequency_hz": 4000,
            "speaker_normalization": True, "normalize_audio": False, "pooling_dim": 16, "dropout": 0.2,
            "augment": {"gain_db": 3, "freq_masks": 1, "freq_mask_bins": 4, "time_masks": 1, "time_mask_frames": 5},
            **small}},
        "prosody": {"family": "prosody", "train": {"speaker_normalization": True, "hidden": 16, "dropout": 0.1,
                                                   **small}},
        "text": {"family": "text_classifier", "weight": 0.5, "train": {
            "base_model": "tiny-random:llama", "finetune": "lora", "lora_rank": 2, "max_length": 16,
            "template": "T: {text}", "loss": "weighted_focal", "focal_gamma": 1.0, **small}},
        "probe": {"family": "encoder_probe", "train": {
            "base_model": "asr", "encoder": {"max_seconds": 10}, "head": "mlp", "hidden": 8, "dropout": 0.1,
            "speaker_normalization": True, **small}},
        "selm": {"family": "speech_llm", "llm": {"engine": "transformers", "dtype": "float32"},
                 "train": {"base_model": str(speech_llm_dir), "finetune": "lora", "transcript_dropout": 0.5,
                           "transcripts": "asr", "projector_lr_scale": 2.0, "warmup_fraction": 0.25, **small},
                 "few_shot": {"manifest": str(corpus), "k": 2, "epochs": 1, "learning_rate": 1e-4}},
    }
    cache = tmp_path / "cache"
    fusion_file = tmp_path / "fusion.json"
    base = ["ray.progress_bars=false", f"cache_dir={cache}", "decode.max_segment_s=2",
            "speakers.pool_known_speakers=true", "vote.priority=[speech, prosody, text, selm, wave, probe]",
            "labels.rules={synthetic: {contempt: drop}}", "fusion.method=weights", f"fusion.checkpoint={fusion_file}",
            "fusion.holdout_speakers=0.5", "speakers.max_groups=4", "speakers.min_separation=0.0",
            "speakers.max_estimated_clips=100",
            "asr.language=null"]
    cfg = load_config("demo", base + [f"branches={json.dumps(branches)}"])

    with _Reads() as reads:
        # Training: each family, one epoch, in this process.
        checkpoints = {}
        for name in trainable_branches(cfg):
            kept = []
            worker = WorkerContext(report=lambda metrics, save, kept=kept: kept.append(save) if save else None)
            run_training(cfg, name, cfg.branch(name).train, str(corpus), worker)
            kept[-1](str(tmp_path / "ckpt" / name))
            checkpoints[name] = str(tmp_path / "ckpt" / name)
            scaling_arguments(cfg.branch(name).train)
        trained = load_config("demo", base + [f"branches={json.dumps(branches)}",
                                              *(f"branches.{n}.checkpoint={p}" for n, p in checkpoints.items())])
        adaptation(trained, "selm")
        split_for_fusion(trained, str(corpus), str(tmp_path / "fusion-split"))
        assert refit_output(trained, str(tmp_path / "fusion-split")) is None  # fusion.refit (off here)
        uniform = [[1.0 / 8] * 8] * 4
        fusion_file.write_text(fit_fusion("weights", {n: uniform for n in branches}, [0, 1, 2, 3],
                                          EMOTIONS).to_json())

        # The labeling job's plan and every stage, on real clips (one longer than a segment: VAD cuts it).
        inputs = job_inputs(trained, str(corpus)).table.slice(0, 4)
        normalised = ("speech", "prosody", "probe")
        with output_lease(trained, str(tmp_path / "out"), "run"):
            pass
        configure_data_context(trained)
        init_arguments(trained.ray)
        decoded = DecodeStage(trained.storage, trained.decode)(inputs)
        # The second clip names no speaker: the speaker pass groups it by voice.
        anonymous = decoded.set_column(decoded.schema.get_field_index("speaker"), "speaker", pa.array(
            [s if i != 1 else None for i, s in enumerate(decoded.column("speaker").to_pylist())], pa.string()))
        speaker_plan = SpeakerStatisticsStage.plan(normalised, trained)
        stage_arguments(speaker_plan)
        profiles = add_batches([speaker_plan.udf(**speaker_plan.kwargs)(anonymous)], trained.speakers)
        assert profiles.clusters  # the anonymous clip(s) got a voice group
        plans = label_plan(trained, str(tmp_path / "out"), "run", speakers=profiles)
        for plan in plans:
            stage_arguments(guard_plan(trained, plan, "ledger"))
        label_progress(trained, inputs.num_rows, plans)  # built, not started: no Ray here
        groups = next(plan for plan in plans if plan.name == "speaker clusters")
        batch = groups.udf(anonymous, **groups.kwargs)  # the voice groups
        batch = AsrStage(trained.asr, str(cache), pooled_states=True)(batch)
        for plan in plans:
            if plan.name.startswith("branch "):
                batch = BranchStage(**plan.kwargs)(batch)
        vote, sink = plans[-2], plans[-1]
        write_batch(vote_batch(batch, **vote.kwargs), **sink.kwargs)
        assert collect_speaker_statistics  # the driver-side pass runs these same stages under Ray

        # Serve: both apps are built from the profile; a request is read under the limits the builder set.
        build_app(trained)
        build_probe_app(trained)
        limits = ingress_plan(trained).limits
        clip = open(corpus_rows[0]["path"], "rb").read()
        parsed = asyncio.run(parse_annotate(_asgi_request("/v1/annotate", clip), limits))
        assert decode_clip(parsed.audio, limits.max_clip_seconds).size > 0
        deployment_options(trained)
        http_options(trained)
        probe_route(trained)
        llm_config_arguments(trained, "selm", checkpoints["selm"])
        vllm_engine_kwargs(trained.branch("selm").llm, "cuda", 2)
        vllm_cpu_env(trained.branch("selm").llm)
        openai = load_config("demo", base + [f"branches={json.dumps(branches)}", f"branches.selm.checkpoint="
                                             f"{checkpoints['selm']}", "branches.selm.llm.engine=openai",
                                             "branches.selm.llm.openai_url=http://127.0.0.1:1/llm",
                                             "branches.selm.llm.served_model=selm"])
        load_predictor(openai.branch("selm"), openai)
        filesystem_for("s3://bucket/key", trained.storage)

    unread = _all_fields() - reads - set(READ_ONLY_WHERE_A_SERVICE_STARTS)
    assert not unread, f"config fields no code reads: {sorted(unread)}"
