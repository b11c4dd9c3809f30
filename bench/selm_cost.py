"""What offline:selm-base (Whisper-base tower + SmolLM2-135M, Qwen2-Audio) costs on this machine.

    PYTHONPATH=. .venv/bin/python bench/selm_cost.py [--clips 12] [--threads 1] [--no-vllm]

Prints: audio and prompt tokens per clip on the real corpora (EmoDB + RAVDESS); per-clip
latency of ~3 s clips with the transformers engine, the short-window single-forward path,
vLLM with audio, and vLLM with precomputed audio embeddings; the cost of one SELM training
step (batch 4, LoRA rank 8 on the LM, projector trained, tower frozen) with the tower run
every step (30 s window, SpeechLLMEmotionModel) and with its tokens cached per clip
(CachedTowerSELM); and what an epoch over the usable clips would take.

Clips are never repeated across timed calls: vLLM caches multimodal inputs by content.

Measured here (2026-11-30, 2 shared cores, torch on 1 thread; vLLM binds one core). Run A:
load average ~7 from other tenants, wall seconds. Run B: load average ~20, CPU seconds (the
cost; its wall seconds were 3-5x these).

| per ~3.2 s clip or per step | A wall | B CPU |
|---|---|---|
| transformers engine, generate, 30 s window, 1 clip per call | 1.27 s | 1.79 s |
| ... of which the tower, 30 s window / clip + 2 s window | 0.81 / 0.11 s | 1.12 / 0.19 s |
| vLLM, audio in (tower on 30 s in vLLM), 1 / 8 clips per call | 1.78 / 2.48 s | 1.71 / 1.63 s |
| vLLM, embeddings in (tower here, clip + 2 s), 1 / 8 per call | 0.56 / 0.44 s | 1.01 / 0.65 s |
| train step, batch 4, LoRA r8 + projector, tower every step | 7.3 s | 10.6 s |
| train step, batch 4, cached tower tokens | 5.6 s (3.8-6.1) | 4.7 s |

Audio tokens per clip on EmoDB + RAVDESS: mean 82, median 88, max 125 (25 per second);
the speech-only prompt adds 61 text tokens (71 with a 6-word transcript).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

import numpy as np
from _common import tree_cpu_seconds  # bench/ is the script's directory

REAL_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-speech"


class Clock:
    """Wall and CPU seconds of the timed calls: on a shared machine the CPU seconds are the cost,
    the wall seconds what the other tenants left of it."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __call__(self, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), tree_cpu_seconds()
        out = fn(*args, **kwargs)
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(tree_cpu_seconds() - cpu)
        return out

    def per(self, n: int = 1, skip: int = 0) -> str:
        wall, cpu = statistics.median(self.wall[skip:]) / n, statistics.median(self.cpu[skip:]) / n
        return f"{wall:.2f} s wall, {cpu:.2f} s CPU"


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def corpus_rows(root: Path) -> list[dict]:
    rows = []
    for corpus in ("emodb", "ravdess"):
        manifest = root / corpus / "manifest.csv"
        for row in csv.DictReader(open(manifest)):
            row["path"] = str(manifest.parent / row["path"])
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REAL_SPEECH))
    parser.add_argument("--clips", type=int, default=12, help="distinct ~3 s clips per latency row")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (vLLM binds its own)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per variant")
    parser.add_argument("--no-vllm", action="store_true")
    args = parser.parse_args()

    import soundfile as sf
    import torch

    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.labels import EMOTIONS, index_of
    from ray_ser.branches.speech_llm.cached_tower import CachedTowerSELM, audio_token_count, tower_audio_tokens
    from ray_ser.branches.speech_llm.assembly import SELM_BASE, resolve_pretrained_speech_llm
    from ray_ser.branches.speech_llm.engines import PromptBuilder, TransformersSpeechLLM
    from ray_ser.branches.speech_llm.model import SpeechLLMEmotionModel
    from ray_ser.branches.speech_llm.settings import SpeechLLMTrain

    torch.set_num_threads(args.threads)
    table: list[tuple[str, str]] = []

    def report(what: str, value: str) -> None:
        table.append((what, value))
        print(f"  {what}: {value}", flush=True)

    # --- the corpus: audio tokens and prompt tokens --------------------------------------------
    rows = corpus_rows(Path(args.data))
    seconds = np.array([sf.info(r["path"]).duration for r in rows])
    tokens = np.array([audio_token_count(int(round(s * 16_000))) for s in seconds])
    usable = [r for r in rows if r["emotion"] in EMOTIONS]
    report("clips (usable: label in the 8 classes)", f"{len(rows)} ({len(usable)})")
    report("clip seconds mean / median / max", f"{seconds.mean():.2f} / {np.median(seconds):.2f} / {seconds.max():.2f}")
    report("audio tokens per clip mean / median / max (25 per s)",
           f"{tokens.mean():.0f} / {np.median(tokens):.0f} / {tokens.max()}")

    path, build_s = _timed(resolve_pretrained_speech_llm, SELM_BASE)
    report("resolve offline:selm-base (build once, then cached)", f"{build_s:.1f} s")
    engine, load_s = _timed(TransformersSpeechLLM.load, path, SpeechLLMConfig(engine="transformers"))
    report("transformers engine load", f"{load_s:.1f} s")
    processor = engine.processor
    tok = processor.tokenizer
    for label, transcript in (("speech-only", None), ("with a 6-word transcript", "Kids are talking by the door")):
        prompt = PromptBuilder(transcript is not None).messages(transcript)
        text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        report(f"prompt text tokens, {label} (besides the audio)", str(len(tok(text)["input_ids"]) - 1))

    # ~3 s clips, each used once
    order = np.argsort(np.abs(seconds - 3.0))
    pool = [rows[i] for i in order[:8 * args.clips]]
    clips = iter([sf.read(r["path"], dtype="float32")[0] for r in pool])
    report("timed clips: seconds", f"{np.mean(seconds[order[:8 * args.clips]]):.2f} mean "
                                   f"({seconds[order[0]]:.2f}-{seconds[order[8 * args.clips - 1]]:.2f})")

    def fresh(n: int) -> list[np.ndarray]:
        return [next(clips) for _ in range(n)]

    # --- inference with transformers --------------------------------------------------------
    speech_only = PromptBuilder(False)
    engine.answer_batch(speech_only, [(fresh(1)[0], None)])  # warm-up
    single = Clock()
    for a in fresh(max(3, args.clips // 3)):
        single(engine.answer_batch, speech_only, [(a, None)])
    report("transformers engine, 1 clip per call (generate, 30 s window), per clip", single.per())
    batched = Clock()
    batched(engine.answer_batch, speech_only, [(a, None) for a in fresh(4)])
    report("transformers engine, 4 clips per call, per clip", batched.per(4))
    tower = engine.model.model.audio_tower
    features = processor.feature_extractor
    full, short = Clock(), Clock()
    for a in fresh(3):
        full(tower_audio_tokens, tower, features, [a], 3000)
    for a in fresh(3):
        short(tower_audio_tokens, tower, features, [a])
    report("  of which the audio tower, 30 s window, per clip", full.per())
    report("  the audio tower on clip + 2 s (same tokens), per clip", short.per())
    del engine

    # --- training steps -------------------------------------------------------------------------
    options = SpeechLLMTrain(base_model=path, finetune="lora", lora_rank=8, transcript_dropout=0.0)
    batch_rows = [r for r in pool if r["emotion"] in EMOTIONS][:4]
    batch = [(sf.read(r["path"], dtype="float32")[0], None) for r in batch_rows]
    labels = [index_of(r["emotion"]) for r in batch_rows]

    def step_time(model) -> Clock:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step():
            loss = -model(**model.prepare(batch, answers=labels)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        clock = Clock()
        for _ in range(args.steps + 1):
            clock(step)
        return clock

    torch.manual_seed(0)
    full_model = SpeechLLMEmotionModel.from_settings(options)
    full_step = step_time(full_model)
    report("train step, batch 4, tower every step (30 s window)", full_step.per(skip=1))
    del full_model
    torch.manual_seed(0)
    cached = CachedTowerSELM.from_settings(options)
    trainable = sum(p.numel() for p in cached.parameters() if p.requires_grad)
    cached_step = step_time(cached)
    report("train step, batch 4, cached tower tokens", cached_step.per(skip=1))
    report("  its first step (filling the cache)", f"{cached_step.wall[0]:.2f} s wall, {cached_step.cpu[0]:.2f} s CPU")
    report("trainable parameters (LoRA r8 on the LM + projector)", f"{trainable / 1e6:.2f} M")
    cache_mb = sum(t.numel() * 4 for t in cached._cache.values()) / len(cached._cache) / 1e6
    report("cache per clip (float32 tower tokens)", f"{cache_mb:.2f} MB")
    del cached

    n = len(usable)
    tower_once = statistics.median(short.cpu) * n
    report(f"epoch over {n} clips, tower every step, one core (CPU time)",
           f"{n / 4 * statistics.median(full_step.cpu[1:]) / 60:.1f} min")
    report(f"epoch over {n} clips, cached, one core (CPU time; + {tower_once / 60:.1f} min once for the cache)",
           f"{n / 4 * statistics.median(cached_step.cpu[1:]) / 60:.1f} min")

    # --- vLLM -------------------------------------------------------------------------------------
    if not args.no_vllm:
        from ray_ser.branches.speech_llm.vllm_embeds import VLLMAudioEmbedsSpeechLLM
        from ray_ser.branches.speech_llm.engines import VLLMSpeechLLM

        settings = SpeechLLMConfig(engine="vllm", dtype="float32", max_num_seqs=8, max_model_len=1024)
        for name, cls in (("vLLM, audio in (30 s window in vLLM)", VLLMSpeechLLM),
                          ("vLLM, audio embeddings in (tower here, clip + 2 s)", VLLMAudioEmbedsSpeechLLM)):
            vllm_engine, start_s = _timed(cls.load, path, settings)
            vllm_engine.answer_batch(speech_only, [(fresh(1)[0], None)])  # first structured request
            single, batched = Clock(), Clock()
            for a in fresh(max(3, args.clips // 3)):
                single(vllm_engine.answer_batch, speech_only, [(a, None)])
            batched(vllm_engine.answer_batch, speech_only, [(a, None) for a in fresh(8)])
            report(f"{name}: start", f"{start_s:.0f} s")
            report(f"{name}: 1 clip per call, per clip", single.per())
            report(f"{name}: 8 clips per call, per clip", batched.per(8))
            vllm_engine.close()

    load = os.getloadavg()[0]
    print(f"\n| measure (torch threads {args.threads}, {os.cpu_count()} CPUs, load average at the end {load:.1f}) "
          f"| value |\n|---|---|")
    for what, value in table:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()
