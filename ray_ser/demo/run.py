"""The README's main command, end to end on one machine.

1. synthesize a training corpus and two test corpora: unseen speakers and sentences
   ("heldout"), and new utterances of the training speakers ("seen");
2. start an embedded S3 and upload all three;
3. train every configured branch with Ray Train, side by side as far as the CPUs allow
   (checkpoints under workdir/checkpoints);
4. label both test corpora in one run of the full pipeline into Parquet on the embedded S3;
5. score each branch, the vote and the classical baseline; print the reuse command.
"""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ray_ser.config import LabelConfig, load_config
from ray_ser.pipeline import LabelSummary, run_label_job
from ray_ser.runtime import ray_session

__all__ = ["DemoSizes", "DemoResult", "upload_corpus", "upload_test_sets", "label_and_score", "run_demo"]

BUCKET = "ray-ser-demo"
TEST_SETS = {"heldout": "unseen speakers + sentences", "seen": "training speakers, new utterances"}


@dataclass(frozen=True)
class DemoSizes:
    train: int = 1200
    heldout: int = 240
    seen: int = 160


@dataclass(frozen=True)
class DemoResult:
    config: LabelConfig                        # with the trained checkpoints filled in
    summary: LabelSummary                      # the one labeling run over every test set
    scores: dict[str, dict[str, dict]]         # test set -> branch / "vote" / "baseline" -> metrics
    training: dict = field(default_factory=dict)  # branch -> TrainResult
    local_copy: Path = Path(".")
    label_command: str = ""
    report: str = ""


