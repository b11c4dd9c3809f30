"""What the benchmarks share: the clips with their reference text, the machine, resource sampling,
tables, JSON, tiny checkpoints for smoke runs. Import as ``from _common import ...`` (bench/ is the
script's directory, so it is on sys.path).

Clip sets (each clip: id, 16 kHz mono float32 audio, reference text, language or None to detect):
- ``espeak_clips``: the synthetic acted corpus (ray_ser.demo.synth), its sentences as the reference;
- ``real_clips``: RAVDESS (English, one of two known sentences) and EmoDB (German, ten known
  sentences) from the shared real-speech folder (its README), the sentence read off the file name;
- ``long_recordings``: espeak sentences joined by pauses into recordings of a few minutes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SAMPLE_RATE = 16_000
REAL_SPEECH = Path(os.environ.get("RAY_SER_REAL_SPEECH",
                                  Path(__file__).resolve().parents[2] / "shared" / "data" / "real-speech"))
RAVDESS_SENTENCES = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
EMODB_SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}


@dataclass(frozen=True)
class Clip:
    id: str
    audio: np.ndarray = field(repr=False)
    text: str
    language: str | None  # None: the language is detected per clip
    path: str | None = None

    @property
    def seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE


def read_audio(path: str | Path) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=False)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz, expected {SAMPLE_RATE}")
    return audio if audio.ndim == 1 else audio.mean(axis=1)


def espeak_clips(workdir: Path, n: int, seed: int = 321, split: str = "heldout") -> list[Clip]:
    """n synthetic acted clips (English) with their sentences."""
    from ray_ser.demo.synth import synthesize_corpus

    if n <= 0:
        return []
    manifest = synthesize_corpus(workdir / f"espeak-{split}-{seed}-{n}", n=n, seed=seed, split=split)
    return [Clip(r["utterance_id"], read_audio(r["path"]), r["text"], "en", r["path"])
            for r in csv.DictReader(open(manifest))]


def real_speech_reference(utterance_id: str) -> str:
    """RAVDESS names its statement in the file name (field 5), EmoDB its sentence code (a01 ... b10)."""
    if utterance_id.startswith("ravdess-"):
        return RAVDESS_SENTENCES[utterance_id.split("-")[5]]
    if utterance_id.startswith("emodb-"):
        return EMODB_SENTENCES[utterance_id[-5:-2]]
    raise ValueError(f"no known sentence for {utterance_id}")


def real_clips(corpus: str, n: int, detect_language: bool = True) -> list[Clip]:
    """n clips of a real corpus ('ravdess', 'emodb'), spread evenly over its manifest (speakers,
    emotions), with the sentence they speak; [] when the shared folder is absent (said on stderr)."""
    if n <= 0:
        return []
    manifest = REAL_SPEECH / corpus / "manifest.csv"
    if not manifest.is_file():
        import sys

        print(f"[bench] {manifest} is absent: no {corpus} clips (set RAY_SER_REAL_SPEECH)", file=sys.stderr)
        return []
    rows = list(csv.DictReader(open(manifest)))
    picked = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, min(n, len(rows)))]
    return [Clip(r["utterance_id"], read_audio(manifest.parent / r["path"]), real_speech_reference(r["utterance_id"]),
                 None if detect_language else r["language"], str(manifest.parent / r["path"])) for r in picked]


def long_recordings(workdir: Path, count: int, minutes: float, seed: int = 900, pause_s: float = 0.8) -> list[Clip]:
    """count recordings of about `minutes` each: espeak sentences joined by pauses (reference: the
    sentences in order). Written as WAV too, for whatever reads paths."""
    import soundfile as sf

    if count <= 0:
        return []
    per = max(1, int(minutes * 60 / 3.2))  # ~3.2 s per sentence with its pause
    sentences = espeak_clips(workdir, per * count, seed=seed, split="train")
    gap = np.zeros(int(pause_s * SAMPLE_RATE), dtype=np.float32)
    out = []
    for k in range(count):
        part = sentences[k * per:(k + 1) * per]
        audio = np.concatenate([piece for c in part for piece in (c.audio, gap)])
        path = workdir / "long" / f"long-{seed}-{k}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
        out.append(Clip(f"long-{k}", audio, " ".join(c.text for c in part), "en", str(path)))
    return out


def tiled_recording(workdir: Path, hours: float, seed: int = 901) -> Clip:
    """One recording of `hours` (a 5-minute espeak recording repeated), written as a 16 kHz WAV."""
    import soundfile as sf

    path = workdir / "long" / f"tiled-{hours:g}h.wav"
    base = long_recordings(workdir, 1, 5.0, seed=seed)[0]
    repeats = max(1, int(round(hours * 3600 / base.seconds)))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with sf.SoundFile(str(path), "w", SAMPLE_RATE, 1, subtype="PCM_16") as out:
            for _ in range(repeats):
                out.write(base.audio)
    return Clip(f"tiled-{hours:g}h", np.zeros(0, np.float32), " ".join([base.text] * repeats), "en", str(path))


def write_manifest(clips: Iterable[Clip], path: Path, speaker: bool = False) -> Path:
    """A labeling manifest (utterance_id, path) of the clips."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path"])
        for clip in clips:
            writer.writerow([clip.id, clip.path])
    return path


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Word errors summed over the clips over reference words summed (the package's edit distance)."""
    from ray_ser.evaluate import word_errors

    errors = [word_errors(r, h) for r, h in zip(references, hypotheses)]
    words = sum(n for _, n in errors)
    return sum(e for e, _ in errors) / words if words else 0.0


def looped(reference: str, hypothesis: str) -> bool:
    """A transcript with more than twice the reference's words: a repetition loop."""
    return len(hypothesis.split()) > 2 * max(1, len(reference.split()))


def machine() -> dict:
    """What the figures were measured on, and how busy it was."""
    import psutil

    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                     "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor(), "memory_gb":
            round(psutil.virtual_memory().total / 2**30, 1), "load_average_1m_at_start": os.getloadavg()[0],
            "python": platform.python_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


class ResourceSampler:
    """Samples, every `interval` s in a thread, this process and its descendants (a local Ray
    cluster's gcs, raylet and workers): RSS of the driver and of the rest, CPU seconds used, and the
    machine's CPU use. Descendants only: other people's Ray clusters on the machine are not counted.
    RSS counts the shared object store in each process that maps it, so the workers' sum is an upper bound."""

    def __init__(self, interval: float = 0.5) -> None:
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = psutil.Process()
        self._cpu_seen: dict[int, float] = {}

    def __enter__(self) -> ResourceSampler:
        self._psutil.cpu_percent(None)
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self._started

    def _sample(self) -> dict:
        procs = [self._me]
        try:
            procs += self._me.children(recursive=True)
        except self._psutil.Error:
            pass
        driver = workers = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                    # own time only: a reaped child's time would count twice (its pid stays in _cpu_seen)
                    self._cpu_seen[proc.pid] = times.user + times.system
            except self._psutil.Error:
                continue
            if proc.pid == self._me.pid:
                driver = rss
            else:
                workers += rss
        return {"t": time.perf_counter() - self._started, "driver_rss": driver, "workers_rss": workers,
                "tree_cpu_s": sum(self._cpu_seen.values()), "machine_cpu_pct": self._psutil.cpu_percent(None)}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._sample())
            self._stop.wait(self.interval)
        self.samples.append(self._sample())

    def summary(self) -> dict:
        if not self.samples:
            return {}
        cores = os.cpu_count() or 1
        first, last = self.samples[0], self.samples[-1]
        span = max(1e-9, last["t"] - first["t"])
        return {
            "peak_driver_mb": round(max(s["driver_rss"] for s in self.samples) / 2**20, 1),
            "peak_workers_mb": round(max(s["workers_rss"] for s in self.samples) / 2**20, 1),
            "peak_total_mb": round(max(s["driver_rss"] + s["workers_rss"] for s in self.samples) / 2**20, 1),
            "cpu_s": round(last["tree_cpu_s"] - first["tree_cpu_s"], 1),
            # CPU seconds this run's processes used over the cores' wall seconds (1.0: every core busy with it)
            "cpu_utilisation": round((last["tree_cpu_s"] - first["tree_cpu_s"]) / (span * cores), 3),
            "machine_cpu_utilisation": round(float(np.mean([s["machine_cpu_pct"] for s in self.samples[1:]] or [0]))
                                             / 100, 3),
        }


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain text table of the rows' columns (floats to 3 significant places)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return "" if value is None else str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def ray_overrides(workdir: Path) -> list[str]:
    """A local Ray cluster of its own: its own temp dir (short: Ray's socket paths are bounded)."""
    temp = Path("/tmp") / f"rsb{os.getpid()}"
    return ["ray.progress_bars=false", f"ray.temp_dir={temp}"]


