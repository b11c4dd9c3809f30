"""SELM on real speech: held-out speakers and cross-corpus, beside the real-speech-selm profile's other branches.

    PYTHONPATH=. .venv/bin/python bench/selm_real.py [--data ../shared/data/real-speech] [--config real-speech-selm]
        [--set ...] [--epochs N] [--max-per-speaker N] [--no-heldout] [--no-cross] [--text-variant]
        [--workdir DIR] [--json FILE]

Every branch of the profile (the Whisper-encoder probe ``whisper``, ``prosody`` and ``selm``) and its
fusion are trained together by `ray-ser train`'s own code (``train_branches``: the branches side by
side with Ray Train, the fusion fitted on speakers held out of the branches' training), then the test
clips are labelled by the labeling job (``run_label_job``), so every figure of one setting comes from
one run on one split:

- held-out speakers: both corpora minus EmoDB speakers 03 and 08 and RAVDESS actors 01-04
  (``--holdout``), scored on those speakers, per corpus and pooled;
- cross-corpus: trained on one corpus (all its speakers), scored on the other.

Targets (issue 19): on held-out speakers SELM alone >= the probe (``whisper``); cross-corpus SELM >=
the best non-LLM branch. Choices such as the epoch are the training's own (validation split of the
training speakers, ``val_fraction``); nothing here is tuned on the test speakers. ``--text-variant``
also scores the same SELM checkpoint with the clip's transcript in the prompt (the job's Whisper
transcript: ``llm.use_transcript=true``). ``--max-per-speaker`` caps the clips of each *training*
speaker (balanced over emotions) for a run that fits a busy machine; test sets are never cut.
Prints macro-F1 (UAR, accuracy) per system, SELM's validation curve, the time of each part and the
load average; writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HOLDOUT = ("emodb-03", "emodb-08", "ravdess-01", "ravdess-02", "ravdess-03", "ravdess-04")


def corpus_rows(data: Path, corpus: str) -> list[dict]:
    """A real corpus's manifest rows, paths made absolute."""
    manifest = data / corpus / "manifest.csv"
    return [dict(r, path=str(manifest.parent / r["path"])) for r in csv.DictReader(open(manifest))]


