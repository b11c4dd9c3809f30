"""`ray-ser evaluate` as a user runs it: a separate process over real Parquet parts and real manifests,
local and on a real (moto) S3 server."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ray_ser.config import StorageConfig
from ray_ser.labels import EMOTIONS
from tests.conftest import REAL_SPEECH  # RAY_SER_REAL_SPEECH, else ../shared beside the repo
from tests.evaluate.outputs import output_row, write_manifest, write_output

RAY_SER = [sys.executable, "-m", "ray_ser.cli"]


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RAY_SER, "evaluate", *args], capture_output=True, text=True, timeout=120)


def _job(tmp_path: Path, storage: StorageConfig = StorageConfig(), root: str | None = None) -> tuple[str, list]:
    """Twelve inputs of two corpora: speech right on all, prosody right on the first half, the vote
    right where speech and prosody agree or speech is surer; one input failed to decode."""
    truth = [(f"u{i:02d}", EMOTIONS[i % 4], "ravdess" if i < 6 else "emodb") for i in range(12)]
    rows = []
    for i, (uid, emotion, _) in enumerate(truth):
        if i == 11:
            rows.append(output_row(uid, None, {}, status="error", error="decode: truncated FLAC"))
            continue
        prosody = emotion if i < 6 else "neutral"
        agree = prosody == emotion
        rows.append(output_row(uid, emotion if i % 3 else prosody, {"speech": emotion, "prosody": prosody},
                               agreement=1.0 if agree else 0.5, confidence=0.9 if agree else 0.5))
    write_output(rows, root or str(tmp_path / "predictions"), storage)
    return root or str(tmp_path / "predictions"), truth


def test_evaluate_writes_metrics_and_a_self_contained_report(tmp_path):
    predictions, truth = _job(tmp_path)
    manifest = write_manifest(tmp_path / "truth.csv", truth + [("extra", "calm", "ravdess")])
    done = _evaluate("--predictions", predictions, "--truth", str(manifest), "--out", str(tmp_path / "eval"))
    assert done.returncode == 0, done.stderr
    assert "scored 12 inputs" in done.stdout and "ravdess:calm 1" in done.stdout
    assert f"report:  {tmp_path / 'eval'}/report.html" in done.stdout

    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    systems = metrics["overall"]["systems"]
    assert systems["speech"]["accuracy"] == pytest.approx(11 / 12)  # the failed input counts as wrong
    assert systems["prosody"]["accuracy"] == pytest.approx(7 / 12)  # right on u00-u05 and on u08 (neutral)
    # the label: right on i % 3 != 0 and on i < 6 (prosody right), wrong on 6 and 9, and on 11 (error)
    assert systems["final"]["accuracy"] == pytest.approx(9 / 12)
    assert metrics["corpora"]["ravdess"]["systems"]["final"]["accuracy"] == 1.0
    assert metrics["corpora"]["emodb"]["systems"]["final"]["macro_f1"] < 1.0
    assert metrics["errors"][0]["error"] == "decode: truncated FLAC"
    # agreement: the split rows are where the label goes wrong
    agreement = metrics["overall"]["agreement"]
    assert agreement["unanimous"]["accuracy"]["final"] == 1.0
    assert agreement["split_share_of_errors"]["final"] == pytest.approx(2 / 3)  # 6 and 9; 11 has no agreement
    assert systems["final"]["calibration"]["ece"] is not None

    html = (tmp_path / "eval" / "report.html").read_text()
    assert html.count("<svg") >= 3 + 3 + 2  # reliability, agreement, classes; 3 confusions; 1 per corpus
    for external in ("http://", "https://", "<script", "src=", "<link", "url("):
        assert external not in html, f"report.html is not self-contained: it holds {external!r}"


def test_map_option_scores_a_label_outside_the_taxonomy(tmp_path):
    predictions, truth = _job(tmp_path)
    truth = [(uid, "calm" if uid == "u00" else emotion, corpus) for uid, emotion, corpus in truth]
    manifest = write_manifest(tmp_path / "truth.csv", truth)
    out = tmp_path / "eval"
    assert _evaluate("--predictions", predictions, "--truth", str(manifest), "--out", str(out)).returncode == 0
    assert json.loads((out / "metrics.json").read_text())["counts"]["scored"] == 11
    done = _evaluate("--predictions", predictions, "--truth", str(manifest), "--out", str(out),
                     "--map", "ravdess:calm=neutral")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["counts"]["mapped"] == {"ravdess": {"calm->neutral": 1}}
    done = _evaluate("--predictions", predictions, "--truth", str(manifest), "--out", str(out), "--profile-rules")
    assert done.returncode == 0, done.stderr  # the profile's own rule: ravdess calm -> neutral
    assert json.loads((out / "metrics.json").read_text())["counts"]["mapped"] == {"ravdess": {"calm->neutral": 1}}


def test_the_profile_taxonomy_is_scored(tmp_path):
    """A profile with its own classes: a truth label outside them is left out and counted."""
    predictions, truth = _job(tmp_path)
    manifest = write_manifest(tmp_path / "truth.csv", [("u00", "contempt", "ravdess"), *truth[1:]])
    out = tmp_path / "eval"
    done = _evaluate("--predictions", predictions, "--truth", str(manifest), "--out", str(out),
                     "--set", "labels.classes=[neutral,happy,sad,angry,surprise]")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["neutral", "happy", "sad", "angry", "surprise"]
    assert metrics["counts"]["out_of_taxonomy"] == {"ravdess": {"contempt": 1}}


def test_bad_inputs_exit_2_with_a_reason_and_no_traceback(tmp_path, capsys):
    from ray_ser.cli import main

    predictions, truth = _job(tmp_path)
    manifest = write_manifest(tmp_path / "truth.csv", truth)
    (tmp_path / "no-label.csv").write_text("utterance_id,path\nu00,a.flac\n")
    cases = [
        (("--predictions", predictions, "--truth", str(tmp_path / "no-label.csv")), "lacks column 'emotion'"),
        (("--predictions", str(tmp_path / "nothing-here"), "--truth", str(manifest)), "no part-*.parquet"),
        (("--predictions", predictions, "--truth", str(manifest), "--label-column", "mood"), "lacks column 'mood'"),
        (("--predictions", predictions, "--truth", str(manifest), "--map", "calm=relaxed"), "not one of"),
    ]
    for args, reason in cases:  # in this process: the same code path, without a Python start per case
        assert main(["evaluate", *args, "--out", str(tmp_path / "eval")]) == 2, args
        assert reason in capsys.readouterr().err
    # and once as a user sees it
    done = _evaluate("--predictions", predictions, "--truth", str(tmp_path / "missing.csv"),
                     "--out", str(tmp_path / "eval"))
    assert done.returncode == 2 and "manifest not found" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "eval").exists()


def test_evaluate_reads_and_writes_s3(tmp_path, s3_endpoint):
    import pyarrow.fs as pafs

    from ray_ser.io.storage import filesystem_for

    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    predictions, truth = _job(tmp_path, storage, root="s3://evaluate-test/job/out")
    local = write_manifest(tmp_path / "truth.csv", truth)
    fs, path = filesystem_for("s3://evaluate-test/truth/manifest.csv", storage)
    with fs.open_output_stream(path) as handle:
        handle.write(local.read_bytes())
    done = _evaluate("--predictions", predictions, "--truth", "s3://evaluate-test/truth/manifest.csv",
                     "--out", "s3://evaluate-test/eval", "--set", f"storage.s3_endpoint_url={s3_endpoint}")
    assert done.returncode == 0, done.stderr
    with fs.open_input_stream("evaluate-test/eval/metrics.json") as handle:
        assert json.loads(handle.read())["counts"]["scored"] == 12
    assert fs.get_file_info("evaluate-test/eval/report.html").type == pafs.FileType.File


@pytest.mark.skipif(not (REAL_SPEECH / "ravdess" / "manifest.csv").exists(),
                    reason=f"the real-speech corpora are not here ({REAL_SPEECH}); CI always has them")
def test_evaluate_against_the_real_ravdess_manifest(tmp_path):
    """The real manifest as the truth: calm (128 rows) is left out by default and counted."""
    manifest = REAL_SPEECH / "ravdess" / "manifest.csv"
    real = list(csv.DictReader(open(manifest)))
    rows = []
    for i, r in enumerate(real):
        emotion = r["emotion"] if r["emotion"] in EMOTIONS else "neutral"
        guess = emotion if i % 4 else "sad"  # right on three rows in four (or on every sad one)
        rows.append(output_row(r["utterance_id"], guess, {"speech": guess, "prosody": emotion}))
    write_output(rows, str(tmp_path / "out"), part_rows=400)
    done = _evaluate("--predictions", str(tmp_path / "out"), "--truth", str(manifest), "--out", str(tmp_path / "eval"))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    in_taxonomy = [(i, r) for i, r in enumerate(real) if r["emotion"] != "calm"]
    assert metrics["counts"]["out_of_taxonomy"] == {"ravdess": {"calm": len(real) - len(in_taxonomy)}}
    right = sum(1 for i, r in in_taxonomy if i % 4 or r["emotion"] == "sad")
    assert metrics["corpora"]["ravdess"]["systems"]["final"]["accuracy"] == pytest.approx(right / len(in_taxonomy))
    assert metrics["overall"]["systems"]["prosody"]["macro_f1"] == 1.0