def cleanup_ray_temp() -> None:
    shutil.rmtree(Path("/tmp") / f"rsb{os.getpid()}", ignore_errors=True)


def quick_checkpoints(workdir: Path, profile: str = "demo", tiny: bool = False, corpus_n: int = 32) -> list[str]:
    """--set lines with a checkpoint for every branch of the profile, each trained for one epoch in this
    process on a small espeak corpus (the production training code). The architectures and sizes are
    the profile's (SmolLM2-135M, MiniLM, ...), so throughput is what trained checkpoints would give;
    tiny=True swaps a large base model for a tiny random one (a smoke run of the plumbing)."""
    from ray_ser.config import load_config
    from ray_ser.demo.synth import synthesize_corpus
    from ray_ser.train.run import WorkerContext, run_training

    manifest = synthesize_corpus(workdir / "quick-train", n=corpus_n, seed=11, split="train")
    profile_cfg = load_config(profile)
    swaps = {"offline:smollm2": "tiny-random:llama"} if tiny else {}
    overrides = []
    for name, branch in profile_cfg.branches.items():
        overrides.append(f"branches.{name}.train.epochs=1")
        if getattr(branch.train, "base_model", None) in swaps:
            overrides.append(f"branches.{name}.train.base_model={swaps[branch.train.base_model]}")
    cfg = load_config(profile, overrides + [f"cache_dir={profile_cfg.resolved_cache_dir()}"])
    lines = []
    for name in cfg.branches:
        target = workdir / ("tiny-ckpt" if tiny else "quick-ckpt") / name
        if not (target / "branch.json").exists():
            kept: list = []
            worker = WorkerContext(report=lambda metrics, save, kept=kept: kept.append(save) if save else None)
            run_training(cfg, name, cfg.branch(name).train, str(manifest), worker)
            kept[-1](str(target))
        lines.append(f"branches.{name}.checkpoint={target}")
    return lines


