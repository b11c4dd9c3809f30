"""The production-shaped labeling job on one GPU: audio-hours labelled per GPU-hour.

    bench/gpu_profile.sh                  # installs the GPU profile, then runs this
    PYTHONPATH=. python bench/gpu_profile.py --n 300 --shape full --device cuda
    PYTHONPATH=. python bench/gpu_profile.py --n 12 --shape tiny --device cpu --llm-engine transformers  # CPU check

Builds random-weight models of the production shapes (bench/gpu_models.py: Whisper large-v3 on
CTranslate2, a WavLM-large encoder, Qwen2-Audio-7B under vLLM), then runs the production profile's
plan (``run_label_job``) on a local Ray cluster holding the one GPU, twice: ASR alone (what
WhisperX's figure measures) and the whole ensemble (ASR, the WavLM branch, the prosody network and
the speech-LLM branch with and without the transcript: two vLLM engines). GPU fractions split the
one GPU between the actor pools.

Random weights decode no words: a random Whisper never says end-of-text, so each clip is decoded to
``--asr-tokens-per-second`` tokens per audio second (3, about what Whisper emits on speech) and the
loop guards, which would re-decode every clip, are off. Prints audio-hours per GPU-hour with and
without startup, GPU utilisation and memory (nvidia-smi), next to WhisperX's published 70x real time
(large-v2, ASR alone, batched, one GPU). Writes OUT/gpu_profile.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (SAMPLE_RATE, Clip, ResourceSampler, cleanup_ray_temp, espeak_clips, job_session,  # noqa: E402
                     machine, pools_ready_s, ray_overrides, table, write_json)

WHISPERX_PUBLISHED = ("WhisperX (published): 70x real time = 70 audio-hours per GPU-hour, ASR alone "
                      "(Whisper large-v2, batched, one GPU; github.com/m-bain/whisperX README)")


def clips_for(work: Path, n: int) -> list[Clip]:
    """espeak clips where espeak-ng and sox exist; else noise bursts of speech-like lengths (2-6 s):
    the models are random, so only the lengths matter."""
    import soundfile as sf

    if shutil.which("espeak-ng") and shutil.which("sox"):
        return espeak_clips(work, n, seed=777)
    rng = np.random.default_rng(777)
    out = []
    for i in range(n):
        seconds = rng.uniform(2.0, 6.0)
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)  # a syllable rate's loudness
        audio = (0.1 * envelope * rng.standard_normal(t.size)).astype(np.float32)
        path = work / "noise" / f"noise-{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
        out.append(Clip(f"noise-{i:05d}", audio, "", "en", str(path)))
    return out


def labelled_manifest(clips: list[Clip], path: Path) -> Path:
    """utterance_id, path and an emotion (drawn) per clip: the labeling input, and the prosody branch's
    one-epoch training set."""
    import csv

    from ray_ser.labels import EMOTIONS

    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path", "emotion"])
        for clip in clips:
            writer.writerow([clip.id, clip.path, EMOTIONS[rng.integers(len(EMOTIONS))]])
    return path


def prosody_branch(work: Path, manifest: Path, cache: Path) -> Path:
    """The prosody network (its real size is small), trained one epoch here."""
    from ray_ser.config import load_config
    from ray_ser.train.run import WorkerContext, run_training

    target = work / "models" / "prosody"
    if (target / "branch.json").exists():
        return target
    branches = {"prosody": {"family": "prosody", "train": {"epochs": 1, "batch_size": 32}}}
    cfg = load_config(None, [f"branches={json.dumps(branches)}", f"cache_dir={cache}"])
    kept: list = []
    run_training(cfg, "prosody", cfg.branch("prosody").train, str(manifest),
                 WorkerContext(report=lambda metrics, save: kept.append(save) if save else None))
    kept[-1](str(target))
    return target


def profile_overrides(args, models: dict[str, Path], cache: Path, work: Path) -> tuple[list[str], list[str]]:
    """(ASR-only overrides, whole-ensemble overrides) of the production profile for one GPU."""
    gpu = args.device == "cuda"
    share = (lambda f: f) if gpu else (lambda f: 0)
    llm = {"engine": args.llm_engine, "tensor_parallel_size": 1, "max_model_len": 4096, "max_num_seqs": 128,
           "dtype": "bfloat16" if gpu else "float32", "gpu_memory_utilization": 0.35, "enforce_eager": not gpu}
    device = "cuda" if gpu else "cpu"
    branches = {
        "wavlm": {"family": "speech_encoder", "checkpoint": str(models["wavlm"]), "device": device,
                  "resources": {"num_cpus": 2, "num_gpus": share(0.5), "batch_size": 32, "max_actors": 1}},
        "prosody": {"family": "prosody", "checkpoint": str(models["prosody"]),
                    "resources": {"num_cpus": 1, "batch_size": 256, "min_actors": 1, "max_actors": 2}},
        "selm": {"family": "speech_llm", "checkpoint": str(models["selm"]), "device": device, "llm": llm,
                 "resources": {"num_cpus": 2, "num_gpus": share(1), "batch_size": 64, "max_actors": 1}},
        "selm_audio": {"family": "speech_llm", "checkpoint": str(models["selm"]), "device": device,
                       "llm": {**llm, "use_transcript": False},
                       "resources": {"num_cpus": 2, "num_gpus": share(1), "batch_size": 64, "max_actors": 1}},
    }
    if args.llm_engine != "vllm":
        for name in ("selm", "selm_audio"):
            branches[name]["llm"] = {k: v for k, v in branches[name]["llm"].items()
                                     if k in ("engine", "use_transcript", "dtype")}
    common = [
        "ray.address=null", f"ray.num_cpus={args.num_cpus}", *ray_overrides(work), f"cache_dir={cache}",
        "columns.speaker=speaker", "columns.text=text", "columns.label=emotion", "labels.corpus=null",
        f"decode.resources={{num_cpus: 1, batch_size: 32, min_actors: 2, max_actors: {max(2, args.num_cpus // 4)}}}",
        f"asr.model={models['whisper']}", f"asr.device={device}",
        f"asr.compute_type={'float16' if gpu else 'int8'}", "asr.language=null", "asr.pad_to_30s=false",
        f"asr.max_tokens_per_second={args.asr_tokens_per_second}", "asr.compression_ratio_threshold=null",
        "asr.log_prob_threshold=null", "asr.fallback_repetition_penalty=1.0", "asr.fallback_temperatures=[]",
        f"asr.resources={{num_cpus: 2, num_gpus: {share(0.5)}, batch_size: 32, min_actors: 1, max_actors: 1}}",
        "sink.rows_per_file=50",
    ]
    asr_only = common + ["branches={}", "vote.priority=[]"]
    ensemble = common + [f"branches={json.dumps(branches)}", "vote.priority=[wavlm, selm, selm_audio, prosody]"]
    return asr_only, ensemble


class GpuSampler:
    """nvidia-smi every second: utilisation and memory of GPU 0 (nothing where there is no nvidia-smi)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                line = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,"
                                       "noheader,nounits", "-i", "0"], capture_output=True, text=True,
                                      timeout=5).stdout.strip()
                util, memory = (float(x) for x in line.split(","))
                self.samples.append((util, memory))
            except Exception:
                return
            self._stop.wait(1.0)

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {}
        util = [u for u, _ in self.samples]
        return {"gpu_util_mean": round(float(np.mean(util)) / 100, 3),
                "gpu_memory_peak_mb": max(m for _, m in self.samples)}


