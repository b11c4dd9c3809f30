"""The synthetic acted corpus: RAVDESS-style emotional speech from espeak-ng + sox.

The spec is fixed (classes, prosody table, jitter, intensity, prior, voices)
because benchmarks and acceptance checks are calibrated on it. Everything is
derived from one ``random.Random(seed)`` drawn in a fixed order, so a seed
reproduces the same manifest and the same audio.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ray_ser.labels import EMOTIONS
from ray_ser.demo.synth_text import EMOTION_SENTENCES, NEUTRAL_SENTENCES, speakers_for, split_pool

__all__ = ["PROSODY", "CLASS_PRIOR", "SynthUtterance", "plan_corpus", "synthesize_corpus"]

# (pitch 0-99, speed wpm, amplitude 0-200) per class, from the corpus spec.
PROSODY: dict[str, tuple[int, int, int]] = {
    "neutral": (50, 160, 100),
    "happy": (72, 185, 130),
    "sad": (28, 115, 70),
    "angry": (42, 205, 185),
    "surprise": (88, 170, 140),
    "fear": (80, 225, 80),
    "disgust": (22, 135, 120),
    "contempt": (35, 145, 90),
}
# Imbalanced like MSP-Podcast.
CLASS_PRIOR: dict[str, float] = {
    "neutral": 0.30, "happy": 0.22, "sad": 0.10, "angry": 0.10,
    "surprise": 0.08, "contempt": 0.08, "disgust": 0.06, "fear": 0.06,
}
JITTER = (5, 10, 10)
WEAK_FRACTION = 0.30
WEAK_PULL = 0.5
EMOTIONAL_TEXT_PROB = 0.6
# espeak-ng's accepted ranges for -p, -s, -a.
RANGES = ((0, 99), (80, 450), (0, 200))
SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class SynthUtterance:
    """One planned utterance: the manifest row plus the prosody that realises it."""

    utterance_id: str
    path: str
    emotion: str
    intensity: str
    speaker: str
    text: str
    pitch: int
    speed: int
    amplitude: int


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


def _prosody(rng: random.Random, emotion: str, weak: bool) -> tuple[int, int, int]:
    base = PROSODY[emotion]
    neutral = PROSODY["neutral"]
    values = []
    for axis in range(3):
        target = base[axis]
        if weak:
            target = neutral[axis] + WEAK_PULL * (target - neutral[axis])
        jittered = round(target + rng.uniform(-JITTER[axis], JITTER[axis]))
        values.append(_clamp(jittered, RANGES[axis]))
    return values[0], values[1], values[2]


def plan_corpus(n: int, seed: int, split: str = "all", out_dir: str | Path = ".") -> list[SynthUtterance]:
    """Draw the manifest of an n-utterance corpus; no audio is produced here."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    rng = random.Random(seed)
    speakers = speakers_for(split)
    neutral_pool = split_pool(NEUTRAL_SENTENCES, split)
    classes = list(CLASS_PRIOR)
    weights = [CLASS_PRIOR[c] for c in classes]
    out_dir = Path(out_dir)
    plan = []
    for i in range(n):
        emotion = rng.choices(classes, weights)[0]
        weak = rng.random() < WEAK_FRACTION  # a weak neutral is simply neutral
        speaker = rng.choice(speakers)
        if emotion != "neutral" and rng.random() < EMOTIONAL_TEXT_PROB:
            text = rng.choice(split_pool(EMOTION_SENTENCES[emotion], split))
        else:
            text = rng.choice(neutral_pool)
        pitch, speed, amplitude = _prosody(rng, emotion, weak)
        uid = f"{split}-{seed}-{i:06d}"
        plan.append(
            SynthUtterance(
                utterance_id=uid,
                path=str(out_dir / "wav" / f"{uid}.wav"),
                emotion=emotion,
                intensity="weak" if weak else "normal",
                speaker=speaker,
                text=text,
                pitch=pitch,
                speed=speed,
                amplitude=amplitude,
            )
        )
    return plan


def require_tools() -> None:
    """Fail early, naming the Debian packages, when espeak-ng or sox is missing."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"missing {', '.join(missing)}; install with: apt-get install -y espeak-ng sox "
            "(scripts/setup.sh does this)"
        )


def _render(utt: SynthUtterance) -> None:
    target = Path(utt.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.wav")
        subprocess.run(
            ["espeak-ng", "-v", utt.speaker, "-p", str(utt.pitch), "-s", str(utt.speed),
             "-a", str(utt.amplitude), "-w", raw, utt.text],
            check=True, capture_output=True,
        )
        partial = target.with_suffix(".part.wav")
        # PCM16 at 16 kHz mono is the corpus format. sox dithers the 16-bit output with a
        # random seed unless -R (repeatable) is given: two renders then differ by 2 LSB, which
        # was enough to move the classical baseline's macro-F1 by up to 0.02 between demo runs.
        subprocess.run(
            ["sox", "-R", raw, "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(partial)],
            check=True, capture_output=True,
        )
        partial.replace(target)


MANIFEST_COLUMNS = ("utterance_id", "path", "emotion", "intensity", "speaker", "text")


def write_manifest(plan: list[SynthUtterance], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for utt in plan:
            writer.writerow(asdict(utt))


def synthesize_corpus(out_dir: str | Path, n: int, seed: int, split: str = "all", workers: int | None = None) -> Path:
    """Render the corpus to out_dir/wav/*.wav and return out_dir/manifest.csv.

    Files that already exist are kept, so an interrupted synthesis resumes.
    """
    require_tools()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_corpus(n, seed, split, out)
    todo = [u for u in plan if not Path(u.path).exists()]
    with ThreadPoolExecutor(max_workers=workers or (os.cpu_count() or 2)) as pool:
        list(pool.map(_render, todo))
    manifest = out / "manifest.csv"
    write_manifest(plan, manifest)
    return manifest
