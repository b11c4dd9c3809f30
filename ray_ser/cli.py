"""`ray-ser` console script: parse arguments, call one library function, print its result."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _synth(args: argparse.Namespace) -> int:
    from ray_ser.synth import synthesize_corpus

    manifest = synthesize_corpus(args.out, n=args.n, seed=args.seed, split=args.split)
    print(f"wrote {args.n} utterances; manifest: {manifest}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from ray_ser.config import load_config
    from ray_ser.pipeline import run_label_job
    from ray_ser.report import format_summary

    cfg = load_config(args.config, args.set)
    summary = run_label_job(cfg, args.input, args.output, run_id=args.run_id)
    print(format_summary(summary, cfg.storage))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ray_ser.demo import run_demo

    result = run_demo(args.workdir, n=args.n, seed=args.seed, profile=args.config, overrides=tuple(args.set))
    print(result.report)
    print(f"\nThe embedded S3 held the output at {result.summary.output} while the demo ran;")
    print(f"a copy of the Parquet files is in {result.local_copy}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ray-ser", description="Distributed speech-emotion annotation on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="synthesize the acted espeak-ng corpus")
    synth.add_argument("--out", required=True, help="output directory (wav/ and manifest.csv)")
    synth.add_argument("--n", type=int, default=200, help="number of utterances")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--split", choices=("all", "train", "heldout"), default="all",
                       help="speaker/sentence pool: train and heldout share neither")
    synth.set_defaults(func=_synth)

    for name, func, helptext in (("label", _label, "label a corpus into Parquet"),
                                 ("demo", _demo, "synthesize, label from an embedded S3, summarise")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--config", default="demo", help="profile name (configs/NAME.yaml) or YAML path")
        cmd.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                         help="override one config field (repeatable)")
        cmd.set_defaults(func=func)
    label = sub.choices["label"]
    label.add_argument("--input", required=True, help="manifest (csv/jsonl/parquet), directory or s3:// prefix")
    label.add_argument("--output", required=True, help="output directory or s3:// prefix")
    label.add_argument("--run-id", default=None, help="run identifier stored on every row")
    demo = sub.choices["demo"]
    demo.add_argument("--workdir", default="runs/demo")
    demo.add_argument("--n", type=int, default=24, help="utterances to synthesize")
    demo.add_argument("--seed", type=int, default=7)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ray_ser.config import ConfigError
    from ray_ser.io.manifest import ManifestError

    try:
        return args.func(args)
    except (ConfigError, ManifestError) as exc:
        print(f"ray-ser: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
