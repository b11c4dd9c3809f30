"""How closely offline:selm-base's parts reproduce their sources: the figures behind the tests' tolerances.

    PYTHONPATH=. .venv/bin/python bench/selm_equality.py [--clips 6] [--no-vllm]

Prints, over real clips (RAVDESS + EmoDB, 3-5 s): torch Whisper encoder vs CTranslate2
(float32) on the 30 s and the clip + 2 s window; the assembled model's audio tower (frame
states before the pool) vs CTranslate2; the Qwen2 LM vs SmolLM2's Llama on text tokens; the
short-window tower tokens vs the 30 s Qwen2-Audio path; the cached-tower training path vs the
full model; and vLLM's label distributions (audio in, embeddings in) vs transformers.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

REAL_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-speech"


def corpus_rows(root: Path) -> list[dict]:
    rows = []
    for corpus in ("emodb", "ravdess"):
        manifest = root / corpus / "manifest.csv"
        rows += [{**row, "path": str(manifest.parent / row["path"])} for row in csv.DictReader(open(manifest))]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REAL_SPEECH))
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--no-vllm", action="store_true")
    args = parser.parse_args()

    import ctranslate2
    import soundfile as sf
    import torch
    from faster_whisper.feature_extractor import FeatureExtractor
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.config import default_cache_dir
    from ray_ser.branches.speech_llm.cached_tower import CachedTowerSELM, tower_audio_tokens
    from ray_ser.models.pretrained.ct2_whisper import clip_window_frames, load_whisper_encoder, tower_frame_states
    from ray_ser.branches.speech_llm.assembly import SELM_BASE, resolve_pretrained_speech_llm, smollm2_causal_lm
    from ray_ser.branches.speech_llm.engines import PromptBuilder, TransformersSpeechLLM
    from ray_ser.branches.speech_llm.model import SpeechLLMEmotionModel
    from ray_ser.branches.speech_llm.settings import SpeechLLMTrain
    from ray_ser.models.weights import whisper_base_dir

    torch.set_num_threads(1)
    rows = corpus_rows(Path(args.data))
    rng = np.random.default_rng(0)
    picked = [rows[i] for i in rng.choice(len(rows), args.clips, replace=False)]
    clips = [sf.read(r["path"], dtype="float32")[0] for r in picked]
    whisper = str(whisper_base_dir(default_cache_dir()))
    ct2 = ctranslate2.models.Whisper(whisper, compute_type="float32", intra_threads=1)
    features = FeatureExtractor(feature_size=80)
    lines = []

    def report(what, diffs, scale=None):
        diffs = np.asarray(diffs, dtype=np.float64)
        extra = f" (largest |value| {scale:.1f})" if scale is not None else ""
        lines.append(f"| {what} | {diffs.max():.2e} | {diffs.mean():.2e} |{extra}")
        print(lines[-1], flush=True)

    # Whisper encoder: torch vs CTranslate2
    path = resolve_pretrained_speech_llm(SELM_BASE)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(path)
    for window in ("30s", "short"):
        maxes, means, tower_maxes, scale = [], [], [], 0.0
        for audio in clips:
            mel = features(audio, padding=0)
            frames = 3000 if window == "30s" else clip_window_frames(mel.shape[-1])
            x = np.ascontiguousarray(np.pad(mel, ((0, 0), (0, max(0, frames - mel.shape[-1]))))[None, :, :frames],
                                     dtype=np.float32)
            ref = np.array(ct2.encode(ctranslate2.StorageView.from_array(x)).to_device(ctranslate2.Device.cpu))
            with torch.no_grad():
                got = load_whisper_encoder(whisper, frames)(torch.from_numpy(x)).last_hidden_state.numpy()
            maxes.append(np.abs(got - ref).max())
            means.append(np.abs(got - ref).mean())
            scale = max(scale, np.abs(ref).max())
            if window == "30s":
                tower = tower_frame_states(model.model.audio_tower, torch.from_numpy(x)).numpy()
                tower_maxes.append(np.abs(tower - ref).max())
        report(f"torch WhisperEncoder vs CTranslate2 float32, {window} window", maxes, scale)
        lines.append(f"|   mean abs diff over all states, {window} window | {np.mean(means):.2e} | |")
        if tower_maxes:
            report("selm-base audio tower frame states (before pool) vs CTranslate2, 30 s", tower_maxes)

    # LM: Qwen2 vs SmolLM2's Llama
    llama, tokenizer = smollm2_causal_lm()
    texts = ["I can't believe you did that to me!", "The meeting moved to Thursday afternoon, sadly."]
    diffs = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            a = llama(ids).logits
            b = model(input_ids=ids).logits[..., :a.shape[-1]]
        diffs.append((a - b).abs().max().item())
    report("selm-base LM logits vs SmolLM2 (GGUF, Llama)", diffs)
    del llama

    # short window tower tokens vs the 30 s window; cached path vs full model
    tower, fe = model.model.audio_tower, processor.feature_extractor
    short = tower_audio_tokens(tower, fe, clips)
    full = tower_audio_tokens(tower, fe, clips, window_frames=3000)
    report("audio tokens, clip + 2 s window vs 30 s window", [(s - f).abs().max().item() for s, f in zip(short, full)])
    cached = CachedTowerSELM(model, processor, SpeechLLMTrain(base_model=path, finetune="lora", lora_rank=8, transcript_dropout=0.0)).eval()
    items = [(a, None) for a in clips[:4]]
    with torch.no_grad():
        a = cached(**cached.prepare(items))
        b = SpeechLLMEmotionModel.forward(cached, **SpeechLLMEmotionModel.prepare(cached, items))
    report("label log-probs, cached-tower path vs full Qwen2-Audio forward", [(a - b).abs().max().item()])
    del cached, model

    if not args.no_vllm:
        from ray_ser.branches.speech_llm.vllm_embeds import VLLMAudioEmbedsSpeechLLM
        from ray_ser.branches.speech_llm.engines import VLLMSpeechLLM

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        hf = TransformersSpeechLLM.load(path, SpeechLLMConfig(engine="transformers"))
        items = [(a, None) for a in clips]
        _, expected = hf.answer_batch(PromptBuilder(False), items)
        settings = SpeechLLMConfig(engine="vllm", dtype="float32", max_num_seqs=8, max_model_len=1024)
        for name, cls in (("audio in", VLLMSpeechLLM), ("embeddings in", VLLMAudioEmbedsSpeechLLM)):
            engine = cls.load(path, settings)
            texts, probs = engine.answer_batch(PromptBuilder(False), items)
            engine.close()
            report(f"label distribution, vLLM ({name}) vs transformers", [np.abs(probs - expected).max()])

    print("\n| compared (per clip: max abs diff) | max over clips | mean over clips |\n|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
