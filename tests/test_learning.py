"""Long learning checks (minutes each): run with `pytest -m slow`, left out of the default suite."""

from __future__ import annotations

import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from wm_agent import JEPADreamer


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id, steps, threshold",
    [("CartPole-v1", 10_000, 475.0), ("Pendulum-v1", 10_000, -200.0)],
)
def test_default_preset_learns(env_id, steps, threshold):
    model = JEPADreamer("MlpPolicy", env_id, seed=0)
    model.learn(steps)
    mean, _ = evaluate_policy(model, make_vec_env(env_id, seed=1000), n_eval_episodes=10, deterministic=True)
    assert mean >= threshold, f"{env_id}: {mean:.1f} after {steps} steps (target {threshold})"
