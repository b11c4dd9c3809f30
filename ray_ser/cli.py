"""`ray-ser` console script: parse arguments, call one library function, print its result."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _synth(args: argparse.Namespace) -> int:
    from ray_ser.demo.synth import synthesize_corpus

    manifest = synthesize_corpus(args.out, n=args.n, seed=args.seed, split=args.split)
    print(f"wrote {args.n} utterances; manifest: {manifest}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from ray_ser.config import load_config
    from ray_ser.pipeline import run_label_job
    from ray_ser.report import format_summary

    cfg = load_config(args.config, args.set)
    summary = run_label_job(cfg, args.input, args.output, run_id=args.run_id, retry_errors=args.retry_errors)
    print(format_summary(summary, cfg.storage))
    return 0


def _train(args: argparse.Namespace) -> int:
    from ray_ser.config import load_config
    from ray_ser.report import label_command
    from ray_ser.train.loop import format_fusion, format_train_result, train_branches

    cfg = load_config(args.config, args.set)
    summary = train_branches(cfg, args.manifest, args.out, names=args.branch)
    print("\n\n".join(format_train_result(result) for result in summary.branches.values()))
    if summary.fusion is not None:
        print("\n" + format_fusion(summary.fusion))
    print("\nlabel with these checkpoints:\n  " + label_command(args.config, [*args.set, *summary.overrides()]))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ray_ser.config import load_config
    from ray_ser.serve.app import run_server

    cfg = load_config(args.config, args.set)
    base = f"http://{cfg.serve.host}:{cfg.serve.port}{cfg.serve.route_prefix.rstrip('/')}"
    print(f"serving POST {base}/v1/annotate (API docs: {base}/docs; probes: {base}/healthz, {base}/readyz)")
    run_server(cfg, blocking=True)
    return 0


def _query(args: argparse.Namespace) -> int:
    import json

    from ray_ser.serve.client import query

    status, body = query(args.file, args.url, args.token, args.transcript, args.speaker)
    print(json.dumps(body, indent=1))
    return 0 if status == 200 else 1


def _adapt(args: argparse.Namespace) -> int:
    from ray_ser.config import load_config
    from ray_ser.train.loop import adapt_branch, format_train_result

    cfg = load_config(args.config, args.set)
    print(format_train_result(adapt_branch(cfg, args.branch, args.out)))
    return 0


def _serve_llm(args: argparse.Namespace) -> int:
    from ray_ser.config import load_config
    from ray_ser.serve.llm_app import run_llm_server, served_model_id

    cfg = load_config(args.config, args.set)
    base = f"http://{cfg.serve.host}:{cfg.serve.port}{cfg.serve.llm_route_prefix.rstrip('/')}"
    print(f"OpenAI API for model {served_model_id(cfg, args.branch)!r} at {base}/v1; use it in `ray-ser serve` with\n"
          f"  --set branches.{args.branch}.llm.engine=openai --set branches.{args.branch}.llm.openai_url={base}")
    run_llm_server(cfg, args.branch, blocking=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ray_ser.demo.run import DemoSizes, run_demo

    sizes = DemoSizes(train=args.n_train, heldout=args.n_heldout, seen=args.n_seen)
    result = run_demo(args.workdir, sizes, seed=args.seed, profile=args.config, overrides=tuple(args.set))
    print(result.report)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ray_ser.config import load_config
    from ray_ser.evaluate import EvaluationError, evaluate_predictions, format_summary

    cfg = load_config(args.config, args.set)
    label_map = list(args.map)
    if args.profile_rules:  # the profile's mappings ('drop' rows stay out, counted as outside the taxonomy)
        label_map += [f"{'' if corpus == '*' else corpus + ':'}{raw}={target}"
                      for corpus, rule in cfg.labels.rules.items() for raw, target in rule.items() if target != "drop"]
    try:
        evaluation = evaluate_predictions(args.predictions, args.truth, args.out, storage=cfg.storage,
                                          label_column=args.label_column, corpus_column=args.corpus_column,
                                          label_map=label_map, classes=cfg.labels.classes, bins=args.bins)
    except EvaluationError as exc:
        print(f"ray-ser evaluate: {exc}", file=sys.stderr)
        return 2
    print(format_summary(evaluation))
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
                                 ("train", _train, "fine-tune branches with Ray Train"),
                                 ("adapt", _adapt, "few-shot LoRA adaptation of a speech_llm branch"),
                                 ("serve", _serve, "serve POST /v1/annotate for single clips (Ray Serve)"),
                                 ("serve-llm", _serve_llm, "serve a speech_llm branch as an OpenAI API"),
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
    label.add_argument("--retry-errors", action="store_true",
                       help="label again every input with an error row, permanent ones too (transient errors are "
                       "retried by every run)")
    train = sub.choices["train"]
    train.add_argument("--branch", action="append", default=None,
                       help="branch name in the config's branches section; repeat it to train several side by "
                       "side (default: every branch with a train section)")
    train.add_argument("--manifest", required=True, action="append",
                       help="labelled manifest (local or s3://); repeat it to train on the union of several")
    train.add_argument("--out", required=True, help="checkpoint storage directory or s3:// prefix")
    adapt = sub.choices["adapt"]
    adapt.add_argument("--branch", required=True, help="a trained speech_llm branch with a few_shot section")
    adapt.add_argument("--out", required=True, help="checkpoint storage directory or s3:// prefix")
    sub.choices["serve-llm"].add_argument("--branch", required=True, help="the speech_llm branch to serve")
    query = sub.add_parser("query", help="annotate one audio file with a running `ray-ser serve` endpoint")
    query.add_argument("file", help="an audio file (wav, flac, mp3, ogg)")
    query.add_argument("--url", default="http://127.0.0.1:8000", help="the endpoint's base URL (with its route prefix)")
    query.add_argument("--token", default=None, help="bearer token (default: $RAY_SER_TOKEN)")
    query.add_argument("--transcript", default=None, help="use this transcript instead of the ASR's")
    query.add_argument("--speaker", default=None, help="a training speaker's id")
    query.set_defaults(func=_query)
    demo = sub.choices["demo"]
    demo.add_argument("--workdir", default="runs/demo")
    demo.add_argument("--n-train", type=int, default=1200, help="training utterances (training speakers)")
    demo.add_argument("--n-heldout", type=int, default=240, help="test utterances, unseen speakers and sentences")
    demo.add_argument("--n-seen", type=int, default=160, help="test utterances, training speakers")
    demo.add_argument("--seed", type=int, default=7)
    evaluate = sub.add_parser("evaluate", help="score a labeling job's output against a manifest's truth "
                              "(metrics.json and a self-contained report.html)")
    evaluate.add_argument("--predictions", required=True, help="the labeling job's output: directory or s3:// prefix")
    evaluate.add_argument("--truth", required=True, help="manifest (csv/tsv/jsonl/parquet, local or s3://) with "
                          "utterance_id, the label column and optionally corpus")
    evaluate.add_argument("--out", required=True, help="directory or s3:// prefix for metrics.json and report.html")
    evaluate.add_argument("--label-column", default="emotion", help="the truth's label column")
    evaluate.add_argument("--corpus-column", default="corpus", help="scores per value of this column when present")
    evaluate.add_argument("--map", action="append", default=[], metavar="[CORPUS:]LABEL=CLASS",
                          help="score a truth label outside the taxonomy as a class, e.g. calm=neutral or "
                          "ravdess:calm=neutral (repeatable); by default such rows are left out and counted")
    evaluate.add_argument("--profile-rules", action="store_true",
                          help="also apply the --config profile's labels.rules (what training mapped, e.g. "
                          "ravdess calm -> neutral); the profile's labels.classes is always the taxonomy")
    evaluate.add_argument("--bins", type=int, default=10, help="confidence bins of the reliability curve and ECE")
    evaluate.add_argument("--config", default="demo", help="profile whose taxonomy (labels.classes) is scored and whose storage section "
                          "reaches s3:// URIs")
    evaluate.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                          help="override one config field, e.g. storage.s3_endpoint_url=... (repeatable)")
    evaluate.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ray_ser.branches.checkpoint import CheckpointError
    from ray_ser.config import ConfigError
    from ray_ser.io.lease import OutputBusyError
    from ray_ser.io.manifest import ManifestError
    from ray_ser.train.loop import BranchTrainingError

    try:
        return args.func(args)
    except (ConfigError, ManifestError, CheckpointError, OutputBusyError) as exc:
        print(f"ray-ser: {exc}", file=sys.stderr)
        return 2
    except BranchTrainingError as exc:  # the branch's own traceback was logged by its workers
        print(f"ray-ser: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
