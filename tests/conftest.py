"""Shared fixtures: a real espeak corpus, a real moto S3 server, a real local Ray cluster."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def profile_with(branches: dict[str, dict], cache_dir=None, **sections):
    """A LabelConfig holding these branches (name -> settings mapping), the defaults elsewhere."""
    from ray_ser.config import LabelConfig

    return LabelConfig.model_validate({"branches": branches, "cache_dir": str(cache_dir) if cache_dir else None,
                                       **sections})


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Where the real Whisper base is assembled once per session."""
    return tmp_path_factory.mktemp("ray_ser_cache")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A small synthetic acted corpus (real espeak-ng + sox audio); returns its manifest."""
    from ray_ser.demo.synth import synthesize_corpus

    return synthesize_corpus(tmp_path_factory.mktemp("corpus"), n=12, seed=3)


@pytest.fixture(scope="session")
def corpus_rows(corpus) -> list[dict]:
    return list(csv.DictReader(open(corpus)))


def render_speech(text: str, path: Path, voice: str = "en-us+m1", rate: int = 16_000, fmt_args=()) -> Path:
    """espeak-ng speech converted by sox to any container sox can write (by path suffix)."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", *fmt_args, str(path)], check=True, capture_output=True)
    raw.unlink()
    return path


def long_recording(tmp_path, seconds_target: float) -> np.ndarray:
    """Real espeak sentences separated by 1.2 s of silence, up to the target length."""
    pieces, total, i = [], 0, 0
    gap = np.zeros(int(1.2 * 16000), dtype=np.float32)
    while total < seconds_target * 16000:
        clip = sf.read(render_speech(f"This is sentence number {i} of a long recording.",
                                     tmp_path / f"p{i}.wav"), dtype="float32")[0]
        pieces += [clip, gap]
        total += clip.size + gap.size
        i += 1
    return np.concatenate(pieces)


def traced_peak_in_fresh_process(setup: str, call: str, timeout: float = 300) -> tuple[int, str]:
    """Peak bytes Python allocates while `call` (an expression) runs, after `setup` (statements, where
    one-time costs such as lazy imports belong), in a new interpreter with the repository importable;
    returns (peak, repr of the result or of the exception raised).

    A fresh process because a long test process is a noisy place to trace: tracemalloc counts every
    thread's allocations (Ray's client threads, the servers tests start), and earlier tests leave state
    behind. In the full suite a 1 MB bound that holds alone once saw 8.8 MB.
    """
    import json
    import sys

    script = "\n".join([
        "import json, tracemalloc", setup,
        "tracemalloc.start()",
        "try:",
        f"    outcome = repr({call})",
        "except Exception as exc:",
        "    outcome = repr(exc)",
        "peak = tracemalloc.get_traced_memory()[1]",
        "print(json.dumps([peak, outcome]))"])
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-3000:]
    peak, outcome = json.loads(done.stdout.strip().splitlines()[-1])
    return peak, outcome


REAL_SPEECH = Path(os.environ.get("RAY_SER_REAL_SPEECH",
                                  Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "real-speech"))


def real_speech_rows(corpus: str, speakers: int | None = None, per_speaker: int | None = None,
                     skip: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a real corpus's manifest (absolute paths), the first `speakers` speakers and up to
    `per_speaker` clips each, balanced over emotions; skips the test when the corpora are absent."""
    manifest = REAL_SPEECH / corpus / "manifest.csv"
    if not manifest.exists():
        pytest.skip(f"the real-speech corpora are not at {REAL_SPEECH} (set RAY_SER_REAL_SPEECH)")
    rows = [dict(r, path=str(manifest.parent / r["path"])) for r in csv.DictReader(open(manifest))
            if r["emotion"] not in skip]
    names = sorted({r["speaker"] for r in rows})[:speakers]
    out = []
    for name in names:
        mine = [r for r in rows if r["speaker"] == name]
        by_emotion: dict[str, list] = {}
        for r in mine:
            by_emotion.setdefault(r["emotion"], []).append(r)
        ordered = [r for i in range(max(map(len, by_emotion.values()))) for group in by_emotion.values()
                   if i < len(group) for r in [group[i]]]
        out += ordered[:per_speaker]
    return out


def write_manifest(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real moto S3 server over HTTP on 127.0.0.1 for the whole session."""
    from ray_ser.testing.s3 import embedded_s3

    with embedded_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory, s3_endpoint):
    """One local Ray cluster per session; started after the S3 credentials are in the env."""
    import ray

    temp = Path("/tmp") / f"rs{os.getpid()}"  # Ray's socket paths must stay short
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=str(temp), log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_config(cache_dir, s3_endpoint):
    from ray_ser.config import load_config

    """The demo profile as an ASR-only run (its branches need trained checkpoints)."""
    return load_config("demo", ["ray.progress_bars=false", f"cache_dir={cache_dir}",
                                f"storage.s3_endpoint_url={s3_endpoint}", "branches={}"])


