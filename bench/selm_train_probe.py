"""A short SELM training probe on the real corpora: does offline:selm-base start to learn, and how fast?

    PYTHONPATH=. .venv/bin/python bench/selm_train_probe.py [--steps 100] [--eval-every 25]

CachedTowerSELM (tower tokens cached per clip, LoRA rank 8 on the LM, projector trained),
batch 4, speech-only prompts, one torch thread. Validation: clips of held-out speakers (two
RAVDESS actors and one EmoDB speaker), scored by the label distribution at the answer's
first token (what the engines vote with). Prints the loss and validation accuracy / macro-F1
along the way, with wall and CPU time.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

REAL_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-speech"
HELD_OUT = {"ravdess-01", "ravdess-02", "emodb-03"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REAL_SPEECH))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--val", type=int, default=64, help="validation clips (held-out speakers)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--projector-lr", type=float, default=2e-3)
    args = parser.parse_args()

    import soundfile as sf
    import torch
    from sklearn.metrics import f1_score

    from ray_ser.labels import EMOTIONS, index_of
    from ray_ser.branches.speech_llm.cached_tower import CachedTowerSELM
    from ray_ser.branches.speech_llm.assembly import SELM_BASE
    from ray_ser.branches.speech_llm.settings import SpeechLLMTrain

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rows = []
    for corpus in ("emodb", "ravdess"):
        manifest = Path(args.data) / corpus / "manifest.csv"
        rows += [{**r, "path": str(manifest.parent / r["path"])} for r in csv.DictReader(open(manifest))
                 if r["emotion"] in EMOTIONS]
    train = [r for r in rows if r["speaker"] not in HELD_OUT]
    val = [r for r in rows if r["speaker"] in HELD_OUT]
    val = [val[i] for i in rng.choice(len(val), min(args.val, len(val)), replace=False)]
    audio = {}

    def load(row):
        if row["path"] not in audio:
            audio[row["path"]] = sf.read(row["path"], dtype="float32")[0]
        return audio[row["path"]]

    # class-balanced draws from the training speakers
    by_label = {}
    for r in train:
        by_label.setdefault(r["emotion"], []).append(r)
    labels_present = sorted(by_label)

    def draw(n):
        return [by_label[lab][rng.integers(len(by_label[lab]))] for lab in rng.choice(labels_present, n)]

    model = CachedTowerSELM.from_settings(SpeechLLMTrain(base_model=SELM_BASE, finetune="lora", lora_rank=8, transcript_dropout=1.0))
    projector = [p for n, p in model.named_parameters() if p.requires_grad and "multi_modal_projector" in n]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and "multi_modal_projector" not in n]
    optimizer = torch.optim.AdamW([{"params": lora, "lr": args.lr}, {"params": projector, "lr": args.projector_lr}],
                                  weight_decay=0.0)
    print(f"train clips {len(train)} (labels {labels_present}), validation {len(val)} of speakers {sorted(HELD_OUT)}",
          flush=True)

    def evaluate():
        model.eval()
        predicted = []
        with torch.no_grad():
            for start in range(0, len(val), 8):
                chunk = val[start:start + 8]
                logits = model(**model.prepare([(load(r), None) for r in chunk]))
                predicted += logits.argmax(-1).tolist()
        model.train()
        truth = [index_of(r["emotion"]) for r in val]
        accuracy = float(np.mean(np.array(predicted) == np.array(truth)))
        f1 = f1_score(truth, predicted, average="macro", labels=sorted(set(truth)))
        spread = np.bincount(predicted, minlength=len(EMOTIONS))
        return accuracy, f1, spread

    wall, cpu = time.perf_counter(), time.process_time()
    accuracy, f1, spread = evaluate()
    print(f"| step | train loss (mean of last {args.eval_every}) | val accuracy | val macro-F1 | predicted label counts "
          f"| wall min | CPU min |\n|---|---|---|---|---|---|---|", flush=True)
    print(f"| 0 | - | {accuracy:.3f} | {f1:.3f} | {spread.tolist()} | {(time.perf_counter() - wall) / 60:.1f} | "
          f"{(time.process_time() - cpu) / 60:.1f} |", flush=True)
    model.train()
    losses = []
    for step in range(1, args.steps + 1):
        batch = draw(4)
        loss = -model(**model.prepare([(load(r), None) for r in batch],
                                      answers=[index_of(r["emotion"]) for r in batch])).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            accuracy, f1, spread = evaluate()
            print(f"| {step} | {np.mean(losses[-args.eval_every:]):.3f} | {accuracy:.3f} | {f1:.3f} | "
                  f"{spread.tolist()} | {(time.perf_counter() - wall) / 60:.1f} | "
                  f"{(time.process_time() - cpu) / 60:.1f} |", flush=True)
    print(f"chance: accuracy {1 / len(set(r['emotion'] for r in val)):.3f}; cached clips {model.cached_clips}")


if __name__ == "__main__":
    main()
