"""report.html rendered by a real browser (headless Chromium, Debian's package): the screenshot shows
the plots. A control rendering of the same page with its SVGs removed must fail the same checks, so
the checks see the plots, not the tables and text."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ray_ser.evaluate import evaluate_predictions
from ray_ser.evaluate.svg import RAMP, SERIES_COLOURS
from ray_ser.labels import EMOTIONS
from tests.evaluate.outputs import output_row, write_manifest, write_output

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; scripts/setup.sh does it)")
WIDTH, HEIGHT = 1200, 2400


def screenshot(page: Path, tmp_path: Path) -> np.ndarray:
    from PIL import Image

    png = tmp_path / f"{page.stem}.png"
    profile = tmp_path / f"profile-{page.stem}"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={WIDTH},{HEIGHT}",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def pixels_near(image: np.ndarray, colour: str, tolerance: int = 12) -> int:
    target = np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)])
    return int((np.abs(image - target).max(axis=2) <= tolerance).sum())


def plot_evidence(image: np.ndarray) -> dict[str, int]:
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return {
        "drawn": int((image.min(axis=2) < 235).sum()),  # anything but white and near-white
        "heatmap_darkest": pixels_near(image, RAMP[-1]),  # a cell holding its whole row
        "heatmap_blues": int(((b > r + 20) & (b >= g)).sum()),  # every shaded confusion cell
        "final_series": pixels_near(image, SERIES_COLOURS[0]),  # bars and the reliability curve
        "speech_series": pixels_near(image, SERIES_COLOURS[2]),
    }


def looks_plotted(evidence: dict[str, int]) -> bool:
    # thresholds: a 30 px confusion cell is 900 px; a legend swatch only 100 px
    return (evidence["heatmap_darkest"] >= 500 and evidence["heatmap_blues"] >= 20_000
            and evidence["final_series"] >= 3_000 and evidence["speech_series"] >= 3_000)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report of a 64-input job over two corpora, three branches' worth of answers."""
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(1)
    truth, rows = [], []
    for i in range(64):
        emotion = EMOTIONS[i % 6]
        truth.append((f"u{i}", emotion, "ravdess" if i % 2 else "emodb"))
        speech = emotion if rng.random() < 0.85 or emotion == "neutral" else EMOTIONS[(i + 1) % 6]
        prosody = emotion if rng.random() < 0.6 else EMOTIONS[(i + 2) % 6]
        agree = 1.0 if speech == prosody else 0.5
        rows.append(output_row(f"u{i}", speech, {"speech": speech, "prosody": prosody}, agreement=agree,
                               confidence=float(rng.uniform(0.5, 1.0)), vote_label=prosody, vote_confidence=0.6))
    write_output(rows, str(tmp / "out"), part_rows=16, vote_columns=True)
    manifest = write_manifest(tmp / "truth.csv", truth)
    evaluation = evaluate_predictions(str(tmp / "out"), str(manifest), str(tmp / "eval"))
    return Path(evaluation.report_path)


def test_the_report_renders_its_plots_in_chromium(report, tmp_path):
    image = screenshot(report, tmp_path)
    assert image.shape == (HEIGHT, WIDTH, 3)
    evidence = plot_evidence(image)
    assert evidence["drawn"] > 0.05 * WIDTH * HEIGHT, f"the page looks blank: {evidence}"
    assert looks_plotted(evidence), f"the plots did not draw: {evidence}"

    # The control: the same page without its SVGs shows tables and text, and fails the checks.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<svg.*?</svg>", "", report.read_text(), flags=re.S))
    control = plot_evidence(screenshot(bare, tmp_path))
    assert not looks_plotted(control), f"the checks pass without plots: {control}"
    assert control["heatmap_darkest"] < 100 and control["final_series"] < 200, control
