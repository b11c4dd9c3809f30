import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from ray_ser.config import load_config
from ray_ser.io.audio import to_bytes
from ray_ser.stages.asr import AsrStage
from ray_ser.stages.base import StageContractError


class _FailsOnSilence:
    """A real model wrapper whose batch call fails when any clip is all zeros."""

    def __init__(self, inner):
        self.inner = inner

    def predict_batch(self, audios, languages=None):
        if any(not np.any(a) for a in audios):
            raise RuntimeError("model rejected a silent clip")
        return self.inner.predict_batch(audios, languages)


def _batch(audios, statuses):
    return pa.table({
        "utterance_id": [f"u{i}" for i in range(len(audios))],
        "audio": pa.array([to_bytes(a) if a is not None else None for a in audios], pa.large_binary()),
        "status": statuses, "error": pa.array([None if s == "ok" else "decode: x" for s in statuses], pa.string()),
        "error_kind": pa.array([None if s == "ok" else "permanent" for s in statuses], pa.string()),
    })


@pytest.fixture(scope="module")
def stage(cache_dir):
    return AsrStage(load_config("demo").asr, str(cache_dir))


def test_transcribes_ok_rows_and_passes_errors_through(stage, corpus_rows):
    clip = sf.read(corpus_rows[0]["path"], dtype="float32")[0]
    out = stage(_batch([clip, None], ["ok", "error"])).to_pylist()
    assert out[0]["transcript"] and out[0]["language"] == "en" and out[0]["status"] == "ok"
    assert out[1]["transcript"] is None and out[1]["error"] == "decode: x"


def test_a_failing_clip_costs_only_itself(stage, corpus_rows):
    clip = sf.read(corpus_rows[1]["path"], dtype="float32")[0]
    stage.model = _FailsOnSilence(stage.model)
    try:
        out = stage(_batch([clip, np.zeros(8000, np.float32)], ["ok", "ok"])).to_pylist()
    finally:
        stage.model = stage.model.inner
    assert out[0]["status"] == "ok" and out[0]["transcript"]
    assert out[1]["status"] == "error" and out[1]["error"] == "asr: RuntimeError: model rejected a silent clip"
    assert out[1]["error_kind"] == "permanent" and out[0]["error_kind"] is None


def test_contract(stage):
    with pytest.raises(StageContractError, match="stage 'asr'"):
        stage(pa.table({"utterance_id": ["a"]}))
