"""One Whisper encoder pass for transcript and emotion, against encoding each clip twice.

    .venv/bin/python bench/shared_encoder.py [--clips 120] [--rounds 2] [--config real-speech] [--set KEY=VALUE ...]
        [--no-blocks]

Labels real RAVDESS clips (../shared/data/real-speech) with the profile's ASR and one encoder_probe
branch reading Whisper's last layer, with ``asr.share_encoder`` on (the ASR stage hands each clip's
pooled encoder states to the branch) and off (the branch encodes the clip again). The two settings
run alternately in one Ray session, ``--rounds`` times each, so that the machine's drift hits both
alike. Prints each run's throughput (audio seconds per wall second) and the machine's busy CPU seconds
per audio second (what sharing saves where the cores are full; run it on a machine nothing else is
using), the median ratios, and whether the two settings wrote identical labels and probabilities. A
probe of earlier blocks (the real-speech profile's blocks 1-3) runs an encoder of its own either way:
its time is printed beside, for context (``--no-blocks`` leaves it out).

The encoder's share of the job, and so what sharing can save, depends on the ASR's window: the
profile's short windows (``asr.pad_to_30s: false``, each clip's length + 2 s) make the encoder cheap
next to decoding; ``--set asr.pad_to_30s=true`` measures Whisper's own 30 s window (the ASR section's
default, and faster-whisper's), where the encoder is most of the work.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_cpu_seconds  # noqa: E402


def _probe_checkpoint(cfg, directory: Path, layers: tuple[int, ...], normalised: bool = True) -> str:
    """An encoder_probe checkpoint on the profile's ASR Whisper (its head's weights are random: the
    figure is speed, and identity between the settings)."""
    import torch

    from ray_ser.branches.encoder_probe.model import ProbeModel, resolve_encoder
    from ray_ser.branches.encoder_probe.settings import EncoderProbeTrain

    settings = resolve_encoder(EncoderProbeTrain(head="linear", encoder={"layers": layers},
                                                   speaker_normalization=normalised), cfg.asr)
    torch.manual_seed(0)
    model = ProbeModel(settings, max(len(layers), 1), 1024, cfg.labels.classes)
    for parameter in model.head.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    model.save(directory)
    return str(directory)


def _config(base, checkpoint: str, share: bool):
    from ray_ser.config import LabelConfig

    data = base.model_dump(mode="json")
    data["branches"] = {"whisper": {"family": "encoder_probe", "checkpoint": checkpoint,
                                    "resources": data["branches"]["whisper"]["resources"]}}
    data["vote"]["priority"] = ["whisper"]
    data["fusion"] = {"method": "none"}
    data["asr"]["share_encoder"] = share
    return LabelConfig.model_validate(data)


def _read(output: str):
    import pyarrow.parquet as pq

    table = pq.read_table(output, columns=["utterance_id", "status", "label", "probs", "transcript"])
    return {r["utterance_id"]: r for r in table.to_pylist()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "real-speech"))
    parser.add_argument("--config", default="real-speech")
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="profile override, e.g. asr.pad_to_30s=true (repeatable)")
    parser.add_argument("--no-blocks", action="store_true", help="leave out the blocks 1-3 probe (context only)")
    args = parser.parse_args()

    from ray_ser.config import load_config
    from ray_ser.pipeline import run_label_job
    from ray_ser.runtime import ray_session

    base = load_config(args.config, ["ray.progress_bars=false", *args.set])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_shared_"))
    work.mkdir(parents=True, exist_ok=True)
    manifest = Path(args.data) / "ravdess" / "manifest.csv"
    rows = list(csv.DictReader(open(manifest)))
    rows = rows[:: max(1, len(rows) // args.clips)][: args.clips]
    clips = work / "clips.csv"
    with open(clips, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(dict(r, path=str(manifest.parent / r["path"])) for r in rows)

    last = _probe_checkpoint(base, work / "probe-last", ())
    plain = _probe_checkpoint(base, work / "probe-plain", (), normalised=False)
    # A speaker-normalised probe reads every speaker's clips in a statistics pass first (an encoder pass
    # of its own either way); without normalisation the job is one pass.
    settings = {"shared": _config(base, last, True), "twice": _config(base, last, False),
                "shared, one pass": _config(base, plain, True), "twice, one pass": _config(base, plain, False)}
    if not args.no_blocks:
        settings["blocks 1-3"] = _config(base, _probe_checkpoint(base, work / "probe-1-3", (1, 2, 3)), True)
    speeds: dict[str, list[float]] = {name: [] for name in settings}
    cpu: dict[str, list[float]] = {name: [] for name in settings}  # CPU seconds per audio second
    outputs: dict[str, str] = {}
    with ray_session(base.ray):
        run_label_job(settings["shared"], str(clips), str(work / "warmup"))  # model files built, caches warm
        for round_ in range(args.rounds):
            for name, cfg in settings.items():
                output = str(work / f"{name.replace(' ', '-')}-{round_}")
                started, cpu_before = time.perf_counter(), machine_cpu_seconds()
                summary = run_label_job(cfg, str(clips), output)
                wall = time.perf_counter() - started
                speeds[name].append(summary.audio_seconds / wall)
                cpu[name].append((machine_cpu_seconds() - cpu_before) / summary.audio_seconds)
                outputs[name] = output
                print(f"round {round_ + 1} {name:16} {summary.rows_ok}/{summary.rows_written} ok  "
                      f"{wall:6.1f} s  {summary.audio_seconds / wall:5.2f} audio-s/s  "
                      f"{cpu[name][-1]:.3f} CPU-s per audio-s", flush=True)

    print(f"\n{len(rows)} RAVDESS clips, {args.rounds} rounds, ASR window: "
          f"{'30 s' if base.asr.pad_to_30s else 'clip + 2 s'}; audio-s per wall-s (median):")
    for name, values in speeds.items():
        print(f"  {name:16} {statistics.median(values):5.2f}   runs: {', '.join(f'{v:.2f}' for v in values)}")
    print(f"busy CPU-s of the machine per audio-s (median; load average now {os.getloadavg()[0]:.1f}):")
    for name, values in cpu.items():
        print(f"  {name:16} {statistics.median(values):5.3f}   runs: {', '.join(f'{v:.3f}' for v in values)}")
    identical = True
    for suffix in ("", ", one pass"):
        shared, twice = _read(outputs["shared" + suffix]), _read(outputs["twice" + suffix])
        same_labels = shared.keys() == twice.keys() and all(shared[k]["label"] == twice[k]["label"] for k in shared)
        same_probs = all(shared[k]["probs"] == twice[k]["probs"] for k in shared)
        same_text = all(shared[k]["transcript"] == twice[k]["transcript"] for k in shared)
        ratios = [s / t for s, t in zip(speeds["shared" + suffix], speeds["twice" + suffix])]
        saved = [t / s for s, t in zip(cpu["shared" + suffix], cpu["twice" + suffix])]
        print(f"shared / twice{suffix or ' (speaker-normalised)'}: {statistics.median(ratios):.2f}x wall "
              f"(per round: {', '.join(f'{r:.2f}' for r in ratios)}), {statistics.median(saved):.2f}x less CPU "
              f"(per round: {', '.join(f'{r:.2f}' for r in saved)}); identical labels: {same_labels}, "
              f"probabilities: {same_probs}, transcripts: {same_text}")
        identical = identical and same_labels and same_probs
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
