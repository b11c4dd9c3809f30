"""Trained checkpoints on test corpora they have never met: is a demo's score more than one draw's luck?

    .venv/bin/python bench/fresh_corpora.py --seed 107 --set branches.speech.checkpoint=... [--set ...]

The --set lines are the ones `ray-ser demo` prints. Synthesizes new test corpora with the seed
(unseen speakers and sentences, and new utterances of the training speakers), labels them
through the full pipeline from an embedded S3, and prints each branch's and the vote's scores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="demo")
    parser.add_argument("--seed", type=int, default=107)
    parser.add_argument("--n-heldout", type=int, default=240)
    parser.add_argument("--n-seen", type=int, default=160)
    parser.add_argument("--set", action="append", default=[], help="section.field=value, as for ray-ser label")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    from ray_ser.config import load_config
    from ray_ser.demo.run import BUCKET, TEST_SETS, label_and_score, upload_test_sets
    from ray_ser.testing.s3 import embedded_s3
    from ray_ser.runtime import ray_session
    from ray_ser.report import format_scores
    from ray_ser.demo.synth import synthesize_corpus

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ray_ser_fresh_"))
    corpora = {
        "heldout": synthesize_corpus(work / "heldout", n=args.n_heldout, seed=args.seed, split="heldout"),
        "seen": synthesize_corpus(work / "seen", n=args.n_seen, seed=args.seed + 1, split="train"),
    }
    with embedded_s3() as endpoint:
        cfg = load_config(args.config, [*args.set, f"storage.s3_endpoint_url={endpoint}", "ray.progress_bars=false"])
        cfg.require_checkpoints()
        manifest = upload_test_sets(corpora, cfg, f"s3://{BUCKET}/corpus")
        with ray_session(cfg.ray):
            summary, scores = label_and_score(cfg, manifest, corpora, f"s3://{BUCKET}/labels/tests")
    print(f"labeling: {summary.rows_ok} of {summary.rows_written} rows labelled in one run, "
          f"{summary.wall_seconds:.0f} s")
    for name, description in TEST_SETS.items():
        print(f"\n{name} ({description}), seed {args.seed + (name == 'seen')}, {scores[name]['vote']['rows']} rows:")
        print(format_scores(scores[name]))


if __name__ == "__main__":
    main()
