"""The architecture's rules, read from the code's own import statements (top level and inside functions).

- models/ and branches/ know torch, transformers, vLLM and CTranslate2, and nothing of Ray, the
  stages, the batch plan, Serve or the Ray Train wrapper;
- the annotation core is Ray-free: the job's stages and Serve both wrap it;
- stages/ know Ray Data and the core, no model internals (no torch, no family's model modules);
- serve/ reuses the core, not the batch plan;
- config depends on no model or runtime; the family settings it imports are pydantic alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ray_ser"

RULES = [
    ("models", ("ray", "ray_ser.stages", "ray_ser.pipeline", "ray_ser.serve", "ray_ser.train", "ray_ser.runtime",
                "ray_ser.core"), "models know no Ray, stages, serving or training"),
    ("branches", ("ray", "ray_ser.stages", "ray_ser.pipeline", "ray_ser.serve", "ray_ser.train", "ray_ser.runtime",
                  "ray_ser.core"), "branch families know no Ray, stages, serving or the Ray Train wrapper"),
    ("core", ("ray", "ray_ser.stages", "ray_ser.pipeline", "ray_ser.serve", "ray_ser.train", "torch"),
     "the annotation core is Ray-free and holds no model internals"),
    ("stages", ("torch", "transformers", "ctranslate2", "vllm", "ray_ser.cli", "ray_ser.models.asr.whisper_ct2",
                "ray_ser.branches.speech_encoder.model", "ray_ser.branches.prosody.model",
                "ray_ser.branches.text_classifier.model", "ray_ser.branches.speech_llm.engines"),
     "stages know no model internals and no entrypoint"),
    ("serve", ("ray_ser.pipeline", "ray_ser.stages"), "serve reuses the annotation core, not the batch plan"),
    ("config.py", ("ray_ser.models", "ray", "torch"), "configs depend on no model or runtime"),
    ("config_types.py", ("ray_ser", "ray", "torch"), "the config building blocks depend on nothing"),
    ("train/run.py", ("ray",), "a training run is Ray-free; loop.py wraps it in Ray Train"),
]


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    package = ".".join(("ray_ser", *path.relative_to(ROOT).with_suffix("").parts[:-1]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join(parts + ([node.module] if node.module else []))
            elif node.module:
                yield node.module


@pytest.mark.parametrize("scope,banned,why", RULES, ids=[r[0] for r in RULES])
def test_imports_follow_the_architecture(scope, banned, why):
    target = ROOT / scope
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    broken = [f"{f.relative_to(ROOT.parent)} imports {m}" for f in files for m in _imports(f)
              if any(m == b or m.startswith(b + ".") for b in banned)]
    assert not broken, f"{why}:\n" + "\n".join(broken)


def test_family_settings_import_nothing_heavy():
    """config.py imports every family's settings: they must stay pydantic-only."""
    for settings in sorted((ROOT / "branches").glob("*/settings.py")):
        heavy = [m for m in _imports(settings) if m.split(".")[0] in ("torch", "transformers", "ray", "vllm", "numpy")
                 or (m.startswith("ray_ser.") and m not in ("ray_ser.config_types",)
                     and not m.startswith("ray_ser.branches."))]
        assert not heavy, f"{settings} imports {heavy}"


def test_no_module_grows_past_500_lines():
    big = {str(f.relative_to(ROOT.parent)): n for f in ROOT.rglob("*.py")
           if (n := len(f.read_text().splitlines())) > 500}
    assert not big, f"split these by responsibility: {big}"
