"""Fitting the learned fusion as part of `ray-ser train`: hold speakers out, train the branches on the
rest, label the held-out clips with the labeling job itself, fit the fusion on what it wrote.

Holding out whole speakers (not clips) is the point: the fusion must learn how each branch does on
voices it never heard, which is what it will meet.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_ser.config import LabelConfig
    from ray_ser.core.fusion import Fusion

__all__ = ["split_for_fusion", "fit_fusion_on_holdout", "refit_output", "FusionResult", "REFIT_DIRECTORY"]

REFIT_DIRECTORY = "all-speakers"  # under `ray-ser train`'s output: the branches trained again (fusion.refit)


@dataclass(frozen=True)
class FusionResult:
    path: str                 # the fusion.json fusion.checkpoint should name
    fusion: Fusion
    scores: dict[str, dict]   # on the held-out clips: "fusion", "vote" and each branch -> macro-F1, UAR, accuracy


def _bucket(key: str) -> float:
    return int(hashlib.md5(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _held_out(keys: list[str], share: float) -> set[str] | None:
    """The share of the keys (speakers, or clips) held out, chosen by hash: the same keys for the same
    manifest on every run, at least one, and never all (a threshold on each key's hash alone would
    hold out none of four speakers one run in three). None where there are fewer than two."""
    if len(keys) < 2:
        return None
    count = min(len(keys) - 1, max(1, round(share * len(keys))))
    return set(sorted(keys, key=_bucket)[:count])


def split_for_fusion(cfg: LabelConfig, manifest: str, output_uri: str) -> tuple[str, str]:
    """(branch training manifest, held-out manifest), written beside the checkpoints: a
    fusion.holdout_speakers share of the speakers (of the clips, where a row names no speaker)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ray_ser.io.manifest import ManifestError, read_manifest_table, resolve_path
    from ray_ser.io.storage import filesystem_for

    table = read_manifest_table(manifest, cfg.storage)
    base = posixpath.dirname(manifest)
    paths = [resolve_path(str(p), base) for p in table.column("path").to_pylist()]
    table = table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths, pa.string()))
    speakers = (table.column(cfg.columns.speaker).to_pylist() if cfg.columns.speaker in table.column_names
                else [None] * table.num_rows)
    ids = table.column("utterance_id").to_pylist()
    keys = [f"speaker:{s}" if s else f"clip:{u}" for s, u in zip(speakers, ids)]
    chosen = _held_out(sorted(set(keys)), cfg.fusion.holdout_speakers)
    if chosen is None:
        raise ManifestError(f"{manifest}: the fusion needs speakers (or clips, where none is named) to train the "
                            "branches on and others to hold out; this manifest has only one")
    held = [key in chosen for key in keys]
    mask = pa.array(held)
    fs, root = filesystem_for(output_uri, cfg.storage)
    fs.create_dir(root, recursive=True)
    prefix = "s3://" if output_uri.startswith("s3://") else ""
    out = []
    for name, part in (("branches", table.filter(pc.invert(mask))), ("fusion-holdout", table.filter(mask))):
        target = f"{root}/{name}-manifest.parquet"
        pq.write_table(part, target, filesystem=fs)
        out.append(prefix + target)
    return out[0], out[1]


def refit_output(cfg: LabelConfig, output_uri: str) -> str | None:
    """Where `ray-ser train` trains the branches again on every speaker once the fusion is fitted
    (fusion.refit), or None to keep the branches that were trained without the held-out speakers."""
    return f"{output_uri.rstrip('/')}/{REFIT_DIRECTORY}" if cfg.fusion.refit else None


def fit_fusion_on_holdout(cfg: LabelConfig, holdout: str, output_uri: str) -> FusionResult:
    """Label the held-out manifest with the trained branches (cfg has their checkpoints), then fit
    cfg.fusion.method on their distributions and write fusion.json under output_uri (its `fitted_on`
    names the held-out manifest and where the branches are trained again, with fusion.refit)."""
    from ray_ser.core.fusion import FUSION_FILE, fit_fusion
    from ray_ser.evaluate import emotion_metrics
    from ray_ser.io.labelled import read_labelled_manifest
    from ray_ser.io.sink import read_output
    from ray_ser.io.storage import filesystem_for
    from ray_ser.pipeline import run_label_job

    voting = cfg.model_copy(update={"fusion": cfg.fusion.model_copy(update={"method": "none", "checkpoint": None})})
    labels_uri = f"{output_uri.rstrip('/')}/fusion-holdout-labels"
    run_label_job(voting, holdout, labels_uri)
    truth = {r.utterance_id: r.label for r in read_labelled_manifest(holdout, cfg.storage, cfg.columns, cfg.labels)}
    rows = [r for r in read_output(labels_uri, cfg.storage).to_pylist() if r["input_id"] in truth]
    branches = tuple(cfg.branches)
    probs = {b: [r[f"{b}_probs"] if r[f"{b}_label"] is not None else None for r in rows] for b in branches}
    targets = [truth[r["input_id"]] for r in rows]
    fusion = fit_fusion(cfg.fusion.method, probs, targets, cfg.labels.classes)

    classes = list(cfg.labels.classes)
    k = len(classes)

    def score(predicted: list[str | None]) -> dict:
        # An abstention counts as wrong, as score_labels does: the class after the truth.
        indices = [classes.index(p) if p else (t + 1) % k for p, t in zip(predicted, targets)]
        return emotion_metrics(targets, indices, k)

    fused = [fusion.predict({b: probs[b][i] for b in branches}) for i in range(len(rows))]
    scores = {"fusion": score([classes[int(f.argmax())] if f is not None else None for f in fused]),
              "vote": score([r["vote_label"] for r in rows]),
              **{b: score([r[f"{b}_label"] for r in rows]) for b in branches}}
    # Scores on the clips the fusion was fitted on: the branches' and the vote's are honest (no branch
    # trained on these speakers); the fusion's is in-sample, an upper bound.
    fusion = type(fusion)(**{**fusion.__dict__, "fitted_on": {"rows": len(rows), "holdout": holdout,
                                                              "refit": refit_output(cfg, output_uri),
                                                              "in_sample_scores": scores}})
    fs, root = filesystem_for(output_uri, cfg.storage)
    target = f"{root}/{FUSION_FILE}"
    with fs.open_output_stream(target) as handle:
        handle.write(fusion.to_json().encode())
    return FusionResult(("s3://" + target) if output_uri.startswith("s3://") else target, fusion, scores)