def checkpoint_overrides(args, workdir: Path) -> list[str]:
    """The run's --set lines, with checkpoints trained here when none are given (see quick_checkpoints)."""
    overrides = list(args.set)
    if any(".checkpoint=" in s for s in overrides) and not args.tiny:
        return overrides
    kind = "tiny (a smoke run of the plumbing)" if args.tiny else "the profile's sizes, one epoch"
    print(f"no checkpoints given: training them here, {kind}")
    return quick_checkpoints(workdir, args.config, tiny=args.tiny) + overrides


def bar_chart_png(path: Path, title: str, bars: Sequence[tuple[str, float, str]], unit: str,
                  timeline: Sequence[tuple[float, float]] | None = None, timeline_title: str = "") -> Path:
    """A horizontal bar chart (label, value, note), and optionally a line chart of (t, value in 0..1)
    below it, written with Pillow (matplotlib is not in the lock)."""
    from PIL import Image, ImageDraw

    width, bar_h, left, right = 900, 26, 230, 160
    chart_h = 50 + bar_h * len(bars)
    line_h = 220 if timeline else 0
    image = Image.new("RGB", (width, chart_h + line_h + 20), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black")
    top = max((v for _, v, _ in bars), default=1.0) or 1.0
    span = width - left - right
    for k, (label, value, note) in enumerate(bars):
        y = 40 + k * bar_h
        draw.text((10, y + 6), label[:34], fill="black")
        draw.rectangle([left, y + 3, left + int(span * value / top), y + bar_h - 5],
                       fill="#c0392b" if label.startswith("job") else "#2e86c1")
        draw.text((left + int(span * value / top) + 6, y + 6), f"{value:.3g} {unit} {note}"[:28], fill="black")
    if timeline:
        y0, y1 = chart_h + 30, chart_h + line_h
        draw.text((10, chart_h + 5), timeline_title, fill="black")
        draw.rectangle([left, y0, width - right, y1], outline="#999999")
        for frac in (0.25, 0.5, 0.75, 1.0):
            y = y1 - int((y1 - y0) * frac)
            draw.text((left - 40, y - 6), f"{frac:.0%}", fill="#666666")
        t_max = max(t for t, _ in timeline) or 1.0
        points = [(left + int(span * t / t_max), y1 - int((y1 - y0) * max(0.0, min(1.0, v)))) for t, v in timeline]
        if len(points) > 1:
            draw.line(points, fill="#c0392b", width=2)
        draw.text((width - right + 6, y1 - 10), f"{t_max:.0f} s", fill="#666666")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def part_times(output: Path, started_perf: float) -> list[tuple[float, int]]:
    """(seconds since started_perf, rows) of each Parquet part under output, by modification time."""
    import pyarrow.parquet as pq

    offset = time.time() - time.perf_counter()  # modification times are wall-clock: move them to perf_counter's
    parts = sorted((p for p in output.rglob("*.parquet") if not p.name.startswith((".", "_"))),
                   key=lambda p: p.stat().st_mtime)
    return [(p.stat().st_mtime - offset - started_perf, pq.read_metadata(p).num_rows) for p in parts]


def pools_ready_s(cfg, started_perf: float) -> float | None:
    """Seconds from started_perf until the labeling plan's actor pools had all loaded their models:
    the time the n-th Ray Data map worker became ALIVE (its constructor, the model load, returned),
    n being the pools' minimum sizes summed. Call while the job's Ray session is still up."""
    import ray

    from ray_ser.pipeline import label_plan

    pools = sum(p.resources.min_actors for p in label_plan(cfg, "unused://", "probe") if p.is_actor)
    actors = ray._private.state.actors()  # from the GCS directly: works without the dashboard
    starts = sorted(a["StartTime"] / 1000 for a in actors.values()
                    if "MapWorker" in str(a.get("ActorClassName")) and a.get("StartTime"))
    if len(starts) < pools or not pools:
        return None
    return starts[pools - 1] - (time.time() - time.perf_counter()) - started_perf


@contextlib.contextmanager
def job_session(cfg, **extra):
    """The job's Ray session opened here (run_label_job reuses it), so it outlives the job long
    enough to ask Ray when its actor pools came up. extra: more ray.init arguments."""
    import ray

    from ray_ser.runtime import init_arguments

    ray.init(**init_arguments(cfg.ray), **extra)
    try:
        yield
    finally:
        ray.shutdown()


def tree_cpu_seconds() -> float:
    """CPU time of this process and its children (vLLM's engine core runs in a child process)."""
    import psutil

    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (every core; idle and I/O wait left out). A Ray job's
    actors are processes that end with the job, and tree_cpu_seconds loses an ended process's time
    (summed over this process's tree, a job came out negative): count them this way, on a machine
    that nothing else is using."""
    import psutil

    times = psutil.cpu_times()
    return sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def actor_threads(num_cpus: float) -> int:
    """Torch threads of a Ray actor or Serve replica with num_cpus: Ray sets OMP_NUM_THREADS to its whole
    CPUs (at least 1), and torch takes its threads from it."""
    return max(1, int(num_cpus))
