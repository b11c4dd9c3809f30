"""Few-shot SELM on a corpus it did not train on: zero-shot, in-context and a quick LoRA, k clips per class.

    PYTHONPATH=. .venv/bin/python bench/few_shot.py [--source ravdess] [--target emodb] [--ks 2,4,8]
        [--checkpoint DIR] [--epochs N] [--max-per-speaker N] [--shot-speakers a,b] [--engine vllm_embeds]
        [--set ...] [--workdir DIR] [--json FILE]
    PYTHONPATH=. .venv/bin/python bench/few_shot.py --synthetic      # a smoke run: tiny random model, espeak

1. The real-speech-selm profile's ``selm`` branch (offline:selm-base: Whisper base + SmolLM2-135M) is
   trained with Ray Train on every speaker of the source corpus (``fit_branch``; its epoch chosen on
   the source's own validation split), or ``--checkpoint`` names one trained before (e.g. the
   ``ravdess -> emodb`` run of bench/selm_real.py).
2. The target corpus is split by speaker: the shot speakers (default EmoDB 03 and 08, RAVDESS
   actors 01-04) give the labelled examples, the remaining speakers are the test set, so no shot's
   speaker is ever scored.
3. For each k, k clips per class (``few_shot.k`` = k x the classes present; drawn seeded, round
   robin over the labels, by the branch's own ``draw_shots``) are used two ways: as in-context
   examples in every prompt (user/assistant turns before the clip), and as a quick LoRA run from
   the trained checkpoint (``adapt_branch``, what `ray-ser adapt` runs: the few_shot section's
   epochs and learning rate).
4. Zero-shot, in-context and adapted macro-F1 on the test speakers; target: adapted at k=8 >=
   zero-shot + 0.05.

Scoring runs the branch's engine (default ``vllm_embeds``: vLLM with the audio tower here; the
shots' prefix is shared through vLLM's prefix cache, so in-context costs little more than
zero-shot once the first prompt is in). Prompts are speech-only (``llm.use_transcript=false``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHOT_SPEAKERS = {"emodb": ("emodb-03", "emodb-08"),
                 "ravdess": ("ravdess-01", "ravdess-02", "ravdess-03", "ravdess-04")}


def _selm_only(cfg, branch: str, update: dict | None = None):
    """The profile with this branch alone (no fusion, no vote priority), its settings updated."""
    from ray_ser.config import LabelConfig

    tree = cfg.model_dump(mode="json")
    settings = tree["branches"][branch]
    for key, value in (update or {}).items():
        section, _, field = key.partition(".")
        if field:
            settings[section] = {**(settings.get(section) or {}), field: value}
        else:
            settings[section] = value
    tree.update(branches={branch: settings}, fusion={"method": "none"}, vote={"priority": []})
    return LabelConfig.model_validate(tree)


class Scorer:
    """One engine over the test clips; prompts with or without in-context shots."""

    def __init__(self, checkpoint: str, settings, classes, max_shots: int, items, truth) -> None:
        from ray_ser.branches.speech_llm.engines import VLLMSpeechLLM, engine_class, model_directory

        engine_cls = engine_class(settings.engine)
        extra = {"max_shots": max_shots} if issubclass(engine_cls, VLLMSpeechLLM) else {}
        started = time.perf_counter()
        self.engine = engine_cls.load(model_directory(checkpoint), settings, classes=classes, **extra)
        self.load_s = time.perf_counter() - started
        self.classes, self.items, self.truth = tuple(classes), items, truth
        self.use_transcript = settings.use_transcript

    def score(self, shots=()) -> dict:
        import numpy as np

        from ray_ser.branches.speech_llm.engines import PromptBuilder
        from ray_ser.evaluate import emotion_metrics

        prompts = PromptBuilder(self.use_transcript, shots, self.classes)
        started = time.perf_counter()
        # One prompt first: with shots, its prefix lands in vLLM's prefix cache before the others ask for it.
        predicted = list(self.engine.answer_batch(prompts, self.items[:1])[1].argmax(1))
        for i in range(1, len(self.items), 16):
            predicted += list(self.engine.answer_batch(prompts, self.items[i:i + 16])[1].argmax(1))
        metrics = emotion_metrics(self.truth, [int(p) for p in predicted], len(self.classes))
        return {**metrics, "seconds": round(time.perf_counter() - started, 1),
                "predicted_counts": np.bincount(predicted, minlength=len(self.classes)).tolist()}

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if close:
            close()


def _synthetic(work: Path, args) -> tuple:
    """(cfg, source manifest, target rows) for the smoke path: the tiny random Qwen2-Audio on espeak corpora."""
    import csv

    from ray_ser.config import LabelConfig, load_config
    from ray_ser.demo.synth import synthesize_corpus

    source = synthesize_corpus(work / "source", n=args.n_synthetic, seed=11, split="train")
    target = synthesize_corpus(work / "target", n=args.n_synthetic // 2, seed=12, split="heldout")
    rows = [dict(r, path=str(Path(target).parent / r["path"]) if not os.path.isabs(r["path"]) else r["path"])
            for r in csv.DictReader(open(target))]
    base = load_config("demo", ["ray.progress_bars=false", "branches={}"])
    branch = {"family": "speech_llm", "llm": {"engine": "transformers", "use_transcript": False},
              "train": {"base_model": "tiny-random:qwen2-audio", "finetune": "full", "loss": "weighted_ce",
                        "epochs": args.epochs or 4, "batch_size": 8, "learning_rate": 3e-3,
                        "transcript_dropout": 1.0}}
    cfg = LabelConfig.model_validate({**base.model_dump(), "branches": {"selm": branch}, "vote": {}})
    return cfg, str(source), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "real-speech"))
    parser.add_argument("--config", default="real-speech-selm")
    parser.add_argument("--set", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--branch", default="selm")
    parser.add_argument("--source", default="ravdess")
    parser.add_argument("--target", default="emodb")
    parser.add_argument("--shot-speakers", default=None, help="comma-separated (default: per target corpus)")
    parser.add_argument("--ks", default="2,4,8", help="clips per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shots' draw")
    parser.add_argument("--checkpoint", default=None, help="a trained SELM branch: skip the training")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the profile's)")
    parser.add_argument("--max-per-speaker", type=int, default=None, help="cap each source speaker's clips")
    parser.add_argument("--max-test-per-speaker", type=int, default=None, help="smoke runs only")
    parser.add_argument("--engine", default=None, help="scoring engine (default: the branch's llm.engine)")
    parser.add_argument("--adapt-epochs", type=int, default=None, help="few_shot.epochs (default: its default)")
    parser.add_argument("--adapt-lr", type=float, default=None, help="few_shot.learning_rate")
    parser.add_argument("--no-in-context", action="store_true", help="skip the in-context scoring")
    parser.add_argument("--synthetic", action="store_true", help="smoke path: tiny random model, espeak corpora")
    parser.add_argument("--n-synthetic", type=int, default=96)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from ray_ser.branches.speech_llm.settings import FewShotConfig
    from ray_ser.branches.speech_llm.shots import load_shots, read_shot_rows
    from ray_ser.config import load_config
    from ray_ser.io.labelled import LabelledRow, load_audio
    from ray_ser.runtime import ray_session
    from ray_ser.train.loop import adapt_branch, fit_branch
    from selm_real import LoadMonitor, cap_per_speaker, corpus_rows, truth_indices, write_rows

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_fewshot_"))
    name = args.branch
    if args.synthetic:
        cfg, source_manifest, target = _synthetic(work, args)
        speakers = sorted({r["speaker"] for r in target})
        shot_speakers = set(speakers[:2])
    else:
        overrides = ["ray.progress_bars=false", *args.set]
        if args.epochs:
            overrides.append(f"branches.{name}.train.epochs={args.epochs}")
        cfg = _selm_only(load_config(args.config, overrides), name)
        data = Path(args.data)
        source_manifest = write_rows(cap_per_speaker(corpus_rows(data, args.source), args.max_per_speaker),
                                     work / "source.csv")
        target = corpus_rows(data, args.target)
        shot_speakers = set(args.shot_speakers.split(",") if args.shot_speakers else SHOT_SPEAKERS[args.target])
    if args.engine:
        cfg = _selm_only(cfg, name, {"llm.engine": args.engine})
    shot_manifest = write_rows([r for r in target if r["speaker"] in shot_speakers], work / "shots.csv")
    test_rows = cap_per_speaker([r for r in target if r["speaker"] not in shot_speakers], args.max_test_per_speaker)
    truth = truth_indices(cfg, test_rows)
    test_rows = [r for r in test_rows if r["utterance_id"] in truth]
    command = " ".join(["bench/few_shot.py", *sys.argv[1:]])
    print(f"command: {command}\nload average at start: {os.getloadavg()}", flush=True)
    timer: dict[str, float] = {}
    started_all = time.perf_counter()
    results: dict[str, dict] = {}
    with LoadMonitor() as load, ray_session(cfg.ray):
        checkpoint, training = args.checkpoint, None
        if checkpoint is None:
            started = time.perf_counter()
            trained = fit_branch(cfg, name, source_manifest, str(work / "train"))
            timer["train on the source corpus"] = time.perf_counter() - started
            checkpoint = trained.checkpoint
            training = {"epochs": len(trained.history), "best_epoch": trained.best["epoch"],
                        "val_macro_f1": [round(h["val_macro_f1"], 3) for h in trained.history],
                        "wall_s": round(trained.wall_seconds, 1)}
            print(f"trained on {args.source if not args.synthetic else 'the synthetic source'}: {training}",
                  flush=True)
        base_cfg = _selm_only(cfg, name, {"checkpoint": checkpoint})
        ks = [int(k) for k in args.ks.split(",")]
        present = len(set(truth_indices(cfg, [r for r in target if r["speaker"] in shot_speakers]).values()))
        few = {k: FewShotConfig(manifest=shot_manifest, k=k * present, seed=args.seed,
                                **({"epochs": args.adapt_epochs} if args.adapt_epochs else {}),
                                **({"learning_rate": args.adapt_lr} if args.adapt_lr else {})) for k in ks}
        classes = base_cfg.labels.classes
        audios = load_audio([LabelledRow(r["utterance_id"], r["path"], 0) for r in test_rows], cfg.storage)
        items = [(a, None) for a in audios]
        labels = [truth[r["utterance_id"]] for r in test_rows]
        print(f"target {args.target if not args.synthetic else 'synthetic'}: {len(test_rows)} test clips of "
              f"{len({r['speaker'] for r in test_rows})} speakers; shots from {sorted(shot_speakers)} "
              f"({present} classes): k per class {ks}", flush=True)

        llm = base_cfg.branch(name).llm
        wide = llm.model_copy(update={"max_model_len": max(llm.max_model_len, 8192)}) \
            if llm.engine.startswith("vllm") and not args.no_in_context else llm
        started = time.perf_counter()
        scorer = Scorer(checkpoint, wide, classes, 0 if args.no_in_context else max(f.k for f in few.values()),
                        items, labels)
        try:
            results["zero-shot"] = scorer.score()
            print(f"  zero-shot: {results['zero-shot']['macro_f1']:.3f}", flush=True)
            if not args.no_in_context:
                for k, shot_cfg in few.items():
                    shots = load_shots(shot_cfg, cfg.storage, cfg.columns, cfg.labels)
                    results[f"in-context k={k}"] = scorer.score(shots)
                    print(f"  in-context k={k}: {results[f'in-context k={k}']['macro_f1']:.3f}", flush=True)
        finally:
            scorer.close()
        timer["score zero-shot and in-context"] = time.perf_counter() - started

        for k, shot_cfg in few.items():
            drawn = read_shot_rows(shot_cfg, cfg.storage, cfg.columns, cfg.labels)
            started = time.perf_counter()
            adapted = adapt_branch(_selm_only(base_cfg, name, {"few_shot": shot_cfg.model_dump()}), name,
                                   str(work / f"adapted-k{k}"))
            adapt_s = time.perf_counter() - started
            timer[f"adapt k={k}"] = adapt_s
            started = time.perf_counter()
            scorer = Scorer(adapted.checkpoint, llm, classes, 0, items, labels)
            try:
                results[f"adapted k={k}"] = {**scorer.score(), "adapt_s": round(adapt_s, 1),
                                             "shots": len(drawn)}
            finally:
                scorer.close()
            timer[f"score adapted k={k}"] = time.perf_counter() - started
            print(f"  adapted k={k} ({len(drawn)} shots, {adapt_s:.0f} s): "
                  f"{results[f'adapted k={k}']['macro_f1']:.3f}", flush=True)

    total = time.perf_counter() - started_all
    pair = "synthetic source -> synthetic target" if args.synthetic else f"{args.source} -> {args.target}"
    print(f"\n{pair}: {len(test_rows)} test clips; macro-F1 (UAR, accuracy)")
    for system, m in results.items():
        print(f"  {system:18} {m['macro_f1']:.3f}  ({m['uar']:.3f}, {m['accuracy']:.3f})  predicted {m['predicted_counts']}")
    target_line = None
    if f"adapted k={max(ks)}" in results:
        gain = results[f"adapted k={max(ks)}"]["macro_f1"] - results["zero-shot"]["macro_f1"]
        target_line = (f"adapted k={max(ks)} - zero-shot = {gain:+.3f} (target +0.05: "
                       f"{'met' if gain >= 0.05 else 'missed'})")
        print(target_line)
    print("time:")
    for part, seconds in timer.items():
        print(f"  {part:32} {seconds:7.0f} s")
    print(f"  {'total':32} {total:7.0f} s; load average {load.summary()}")
    out = Path(args.json or work / "few_shot.json")
    out.write_text(json.dumps({"command": command, "checkpoint": checkpoint, "training": training,
                               "results": results, "target": target_line, "time_s": timer, "total_s": total,
                               "load": load.summary()}, indent=1))
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":  # vLLM starts worker processes; they must not re-run this
    sys.exit(main())
