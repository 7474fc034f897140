"""The linear probe of benchmarks/probe.py: the regression, and features from a model's filtered latent state."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives in the checkout, not the wheel

from benchmarks import probe  # noqa: E402
from wm_agent import JEPADreamer  # noqa: E402


def test_ridge_r2_reads_linear_targets_and_not_noise():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1000, 20))
    linear = features @ rng.normal(size=(20, 2))
    r2 = probe.ridge_r2(features, np.concatenate([linear, rng.normal(size=(1000, 1))], axis=1))
    assert r2[0] > 0.99 and r2[1] > 0.99 and r2[2] < 0.05


def test_probe_a_kept_model_end_to_end(tmp_path, tiny_kwargs, capsys):
    import json

    run_dir = tmp_path / "runs" / "CartPole-v1" / "jepa_dreamer"
    run_dir.mkdir(parents=True)
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(100)
    model.save(run_dir / "seed0.zip")
    (run_dir / "seed0.json").write_text(
        json.dumps({"spec": {"env_id": "CartPole-v1", "label": "jepa_dreamer", "seed": 0}})
    )

    features, states = probe.rollout_features(model, "CartPole-v1", 50, seed=1)
    assert features.shape == (50, model.config.feat_size) and states.shape == (50, 4)
    assert np.isfinite(features).all()

    assert probe.main(["--runs", str(tmp_path), "--steps", "120"]) == 0
    table = (tmp_path / "probe.md").read_text()
    assert "| CartPole-v1 | jepa_dreamer | 1 |" in table and "| CartPole-v1 | jepa_dreamer (untrained) | 1 |" in table
    with pytest.raises(SystemExit):  # nothing kept for that env
        probe.main(["--runs", str(tmp_path), "--steps", "120", "--env", "Acrobot-v1"])
    assert "no JEPADreamer model kept" in capsys.readouterr().err


def test_reward_probe_measures_sampled_and_mode_features(tmp_path, tiny_kwargs):
    import json

    from benchmarks import reward_probe

    hyperparams = {k: v for k, v in tiny_kwargs.items() if k != "seed"}
    out = tmp_path / "probe.json"
    args = ["--env-kwargs", "delay=0", "--hyperparams", json.dumps(hyperparams), "--checkpoints", "80,40"]
    assert reward_probe.main([*args, "--batches", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["env_kwargs"] == {"delay": 0} and record["hyperparams"] == hyperparams
    rows = record["rows"]
    assert [row["steps"] for row in rows] == [40, 80]  # checkpoints in order, training resumed between them
    assert rows[1]["updates"] > rows[0]["updates"] > 0
    classes = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs).config.classes
    for row in rows:
        assert 1 / classes <= row["post_max_prob"] <= 1
        assert len(row["head_sign_acc"]) == len(row["probe_r2"]) == 2  # sampled, then mode
        assert all(0 <= acc <= 1 for acc in row["head_sign_acc"])
        assert all(r2 <= 1 for r2 in row["probe_r2"])


def test_reward_probe_leaves_the_training_random_streams_alone(tiny_kwargs):
    import gymnasium as gym

    from benchmarks import reward_probe
    from wm_agent.common import register_project_envs

    register_project_envs("wm/DelayedReward-v0")
    model = JEPADreamer("MlpPolicy", gym.make("wm/DelayedReward-v0", delay=0), **tiny_kwargs)
    model.learn(60)
    torch_state, replay_state = torch.get_rng_state(), model.replay_buffer.rng.bit_generator.state
    first = reward_probe.measure(model, batches=2, seed=3)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert model.replay_buffer.rng.bit_generator.state == replay_state
    assert reward_probe.measure(model, batches=2, seed=3) == first  # same batches, same draws
