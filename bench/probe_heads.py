"""The whisper probe's head, variant against variant, on speaker folds of the real corpora.

    .venv/bin/python bench/probe_heads.py [--config real-speech] [--branch whisper] [--corpora emodb,ravdess]
        [--variant NAME:key=value,key=value ...] [--cross]

Each variant is the profile's branch with some `train` settings changed (`--variant
sum:pooling=mean_std,layer_mix=softmax`; the profile as it is runs as `profile`). For each
corpus, its speakers are split into folds as bench/real_speech.py splits them (a speaker is never
in both training and test); each fold's head is trained by `ray-ser train`'s own training code,
in this process (ray_ser/train/run.py with one worker: no Ray, the same steps), and its
checkpoint is loaded by the predictor the job and Serve load. The test clips are scored twice:
normalised by their own speaker's statistics, and by one profile of all of the fold's clips (what
the job does when speaker ids are withheld and the voices fall in one group). With --cross, each
corpus trains on the other whole corpus too.

The frozen encoder runs once per clip for the whole bench (the family's feature cache); the
heads then train in seconds, so this is the bench to compare heads on, and bench/real_speech.py the
one that measures the whole profile (fusion, job, voice groups). Prints macro-F1 per variant,
corpus and normalisation, and the time each part took.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import REAL_SPEECH  # noqa: E402


def _variant(text: str) -> tuple[str, dict[str, object]]:
    """'name:key=value,key=value' -> (name, {key: parsed value})."""
    import yaml

    name, _, settings = text.partition(":")
    pairs = [item.split("=", 1) for item in settings.split(",") if item]
    return name, {key: yaml.safe_load(value) for key, value in pairs}


def _rows(corpus: str) -> list[dict]:
    manifest = REAL_SPEECH / corpus / "manifest.csv"
    return [dict(r, path=str(manifest.parent / r["path"])) for r in csv.DictReader(open(manifest))]


def _folds(rows: list[dict], k: int) -> list[set[str]]:
    speakers = sorted({r["speaker"] for r in rows})  # as bench/real_speech.py folds them
    return [set(speakers[i::k]) for i in range(k)]


def _write(rows: list[dict], path: Path) -> str:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def train_and_score(cfg, branch: str, train, train_rows: list[dict], test_rows: list[dict], work: Path) -> dict:
    """Train one head on train_rows with the product's code; predict test_rows both ways."""
    import numpy as np
    import soundfile as sf

    from ray_ser.branches.encoder_probe.model import EncoderProbePredictor
    from ray_ser.models.features.speaker_norm import add_statistics
    from ray_ser.train.run import WorkerContext, run_training

    work.mkdir(parents=True, exist_ok=True)
    kept = work / "checkpoint"

    def report(metrics, save):
        if save is not None:
            save(str(kept))  # the best validation epoch, as Ray Train keeps it

    run_training(cfg, branch, train, _write(train_rows, work / "train.csv"), WorkerContext(report=report))
    predictor = EncoderProbePredictor.load(kept, cfg.resolved_cache_dir())
    audios = [sf.read(r["path"], dtype="float32")[0] for r in test_rows]
    sums = predictor.feature_sums(audios)
    speakers = [r["speaker"] for r in test_rows]
    own = add_statistics(zip(speakers, sums))
    probs = {"speaker ids": predictor.predict_batch(audios, [own[s] for s in speakers]),
             "one group": predictor.predict_batch(audios, [sums.sum(0)] * len(audios))}
    return {mode: [predictor.classes[i] for i in np.argmax(p, axis=1)] for mode, p in probs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="real-speech")
    parser.add_argument("--branch", default="whisper")
    parser.add_argument("--corpora", default="emodb,ravdess")
    parser.add_argument("--folds", default="emodb=3,ravdess=4")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:key=value,...")
    parser.add_argument("--cross", action="store_true", help="also train on each whole corpus, score the other")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    import logging
    import warnings

    from sklearn.metrics import f1_score

    from ray_ser.config import load_config
    from ray_ser.labels import map_label

    logging.getLogger("ray_ser").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    cfg = load_config(args.config)
    profile_train = cfg.branch(args.branch).train
    variants = [("profile", {})] + [_variant(v) for v in args.variant]
    folds = {k: int(v) for k, v in (item.split("=") for item in args.folds.split(","))}
    corpora = {c: [r for r in _rows(c) if map_label(r["emotion"], r["corpus"], cfg.labels.rules, cfg.labels.classes) is not None]
               for c in args.corpora.split(",")}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_probe_heads_"))
    started, results, times = time.perf_counter(), {}, {}

    def truth(rows):
        return [map_label(r["emotion"], r["corpus"], cfg.labels.rules, cfg.labels.classes) for r in rows]

    for name, changes in variants:
        train = profile_train.model_copy(update=changes)
        type(train).model_validate(train.model_dump())  # a bad value fails here, not deep in training
        began = time.perf_counter()
        for corpus, rows in corpora.items():
            predicted: dict[str, dict[str, str]] = {}
            for i, held in enumerate(_folds(rows, folds[corpus])):
                test = [r for r in rows if r["speaker"] in held]
                out = train_and_score(cfg, args.branch, train, [r for r in rows if r["speaker"] not in held], test,
                                      work / name / corpus / f"fold{i}")
                for mode, labels in out.items():
                    predicted.setdefault(mode, {}).update({r["utterance_id"]: y for r, y in zip(test, labels)})
            for mode, by_id in predicted.items():
                results[(name, corpus, mode)] = f1_score(truth(rows), [by_id[r["utterance_id"]] for r in rows],
                                                         average="macro")
            if args.cross:
                for source in corpora:
                    if source != corpus:
                        out = train_and_score(cfg, args.branch, train, corpora[source], rows,
                                              work / name / f"{source}-to-{corpus}")
                        results[(name, f"{source}->{corpus}", "speaker ids")] = f1_score(
                            truth(rows), out["speaker ids"], average="macro")
        times[name] = time.perf_counter() - began
        print(f"[{time.perf_counter() - started:6.0f} s] {name} done ({times[name]:.0f} s)", flush=True)

    settings = sorted({(c, m) for _, c, m in results}, key=lambda cm: ("->" in cm[0], cm))
    print(f"\nmacro-F1 of the '{args.branch}' branch alone ({args.config}; speaker folds "
          f"{', '.join(f'{c} {folds[c]}' for c in corpora if c in folds)}):")
    print(f"  {'variant':<12}" + "".join(f"{c + ', ' + m:>28}" for c, m in settings))
    for name, changes in variants:
        print(f"  {name:<12}" + "".join(f"{results.get((name, c, m), float('nan')):>28.3f}" for c, m in settings))
        if changes:
            print(f"  {'':<12}{changes}")
    print("\ntime per variant (the first includes encoding every clip once):")
    for name, seconds in times.items():
        print(f"  {name:<12} {seconds:6.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
