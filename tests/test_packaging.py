"""The package as a user installs it: a wheel in a fresh venv, the profiles inside it, outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_installs_and_its_profiles_load_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True, capture_output=True, text=True)
    wheel = next(wheels.glob("ray_ser-*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The locked environment's packages, as the dependencies (a plain path: its own .pth files,
    # the checkout's editable install among them, are not read).
    Path(site, "locked-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, text=True)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    help_text = subprocess.run([str(venv / "bin" / "ray-ser"), "--help"], cwd=outside, check=True,
                               capture_output=True, text=True).stdout
    assert "label" in help_text and "train" in help_text
    code = ("import ray_ser, sys; from ray_ser import load_config; from ray_ser.config import profile_names;"
            "cfg = load_config('demo'); print(ray_ser.__file__); print(sorted(profile_names()));"
            "print(cfg.asr.model, sorted(cfg.branches))")
    out = subprocess.run([str(python), "-c", code], cwd=outside, check=True, capture_output=True, text=True).stdout
    location, profiles, demo = out.strip().splitlines()
    assert location.startswith(str(venv)), location  # the wheel's copy, not the checkout
    assert {"demo", "production"} <= set(eval(profiles))
    assert demo.startswith("offline:whisper-base") and "speech" in demo
