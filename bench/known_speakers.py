"""Training speakers' profiles from few clips or from their training clips too (speakers.pool_known_speakers).

    .venv/bin/python bench/known_speakers.py --seed 108 --seed 208 --seed 308 \
        --manifest DEMO_WORKDIR/corpus/seen/manifest.csv --set branches.speech.checkpoint=... [--set ...]

The --set lines are the ones `ray-ser demo` prints. For each test corpus of the training
speakers (the given manifests, and one synthesized per --seed), each speaker-normalised branch
labels the clips with speaker profiles from the corpus alone ("corpus") and pooled with the
checkpoint's training speakers ("pooled"); it prints macro-F1 per branch. No Ray: the
predictors are called directly, as the labeling job's branch stage calls them.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="demo")
    parser.add_argument("--seed", type=int, action="append", default=[], help="synthesize a test corpus (repeatable)")
    parser.add_argument("--manifest", action="append", default=[], help="an existing test manifest (repeatable)")
    parser.add_argument("--n", type=int, default=160, help="clips per synthesized corpus")
    parser.add_argument("--set", action="append", default=[], help="section.field=value, as for ray-ser label")
    args = parser.parse_args()

    import soundfile as sf

    from ray_ser.config import load_config
    from ray_ser.evaluate import emotion_metrics
    from ray_ser.labels import NUM_CLASSES, index_of
    from ray_ser.models.features.speaker_norm import add_statistics
    from ray_ser.core.branch import load_predictor, uses_speaker_statistics
    from ray_ser.demo.synth import synthesize_corpus

    cfg = load_config(args.config, args.set)
    branches = {n: b for n, b in cfg.branches.items() if b.checkpoint and uses_speaker_statistics(b, cfg.storage)}
    if not branches:
        parser.error("no speaker-normalised branch has a checkpoint: pass the demo's --set lines")
    work = Path(tempfile.mkdtemp(prefix="ray_ser_known_"))
    corpora = {Path(m).parent.name: Path(m) for m in args.manifest}
    for seed in args.seed:
        corpora[f"seed {seed}"] = synthesize_corpus(work / str(seed), n=args.n, seed=seed, split="train")
    predictors = {n: load_predictor(b, cfg) for n, b in branches.items()}

    print(f"{'corpus':16} {'branch':10} {'corpus':>8} {'pooled':>8}  (macro-F1, speaker profiles from ...)")
    for corpus, manifest in corpora.items():
        rows = list(csv.DictReader(open(manifest)))
        audios = [sf.read(r["path"], dtype="float32")[0] for r in rows]
        speakers = [r["speaker"] for r in rows]
        truth = [index_of(r["emotion"]) for r in rows]
        for name, predictor in predictors.items():
            sums = [s for i in range(0, len(audios), 32) for s in predictor.feature_sums(audios[i:i + 32])]
            alone = add_statistics(zip(speakers, sums))
            scores = []
            for statistics in (alone, predictor.with_known_speakers(alone)):
                probs = [p for i in range(0, len(audios), 32) for p in predictor.predict_batch(
                    audios[i:i + 32], [statistics[s] for s in speakers[i:i + 32]])]
                scores.append(emotion_metrics(truth, [int(p.argmax()) for p in probs], NUM_CLASSES)["macro_f1"])
            unknown = len({s for s in speakers} - set(predictor.model.known_speakers))
            note = f"  ({unknown} speakers unknown to the checkpoint)" if unknown else ""
            print(f"{corpus:16} {name:10} {scores[0]:8.3f} {scores[1]:8.3f}{note}", flush=True)


if __name__ == "__main__":
    main()
