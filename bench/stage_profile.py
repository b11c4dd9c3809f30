"""Where the labeling job's time goes: each stage alone against the whole job, on the same clips.

    PYTHONPATH=. .venv/bin/python bench/stage_profile.py --n 300 --set branches.speech.checkpoint=... ...
    PYTHONPATH=. .venv/bin/python bench/stage_profile.py --n 32 --tiny      # smoke run

1. Each stage alone, in this process, as the job configures it (its batch size; torch threads as
   Ray gives an actor with the stage's num_cpus), model load excluded: decode, ASR, every branch,
   the vote, the Parquet sink. Rows per second and seconds per 100 clips.
2. The whole job (the plan ``ray-ser label`` runs, on a local Ray cluster of its own), sampled every
   0.5 s: CPU used by its processes over the cores' time, the machine's CPU use, and peak memory of
   the driver and of the cluster's processes; and once more on the first quarter of the clips. Its
   throughput without startup is the marginal rate: the extra rows of the full run over the extra
   wall time (both runs pay the same startup).
3. The ratio of the job's throughput to its slowest stage's alone (target >= 0.8), and to the
   stages run back to back (what a single process doing every stage in turn would reach).

Writes OUT/stage_profile.json, OUT/stage_profile.png (the per-stage time table as bars and the
job's CPU use over time) and OUT/stage_profile_ray_data_stats.txt (Ray Data's own per-operator stats).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (ResourceSampler, actor_threads, bar_chart_png, checkpoint_overrides,  # noqa: E402
                     cleanup_ray_temp, espeak_clips, machine, part_times, pools_ready_s, ray_overrides, table,
                     write_json, write_manifest)


def _batches(table_, size: int):
    for start in range(0, table_.num_rows, size):
        yield table_.slice(start, size)


def _timed(name: str, batches, fn, threads: int | None = None) -> tuple[dict, list]:
    """Run fn over the batches, timing only the calls."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    out, elapsed, cpu, rows = [], 0.0, 0.0, 0
    try:
        for batch in batches:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            out.append(fn(batch))
            elapsed += time.perf_counter() - wall0
            cpu += time.process_time() - cpu0
            rows += batch.num_rows
    finally:
        torch.set_num_threads(previous)
    return {"stage": name, "rows": rows, "wall_s": elapsed, "cpu_s": cpu,
            "rows_per_s": rows / elapsed if elapsed else None,
            "s_per_100": 100 * elapsed / rows if rows else None}, out


def standalone(cfg, manifest: Path, work: Path) -> tuple[list[dict], dict]:
    """Each stage of the job's own plan (``label_plan``) alone, in order, each fed the previous
    stage's output: an actor stage built once (its load timed apart), a task stage called per batch."""
    import pyarrow as pa

    from ray_ser.pipeline import job_inputs, label_plan

    current = job_inputs(cfg, str(manifest)).table
    shutil.rmtree(work / "standalone-out", ignore_errors=True)
    rows, loads = [], {}
    for plan in label_plan(cfg, str(work / "standalone-out"), "profile"):
        if plan.is_actor:
            started = time.perf_counter()
            stage = plan.udf(**plan.kwargs)
            loads[plan.name] = time.perf_counter() - started
            call, size = stage, plan.resources.batch_size
        else:
            stage, size = None, plan.batch_size or max(1, current.num_rows)
            call = (lambda p: lambda b: p.udf(b, **p.kwargs))(plan)
        row, out = _timed(plan.name, _batches(current, size), call, actor_threads(plan.resources.num_cpus))
        rows.append(row)
        current = pa.concat_tables(out) if out else current
        if stage is not None and hasattr(stage, "teardown"):
            stage.teardown()
        del stage, call
    return rows, loads


