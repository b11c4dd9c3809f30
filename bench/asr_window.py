"""What padding Whisper's input to each clip's length + 2 s (asr.pad_to_30s=false) costs and buys.

    .venv/bin/python bench/asr_window.py [--n 160] [--config demo]

On a synthetic corpus of unseen speakers and sentences, prints for each window the ASR
model's time per clip and its word error rate against the sentences the clips speak.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    import soundfile as sf

    from ray_ser.config import load_config
    from ray_ser.evaluate import word_errors
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2
    from ray_ser.demo.synth import synthesize_corpus

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_bench_"))
    manifest = synthesize_corpus(work / "corpus", n=args.n, seed=321, split="heldout")
    rows = list(csv.DictReader(open(manifest)))
    audios = [sf.read(r["path"], dtype="float32")[0] for r in rows]
    seconds = sum(a.size for a in audios) / 16000
    profile = load_config(args.config)
    cfg, cache_dir = profile.asr, profile.resolved_cache_dir()
    batch = cfg.resources.batch_size
    print(f"corpus: {len(audios)} clips, mean {seconds / len(audios):.2f} s; batches of {batch}, "
          f"{cfg.cpu_threads} threads, {cfg.compute_type}")
    for pad_to_30s in (True, False):
        model = WhisperCT2.load(cfg.model_copy(update={"pad_to_30s": pad_to_30s}), cache_dir)
        model.predict_batch(audios[:1])  # warm-up
        started = time.perf_counter()
        texts = [t.text for i in range(0, len(audios), batch) for t in model.predict_batch(audios[i:i + batch])]
        elapsed = time.perf_counter() - started
        errors = [word_errors(r["text"], text) for r, text in zip(rows, texts)]
        wer = sum(e for e, _ in errors) / sum(n for _, n in errors)
        window = "30 s window" if pad_to_30s else "clip + 2 s"
        print(f"pad_to_30s={str(pad_to_30s).lower():5s} ({window}): {elapsed / len(audios):.3f} s/clip, "
              f"{seconds / elapsed:.1f} audio-s/s, WER {wer:.3f}")


if __name__ == "__main__":
    main()
