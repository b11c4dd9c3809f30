"""How well the job's voice grouping finds the speakers of clips that name none, fold by fold.

    .venv/bin/python bench/voice_groups.py [--config real-speech] [--corpora emodb,ravdess] [--max-k 8]

For each corpus, its speakers are split into the folds bench/real_speech.py labels with speaker
ids withheld. Each fold's clips are embedded by the job's speaker encoder (GE2E) and grouped by
the job's own rule (ray_ser/models/features/speaker_embedding.py:cluster_speakers, with the
profile's speakers.max_groups and speakers.min_separation). Prints, per fold, the groups it made
and their adjusted Rand index against the true speakers (1: the speakers exactly; 0: no better
than chance), and for every k the silhouette the rule compares with min_separation and the index
that k would have reached: the figures to choose those two settings by.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import REAL_SPEECH  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="real-speech")
    parser.add_argument("--corpora", default="emodb,ravdess")
    parser.add_argument("--folds", default="emodb=3,ravdess=4")
    parser.add_argument("--max-k", type=int, default=8)
    args = parser.parse_args()

    import numpy as np
    import soundfile as sf
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    from ray_ser.config import load_config
    from ray_ser.labels import map_label
    from ray_ser.models.features.speaker_embedding import VoiceEncoder, cluster_speakers

    cfg = load_config(args.config)
    rule = cfg.speakers
    folds = {k: int(v) for k, v in (item.split("=") for item in args.folds.split(","))}
    encoder = VoiceEncoder()
    print(f"grouping rule: up to {rule.max_groups} groups, silhouette at least {rule.min_separation}")
    for corpus in args.corpora.split(","):
        manifest = REAL_SPEECH / corpus / "manifest.csv"
        rows = [r for r in csv.DictReader(open(manifest))
                if map_label(r["emotion"], r["corpus"], cfg.labels.rules, cfg.labels.classes) is not None]
        began = time.perf_counter()
        embeddings = encoder([sf.read(manifest.parent / r["path"], dtype="float32")[0] for r in rows])
        speakers = np.array([r["speaker"] for r in rows])
        print(f"\n{corpus}: {len(rows)} clips embedded in {time.perf_counter() - began:.0f} s")
        names = sorted(set(speakers))
        for i in range(folds[corpus]):
            chosen = np.isin(speakers, names[i::folds[corpus]])
            points, truth = embeddings[chosen], speakers[chosen]
            groups = cluster_speakers(points, rule.max_groups, rule.min_separation)
            print(f"  fold {i + 1} ({len(set(truth))} speakers, {len(truth)} clips): the rule made "
                  f"{len(set(groups))} group(s), adjusted Rand {adjusted_rand_score(truth, groups):.2f}")
            cells = []
            for k in range(2, min(args.max_k, len(truth) - 1) + 1):
                labels = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(points)
                cells.append(f"k={k}: {silhouette_score(points, labels, metric='cosine'):.2f}"
                             f"/{adjusted_rand_score(truth, labels):.2f}")
            print("    silhouette/Rand per k: " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