def whole_job(cfg, manifest: Path, output: Path) -> dict:
    """The job's plan on its own local Ray cluster, sampled; its parts timed by modification time."""
    from ray_ser.pipeline import _run, collect_speaker_statistics, job_inputs, label_plan, new_run_id
    from ray_ser.runtime import ray_session

    with ResourceSampler() as sampler:
        started = time.perf_counter()
        with ray_session(cfg.ray):
            ray_up = time.perf_counter() - started
            inputs = job_inputs(cfg, str(manifest)).table
            speakers = collect_speaker_statistics(cfg, inputs)
            plans = label_plan(cfg, str(output), new_run_id(), speakers=speakers)
            plan = _run(cfg, inputs, plans)  # what run_label_job iterates, without its progress line
            rows = 0
            for batch in plan.iter_batches(batch_format="pyarrow", batch_size=None):
                rows += sum(batch.column("rows").to_pylist())
            ready = pools_ready_s(cfg, started)
            stats = plan.stats()
            names = [p.name for p in plans]
        wall = time.perf_counter() - started
    stamps = part_times(output, started)
    return {"rows": rows, "wall_s": wall, "ray_start_s": ray_up, "pools_ready_s": ready,
            "first_part_s": stamps[0][0] if stamps else None, "parts": len(stamps),
            "rows_per_s_incl_startup": rows / wall,
            **sampler.summary(), "timeline": [
                {"t": round(s["t"], 2), "driver_mb": round(s["driver_rss"] / 2**20, 1),
                 "workers_mb": round(s["workers_rss"] / 2**20, 1), "machine_cpu": s["machine_cpu_pct"] / 100}
                for s in sampler.samples], "_cpu_curve": _cpu_curve(sampler.samples), "ray_data_stats": stats,
            "operators": ray_data_operators(stats, names)}


def ray_data_operators(stats: str, plan_names: list[str]) -> list[dict]:
    """Per operator of Ray Data's stats text: its remote wall and CPU time in total (seconds). Operators
    are named by the plan's stages in order (Ray Data calls every branch 'BranchStage')."""
    import re

    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

    def seconds(text: str) -> float:
        return float(text[:-2]) * units[text[-2:]] if text[-2:] in units else float(text[:-1]) * units[text[-1:]]

    out, names = [], iter(plan_names)
    for block in re.split(r"\n(?=Operator \d+ )", stats):
        head = re.match(r"Operator \d+ (.+?):", block)
        if not head or "FromArrow" in head.group(1) or "Input" == head.group(1):
            continue
        wall = re.search(r"Remote wall time: .*?, ([\d.]+(?:us|ms|s)) total", block)
        cpu = re.search(r"Remote cpu time: .*?, ([\d.]+(?:us|ms|s)) total", block)
        fused = head.group(1).count("->") + 1  # Ray Data fuses consecutive task stages (vote->sink)
        out.append({"operator": head.group(1), "stage": "+".join(next(names, "?") for _ in range(fused)),
                    "remote_wall_s": seconds(wall.group(1)) if wall else None,
                    "remote_cpu_s": seconds(cpu.group(1)) if cpu else None})
    return out


