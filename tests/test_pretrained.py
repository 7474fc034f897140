"""Pretrained agent folders: package, load from folder / zip / name, fine-tune, clear errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

from wm_agent import JEPADreamer, list_pretrained, load_pretrained, package
from wm_agent.pretrained import model_name


@pytest.fixture
def packaged(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(80)
    folder = package(model, tmp_path, "CartPole-v1", 12.5, 1.5, 4, command="pytest")
    return model, folder


def test_package_writes_the_hub_layout(packaged):
    model, folder = packaged
    assert folder.name == "jepa_dreamer-CartPole-v1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "jepa_dreamer-CartPole-v1.zip",
        "results.json",
    ]
    results = json.loads((folder / "results.json").read_text())
    assert results["env_id"] == "CartPole-v1" and results["n_timesteps"] == 80 and results["eval_mean"] == 12.5
    assert set(results["versions"]) >= {"wm_agent", "torch", "stable_baselines3", "gymnasium"}
    assert json.loads((folder / "config.json").read_text())["deter"] == model.config.deter


def test_load_from_folder_and_zip_gives_the_same_agent(packaged):
    model, folder = packaged
    obs = np.array([0.01, -0.02, 0.03, 0.0], np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    for source in (folder, folder / "jepa_dreamer-CartPole-v1.zip"):
        loaded = load_pretrained(source)
        assert loaded.pretrained_info["env_id"] == "CartPole-v1"
        np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)


def test_fine_tune_after_loading(packaged):
    model, folder = packaged
    assert model.policy.model_optimizer.state  # packaging left the user's model alone
    with zipfile.ZipFile(folder / "jepa_dreamer-CartPole-v1.zip") as archive:
        assert len(archive.read("policy.model_optimizer.pth")) < 4000  # moments dropped from the shipped file
    model = load_pretrained(folder, env=make_vec_env("CartPole-v1", seed=7))
    model.learn(40, reset_num_timesteps=False)
    assert model.num_timesteps == 120
    model = load_pretrained(folder, env="CartPole-v1")  # an env id is made for the user
    model.learn(20, reset_num_timesteps=False)
    assert model.num_timesteps == 100


def test_wrong_env_and_unknown_names_raise_clearly(packaged):
    _, folder = packaged
    with pytest.raises(ValueError, match="spaces do not match"):
        load_pretrained(folder, env=make_vec_env("Pendulum-v1"))
    with pytest.raises(ValueError, match="No pretrained agent 'NoSuchEnv-v0'"):
        load_pretrained("NoSuchEnv-v0")
    with pytest.raises(FileNotFoundError, match="results.json"):
        load_pretrained(folder.parent)


@pytest.mark.skipif(importlib.util.find_spec("huggingface_hub") is not None, reason="checks the message without it")
def test_hub_id_without_huggingface_hub_says_what_to_install():
    with pytest.raises(ImportError, match="huggingface_hub"):
        load_pretrained("someone/jepa_dreamer-CartPole-v1")


def test_names_and_listing():
    assert model_name("wm/PixelCartPole-v0") == "jepa_dreamer-wm-PixelCartPole-v0"
    for agent in list_pretrained():
        assert {"env_id", "eval_mean", "eval_std", "n_timesteps", "folder"} <= set(agent)


SHIPPED = list_pretrained()


def test_the_promised_agents_are_shipped_small_and_documented():
    env_ids = {agent["env_id"] for agent in SHIPPED}
    assert {"CartPole-v1", "Acrobot-v1", "Pendulum-v1"} <= env_ids
    assert any(env_id.startswith("wm/Pixel") or "Distractor" in env_id for env_id in env_ids), env_ids
    for agent in SHIPPED:
        folder = Path(agent["folder"])
        assert (folder / f"{model_name(agent['env_id'])}.zip").stat().st_size < 5 * 2**20
        assert agent["command"] and agent["n_timesteps"] > 0 and agent["seed"] is not None
        assert {"torch", "stable_baselines3", "gymnasium", "wm_agent"} <= set(agent["versions"])


@pytest.mark.parametrize("agent", SHIPPED, ids=[agent["env_id"] for agent in SHIPPED])
def test_shipped_agent_reproduces_its_score_in_a_fresh_process(agent):
    """`wm-agent eval ENV_ID` in a new interpreter, on the agent's own eval seed (the default), scores within one
    std of its metadata over the first 5 of the metadata's episodes."""
    command = [sys.executable, "-m", "wm_agent.cli", "eval", agent["env_id"], "-n", "5"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr
    mean = float(done.stdout.rsplit(": ", 1)[1].split(" +/-")[0])
    assert abs(mean - agent["eval_mean"]) <= agent["eval_std"] + 0.01, (mean, agent["eval_mean"], agent["eval_std"])
