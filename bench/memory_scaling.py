"""Peak memory of the labeling job as its input grows: the driver and every Ray worker process.

Each case runs `run_label_job` in a process of its own (its own local Ray cluster); this process
samples the resident memory of that driver and of each of its Ray worker processes (by title:
MapBatches(DecodeStage), MapBatches(AsrStage), the write tasks, ...) every --interval seconds.

Cases: short clips (espeak utterances, hard-linked N times under distinct names) at each --clips
size, and recordings of each --long-minutes (espeak speech and pauses, 16 kHz 16-bit WAV),
labelled as VAD segments. The job should need about the same memory for 10x the clips (target at
most 1.3x), and the same for a 2-hour recording as for a 20-minute one. Memory is private resident
memory (RSS less shared pages: Ray's object store is mapped into every worker); the JSON also
holds each process's peak RSS.

    # the real figures (ASR on; ~30-40 min on a quiet 2-core machine)
    python bench/memory_scaling.py --clips 300,3000 --long-minutes 20,120
    # a smoke run (about a minute on a quiet machine)
    python bench/memory_scaling.py --clips 10,100 --long-minutes 2 --no-asr

Prints a table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _clips(work: Path, n: int, seed: int = 5) -> Path:
    """A manifest of n short clips: 24 espeak utterances, hard-linked under n distinct names."""
    from ray_ser.demo.synth import synthesize_corpus

    base = work / "base"
    if not (base / "manifest.csv").exists():
        synthesize_corpus(base, n=24, seed=seed)
    sources = [r["path"] for r in csv.DictReader(open(base / "manifest.csv"))]
    folder = work / f"clips{n}"
    folder.mkdir(exist_ok=True)
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path"])
        for i in range(n):
            target = folder / f"c{i:06d}.wav"
            if not target.exists():
                os.link(sources[i % len(sources)], target)
            writer.writerow([f"c{i:06d}", str(target)])
    return manifest


def _long(work: Path, minutes: float) -> Path:
    """A manifest of one recording of `minutes`: espeak sentences and 1.2 s pauses, written a minute at a time."""
    import numpy as np
    import soundfile as sf

    from ray_ser.demo.synth import synthesize_corpus

    base = work / "base"
    if not (base / "manifest.csv").exists():
        synthesize_corpus(base, n=24, seed=5)
    pause = np.zeros(int(1.2 * 16000), dtype=np.float32)
    minute = np.concatenate([piece for r in csv.DictReader(open(base / "manifest.csv"))
                             for piece in (sf.read(r["path"], dtype="float32")[0], pause)])
    path = work / f"long{minutes:g}.wav"
    if not path.exists():
        total = int(minutes * 60 * 16000)
        with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as out:
            written = 0
            while written < total:
                piece = minute[: total - written]
                out.write(piece)
                written += piece.size
    manifest = work / f"long{minutes:g}.csv"
    manifest.write_text(f"utterance_id,path\nlong,{path}\n")
    return manifest


def _child(args: argparse.Namespace) -> None:
    """Run one labeling job (in the process being measured) and print its summary as JSON."""
    from ray_ser.config import load_config
    from ray_ser.pipeline import run_label_job

    cfg = load_config(args.config, args.set)
    summary = run_label_job(cfg, args.manifest, args.out)
    print("SUMMARY " + json.dumps({"rows": summary.rows_written, "ok": summary.rows_ok,
                                   "audio_s": summary.audio_seconds, "wall_s": summary.wall_seconds}))


def _private(info) -> float:
    """Resident memory a process holds of its own: RSS less shared pages (Ray's object store is mapped
    into every worker, and the pages of the objects it touched count in its RSS)."""
    return info.rss - getattr(info, "shared", 0)


def _measure(cmd: list[str], interval: float) -> dict:
    """Run cmd; peak private memory of the process itself and of each Ray worker process under it, by title."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[str, float] = {}
    rss_peaks: dict[str, float] = {}
    total_peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal total_peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                workers = 0.0
                info = root.memory_info()
                peaks["driver"] = max(peaks.get("driver", 0.0), _private(info))
                rss_peaks["driver"] = max(rss_peaks.get("driver", 0.0), info.rss)
                for child in root.children(recursive=True):
                    try:
                        title = " ".join(child.cmdline())
                        info = child.memory_info()
                        rss = _private(info)
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    if not title.startswith("ray::"):
                        continue  # raylet, GCS, log monitor: the same whatever the input
                    # "ray::MapWorker(MapBatches(AsrStage)).submit" -> "MapWorker(MapBatches(AsrStage))"
                    name = re.sub(r"\.[A-Za-z_]+$", "", title.split()[0].replace("ray::", "")).split(":")[-1]
                    if name == "IDLE":
                        continue
                    peaks[name] = max(peaks.get(name, 0.0), rss)
                    rss_peaks[name] = max(rss_peaks.get(name, 0.0), info.rss)
                    workers += rss
                total_peak = max(total_peak, workers)
            except psutil.NoSuchProcess:
                break
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    summary = json.loads(next(line for line in output.splitlines() if line.startswith("SUMMARY "))[8:])
    workers = {k: v for k, v in peaks.items() if k != "driver"}
    return {**summary, "driver_peak_mb": peaks.get("driver", 0) / 2**20,
            "worker_peak_mb": max(workers.values(), default=0) / 2**20,
            "workers_total_peak_mb": total_peak / 2**20,
            "by_process_mb": {k: v / 2**20 for k, v in sorted(workers.items())},
            "rss_by_process_mb": {k: v / 2**20 for k, v in sorted(rss_peaks.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", default="300,3000", help="short-clip input sizes, comma-separated")
    parser.add_argument("--long-minutes", default="20,120",
                        help="lengths of the long recordings, comma-separated ('': none); the same memory for "
                        "each shows it is bounded")
    parser.add_argument("--asr", action=argparse.BooleanOptionalAction, default=True,
                        help="run Whisper (the labeling job without branches); --no-asr: decode and sink only")
    parser.add_argument("--config", default="demo")
    parser.add_argument("--set", action="append", default=[], help="extra config override (repeatable)")
    parser.add_argument("--work", default=None, help="where the inputs are built (default: a temp dir)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between memory samples")
    parser.add_argument("--json", default="bench/memory_scaling.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    work = Path(args.work or tempfile.mkdtemp(prefix="ray_ser-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    overrides = ["branches={}", "ray.progress_bars=false", f"asr.enabled={str(args.asr).lower()}",
                 f"ray.temp_dir=/tmp/rsm{os.getpid()}", *args.set]
    cases = [(f"{n} clips", _clips(work, n)) for n in (int(x) for x in args.clips.split(",") if x)]
    for minutes in (float(x) for x in args.long_minutes.split(",") if x):
        cases.append((f"{minutes:g} min recording", _long(work, minutes)))
    results = {}
    for name, manifest in cases:
        out = work / f"out-{name.replace(' ', '-')}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh output: an earlier run's would be resumed, not redone
        cmd = [sys.executable, __file__, "--child", "--config", args.config, "--manifest", str(manifest),
               "--out", str(out), *(x for o in overrides for x in ("--set", o))]
        started = time.perf_counter()
        results[name] = {**_measure(cmd, args.interval), "process_s": time.perf_counter() - started}
        print(f"{name}: done in {results[name]['process_s']:.0f} s", flush=True)

    # Ratios against the first case of the same kind: clips against the fewest clips, recordings against
    # the shortest recording.
    baseline: dict[bool, dict] = {}
    print(f"\n{'case':>22} {'rows':>6} {'audio s':>8} {'wall s':>7} {'driver MB':>10} {'worker MB':>10} "
          f"{'all workers MB':>15} {'driver x':>9} {'worker x':>9}")
    for name, r in results.items():
        first = baseline.setdefault(name.endswith("recording"), r)
        print(f"{name:>22} {r['rows']:>6} {r['audio_s']:>8.0f} {r['wall_s']:>7.0f} {r['driver_peak_mb']:>10.0f} "
              f"{r['worker_peak_mb']:>10.0f} {r['workers_total_peak_mb']:>15.0f} "
              f"{r['driver_peak_mb'] / first['driver_peak_mb']:>9.2f} "
              f"{r['worker_peak_mb'] / first['worker_peak_mb']:>9.2f}")
    print("\npeak private memory (RSS less shared pages) per worker process (MB):")
    for name, r in results.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["by_process_mb"].items()))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"asr": args.asr, "config": args.config, "overrides": overrides,
                                           "cases": results}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
