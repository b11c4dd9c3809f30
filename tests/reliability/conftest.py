"""What the reliability tests share: small corpora and ASR-free profiles (decode -> sink is enough to show
what happens to rows; the full pipeline's stages are covered in tests/test_pipeline.py)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest


def write_manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path"])
        writer.writerows(rows)
    return path


def copy_corpus(corpus_rows: list[dict], root: Path, n: int | None = None) -> list[tuple[str, str]]:
    """(id, path) of the first n corpus clips copied under root."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for r in corpus_rows[:n]:
        target = root / Path(r["path"]).name
        shutil.copy(r["path"], target)
        out.append((r["utterance_id"], str(target)))
    return out


@pytest.fixture(scope="session")
def decode_only(cache_dir, s3_endpoint):
    """The demo profile without ASR or branches: decode, then the Parquet sink."""
    from ray_ser.config import load_config

    return load_config("demo", ["ray.progress_bars=false", f"cache_dir={cache_dir}",
                                f"storage.s3_endpoint_url={s3_endpoint}", "branches={}", "asr.enabled=false",
                                "storage.io_backoff_s=0.05", "sink.rows_per_file=4",
                                "decode.resources.batch_size=4"])


def with_storage(cfg, **changes):
    return cfg.model_copy(update={"storage": cfg.storage.model_copy(update=changes)})
