"""Labeling throughput in audio-seconds per second, and what cross-utterance batching buys.

    .venv/bin/python bench/label_throughput.py [--n 96] [--config demo]

Prints: (1) the ASR model alone, one clip per call vs batched across clips;
(2) the whole labeling job (decode -> ASR -> Parquet) on a local Ray cluster.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    import soundfile as sf

    from ray_ser.config import load_config
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2
    from ray_ser.pipeline import run_label_job
    from ray_ser.demo.synth import synthesize_corpus

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_bench_"))
    manifest = synthesize_corpus(work / "corpus", n=args.n, seed=123)
    cfg = load_config(args.config, ["ray.progress_bars=false", "branches={}"])  # ASR throughput only
    audios = [sf.read(p, dtype="float32")[0] for p in sorted((work / "corpus" / "wav").glob("*.wav"))]
    total = sum(a.size for a in audios) / 16000
    print(f"corpus: {len(audios)} clips, {total:.1f} audio-s, mean {total / len(audios):.2f} s")

    model = WhisperCT2.load(cfg.asr, cfg.resolved_cache_dir())
    model.predict_batch(audios[:1])  # warm-up
    subset = audios[:32]
    sub_s = sum(a.size for a in subset) / 16000
    t0 = time.perf_counter()
    for audio in subset:
        model.predict_batch([audio])
    per_file = sub_s / (time.perf_counter() - t0)
    bs = cfg.asr.resources.batch_size
    t0 = time.perf_counter()
    for i in range(0, len(subset), bs):
        model.predict_batch(subset[i:i + bs])
    batched = sub_s / (time.perf_counter() - t0)
    print(f"asr alone, {len(subset)} clips, {cfg.asr.cpu_threads} threads: per-file {per_file:.2f} audio-s/s, "
          f"batched x{bs} {batched:.2f} audio-s/s ({batched / per_file:.2f}x)")
    del model

    summary = run_label_job(cfg, str(manifest), str(work / "out"))
    print(f"label job ({args.config}): {summary.rows_written} rows, {summary.audio_seconds:.1f} audio-s in "
          f"{summary.wall_seconds:.1f} s wall (incl. Ray start) = {summary.audio_seconds_per_second:.2f} audio-s/s")


if __name__ == "__main__":
    main()