def write_rows(rows: list[dict], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def cap_per_speaker(rows: list[dict], limit: int | None) -> list[dict]:
    """At most ``limit`` clips of each speaker, taken round-robin over its emotions (deterministic)."""
    if not limit:
        return rows
    out = []
    for speaker in sorted({r["speaker"] for r in rows}):
        by_emotion: dict[str, list[dict]] = {}
        for r in sorted((r for r in rows if r["speaker"] == speaker), key=lambda r: r["utterance_id"]):
            by_emotion.setdefault(r["emotion"], []).append(r)
        ordered = [group[i] for i in range(max(map(len, by_emotion.values())))
                   for group in by_emotion.values() if i < len(group)]
        out += ordered[:limit]
    return out


class LoadMonitor:
    """The 1-minute load average, sampled every 30 s while a run lasts: on a shared machine the wall
    times mean little without it."""

    def __init__(self) -> None:
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(30):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def summary(self) -> dict:
        s = self.samples
        return {"mean": round(sum(s) / len(s), 2), "min": round(min(s), 2), "max": round(max(s), 2),
                "samples": len(s)}


def truth_indices(cfg, rows: list[dict]) -> dict[str, int]:
    """utterance_id -> class index, for the rows the profile's label rules keep."""
    from ray_ser.labels import map_label

    classes = list(cfg.labels.classes)
    out = {}
    for r in rows:
        mapped = map_label(r["emotion"], r.get("corpus"), cfg.labels.rules, classes)
        if mapped is not None:
            out[r["utterance_id"]] = classes.index(mapped)
    return out


def scores(cfg, truth: dict[str, int], predicted: dict[str, dict[str, str | None]]) -> dict[str, dict]:
    """system -> macro-F1, UAR, accuracy over the scored rows (a missing or null label is an abstention: wrong)."""
    from ray_ser.evaluate import emotion_metrics

    classes = list(cfg.labels.classes)
    ids = sorted(truth)
    out = {}
    for system, labels in predicted.items():
        guesses = [classes.index(labels[u]) if labels.get(u) in classes else None for u in ids]
        out[system] = {**emotion_metrics([truth[u] for u in ids], guesses, len(classes)), "rows": len(ids)}
    return out


def train_and_label(cfg, train_rows: list[dict], test_rows: list[dict], work: Path, timer: dict) -> dict:
    """`ray-ser train` on train_rows (every branch and the fusion), then the labeling job on test_rows.
    Returns the job's rows by utterance, the trained config and the training results."""
    from ray_ser.io.sink import read_output
    from ray_ser.pipeline import run_label_job
    from ray_ser.train.loop import train_branches

    started = time.perf_counter()
    summary = train_branches(cfg, write_rows(train_rows, work / "train.csv"), str(work / "ckpt"))
    timer["train (branches side by side + fusion)"] = timer.get("train (branches side by side + fusion)", 0) + \
        time.perf_counter() - started
    trained = cfg.model_copy(update={"branches": {n: b.model_copy(update={"checkpoint": summary.branches[n].checkpoint})
                                                  for n, b in cfg.branches.items()}})
    if summary.fusion is not None:
        trained = trained.model_copy(update={"fusion": trained.fusion.model_copy(
            update={"checkpoint": summary.fusion.path})})
    started = time.perf_counter()
    labels_uri = str(work / "labels")
    job = run_label_job(trained, write_rows(test_rows, work / "test.csv"), labels_uri)
    timer["label test clips (job)"] = timer.get("label test clips (job)", 0) + time.perf_counter() - started
    rows = {r["input_id"]: r for r in read_output(labels_uri, cfg.storage).to_pylist()}
    return {"rows": rows, "trained": trained, "summary": summary, "job_wall_s": job.wall_seconds}


def text_variant_labels(trained, branch: str, test_rows: list[dict], job_rows: dict) -> dict[str, str | None]:
    """The same SELM checkpoint with the job's Whisper transcript in every prompt (the speech-text variant)."""
    from ray_ser.branches.speech_llm.engines import SpeechLLMPredictor
    from ray_ser.io.labelled import LabelledRow, load_audio

    settings = trained.branch(branch).llm.model_copy(update={"use_transcript": True})
    predictor = SpeechLLMPredictor.load(trained.branch(branch).checkpoint, settings)
    try:
        rows = [r for r in test_rows if r["utterance_id"] in job_rows]
        audios = load_audio([LabelledRow(r["utterance_id"], r["path"], 0) for r in rows], trained.storage)
        items = [(a, job_rows[r["utterance_id"]].get("transcript") or "") for a, r in zip(audios, rows)]
        out = {}
        for start in range(0, len(items), 16):
            probs = predictor.predict_batch(items[start:start + 16])
            for r, p in zip(rows[start:start + 16], probs):
                out[r["utterance_id"]] = predictor.classes[int(p.argmax())]
        return out
    finally:
        predictor.close()


def setting(cfg, name: str, train_rows, test_rows, work: Path, timer: dict, text_variant: bool,
            selm: str = "selm") -> dict:
    """One train-and-label run scored per system; per corpus as well when the test set spans two."""
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {len(train_rows)} training clips "
          f"({len({r['speaker'] for r in train_rows})} speakers), {len(test_rows)} test clips", flush=True)
    run = train_and_label(cfg, train_rows, test_rows, work, timer)
    job = run["rows"]
    systems = {b: {u: r.get(f"{b}_label") for u, r in job.items()} for b in cfg.branches}
    systems["vote"] = {u: r.get("vote_label") for u, r in job.items()}
    systems["fusion (label)"] = {u: r.get("label") for u, r in job.items()}
    if text_variant and selm in cfg.branches:
        started = time.perf_counter()
        systems[f"{selm} speech-text"] = text_variant_labels(run["trained"], selm, test_rows, job)
        timer["speech-text variant"] = timer.get("speech-text variant", 0) + time.perf_counter() - started
    out = {"all": scores(cfg, truth_indices(cfg, test_rows), systems)}
    corpora = sorted({r["corpus"] for r in test_rows})
    if len(corpora) > 1:
        for corpus in corpora:
            out[corpus] = scores(cfg, truth_indices(cfg, [r for r in test_rows if r["corpus"] == corpus]), systems)
    summary = run["summary"]
    out["training"] = {n: {"wall_s": round(r.wall_seconds, 1), "epochs": len(r.history),
                           "best_epoch": r.best.get("epoch"), "val_macro_f1": [round(h["val_macro_f1"], 3)
                                                                              for h in r.history],
                           "train_loss": [round(h["train_loss"], 3) for h in r.history]}
                       for n, r in summary.branches.items()}
    out["fusion_weights"] = (dict(zip(summary.fusion.fusion.branches, summary.fusion.fusion.weights))
                             if summary.fusion is not None and summary.fusion.fusion.method == "weights" else None)
    out["label_job_wall_s"] = round(run["job_wall_s"], 1)
    return out


