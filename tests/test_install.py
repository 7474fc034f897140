"""`wm-agent compare` from an installed (non-editable) package, run outside the repository: the harness ships in
the wheel and needs nothing from the source checkout (no benchmarks/, no sys.path edits)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _can_build_offline() -> bool:
    """Whether this environment's setuptools builds a wheel by itself (setuptools >= 70.1, or the wheel package)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    major, minor = (int(part) for part in importlib.metadata.version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def test_compare_from_an_installed_package_outside_the_repository(tmp_path):
    source = tmp_path / "source"  # what the wheel is built from; the shipped agents are left out to keep it quick
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "jepa_dreamer-*")
    for package in ("wm_agent", "envs"):
        shutil.copytree(ROOT / package, source / package, ignore=skip)
    site = tmp_path / "site"
    isolation = ["--no-build-isolation"] if _can_build_offline() else []
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(site), str(source)]
    subprocess.run(pip, check=True, capture_output=True, text=True)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # deps from this venv; wm_agent only from the installed copy
    where = "import importlib.util as u, wm_agent.compare as c; print(c.__file__, u.find_spec('benchmarks'))"
    found = subprocess.run([sys.executable, "-c", where], cwd=work, env=env, check=True, capture_output=True, text=True)
    assert found.stdout.split() == [str(site / "wm_agent" / "compare" / "__init__.py"), "None"]

    command = [str(site / "bin" / "wm-agent"), "compare", "--env", "CartPole-v1", "--algos", "a2c", "--steps", "64"]
    command += ["--seeds", "1", "--eval-every", "32", "--eval-episodes", "1", "--no-progress", "--out", "out"]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1 runs done, 0 already finished, 0 failed" in result.stdout
    assert "| CartPole-v1 (475) | a2c | zoo | 1 | 64 |" in (work / "out" / "summary.md").read_text()
    assert (work / "out" / "runs" / "CartPole-v1" / "a2c" / "seed0.json").exists()