LOGICAL_GPUS = 3  # on the one physical GPU: two vLLM engines (1 each), ASR and WavLM (0.5 each)


def run_once(name: str, overrides: list[str], manifest: Path, output: Path, gpu_run: bool) -> dict:
    from ray_ser.config import load_config
    from ray_ser.pipeline import run_label_job

    cfg = load_config("production", overrides)
    shutil.rmtree(output, ignore_errors=True)  # the job resumes into an existing output: start empty
    with ResourceSampler() as sampler, GpuSampler() as gpu:
        started = time.perf_counter()
        with job_session(cfg, **({"num_gpus": LOGICAL_GPUS} if gpu_run else {})):
            summary = run_label_job(cfg, str(manifest), str(output))
            finished = time.perf_counter() - started
            ready = pools_ready_s(cfg, started)
    after_load = summary.audio_seconds / (finished - ready) if ready is not None and finished > ready else None
    return {"run": name, "rows": summary.rows_written, "rows_ok": summary.rows_ok,
            "audio_h": summary.audio_seconds / 3600, "wall_s": round(sampler.wall, 1),
            "pools_ready_s": round(ready, 1) if ready is not None else None,
            # one GPU: audio-hours per GPU-hour is audio seconds per wall second
            "audio_h_per_gpu_h": summary.audio_seconds / sampler.wall,
            "after_load_audio_h_per_gpu_h": after_load, **gpu.summary(), **sampler.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--shape", choices=("full", "tiny"), default="full")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--llm-engine", choices=("vllm", "transformers"), default="vllm")
    parser.add_argument("--num-cpus", type=int, default=None, help="Ray's logical CPUs (default: the cores)")
    parser.add_argument("--asr-tokens-per-second", type=float, default=3.0)
    parser.add_argument("--runs", default="asr_only,ensemble")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()
    import os

    args.num_cpus = args.num_cpus or os.cpu_count() or 2
    if args.device == "cuda":
        # Every actor shares GPU 0; Ray would hide it from the actors holding no GPU share.
        os.environ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"] = "1"

    from gpu_models import qwen2_audio, wavlm_branch, whisper_ct2

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_gpu_"))
    cache = work / "cache"
    started = time.perf_counter()
    clips = clips_for(work, args.n)
    manifest = labelled_manifest(clips, work / "manifest.csv")
    models = {"whisper": whisper_ct2(work / "models" / "whisper", args.shape, args.device, cache),
              "wavlm": wavlm_branch(work / "models" / "wavlm", args.shape, args.device),
              "selm": qwen2_audio(work / "models" / "qwen2-audio", args.shape, args.device),
              "prosody": prosody_branch(work, manifest, cache)}
    built = time.perf_counter() - started
    audio_h = sum(c.seconds for c in clips) / 3600
    print(f"{len(clips)} clips ({audio_h * 60:.1f} audio-minutes); models ({args.shape} shape) built in "
          f"{built:.0f} s under {work / 'models'}")
    asr_only, ensemble = profile_overrides(args, models, cache, work)
    results = []
    try:
        for name, overrides in (("asr_only", asr_only), ("ensemble", ensemble)):
            if name in args.runs.split(","):
                results.append(run_once(name, overrides, manifest, work / f"out-{name}", args.device == "cuda"))
                print(table(results[-1:], ["run", "rows_ok", "wall_s", "audio_h_per_gpu_h",
                                           "after_load_audio_h_per_gpu_h", "gpu_util_mean"]), flush=True)
    finally:
        cleanup_ray_temp()
    print()
    print(table(results, ["run", "rows", "rows_ok", "audio_h", "wall_s", "pools_ready_s", "audio_h_per_gpu_h",
                          "after_load_audio_h_per_gpu_h", "gpu_util_mean", "gpu_memory_peak_mb", "cpu_utilisation"]))
    for r in results:
        after = r["after_load_audio_h_per_gpu_h"]
        print(f"ray_ser {r['run']}: {r['audio_h_per_gpu_h']:.1f} audio-hours per GPU-hour with startup"
              + (f", {after:.1f} after the models loaded" if after else "") + f" ({args.shape} shape, {args.device})")
    print(WHISPERX_PUBLISHED)
    path = write_json(Path(args.out) / "gpu_profile.json", {
        "command": " ".join(sys.argv), "machine": machine(), "gpu": _gpu_name(), "shape": args.shape,
        "device": args.device, "clips": len(clips), "audio_h": audio_h, "models_built_s": built,
        "overrides": {"asr_only": asr_only, "ensemble": ensemble}, "results": results,
        "whisperx_published": WHISPERX_PUBLISHED})
    print(f"wrote {path}")


def _gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                          capture_output=True, text=True).stdout.strip() or None


if __name__ == "__main__":
    main()
