"""The SB3-suite plugin's rewriting of SB3's parametrizations (no network: SB3's tests are not needed here)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from stable_baselines3 import A2C, PPO, SAC

from benchmarks import sb3_suite_plugin as plugin

REPO = pathlib.Path(__file__).resolve().parents[1]


def _cases(mark: pytest.Mark) -> list:
    return list(mark.args[1])


def test_algorithm_list_gets_jepadreamer() -> None:
    mark = plugin.add_jepadreamer(pytest.mark.parametrize("model_class", [A2C, PPO]).mark, "test_x.py", "test_f")
    *sb3_cases, ours = _cases(mark)
    assert sb3_cases == [A2C, PPO]
    assert ours.values == (plugin.SuiteJEPADreamer,) and ours.id == plugin.PARAM_ID


def test_other_parametrizations_are_left_alone() -> None:
    assert plugin.add_jepadreamer(pytest.mark.parametrize("env_id", ["CartPole-v1"]).mark, "t.py", "f") is None
    assert plugin.add_jepadreamer(pytest.mark.parametrize("n", [1, 2]).mark, "t.py", "f") is None


def test_multi_column_case_copies_the_first_case() -> None:
    cases = [(A2C, {"n_steps": 1}), (SAC, {"buffer_size": 1})]
    mark = plugin.add_jepadreamer(pytest.mark.parametrize("model_class,model_kwargs", cases).mark, "t.py", "f")
    ours = _cases(mark)[-1]
    assert ours.values == (plugin.SuiteJEPADreamer, {"n_steps": 1}) and ours.id == plugin.PARAM_ID


def test_named_algorithms_use_the_extra_value() -> None:
    names = {"a2c": None}.keys()
    mark = plugin.add_jepadreamer(pytest.mark.parametrize("model_name", names).mark, "test_tensorboard.py",
                                  "test_tensorboard")  # fmt: skip
    assert _cases(mark)[-1].values == ("jepadreamer",)


def test_sb3_kwargs_are_translated() -> None:
    kwargs = plugin._translate(
        dict(learning_rate=1e-3, n_steps=64, train_freq=4, learning_starts=10, policy_kwargs=dict(net_arch=[16]))
    )
    assert kwargs == dict(model_lr=1e-3, learning_starts=10, policy_kwargs={})


def test_reason_tables_match_node_ids() -> None:
    assert plugin.match_reason(
        plugin.NOT_APPLICABLE, "tests/test_distributions.py::test_squashed_gaussian[JEPADreamer]"
    )
    assert plugin.match_reason(plugin.NOT_APPLICABLE, "tests/test_predict.py::test_predict[JEPADreamer]") is None
    assert plugin.match_reason(plugin.KNOWN_DIFFERENCES, "tests/test_tensorboard.py::test_tensorboard[JEPADreamer]")


def test_plugin_runs_only_jepadreamer_cases(tmp_path: pathlib.Path) -> None:
    """A stand-in SB3 test module: the plugin adds the JEPADreamer case, runs only it and reports the others as
    deselected; a not-applicable test is reported with its reason."""
    (tmp_path / "test_distributions.py").write_text(
        "import pytest\nfrom stable_baselines3 import A2C, PPO\n\n"
        "@pytest.mark.parametrize('model_class', [A2C, PPO])\n"
        "def test_built(model_class):\n    assert model_class('MlpPolicy', 'CartPole-v1').policy is not None\n\n"
        "@pytest.mark.parametrize('model_class', [A2C])\n"
        "def test_squashed_gaussian(model_class):\n    raise AssertionError('deselected: never runs')\n"
    )
    report = tmp_path / "report.json"
    env = {**os.environ, "WM_AGENT_SB3_SUITE_REPORT": str(report), "PYTHONPATH": str(REPO)}
    module = str(tmp_path / "test_distributions.py")
    command = [sys.executable, "-m", "pytest", module, "-p", "benchmarks.sb3_suite_plugin", "-p", "no:cacheprovider",
               "-q", "--rootdir", str(tmp_path), "-c", os.devnull]  # fmt: skip
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["outcomes"] == {"test_distributions.py::test_built[JEPADreamer]": "passed"}
    assert list(data["deselected"]) == ["test_distributions.py::test_squashed_gaussian[JEPADreamer]"]
    assert data["other_cases"] == 3
