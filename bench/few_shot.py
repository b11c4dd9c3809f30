"""Does few-shot help the speech-LLM branch on a new domain? In-context examples vs a quick LoRA run.

    .venv/bin/python bench/few_shot.py [--n-train 480] [--n-new 200] [--k 4] [--epochs 10]

The "new domain" is the synthetic corpus's held-out split: speakers (and sentences) the
base model never heard. The script
  1. trains the speech_llm branch of the tiny Qwen2-Audio with Ray Train (2 workers) on
     the training speakers;
  2. draws k labelled clips of the new speakers (the branch's few_shot section);
  3. scores the remaining new-domain clips three ways: zero-shot, the k clips as
     in-context examples in every prompt, and after `ray-ser adapt` (LoRA on the k clips).
Scoring uses the transformers engine, which the vllm tests show gives vLLM's labels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=320)
    parser.add_argument("--n-new", type=int, default=120)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the base training")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    import numpy as np

    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.config import LabelConfig, load_config
    from ray_ser.evaluate import emotion_metrics
    from ray_ser.branches.speech_llm.shots import read_shot_rows
    from ray_ser.labels import EMOTIONS, NUM_CLASSES
    from ray_ser.branches.speech_llm.engines import PromptBuilder, Shot, SpeechLLMPredictor
    from ray_ser.runtime import ray_session
    from ray_ser.demo.synth import synthesize_corpus
    from ray_ser.io.labelled import load_audio, read_labelled_manifest
    from ray_ser.train.loop import adapt_branch, fit_branch

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_fewshot_"))
    train_manifest = synthesize_corpus(work / "train", n=args.n_train, seed=args.seed, split="train")
    new_manifest = synthesize_corpus(work / "new", n=args.n_new, seed=args.seed + 1, split="heldout")
    base = load_config("demo", ["ray.progress_bars=false", "branches={}"])
    branch = {"family": "speech_llm", "llm": {"engine": "transformers"},
              "train": {"base_model": "tiny-random:qwen2-audio", "finetune": "full", "loss": "weighted_ce",
                        "epochs": args.epochs, "batch_size": 8, "learning_rate": args.lr, "weight_decay": 0.05},
              "few_shot": {"manifest": str(new_manifest), "k": args.k, "seed": args.seed, "epochs": 6,
                           "learning_rate": 5e-4}}
    cfg = LabelConfig.model_validate({**base.model_dump(), "branches": {"selm": branch}, "vote": {}})

    started = time.perf_counter()
    with ray_session(cfg.ray):
        trained = fit_branch(cfg, "selm", str(train_manifest), str(work / "runs"))
    print(f"base training: {args.n_train} clips, {args.epochs} epochs, {time.perf_counter() - started:.0f} s; "
          f"best validation macro-F1 {trained.best['val_macro_f1']:.3f} (training speakers)")
    tree = cfg.model_dump()
    tree["branches"]["selm"]["checkpoint"] = trained.checkpoint
    cfg = LabelConfig.model_validate(tree)

    shot_rows = read_shot_rows(cfg.branch("selm").few_shot, cfg.storage, cfg.columns, cfg.labels)
    shot_ids = {r.utterance_id for r in shot_rows}
    test_rows = [r for r in read_labelled_manifest(str(new_manifest), cfg.storage, cfg.columns, cfg.labels)
                 if r.utterance_id not in shot_ids]
    items = [(audio, row.text) for audio, row in zip(load_audio(test_rows, cfg.storage), test_rows)]
    truth = [r.label for r in test_rows]
    shots = [Shot(a, r.text, EMOTIONS[r.label]) for a, r in zip(load_audio(shot_rows, cfg.storage), shot_rows)]

    def score(predictor, prompts=None) -> dict:
        if prompts is not None:
            predictor.prompts = prompts
        preds = [int(p.argmax()) for i in range(0, len(items), 16) for p in predictor.predict_batch(items[i:i + 16])]
        return emotion_metrics(truth, preds, NUM_CLASSES)

    settings = SpeechLLMConfig(engine="transformers")
    zero = SpeechLLMPredictor.load(trained.checkpoint, settings)
    results = {"zero-shot": score(zero), f"in-context k={args.k}": score(zero, PromptBuilder(True, shots))}
    started = time.perf_counter()
    adapted = adapt_branch(cfg, "selm", str(work / "adapted"))
    adapt_s = time.perf_counter() - started
    results[f"LoRA adapt k={args.k} ({adapt_s:.0f} s)"] = score(SpeechLLMPredictor.load(adapted.checkpoint, settings))
    print(f"new domain: {len(test_rows)} test clips of unseen speakers; {args.k} shots drawn from the same speakers")
    for name, m in results.items():
        print(f"  {name:28s} macro-F1 {m['macro_f1']:.3f}  UAR {m['uar']:.3f}  acc {m['accuracy']:.3f}")


if __name__ == "__main__":
    main()