def _cpu_curve(samples: list[dict]) -> list[tuple[float, float]]:
    """(t, share of the cores this run's processes used since the previous sample)."""
    import os

    cores = os.cpu_count() or 1
    curve = []
    for a, b in zip(samples, samples[1:]):
        dt = b["t"] - a["t"]
        if dt > 0:
            curve.append((b["t"], (b["tree_cpu_s"] - a["tree_cpu_s"]) / (dt * cores)))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--set", action="append", default=[], help="section.field=value, as for ray-ser label")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--tiny", action="store_true",
                        help="checkpoints trained here with tiny base models (a smoke run); without --set "
                        "checkpoints and without --tiny they are trained here at the profile's sizes, one epoch")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()

    from ray_ser.config import load_config

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_profile_"))
    overrides = checkpoint_overrides(args, work)
    clips = espeak_clips(work, args.n, seed=5151)
    overrides += ray_overrides(work)
    cfg = load_config(args.config, overrides)
    manifest = write_manifest(clips, work / "manifest.csv")
    audio_s = sum(c.seconds for c in clips)
    print(f"{len(clips)} espeak clips, {audio_s:.0f} audio-s; profile {args.config}, "
          f"branches {list(cfg.branches)}")

    stages, loads = standalone(cfg, manifest, work)
    quarter = write_manifest(clips[:max(1, len(clips) // 4)], work / "manifest-quarter.csv")
    try:
        shutil.rmtree(work / "job-small-out", ignore_errors=True)  # the job resumes into an existing output
        small = whole_job(cfg, quarter, work / "job-small-out")
        small.pop("ray_data_stats"), small.pop("_cpu_curve"), small.pop("timeline")
        shutil.rmtree(work / "job-out", ignore_errors=True)
        job = whole_job(cfg, manifest, work / "job-out")
    finally:
        cleanup_ray_temp()
    # Startup excluded: the marginal rate of the full run over the quarter run (both pay the same startup;
    # the pools load while the first rows flow, so there is no single moment the job "starts").
    extra = job["wall_s"] - small["wall_s"]
    job["rows_per_s_marginal"] = (job["rows"] - small["rows"]) / extra if extra > 0 else None
    job["quarter_run"] = small

    measured = [s for s in stages if s["rows_per_s"]]
    slowest = min(measured, key=lambda s: s["rows_per_s"])
    back_to_back = 1.0 / sum(1.0 / s["rows_per_s"] for s in measured)
    marginal = job["rows_per_s_marginal"]
    ratios = {"job_marginal / slowest_stage": marginal / slowest["rows_per_s"] if marginal else None,
              "job_incl_startup / slowest_stage": job["rows_per_s_incl_startup"] / slowest["rows_per_s"],
              "job_marginal / stages_back_to_back": marginal / back_to_back if marginal else None}
    for s in stages:
        s["load_s"] = round(loads.get(s["stage"], 0.0), 2)
        s["cpu_per_wall"] = round(s["cpu_s"] / s["wall_s"], 2) if s["wall_s"] else None
        s["cpu_s_per_100"] = 100 * s["cpu_s"] / s["rows"] if s["rows"] else None
    # CPU seconds are what the machine spends whoever else runs on it: the robust comparison on a busy box
    stages_cpu = sum(s["cpu_s_per_100"] or 0.0 for s in stages)
    job_cpu = 100 * job.get("cpu_s", 0.0) / job["rows"] if job["rows"] else None
    ratios["job_cpu (with startup) / stages_cpu"] = job_cpu / stages_cpu if job_cpu and stages_cpu else None
    job_row = {"stage": "job (marginal)", "rows": job["rows"], "wall_s": job["wall_s"],
               "rows_per_s": marginal, "s_per_100": 100 / marginal if marginal else None,
               "cpu_s_per_100": job_cpu}
    print()
    print(table([*stages, job_row], ["stage", "rows", "load_s", "wall_s", "rows_per_s", "s_per_100", "cpu_per_wall",
                                     "cpu_s_per_100"]))
    if job["operators"]:
        print("\nin the job (Ray Data's stats; operators it ran without stats are missing):")
        print(table(job["operators"], ["operator", "stage", "remote_wall_s", "remote_cpu_s"]))
    print(f"\nslowest stage alone: {slowest['stage']} at {slowest['rows_per_s']:.2f} rows/s; stages back to back "
          f"{back_to_back:.2f} rows/s")
    print(f"job: {job['rows']} rows in {job['wall_s']:.1f} s ({job['rows_per_s_incl_startup']:.2f} rows/s with "
          f"startup; Ray up in {job['ray_start_s']:.1f} s, every pool loaded at "
          + (f"{job['pools_ready_s']:.1f} s)" if job["pools_ready_s"] is not None else "? s)")
          + (f"; marginal rate over the quarter run {marginal:.2f} rows/s" if marginal else ""))
    for key, value in ratios.items():
        print(f"{key}: " + (f"{value:.2f}" if value is not None else "n/a"))
    print(f"CPU: this run's processes used {job.get('cpu_utilisation', 0):.0%} of the cores over the job "
          f"(machine: {job.get('machine_cpu_utilisation', 0):.0%}); peak memory driver "
          f"{job.get('peak_driver_mb')} MB, cluster processes {job.get('peak_workers_mb')} MB")

    out = Path(args.out)
    (out / "stage_profile_ray_data_stats.txt").parent.mkdir(parents=True, exist_ok=True)
    (out / "stage_profile_ray_data_stats.txt").write_text(job.pop("ray_data_stats"))
    curve = job.pop("_cpu_curve")
    bars = [(s["stage"], s["s_per_100"], f"({s['rows_per_s']:.2f}/s)") for s in measured]
    if marginal:
        bars.append(("job (marginal)", 100 / marginal, f"({marginal:.2f}/s)"))
    png = bar_chart_png(out / "stage_profile.png", f"seconds per 100 clips ({len(clips)} espeak clips, "
                        f"{machine()['cpus']} cores)", bars, "s", curve,
                        "CPU used by the job's processes, share of all cores")
    path = write_json(out / "stage_profile.json", {
        "command": " ".join(sys.argv), "machine": machine(), "config": args.config, "overrides": overrides,
        "clips": len(clips), "audio_s": audio_s, "stages": stages, "model_load_s": loads, "job": job,
        "slowest_stage": slowest["stage"], "stages_back_to_back_rows_per_s": back_to_back, "ratios": ratios,
        "cpu_curve": curve, "target": {"job_marginal / slowest_stage": 0.8}})
    print(f"wrote {path}, {png}")


if __name__ == "__main__":
    main()
