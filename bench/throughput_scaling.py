"""Labeling throughput as the input grows: 100, 300, 1,000 and 3,000 clips and one 2-hour recording.

    PYTHONPATH=. .venv/bin/python bench/throughput_scaling.py --set branches.speech.checkpoint=... ...
    PYTHONPATH=. .venv/bin/python bench/throughput_scaling.py --sizes 20,60 --hours 0.05 --tiny   # smoke

Each size is one run of the job (``run_label_job``, what ``ray-ser label`` runs) on its own local
Ray cluster, over espeak clips, sampled every 0.5 s: wall time, audio-seconds per second with
startup and without (the marginal rate over the next smaller size: both pay the same startup),
CPU used, and peak
resident memory of the driver and of the cluster's processes (gcs, raylet, workers; RSS, so the
shared object store counts in each process that maps it). The 2-hour recording is one manifest
row that the decode stage cuts into VAD segments. bench/memory_scaling.py (the reliability work)
owns the memory side in depth; this one reports memory only beside the throughput it measures.
Writes OUT/throughput_scaling.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (ResourceSampler, checkpoint_overrides, cleanup_ray_temp, espeak_clips, machine,  # noqa: E402
                     job_session, pools_ready_s, ray_overrides, table, tiled_recording, write_json,
                     write_manifest)


def timed_job(cfg, manifest: Path, output: Path) -> dict:
    from ray_ser.pipeline import run_label_job

    with ResourceSampler() as sampler:
        started = time.perf_counter()
        with job_session(cfg):
            summary = run_label_job(cfg, str(manifest), str(output))
            ready = pools_ready_s(cfg, started)
    return {"rows": summary.rows_written, "rows_ok": summary.rows_ok, "audio_s": round(summary.audio_seconds, 1),
            "wall_s": round(sampler.wall, 1), "pools_ready_s": round(ready, 1) if ready is not None else None,
            "audio_s_per_s": summary.audio_seconds / sampler.wall, **sampler.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--set", action="append", default=[], help="section.field=value, as for ray-ser label")
    parser.add_argument("--sizes", default="100,300,1000,3000")
    parser.add_argument("--hours", type=float, default=2.0, help="length of the long recording (0: none)")
    parser.add_argument("--tiny", action="store_true",
                        help="checkpoints trained here with tiny base models (a smoke run); without --set "
                        "checkpoints and without --tiny they are trained here at the profile's sizes, one epoch")
    parser.add_argument("--asr-only", action="store_true", help="branches={}: decode, ASR and the sink")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()

    from ray_ser.config import load_config

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_scaling_"))
    overrides = (list(args.set) + ["branches={}"]) if args.asr_only else checkpoint_overrides(args, work)
    overrides += ray_overrides(work)
    cfg = load_config(args.config, overrides)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    pool = espeak_clips(work, max(sizes), seed=6161) if sizes else []
    inputs = {f"{n} clips": write_manifest(pool[:n], work / f"manifest-{n}.csv") for n in sizes}
    if args.hours > 0:
        recording = tiled_recording(work, args.hours)
        inputs[f"{args.hours:g} h recording"] = write_manifest([recording], work / "manifest-long.csv")
    print(f"profile {args.config}, branches {list(cfg.branches)}; inputs: {list(inputs)}")

    results = []
    try:
        for name, manifest in inputs.items():
            output = work / f"out-{name.replace(' ', '-')}"
            shutil.rmtree(output, ignore_errors=True)  # the job resumes into an existing output: start empty
            row = {"input": name, **timed_job(cfg, manifest, output)}
            previous = results[-1] if results and name.endswith("clips") else None
            extra = row["wall_s"] - previous["wall_s"] if previous else 0.0
            row["marginal_audio_s_per_s"] = (row["audio_s"] - previous["audio_s"]) / extra if extra > 0 else None
            results.append(row)
            print(table([row], ["input", "rows", "audio_s", "wall_s", "audio_s_per_s", "marginal_audio_s_per_s",
                                "peak_driver_mb", "peak_workers_mb"]).splitlines()[-1], flush=True)
    finally:
        cleanup_ray_temp()
    print()
    print(table(results, ["input", "rows", "audio_s", "wall_s", "pools_ready_s", "audio_s_per_s",
                          "marginal_audio_s_per_s", "cpu_utilisation", "peak_driver_mb", "peak_workers_mb",
                          "peak_total_mb"]))
    by_name = {r["input"]: r for r in results}
    memory_ratio = None
    if "300 clips" in by_name and "3000 clips" in by_name:
        memory_ratio = by_name["3000 clips"]["peak_total_mb"] / by_name["300 clips"]["peak_total_mb"]
        print(f"peak memory, 3,000 clips over 300: {memory_ratio:.2f}x (target <= 1.3)")
    path = write_json(Path(args.out) / "throughput_scaling.json", {
        "command": " ".join(sys.argv), "machine": machine(), "config": args.config, "overrides": overrides,
        "results": results, "peak_memory_3000_over_300": memory_ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
