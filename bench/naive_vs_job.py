"""The whole labeling job against the script a user would write first: a loop over the files in
one process calling the same models (ASR, every branch, the vote), no Ray.

    PYTHONPATH=. .venv/bin/python bench/naive_vs_job.py --n 300 \
        --set branches.speech.checkpoint=... --set branches.prosody.checkpoint=... ...
    PYTHONPATH=. .venv/bin/python bench/naive_vs_job.py --n 24 --tiny     # smoke run

The --set lines are the ones `ray-ser demo` prints. Without them every branch of the profile gets a
checkpoint trained here for one epoch at the profile's sizes (SmolLM2-135M, MiniLM, ...: the
throughput of trained ones, not their labels); --tiny swaps SmolLM2 for a tiny random LLM, which
measures the plumbing only.

Both run in their own fresh process on the same manifest of espeak clips, without a speaker column.
The job runs with ``speakers.estimate=false``: a loop over single files cannot group the clips by voice
(the job's default, an extra pass over every clip), so with it on the two would neither do the same work
nor give the same labels (49.7% agreement in one run, the job's speaker-normalised prosody moving):

- ``naive``: ``ray_ser.core.annotator.Annotator`` (what Serve runs: ASR, the branches, the vote) in
  a loop, one file at a time: read, decode, annotate, keep the result; written to Parquet at the end;
- ``naive_batched``: the same loop over batches of the ASR batch size (what a careful user writes);
- ``job``: ``ray-ser label`` (``ray_ser.pipeline.run_label_job``), the profile's actor pools; and
  ``job_small``, the same on the first quarter of the files.

Startup included: the process's wall time, from launch (imports, Ray, model loads) to the last row
written. Startup excluded: the marginal rate. The loops load every model before the first file, so
theirs is the audio over the time after ``Annotator.load``; the job's pools load while the first
rows flow, so its startup is not a point in time: its rate is the extra audio of ``job`` over
``job_small`` divided by the extra wall time (both pay the same startup). ``models_loaded_s`` says
when the job's last actor pool finished its constructor (became ALIVE in Ray). Both in audio-seconds per second; the labels of the job and of
the naive loop are compared row by row (the same models must give the same votes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (ResourceSampler, checkpoint_overrides, cleanup_ray_temp, espeak_clips, job_session,  # noqa: E402
                     machine, part_times, pools_ready_s, ray_overrides, table, write_json, write_manifest)

_STARTED = time.perf_counter()  # at import of this module, right after interpreter start


def run_naive(args) -> dict:
    """Inside its own process: the loop, timed per file."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ray_ser.config import load_config
    from ray_ser.core.annotator import Annotator
    from ray_ser.core.branch import Clip
    from ray_ser.io.audio import decode_audio

    cfg = load_config(args.config, args.set)
    annotator = Annotator.load(cfg)
    loaded = time.perf_counter()
    rows = list(csv.DictReader(open(args.manifest)))
    step = cfg.asr.resources.batch_size if args.run == "naive_batched" else 1
    stamps, out, audio_s = [], [], 0.0
    for i in range(0, len(rows), step):
        chunk = rows[i:i + step]
        audios = [decode_audio(Path(r["path"]).read_bytes()) for r in chunk]
        audio_s += sum(a.size for a in audios) / 16_000
        for row, annotation in zip(chunk, annotator.annotate([Clip(a, None, None) for a in audios])):
            out.append({"utterance_id": row["utterance_id"], "label": annotation.label,
                        "transcript": annotation.transcript})
        stamps.append((time.perf_counter() - _STARTED, len(chunk)))
    pq.write_table(pa.Table.from_pylist(out), Path(args.output) / "labels.parquet")
    annotator.close()
    return {"load_s": loaded - _STARTED, "finish_s": time.perf_counter() - _STARTED, "audio_s": audio_s,
            "rows": len(out), "first_done_s": stamps[0][0]}


def run_job(args) -> dict:
    """Inside its own process: `ray-ser label`, then its parts' write times."""
    from ray_ser.config import load_config
    from ray_ser.pipeline import run_label_job

    cfg = load_config(args.config, args.set)
    with job_session(cfg):
        summary = run_label_job(cfg, args.manifest, args.output)
        finished = time.perf_counter() - _STARTED
        ready = pools_ready_s(cfg, _STARTED)
    stamps = part_times(Path(args.output), _STARTED)
    return {"load_s": ready, "finish_s": finished, "job_wall_s": summary.wall_seconds,
            "audio_s": summary.audio_seconds, "rows": summary.rows_written, "parts": len(stamps),
            "first_done_s": stamps[0][0] if stamps else None}


def _child(run: str, args, manifest: Path, output: Path, overrides: list[str]) -> dict:
    """One run in a fresh interpreter, timed from launch by the parent too."""
    result = output / "result.json"
    shutil.rmtree(output, ignore_errors=True)  # the job resumes into an existing output: start empty
    output.mkdir(parents=True)
    command = [sys.executable, __file__, "--run", run, "--manifest", str(manifest), "--output", str(output),
               "--config", args.config, "--result", str(result)] + [x for s in overrides for x in ("--set", s)]
    with ResourceSampler() as sampler:  # the child and its descendants (the job's Ray cluster)
        started = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", ".")})
        body = json.loads(result.read_text())
        body["process_wall_s"] = time.perf_counter() - started
    body["resources"] = sampler.summary()
    return body


