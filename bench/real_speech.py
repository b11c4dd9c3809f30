"""Real human speech, speaker-independent: how the real-speech profile labels voices it never heard.

    .venv/bin/python bench/real_speech.py [--data ../shared/data/real-speech] [--folds-emodb 3] [--folds-ravdess 4]
        [--config real-speech] [--set ...] [--quick] [--only emodb|ravdess|cross ...]
    .venv/bin/python bench/real_speech.py --score-fold WORKDIR/ravdess/fold0   # one finished fold

For each corpus (EmoDB, RAVDESS), speakers are split into folds; for each fold the profile's
branches (and its fusion, on speakers held out of the branches' training) are trained with
`ray-ser train`'s own code on the other speakers, and the fold's speakers are labelled by the
labeling job, twice: with their speaker ids, and with the ids withheld (the job then groups clips
by voice). A corpus's speakers are never in both training and test. Cross-corpus: train on one
corpus, label the other. Beside every run, the classical baseline is fitted on the same training
clips: openSMILE eGeMAPSv02 functionals, per-speaker z-normalisation, class-balanced logistic
regression. Prints macro-F1 per branch, for the vote, for the fusion (the output's label) and
for the baseline, pooled over each corpus's folds, and the time each part took; writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _rows(data: Path, corpus: str) -> list[dict]:
    manifest = data / corpus / "manifest.csv"
    return [dict(r, path=str(manifest.parent / r["path"])) for r in csv.DictReader(open(manifest))]


def _write(rows: list[dict], path: Path, drop: tuple[str, ...] = ()) -> str:
    fields = [f for f in rows[0] if f not in drop]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def _folds(rows: list[dict], k: int) -> list[set[str]]:
    speakers = sorted({r["speaker"] for r in rows})
    return [set(speakers[i::k]) for i in range(k)]


_EGEMAPS: dict[str, object] = {}


def _egemaps(rows: list[dict]):
    """eGeMAPS functionals of each row's clip, computed once per clip for the whole bench."""
    import numpy as np
    import soundfile as sf

    from ray_ser.evaluate.baselines import egemaps_functionals

    todo = [r["path"] for r in rows if r["path"] not in _EGEMAPS]
    for path, value in zip(todo, egemaps_functionals([sf.read(p, dtype="float32")[0] for p in todo]) if todo else []):
        _EGEMAPS[path] = value
    return np.stack([_EGEMAPS[r["path"]] for r in rows])


class Timer:
    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.parts[name] = self.parts.get(name, 0.0) + seconds


def run_fold(cfg, train_rows, test_rows, work: Path, timer: Timer, withheld: bool = True) -> dict:
    """Train on train_rows, label test_rows (speaker ids given, and withheld), fit the baseline; return
    per-row predictions for each system."""
    from ray_ser.evaluate.baselines import EgemapsBaseline
    from ray_ser.io.sink import read_output
    from ray_ser.labels import map_label
    from ray_ser.pipeline import run_label_job
    from ray_ser.train.loop import train_branches

    work.mkdir(parents=True, exist_ok=True)
    train_manifest = _write(train_rows, work / "train.csv")
    started = time.perf_counter()
    summary = train_branches(cfg, train_manifest, str(work / "ckpt"))
    timer.add("train (branches + fusion)", time.perf_counter() - started)
    trained = cfg.model_copy(update={"branches": {n: b.model_copy(update={"checkpoint": summary.branches[n].checkpoint})
                                                  for n, b in cfg.branches.items()}})
    if summary.fusion is not None:
        trained = trained.model_copy(update={"fusion": trained.fusion.model_copy(
            update={"checkpoint": summary.fusion.path})})
    out = {}
    variants = [("given", ())] + ([("withheld", ("speaker",))] if withheld else [])
    for variant, drop in variants:
        started = time.perf_counter()
        labels_uri = str(work / f"labels-{variant}")
        run_label_job(trained, _write(test_rows, work / f"test-{variant}.csv", drop), labels_uri)
        timer.add(f"label ({variant} speakers)", time.perf_counter() - started)
        out[variant] = {r["input_id"]: r for r in read_output(labels_uri, cfg.storage).to_pylist()}

    started = time.perf_counter()
    classes = list(cfg.labels.classes)

    def truth(rows):
        return [map_label(r["emotion"], r["corpus"], cfg.labels.rules, classes) for r in rows]

    kept_train = [r for r, t in zip(train_rows, truth(train_rows)) if t is not None]
    features = _egemaps(kept_train)
    baseline = EgemapsBaseline().fit(features, [r["speaker"] for r in kept_train],
                                     [classes.index(t) for t in truth(kept_train)])
    test_features = _egemaps(test_rows)
    predicted = baseline.predict(test_features, [r["speaker"] for r in test_rows])
    timer.add("baseline (eGeMAPS)", time.perf_counter() - started)
    out["baseline"] = {r["utterance_id"]: classes[int(p)] for r, p in zip(test_rows, predicted)}
    out["fusion_weights"] = (dict(zip(summary.fusion.fusion.branches, summary.fusion.fusion.weights))
                             if summary.fusion is not None and summary.fusion.fusion.method == "weights" else None)
    return out


