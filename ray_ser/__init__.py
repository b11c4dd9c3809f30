"""ray_ser: distributed speech-emotion annotation on Ray.

Importing this package is cheap: it imports neither torch, vllm nor ray. The public API is
loaded on first use (PEP 562):

    from ray_ser import load_config, run_label_job, train_branches, build_app, evaluate

- ``load_config(profile, overrides)``: a typed profile (``demo``, ``production``, ``real-speech`` or a YAML path);
- ``run_label_job(cfg, input_uri, output_uri)``: the labeling job (Ray Data), resumable, exactly once per row;
- ``train_branches(cfg, manifest, output_uri, names=None)``: Ray Train, the branches side by side;
- ``build_app(cfg)``: the Ray Serve application;
- ``evaluate(predictions, truth, out=None)``: a labeling job's output scored against a manifest's truth
  (macro-F1, UAR, accuracy, per class, confusion, calibration, agreement; metrics.json and report.html
  in ``out``). ``ray_ser.evaluate.score_labels(rows, truth, branches)`` scores rows in memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["__version__", "load_config", "run_label_job", "train_branches", "build_app", "evaluate"]

# public name -> (module, attribute)
_LAZY = {
    "load_config": ("ray_ser.config", "load_config"),
    "run_label_job": ("ray_ser.pipeline", "run_label_job"),
    "train_branches": ("ray_ser.train.loop", "train_branches"),
    "build_app": ("ray_ser.serve.app", "build_app"),
    "evaluate": ("ray_ser.evaluate", "evaluate_predictions"),
}

if TYPE_CHECKING:
    from ray_ser.config import load_config
    from ray_ser.evaluate import evaluate_predictions as evaluate
    from ray_ser.pipeline import run_label_job
    from ray_ser.serve.app import build_app
    from ray_ser.train.loop import train_branches


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ray_ser' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