@pytest.fixture(scope="session")
def whisper_model(cache_dir):
    from ray_ser.config import AsrConfig
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2

    return WhisperCT2.load(AsrConfig(cpu_threads=2), cache_dir)


@pytest.fixture(scope="session")
def branch_checkpoints(tmp_path_factory) -> dict[str, str]:
    """Untrained but real branch checkpoints (tiny random Whisper encoder, tiny random Llama),
    saved and later loaded through the production code path."""
    from ray_ser.branches.speech_encoder.model import SpeechEmotionModel
    from ray_ser.branches.speech_encoder.settings import SpeechEncoderTrain
    from ray_ser.branches.text_classifier.model import TextEmotionModel
    from ray_ser.branches.text_classifier.settings import TextClassifierTrain
    from ray_ser.testing.tiny_models import tiny_decoder_checkpoint, tiny_encoder_checkpoint

    root = tmp_path_factory.mktemp("branches")
    encoder = tiny_encoder_checkpoint("whisper", root / "whisper-base")
    SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder), finetune="frozen")).save(root / "speech")
    decoder = tiny_decoder_checkpoint(root / "llama-base")
    TextEmotionModel.from_settings(TextClassifierTrain(base_model=str(decoder), template="Classify the emotion of the speaker. Transcript: {text}\nEmotion:")).save(root / "text")
    return {"speech": str(root / "speech"), "text": str(root / "text")}


@pytest.fixture(scope="session")
def speech_llm_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2-Audio with SmolLM2's real tokenizer, in the hub layout vLLM loads."""
    from ray_ser.testing.tiny_models import tiny_speech_llm_checkpoint

    return tiny_speech_llm_checkpoint(tmp_path_factory.mktemp("qwen2-audio") / "model")


@pytest.fixture(scope="session")
def corpus_clips(corpus_rows) -> list[tuple[np.ndarray, str]]:
    """(16 kHz waveform, transcript) pairs of the espeak corpus: speech-LLM inputs."""
    return [(sf.read(r["path"], dtype="float32")[0], r["text"]) for r in corpus_rows]


@pytest.fixture(scope="session")
def branch_config(demo_config, branch_checkpoints):
    """The demo profile with two branches (speech, text) on the tiny checkpoints."""
    from ray_ser.config import LabelConfig

    tree = demo_config.model_dump()
    tree["branches"] = {
        "speech": {"family": "speech_encoder", "checkpoint": branch_checkpoints["speech"],
                   "resources": {"num_cpus": 0.5, "batch_size": 8}},
        "text": {"family": "text_classifier", "checkpoint": branch_checkpoints["text"], "weight": 0.5,
                 "resources": {"num_cpus": 0.5, "batch_size": 8}},
    }
    tree["vote"] = {"priority": ["speech", "text"]}
    return LabelConfig.model_validate(tree)


@pytest.fixture(scope="session")
def whisper_dir(cache_dir) -> Path:
    from ray_ser.models.weights import whisper_base_dir

    return whisper_base_dir(cache_dir)


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory) -> list[np.ndarray]:
    """Real speech at 16 kHz: two espeak-ng sentences, and two acted RAVDESS clips where the
    shared corpus is present."""
    root = tmp_path_factory.mktemp("selm-speech")
    clips = [sf.read(render_speech(text, root / f"s{i}.wav", voice), dtype="float32")[0]
             for i, (text, voice) in enumerate([("I can't believe you did that to me.", "en-us+f3"),
                                                ("The meeting moved to Thursday afternoon.", "en-us+m1")])]
    for name in ("03-01-05-01-01-01-01.flac", "03-01-03-02-02-01-02.flac"):
        path = REAL_SPEECH / "ravdess" / "audio" / name
        if path.exists():
            clips.append(sf.read(path, dtype="float32")[0])
    return clips