def _write_manifest(rows: list[dict], local: Path, uri: str, cfg: LabelConfig) -> str:
    import pyarrow.fs as pafs

    from ray_ser.io.storage import filesystem_for

    with open(local, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fs, path = filesystem_for(uri, cfg.storage)
    pafs.copy_files(str(local), path, destination_filesystem=fs)
    return uri


def upload_corpus(manifest: Path, cfg: LabelConfig, prefix: str) -> str:
    """Copy a local corpus and a manifest with s3:// paths under prefix; return the manifest URI."""
    import pyarrow.fs as pafs

    from ray_ser.io.storage import filesystem_for

    fs, root = filesystem_for(prefix, cfg.storage)
    fs.create_dir(root.split("/")[0])  # the bucket
    pafs.copy_files(str(manifest.parent / "wav"), f"{root}/wav", destination_filesystem=fs)
    rows = list(csv.DictReader(open(manifest)))
    for row in rows:
        row["path"] = f"{prefix.rstrip('/')}/wav/{Path(row['path']).name}"
    return _write_manifest(rows, manifest.parent / "manifest.s3.csv", f"{prefix.rstrip('/')}/manifest.csv", cfg)


def upload_test_sets(corpora: dict[str, Path], cfg: LabelConfig, prefix: str) -> str:
    """Upload each test corpus under prefix/NAME and return one manifest listing them all, so that
    one labeling job (one start of every actor pool) labels every test set."""
    rows = []
    for name, manifest in corpora.items():
        upload_corpus(manifest, cfg, f"{prefix.rstrip('/')}/{name}")
        rows += list(csv.DictReader(open(manifest.parent / "manifest.s3.csv")))
    local = next(iter(corpora.values())).parent.parent / "tests.s3.csv"
    return _write_manifest(rows, local, f"{prefix.rstrip('/')}/tests.csv", cfg)


def _copy_out(uri: str, cfg: LabelConfig, target: Path) -> None:
    import pyarrow.fs as pafs

    from ray_ser.io.storage import filesystem_for

    fs, root = filesystem_for(uri, cfg.storage)
    target.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(root, str(target), source_filesystem=fs)


def _truth(manifest: Path) -> dict[str, str]:
    return {r["utterance_id"]: r["emotion"] for r in csv.DictReader(open(manifest))}


def _baseline_scores(train_manifest: Path, tests: dict[str, Path]) -> dict[str, dict]:
    import soundfile as sf

    from ray_ser.demo.baseline import ClassicalBaseline
    from ray_ser.evaluate import emotion_metrics
    from ray_ser.labels import NUM_CLASSES, index_of

    def load(manifest: Path):
        rows = list(csv.DictReader(open(manifest)))
        return [sf.read(r["path"], dtype="float32")[0] for r in rows], [index_of(r["emotion"]) for r in rows]

    model = ClassicalBaseline().fit(*load(train_manifest))
    scores = {}
    for name, manifest in tests.items():
        audio, labels = load(manifest)
        scores[name] = {**emotion_metrics(labels, model.predict(audio).tolist(), NUM_CLASSES), "rows": len(labels)}
    return scores


def label_and_score(cfg: LabelConfig, manifest_uri: str, tests: dict[str, Path],
                    output: str) -> tuple[LabelSummary, dict]:
    """Label the manifest listing every test set through the full pipeline into output (Parquet);
    return the run's summary and, per test set (name -> local manifest with the truth), each
    branch's and the vote's scores."""
    from ray_ser.evaluate import score_labels
    from ray_ser.io.sink import read_output

    summary = run_label_job(cfg, manifest_uri, output)
    rows = read_output(output, cfg.storage).to_pylist()
    branches = tuple(cfg.branches)
    return summary, {name: score_labels(rows, _truth(manifest), branches) for name, manifest in tests.items()}


def run_demo(workdir: str | Path, sizes: DemoSizes = DemoSizes(), seed: int = 7, profile: str = "demo",
             overrides: tuple[str, ...] = ()) -> DemoResult:
    from ray_ser.demo.report import format_demo
    from ray_ser.report import label_command
    from ray_ser.demo.synth import synthesize_corpus
    from ray_ser.testing.s3 import embedded_s3
    from ray_ser.train.loop import fit_branches, trainable_branches

    workdir = Path(workdir).resolve()
    corpora = {
        "train": synthesize_corpus(workdir / "corpus" / "train", n=sizes.train, seed=seed, split="train"),
        "heldout": synthesize_corpus(workdir / "corpus" / "heldout", n=sizes.heldout, seed=seed + 1,
                                     split="heldout"),
        "seen": synthesize_corpus(workdir / "corpus" / "seen", n=sizes.seen, seed=seed + 2, split="train"),
    }
    tests = {name: corpora[name] for name in TEST_SETS}
    output = f"s3://{BUCKET}/labels/tests"
    with embedded_s3() as endpoint:
        base = [*overrides, f"storage.s3_endpoint_url={endpoint}"]
        cfg = load_config(profile, base)
        train_uri = upload_corpus(corpora["train"], cfg, f"s3://{BUCKET}/corpus/train")
        tests_uri = upload_test_sets(tests, cfg, f"s3://{BUCKET}/corpus")
        with ray_session(cfg.ray):
            training = fit_branches(cfg, trainable_branches(cfg), train_uri, str(workdir / "checkpoints"))
            checkpoints = {name: result.checkpoint for name, result in training.items()}
            cfg = load_config(profile, [*base, *(f"branches.{n}.checkpoint={p}" for n, p in checkpoints.items())])
            # The baseline (numpy and scikit-learn in this process) runs while the labeling job's
            # actors wait on each other.
            with ThreadPoolExecutor(max_workers=1) as background:
                baseline = background.submit(_baseline_scores, corpora["train"], tests)
                summary, scores = label_and_score(cfg, tests_uri, tests, output)
                for name, metrics in baseline.result().items():
                    scores[name]["baseline"] = metrics
        local_copy = workdir / "labels"
        _copy_out(output, cfg, local_copy)
    command = label_command(profile, [f"branches.{n}.checkpoint={p}" for n, p in checkpoints.items()])
    result = DemoResult(config=cfg, summary=summary, scores=scores, training=training,
                        local_copy=local_copy, label_command=command)
    return DemoResult(**{**result.__dict__, "report": format_demo(result, TEST_SETS)})
