"""The README's main command, end to end on one machine.

1. synthesize a training corpus and two test corpora: unseen speakers and sentences
   ("heldout"), and new utterances of the training speakers ("seen");
2. start an embedded S3 and upload all three;
3. train every configured branch with Ray Train (checkpoints under workdir/checkpoints);
4. label both test corpora through the full pipeline into Parquet on the embedded S3;
5. score each branch, the vote and the classical baseline; print the reuse command.
"""

from __future__ import annotations

import csv
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ray_ser.config import LabelConfig, load_config
from ray_ser.pipeline import LabelSummary, ray_session, run_label_job

__all__ = ["DemoSizes", "DemoResult", "upload_corpus", "label_and_score", "run_demo"]

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
    summaries: dict[str, LabelSummary]         # test set -> labeling run
    scores: dict[str, dict[str, dict]]         # test set -> branch / "vote" / "baseline" -> metrics
    training: dict = field(default_factory=dict)  # branch -> TrainResult
    local_copy: Path = Path(".")
    label_command: str = ""
    report: str = ""


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
    local = manifest.parent / "manifest.s3.csv"
    with open(local, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pafs.copy_files(str(local), f"{root}/manifest.csv", destination_filesystem=fs)
    return f"{prefix.rstrip('/')}/manifest.csv"


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

    from ray_ser.baseline import ClassicalBaseline
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


def label_and_score(cfg: LabelConfig, tests: dict[str, tuple[Path, str]]) -> tuple[dict, dict]:
    """Label each test corpus (name -> (local manifest with truth, uploaded manifest URI)) through the
    full pipeline into s3://BUCKET/labels/NAME; return each run's summary and each branch's and the vote's scores."""
    from ray_ser.evaluate import score_labels
    from ray_ser.io.sink import read_output

    summaries, scores = {}, {}
    for name, (manifest, uri) in tests.items():
        output = f"s3://{BUCKET}/labels/{name}"
        summaries[name] = run_label_job(cfg, uri, output)
        rows = read_output(output, cfg.storage).to_pylist()
        scores[name] = score_labels(rows, _truth(manifest), tuple(cfg.branches))
    return summaries, scores


def label_command(profile: str, checkpoints: dict[str, str]) -> str:
    parts = ["ray-ser", "label", "--config", profile, "--input", "MANIFEST_OR_PREFIX", "--output", "OUT_URI"]
    for name, path in checkpoints.items():
        parts += ["--set", f"branches.{name}.checkpoint={path}"]
    return shlex.join(parts)


def run_demo(workdir: str | Path, sizes: DemoSizes = DemoSizes(), seed: int = 7, profile: str = "demo",
             overrides: tuple[str, ...] = ()) -> DemoResult:
    from ray_ser.io.embedded_s3 import embedded_s3
    from ray_ser.report import format_demo
    from ray_ser.synth import synthesize_corpus
    from ray_ser.train.loop import fit_branch

    workdir = Path(workdir).resolve()
    corpora = {
        "train": synthesize_corpus(workdir / "corpus" / "train", n=sizes.train, seed=seed, split="train"),
        "heldout": synthesize_corpus(workdir / "corpus" / "heldout", n=sizes.heldout, seed=seed + 1,
                                     split="heldout"),
        "seen": synthesize_corpus(workdir / "corpus" / "seen", n=sizes.seen, seed=seed + 2, split="train"),
    }
    with embedded_s3() as endpoint:
        base = [*overrides, f"storage.s3_endpoint_url={endpoint}"]
        cfg = load_config(profile, base)
        uris = {name: upload_corpus(m, cfg, f"s3://{BUCKET}/corpus/{name}") for name, m in corpora.items()}
        training, checkpoints = {}, {}
        with ray_session(cfg.ray):
            for name, branch in cfg.branches.items():
                if branch.train is None:
                    continue
                result = fit_branch(name, branch, uris["train"], str(workdir / "checkpoints"), cfg.storage)
                training[name], checkpoints[name] = result, result.checkpoint
            cfg = load_config(profile, [*base, *(f"branches.{n}.checkpoint={p}" for n, p in checkpoints.items())])
            summaries, scores = label_and_score(cfg, {name: (corpora[name], uris[name]) for name in TEST_SETS})
        baseline = _baseline_scores(corpora["train"], {n: corpora[n] for n in TEST_SETS})
        for name in TEST_SETS:
            scores[name]["baseline"] = baseline[name]
        local_copy = workdir / "labels"
        for name in TEST_SETS:
            _copy_out(f"s3://{BUCKET}/labels/{name}", cfg, local_copy / name)
    command = label_command(profile, checkpoints)
    result = DemoResult(config=cfg, summaries=summaries, scores=scores, training=training,
                        local_copy=local_copy, label_command=command)
    return DemoResult(**{**result.__dict__, "report": format_demo(result, TEST_SETS)})
