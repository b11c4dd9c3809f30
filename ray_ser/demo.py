"""The README's main command: synthesize, serve it from an embedded S3, label it, summarise."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ray_ser.config import LabelConfig, load_config
from ray_ser.pipeline import LabelSummary, run_label_job

__all__ = ["DemoResult", "upload_corpus", "run_demo"]

BUCKET = "ray-ser-demo"


@dataclass(frozen=True)
class DemoResult:
    summary: LabelSummary
    config: LabelConfig
    local_copy: Path
    report: str


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


def run_demo(workdir: str | Path, n: int = 24, seed: int = 7, profile: str = "demo",
             overrides: tuple[str, ...] = ()) -> DemoResult:
    from ray_ser.io.embedded_s3 import embedded_s3
    from ray_ser.report import format_summary
    from ray_ser.synth import synthesize_corpus

    workdir = Path(workdir).resolve()
    manifest = synthesize_corpus(workdir / "corpus", n=n, seed=seed)
    with embedded_s3() as endpoint:
        cfg = load_config(profile, [*overrides, f"storage.s3_endpoint_url={endpoint}"])
        input_uri = upload_corpus(manifest, cfg, f"s3://{BUCKET}/corpus")
        output_uri = f"s3://{BUCKET}/labels"
        summary = run_label_job(cfg, input_uri, output_uri)
        report = format_summary(summary, cfg.storage)
        local_copy = workdir / "labels"
        _copy_out(output_uri, cfg, local_copy)
    return DemoResult(summary=summary, config=cfg, local_copy=local_copy, report=report)
