"""Speech-LLM branch throughput: vLLM (audio in, and embeddings in) against transformers ``generate``, same
checkpoint, same clips, same batches; and the branch's share of the labeling job's time.

    PYTHONPATH=. .venv/bin/python bench/speech_llm_throughput.py --model selm-base [--n 64] [--batch 8]
        [--engines transformers,vllm,vllm_embeds] [--transcript] [--job] [--set branches.NAME.checkpoint=...]
    PYTHONPATH=. .venv/bin/python bench/speech_llm_throughput.py --model tiny     # tiny random Qwen2-Audio, espeak

``--model selm-base`` (default): offline:selm-base (Whisper-base tower + SmolLM2-135M), or a trained
SELM branch with ``--checkpoint`` (same architecture, same cost), on real clips: ``--n`` clips drawn
evenly from EmoDB and RAVDESS (../shared/data/real-speech), speech-only prompts unless
``--transcript``. ``--model tiny``: the tiny random model on espeak clips with transcripts.

Each engine answers every clip with the answer constrained to the labels, greedy, and returns the
label distribution. Prints clips/s and audio-s/s per engine (engine start and the first request's
warm-up excluded and reported apart), the CPU seconds per clip of this process and its children
(vLLM's engine core is a child), the label agreement with transformers and the largest probability
difference.

``--job``: the labeling job of the real-speech-selm profile (``--config``) over the same clips (decode, Whisper, every
branch, the vote), once with the SELM branch and once without it; the branch's share of the job is
1 - (wall without) / (wall with). Checkpoints come from ``--set branches.NAME.checkpoint=...`` (the
lines `ray-ser train` prints); missing ones are made here: the non-LLM branches trained briefly on a
few clips of other speakers, the SELM branch the untrained offline:selm-base (same cost as a trained one).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import tree_cpu_seconds  # noqa: E402


def _run(predictor, items, batch: int) -> tuple[float, float, list]:
    """(wall seconds, CPU seconds, distributions) over every clip, in batches."""
    wall, cpu = time.perf_counter(), tree_cpu_seconds()
    probs = []
    for i in range(0, len(items), batch):
        probs += list(predictor.predict_batch(items[i:i + batch]))
    return time.perf_counter() - wall, tree_cpu_seconds() - cpu, probs


def real_clips(data: Path, n: int, seed: int = 0) -> list[dict]:
    """n rows spread evenly over EmoDB and RAVDESS (seeded)."""
    import numpy as np

    from selm_real import corpus_rows

    rng = np.random.default_rng(seed)
    out = []
    for i, corpus in enumerate(("emodb", "ravdess")):
        rows = corpus_rows(data, corpus)
        take = n // 2 + (n % 2 if i == 0 else 0)
        out += [rows[j] for j in sorted(rng.choice(len(rows), min(take, len(rows)), replace=False))]
    return out


def engines_bench(checkpoint: str, items, engines: list[str], batch: int, use_transcript: bool) -> dict:
    import numpy as np

    from ray_ser.branches.speech_llm.engines import SpeechLLMPredictor
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig

    seconds = sum(a.size for a, _ in items) / 16000
    out, reference = {}, None
    for engine in engines:
        settings = SpeechLLMConfig(engine=engine, use_transcript=use_transcript, dtype="float32",
                                   max_num_seqs=max(batch, 8), max_model_len=1024)
        started = time.perf_counter()
        predictor = SpeechLLMPredictor.load(checkpoint, settings)
        # Warm-up on clips outside the timed set: vLLM caches multimodal inputs by content.
        predictor.predict_batch([(np.roll(items[0][0], 7), items[0][1]), (np.roll(items[1][0], 7), items[1][1])])
        start_s = time.perf_counter() - started
        wall, cpu, probs = _run(predictor, items, batch)
        predictor.close()
        probs = np.stack(probs)
        row = {"clips_per_s": len(items) / wall, "audio_s_per_s": seconds / wall, "cpu_s_per_clip": cpu / len(items),
               "wall_s": wall, "start_s": start_s}
        if reference is None:
            reference = probs
        else:
            row["agree_with_first"] = float((reference.argmax(1) == probs.argmax(1)).mean())
            row["max_prob_diff"] = float(np.abs(reference - probs).max())
        out[engine] = row
        print(f"{engine:13} {row['clips_per_s']:6.2f} clips/s  {row['audio_s_per_s']:6.2f} audio-s/s  "
              f"{row['cpu_s_per_clip']:5.2f} CPU-s/clip  (start + warm-up {start_s:.0f} s)"
              + (f"  agrees with {engines[0]} on {row['agree_with_first']:.0%}, max |dp| {row['max_prob_diff']:.1e}"
                 if "agree_with_first" in row else ""), flush=True)
    return out


def job_share(rows: list[dict], args, work: Path) -> dict:
    """Wall time of the real-speech labeling job over the clips, with and without the SELM branch."""
    from ray_ser.branches.speech_llm.model import resolve_speech_llm
    from ray_ser.config import load_config
    from ray_ser.runtime import ray_session
    from ray_ser.train.loop import train_branches
    from selm_real import corpus_rows, write_rows

    overrides = ["ray.progress_bars=false", "fusion.method=none", *args.set]
    cfg = load_config(args.config, overrides)
    selm = [n for n, b in cfg.branches.items() if b.family == "speech_llm"]
    missing = [n for n, b in cfg.branches.items() if not b.checkpoint and n not in selm]
    with ray_session(cfg.ray):
        if missing:  # a brief training on clips the job will not label: the checkpoints' cost is what matters
            labelled = {r["utterance_id"] for r in rows}
            data = Path(args.data)
            pool = [r for c in ("emodb", "ravdess") for r in corpus_rows(data, c) if r["utterance_id"] not in labelled]
            train = [r for i, r in enumerate(pool) if i % 6 == 0]
            quick = cfg.model_copy(update={"branches": {n: cfg.branches[n] for n in missing}})
            summary = train_branches(quick, write_rows(train, work / "quick-train.csv"), str(work / "quick-ckpt"))
            cfg = cfg.model_copy(update={"branches": {
                n: b.model_copy(update={"checkpoint": summary.branches[n].checkpoint}) if n in missing else b
                for n, b in cfg.branches.items()}})
        cfg = cfg.model_copy(update={"branches": {
            n: b.model_copy(update={"checkpoint": b.checkpoint or resolve_speech_llm(b.train.base_model)})
            if n in selm else b for n, b in cfg.branches.items()}})
        from ray_ser.pipeline import run_label_job

        manifest = write_rows(rows, work / "job.csv")
        without = cfg.model_copy(update={
            "branches": {n: b for n, b in cfg.branches.items() if n not in selm},
            "vote": cfg.vote.model_copy(update={"priority": tuple(p for p in cfg.vote.priority if p not in selm)})})
        out = {}
        for name, profile in (("with SELM", cfg), ("without SELM", without)):
            summary = run_label_job(profile, manifest, str(work / f"job-{name.replace(' ', '-')}"))
            out[name] = {"wall_s": summary.wall_seconds, "rows": summary.rows_written,
                         "audio_s_per_s": summary.audio_seconds_per_second}
            print(f"labeling job {name:13} {summary.wall_seconds:6.1f} s for {summary.rows_written} clips "
                  f"({summary.audio_seconds_per_second:.2f} audio-s/s)", flush=True)
    share = 1 - out["without SELM"]["wall_s"] / out["with SELM"]["wall_s"]
    print(f"SELM's share of the labeling job's wall time: {share:.0%}")
    return {**out, "selm_share": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("selm-base", "tiny"), default="selm-base")
    parser.add_argument("--checkpoint", default=None, help="a speech_llm checkpoint (default: per --model)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "real-speech"))
    parser.add_argument("--n", type=int, default=64, help="clips")
    parser.add_argument("--batch", type=int, default=8, help="clips per predict_batch call, every engine")
    parser.add_argument("--engines", default="transformers,vllm,vllm_embeds")
    parser.add_argument("--transcript", action="store_true", help="speech-text prompts (real clips: none given)")
    parser.add_argument("--job", action="store_true", help="also the labeling job with and without SELM")
    parser.add_argument("--config", default="real-speech-selm", help="the profile of --job (with a speech_llm branch)")
    parser.add_argument("--set", action="append", default=[], help="profile override (--job)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    import csv
    import json

    import soundfile as sf

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_bench_llm_"))
    work.mkdir(parents=True, exist_ok=True)
    command = " ".join(["bench/speech_llm_throughput.py", *sys.argv[1:]])
    print(f"command: {command}\nload average at start: {os.getloadavg()}", flush=True)
    rows = None
    if args.model == "tiny":
        from ray_ser.demo.synth import synthesize_corpus
        from ray_ser.testing.tiny_models import tiny_speech_llm_checkpoint

        checkpoint = args.checkpoint or str(tiny_speech_llm_checkpoint(work / "tiny"))
        manifest = synthesize_corpus(work / "corpus", n=args.n, seed=321)
        items = [(sf.read(r["path"], dtype="float32")[0], r["text"]) for r in csv.DictReader(open(manifest))]
        use_transcript = True
    else:
        from ray_ser.branches.speech_llm.model import resolve_speech_llm

        checkpoint = args.checkpoint or resolve_speech_llm("offline:selm-base")
        rows = real_clips(Path(args.data), args.n)
        items = [(sf.read(r["path"], dtype="float32")[0], None) for r in rows]
        use_transcript = args.transcript
    seconds = sum(a.size for a, _ in items) / 16000
    print(f"clips: {len(items)}, {seconds:.1f} audio-s; batch {args.batch}; checkpoint {checkpoint}; "
          f"{'speech-text' if use_transcript else 'speech-only'} prompts", flush=True)
    started = time.perf_counter()
    result = {"command": command, "engines": engines_bench(checkpoint, items, args.engines.split(","), args.batch,
                                                            use_transcript)}
    if args.job and rows is not None:
        result["job"] = job_share(rows, args, work)
    result["wall_s"], result["load_end"] = time.perf_counter() - started, os.getloadavg()
    print(f"total {result['wall_s']:.0f} s; load average at end {result['load_end']}")
    (work / "throughput.json").write_text(json.dumps(result, indent=1))
    print(f"figures: {work / 'throughput.json'}")


if __name__ == "__main__":  # vLLM starts worker processes; they must not re-run this
    main()