def score_fold(cfg, fold: Path) -> int:
    """Score a finished fold from what it left on disk: its labels (given and withheld) and the
    baseline fitted again on its training rows (the same features, the same fit)."""
    from ray_ser.evaluate.baselines import EgemapsBaseline
    from ray_ser.io.sink import read_output
    from ray_ser.labels import map_label

    train_rows = list(csv.DictReader(open(fold / "train.csv")))
    test_rows = list(csv.DictReader(open(fold / "test-given.csv")))
    run: dict = {}
    for variant in ("given", "withheld"):
        table = read_output(str(fold / f"labels-{variant}"), cfg.storage)
        if table is not None:
            run[variant] = {r["input_id"]: r for r in table.to_pylist()}
    classes = list(cfg.labels.classes)
    truth = [map_label(r["emotion"], r["corpus"], cfg.labels.rules, classes) for r in train_rows]
    kept = [r for r, t in zip(train_rows, truth) if t is not None]
    baseline = EgemapsBaseline().fit(_egemaps(kept), [r["speaker"] for r in kept],
                                     [classes.index(t) for t in truth if t is not None])
    predicted = baseline.predict(_egemaps(test_rows), [r["speaker"] for r in test_rows])
    run["baseline"] = {r["utterance_id"]: classes[int(p)] for r, p in zip(test_rows, predicted)}
    _print_setting(f"{fold.parent.name} {fold.name} (one fold, speaker-independent)", score(cfg, test_rows, [run]))
    return 0