def print_setting(name: str, result: dict, selm: str, non_llm: list[str], anchor: str | None) -> list[str]:
    """The table of one setting; returns the target lines."""
    lines = []
    for part, systems in result.items():
        if part in ("training", "fusion_weights", "label_job_wall_s"):
            continue
        print(f"\n{name} [{part}]: macro-F1 (UAR, accuracy), {next(iter(systems.values()))['rows']} clips")
        for system, m in systems.items():
            print(f"  {system:22} {m['macro_f1']:.3f}  ({m['uar']:.3f}, {m['accuracy']:.3f})")
    print(f"  training: " + "; ".join(f"{n} {t['wall_s']:.0f} s, val macro-F1 by epoch {t['val_macro_f1']}"
                                       for n, t in result["training"].items()))
    print(f"  fusion weights: {result['fusion_weights']}; labeling job {result['label_job_wall_s']:.0f} s")
    systems = result["all"]
    if selm in systems:
        rivals = [anchor] if anchor else non_llm
        rivals = [r for r in rivals if r in systems]
        if rivals:
            best = max(rivals, key=lambda r: systems[r]["macro_f1"])
            gap = systems[selm]["macro_f1"] - systems[best]["macro_f1"]
            lines.append(f"{name}: {selm} {systems[selm]['macro_f1']:.3f} vs {best} {systems[best]['macro_f1']:.3f}"
                         f" ({gap:+.3f}) -> target {'met' if gap >= 0 else 'missed'}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "real-speech"))
    parser.add_argument("--config", default="real-speech-selm")
    parser.add_argument("--set", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--selm", default="selm", help="the profile's speech_llm branch")
    parser.add_argument("--probe", default="whisper", help="the Whisper-encoder probe branch (the held-out anchor)")
    parser.add_argument("--holdout", default=",".join(HOLDOUT), help="held-out speakers, comma-separated")
    parser.add_argument("--epochs", type=int, default=None, help="SELM's epochs (default: the profile's)")
    parser.add_argument("--max-per-speaker", type=int, default=None, help="cap each training speaker's clips")
    parser.add_argument("--max-test-per-speaker", type=int, default=None,
                        help="cap each test speaker's clips: smoke runs only, not the bench's figures")
    parser.add_argument("--no-heldout", action="store_true")
    parser.add_argument("--no-cross", action="store_true")
    parser.add_argument("--cross", default="ravdess:emodb,emodb:ravdess", help="source:target pairs")
    parser.add_argument("--text-variant", action="store_true", help="also score SELM with the transcript")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from ray_ser.config import load_config
    from ray_ser.runtime import ray_session

    overrides = ["ray.progress_bars=false", *args.set]
    if args.epochs:
        overrides.append(f"branches.{args.selm}.train.epochs={args.epochs}")
    cfg = load_config(args.config, overrides)
    data, work = Path(args.data), Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_selm_real_"))
    corpora = {c: corpus_rows(data, c) for c in ("emodb", "ravdess")}
    non_llm = [n for n, b in cfg.branches.items() if b.family != "speech_llm"]
    held = set(args.holdout.split(","))
    timer: dict[str, float] = {}
    results, targets = {}, []
    command = " ".join(["bench/selm_real.py", *sys.argv[1:]])
    print(f"command: {command}\nload average at start: {os.getloadavg()}", flush=True)
    started = time.perf_counter()
    with LoadMonitor() as load, ray_session(cfg.ray):
        if not args.no_heldout:
            everyone = corpora["emodb"] + corpora["ravdess"]
            train = cap_per_speaker([r for r in everyone if r["speaker"] not in held], args.max_per_speaker)
            test = cap_per_speaker([r for r in everyone if r["speaker"] in held], args.max_test_per_speaker)
            name = "held-out speakers"
            results[name] = setting(cfg, name, train, test, work / "heldout", timer, args.text_variant, args.selm)
            targets += print_setting(name, results[name], args.selm, non_llm, args.probe)
        if not args.no_cross:
            for pair in args.cross.split(","):
                source, target = pair.split(":")
                name = f"{source} -> {target}"
                train = cap_per_speaker(corpora[source], args.max_per_speaker)
                test = cap_per_speaker(corpora[target], args.max_test_per_speaker)
                results[name] = setting(cfg, name, train, test, work / f"{source}-to-{target}", timer,
                                        args.text_variant, args.selm)
                targets += print_setting(name, results[name], args.selm, non_llm, None)
    total = time.perf_counter() - started
    print("\ntargets:\n  " + "\n  ".join(targets or ["(none scored)"]))
    print("\ntime:")
    for part, seconds in timer.items():
        print(f"  {part:40} {seconds:7.0f} s")
    print(f"  {'total':40} {total:7.0f} s; load average {load.summary()}")
    target = Path(args.json or work / "selm_real.json")
    target.write_text(json.dumps({"command": command, "results": results, "targets": targets, "time_s": timer,
                                  "total_s": total, "load": load.summary(), "overrides": overrides}, indent=1))
    print(f"figures: {target}")
    return 0


if __name__ == "__main__":  # vLLM starts worker processes; they must not re-run this
    sys.exit(main())