def _figures(run: str, body: dict) -> dict:
    load, finish = body["load_s"], body["finish_s"]
    return {"run": run, "rows": body["rows"], "audio_s": round(body["audio_s"], 1),
            "process_wall_s": round(body["process_wall_s"], 1),
            "models_loaded_s": round(load, 1) if load is not None else None,
            "first_result_s": round(body["first_done_s"], 1) if body["first_done_s"] is not None else None,
            "incl_audio_s_per_s": body["audio_s"] / body["process_wall_s"],
            "excl_audio_s_per_s": body["audio_s"] / (finish - load) if load is not None and finish > load else None,
            "excl_is": "audio after the models loaded",
            # CPU seconds per audio second: what the machine spends, whoever else is using it
            "cpu_s_per_audio_s": body["resources"].get("cpu_s", 0.0) / body["audio_s"] if body["audio_s"] else None,
            "peak_total_mb": body["resources"].get("peak_total_mb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--set", action="append", default=[], help="section.field=value, as for ray-ser label")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--tiny", action="store_true",
                        help="checkpoints trained here with tiny base models (a smoke run); without --set "
                        "checkpoints and without --tiny they are trained here at the profile's sizes, one epoch")
    parser.add_argument("--rows-per-file", type=int, default=None, help="the job's sink.rows_per_file "
                        "(default: the profile's)")
    parser.add_argument("--runs", default="naive,naive_batched,job_small,job")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default="runs/bench")
    # child-process arguments
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run:
        body = run_job(args) if args.run.startswith("job") else run_naive(args)
        Path(args.result).write_text(json.dumps(body))
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_naive_"))
    overrides = checkpoint_overrides(args, work)
    clips = espeak_clips(work, args.n, seed=4242)
    manifests = {"full": write_manifest(clips, work / "manifest.csv"),
                 "small": write_manifest(clips[:max(1, len(clips) // 4)], work / "manifest-quarter.csv")}
    print(f"{len(clips)} espeak clips, {sum(c.seconds for c in clips):.0f} audio-s; profile {args.config}")
    job_overrides = overrides + ray_overrides(work) + ["speakers.estimate=false"] + (
        [f"sink.rows_per_file={args.rows_per_file}"] if args.rows_per_file else [])
    results = {}
    try:
        for run in args.runs.split(","):
            extra = job_overrides if run.startswith("job") else overrides
            manifest = manifests["small" if run == "job_small" else "full"]
            results[run] = _child(run, args, manifest, work / f"out-{run}", extra)
            print(table([_figures(run, results[run])], ["run", "rows", "process_wall_s", "models_loaded_s",
                                                        "incl_audio_s_per_s"]), flush=True)
    finally:
        cleanup_ray_temp()

    rows = [_figures(run, body) for run, body in results.items()]
    if "job" in results and "job_small" in results:
        big, small = results["job"], results["job_small"]
        extra_s = big["process_wall_s"] - small["process_wall_s"]
        for r in rows:
            if r["run"] == "job":
                r["excl_audio_s_per_s"] = (big["audio_s"] - small["audio_s"]) / extra_s if extra_s > 0 else None
                r["excl_is"] = "marginal over job_small"
            if r["run"] == "job_small":
                r["excl_audio_s_per_s"], r["excl_is"] = None, None
    ratios = {}
    if "job" in results:
        job = next(r for r in rows if r["run"] == "job")
        for r in rows:
            if not r["run"].startswith("job"):
                ratios[f"job / {r['run']}"] = {
                    "startup_included": job["incl_audio_s_per_s"] / r["incl_audio_s_per_s"],
                    "startup_excluded": (job["excl_audio_s_per_s"] / r["excl_audio_s_per_s"]
                                         if job["excl_audio_s_per_s"] and r["excl_audio_s_per_s"] else None)}
    agreement = _agreement(work, results)
    print()
    print(table(rows, ["run", "rows", "audio_s", "process_wall_s", "models_loaded_s", "first_result_s",
                       "incl_audio_s_per_s",
                       "excl_audio_s_per_s", "cpu_s_per_audio_s", "peak_total_mb"]))
    for key, value in ratios.items():
        excl = f"{value['startup_excluded']:.2f}x" if value["startup_excluded"] else "n/a"
        print(f"{key}: {value['startup_included']:.2f}x startup included, {excl} startup excluded")
    if agreement is not None:
        print(f"labels: the job and the naive loop agree on {agreement:.1%} of rows")
    path = write_json(Path(args.out) / "naive_vs_job.json", {
        "command": " ".join(sys.argv), "machine": machine(), "config": args.config,
        "overrides": [o for o in overrides], "clips": len(clips), "results": results, "figures": rows,
        "ratios": ratios, "label_agreement": agreement,
        "targets": {"startup_excluded": 1.5, "startup_included": 1.0}})
    print(f"wrote {path}")


def _agreement(work: Path, results: dict) -> float | None:
    """Share of rows where the job's vote equals the naive loop's."""
    if "job" not in results or "naive" not in results:
        return None
    import pyarrow.parquet as pq

    naive = {r["utterance_id"]: r["label"] for r in pq.read_table(work / "out-naive" / "labels.parquet").to_pylist()}
    job_rows = [r for p in (work / "out-job").rglob("*.parquet")
                for r in pq.read_table(p, columns=["utterance_id", "label"]).to_pylist()]
    if not job_rows:
        return None
    return sum(naive.get(r["utterance_id"]) == r["label"] for r in job_rows) / len(job_rows)


if __name__ == "__main__":
    main()