def score(cfg, test_rows: list[dict], runs: list[dict]) -> dict[str, dict]:
    """Macro-F1/UAR/accuracy per system, pooled over the folds' predictions."""
    from ray_ser.evaluate import emotion_metrics
    from ray_ser.labels import map_label

    classes = list(cfg.labels.classes)
    truth = {r["utterance_id"]: map_label(r["emotion"], r["corpus"], cfg.labels.rules, classes) for r in test_rows}
    scored = [u for u, t in truth.items() if t is not None]
    merged: dict[str, dict] = {}
    for run in runs:
        for key, value in run.items():
            if isinstance(value, dict) and key != "fusion_weights":
                merged.setdefault(key, {}).update(value)
    systems: dict[str, list] = {}
    given = merged["given"]
    for branch in cfg.branches:
        systems[branch] = [given.get(u, {}).get(f"{branch}_label") for u in scored]
    systems["vote"] = [given.get(u, {}).get("vote_label") for u in scored]
    systems["fusion (label)"] = [given.get(u, {}).get("label") for u in scored]
    if "withheld" in merged:
        systems["label, ids withheld"] = [merged["withheld"].get(u, {}).get("label") for u in scored]
    systems["baseline"] = [merged["baseline"].get(u) for u in scored]
    k = len(classes)
    reference = [classes.index(truth[u]) for u in scored]
    out = {}
    for name, labels in systems.items():
        predicted = [classes.index(p) if p else (t + 1) % k for p, t in zip(labels, reference)]
        out[name] = {**emotion_metrics(reference, predicted, k), "rows": len(scored)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "real-speech"))
    parser.add_argument("--config", default="real-speech")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--folds-emodb", type=int, default=3)
    parser.add_argument("--folds-ravdess", type=int, default=4)
    parser.add_argument("--no-cross", action="store_true", help="skip the cross-corpus runs")
    parser.add_argument("--only", choices=("emodb", "ravdess", "cross"), action="append", default=None,
                        help="run only these settings (repeatable; default all): parts can run as separate processes")
    parser.add_argument("--quick", action="store_true", help="one fold per corpus, few epochs (a smoke run)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--score-fold", default=None, metavar="DIR",
                        help="score one finished fold from its files (WORKDIR/<corpus>/fold<i>) and exit: a run "
                        "stopped before its last fold still gives the folds it finished")
    parser.add_argument("--json", default=None, help="where to write the figures (default: WORKDIR/real_speech.json)")
    args = parser.parse_args()

    from ray_ser.config import load_config
    from ray_ser.runtime import ray_session

    overrides = ["ray.progress_bars=false", *args.set]
    if args.score_fold:
        return score_fold(load_config(args.config, overrides), Path(args.score_fold))
    if args.quick:
        overrides += [f"branches.{b}.train.epochs=3" for b in load_config(args.config).branches]
    cfg = load_config(args.config, overrides)
    data = Path(args.data)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_real_"))
    corpora = {"emodb": _rows(data, "emodb"), "ravdess": _rows(data, "ravdess")}
    folds = {"emodb": args.folds_emodb, "ravdess": args.folds_ravdess}
    timer, results, weights = Timer(), {}, {}
    started = time.perf_counter()
    with ray_session(cfg.ray):
        for corpus, rows in corpora.items():
            if args.only and corpus not in args.only:
                continue
            runs = []
            for i, held in enumerate(_folds(rows, folds[corpus])[: 1 if args.quick else None]):
                print(f"[{time.perf_counter() - started:6.0f} s] {corpus} fold {i + 1}: test speakers {sorted(held)}",
                      flush=True)
                runs.append(run_fold(cfg, [r for r in rows if r["speaker"] not in held],
                                     [r for r in rows if r["speaker"] in held], work / corpus / f"fold{i}", timer))
                weights[f"{corpus} fold {i + 1}"] = runs[-1]["fusion_weights"]
            tested = [r for r in rows if any(r["utterance_id"] in run["baseline"] for run in runs)]
            results[f"{corpus} (speaker-independent)"] = score(cfg, tested, runs)
            report(results, weights, timer, started, args, overrides, work, partial=True)
        if not args.no_cross and (not args.only or "cross" in args.only):
            for source, target in (("emodb", "ravdess"), ("ravdess", "emodb")):
                print(f"[{time.perf_counter() - started:6.0f} s] cross-corpus: {source} -> {target}", flush=True)
                run = run_fold(cfg, corpora[source], corpora[target], work / f"{source}-to-{target}", timer,
                               withheld=False)
                weights[f"{source} -> {target}"] = run["fusion_weights"]
                results[f"{source} -> {target}"] = score(cfg, corpora[target], [run])
                report(results, weights, timer, started, args, overrides, work, partial=True)
    report(results, weights, timer, started, args, overrides, work)
    return 0


def report(results: dict, weights: dict, timer, started: float, args, overrides: list[str], work: Path,
           partial: bool = False) -> None:
    """Prints the figures so far and writes the JSON: after each setting (a long run that stops
    early keeps what it measured), and once more at the end with the time each part took."""
    if partial:
        setting = next(reversed(results))
        _print_setting(setting, results[setting])
    else:
        for setting, systems in results.items():
            _print_setting(setting, systems)
        print("\ntime:")
        for name, seconds in timer.parts.items():
            print(f"  {name:28} {seconds:7.0f} s")
        print(f"  {'total':28} {time.perf_counter() - started:7.0f} s")
    target = Path(args.json or work / "real_speech.json")
    target.write_text(json.dumps({"results": results, "fusion_weights": weights, "time_s": timer.parts,
                                  "config": args.config, "overrides": overrides, "complete": not partial},
                                 indent=1))
    print(f"figures{' so far' if partial else ''}: {target}", flush=True)


def _print_setting(setting: str, systems: dict) -> None:
    print(f"\n{setting}: macro-F1 (UAR, accuracy), {next(iter(systems.values()))['rows']} clips")
    for name, m in systems.items():
        print(f"  {name:22} {m['macro_f1']:.3f}  ({m['uar']:.3f}, {m['accuracy']:.3f})")
    fused, base = systems["fusion (label)"]["macro_f1"], systems["baseline"]["macro_f1"]
    print(f"  fusion - baseline: {fused - base:+.3f}")
    if "label, ids withheld" in systems:
        print(f"  withheld ids cost: {fused - systems['label, ids withheld']['macro_f1']:+.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
