"""Open-loop drift (`wm_agent.diagnostics.open_loop_drift`): result layout, baselines, episode ends, spaces."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from tests.conftest import SpaceEnv, readme_block
from wm_agent import JEPADreamer
from wm_agent.diagnostics import DriftCurves, Episode, collect_episodes, open_loop_drift

COMMON = ["reward_error", "reward_error_filtered", "cont_error", "cont_error_filtered", "latent_error"]
COMMON += ["latent_mse", "latent_copy_last_mse", "deter_error"]
JEPA_ONLY = ["embed_error", "embed_error_filtered"]
RECON_ONLY = ["obs_error", "obs_error_filtered", "obs_copy_last"]


def tiny_model(env, tiny_kwargs, **overrides) -> JEPADreamer:
    """An untrained tiny model: the drift code paths do not need a trained one."""
    return JEPADreamer("MlpPolicy", env, **{**tiny_kwargs, **overrides})


def check_curves(curves: DriftCurves, horizon: int, expected: list[str], absent: list[str]) -> None:
    assert list(curves.horizon) == list(range(1, horizon + 1))
    assert curves.count.shape == (horizon,)
    assert set(expected) <= set(curves.metrics) and not set(absent) & set(curves.metrics)
    scored = curves.count > 0
    assert scored[0]
    for name, curve in curves.metrics.items():
        assert curve.shape == (horizon,), name
        assert np.isfinite(curve[scored]).all() and (curve[scored] >= 0).all(), name
        assert np.isnan(curve[~scored]).all(), name


@pytest.mark.parametrize("representation", ["jepa", "reconstruction"])
def test_drift_vector_env_keys_shapes_and_values(representation, tiny_kwargs):
    model = tiny_model("CartPole-v1", tiny_kwargs, representation=representation)
    curves = open_loop_drift(model, "CartPole-v1", n_episodes=2, horizon=6)
    jepa = representation == "jepa"
    check_curves(curves, 6, COMMON + (JEPA_ONLY if jepa else RECON_ONLY), RECON_ONLY if jepa else JEPA_ONLY)
    assert curves.info["representation"] == representation and curves.info["episodes"] == 2
    assert curves.count[0] == curves.info["start_points"]
    # at k = 1 the prior's deterministic state is the posterior's (both advance from the posterior at t)
    assert curves["deter_error"][0] == pytest.approx(0.0, abs=1e-6)
    data = json.loads(json.dumps(curves.to_dict()))
    again = DriftCurves.from_dict(data)
    np.testing.assert_allclose(again["latent_error"], curves["latent_error"])
    table = curves.table(horizons=(1, 5, 50), metrics=["reward_error", "latent_error"])
    assert table.count("\n") == 3 and "| 5 |" in table  # header, rule, k = 1 and 5 (50 is beyond the horizon)


def test_image_obs_continuous_actions_reconstruction_has_obs_error(tiny_kwargs):
    image = spaces.Box(0, 255, (20, 24, 3), np.uint8)  # channel-last and off-size: transposed and resized
    env = make_vec_env(lambda: SpaceEnv(image, spaces.Box(-2.0, 2.0, (2,)), length=9), n_envs=2, seed=0)
    model = tiny_model(env, tiny_kwargs, representation="reconstruction", image_size=16)
    curves = open_loop_drift(model, env, n_episodes=3, horizon=4, start_every=2)
    check_curves(curves, 4, COMMON + RECON_ONLY, JEPA_ONLY)
    # random frames: copying the last one is as wrong as an untrained decoder, but both are positive
    assert curves["obs_copy_last"][0] > 0 and curves["obs_error"][0] > 0
    jepa = tiny_model(env, tiny_kwargs, image_size=16)
    check_curves(open_loop_drift(jepa, env, n_episodes=2, horizon=4), 4, COMMON + JEPA_ONLY, RECON_ONLY)


def test_copy_last_normalisation_is_one_for_a_prior_that_repeats_the_state(tiny_kwargs, monkeypatch):
    model = tiny_model("CartPole-v1", tiny_kwargs)
    monkeypatch.setattr(model.policy.world_model.rssm, "img_step", lambda state, action, sample=True: state)
    curves = open_loop_drift(model, "CartPole-v1", n_episodes=2, horizon=5)
    scored = curves.count > 0
    np.testing.assert_allclose(curves["latent_error"][scored], 1.0, rtol=1e-6)
    np.testing.assert_allclose(curves["deter_error"][scored], 1.0, rtol=1e-6)
    np.testing.assert_allclose(curves["latent_mse"][scored], curves["latent_copy_last_mse"][scored], rtol=1e-6)


def make_episode(length: int, terminated: bool, rng: np.random.Generator) -> Episode:
    action = np.eye(2, dtype=np.float32)[rng.integers(0, 2, length)]
    action[0] = 0.0
    ends = np.zeros(length, bool)
    ends[-1] = terminated
    return Episode({"obs": rng.normal(size=(length, 4)).astype(np.float32)}, action, np.ones(length, np.float32), ends)


def test_horizons_are_cut_at_episode_ends_and_counted_per_k(tiny_kwargs):
    model = tiny_model("CartPole-v1", tiny_kwargs)
    rng = np.random.default_rng(0)
    episodes = [make_episode(4, True, rng), make_episode(7, False, rng), make_episode(1, True, rng)]
    curves = open_loop_drift(model, episodes=episodes, horizon=8)
    # from the starts t = 0..L-2 of an episode of L steps, max(0, L - k) reach step t + k
    expected = [max(0, 4 - k) + max(0, 7 - k) for k in range(1, 9)]
    assert list(curves.count) == expected
    assert curves.info["episodes"] == 2  # the one-step episode has no step to predict
    assert np.isnan(curves["reward_error"][6:]).all() and np.isfinite(curves["reward_error"][:6]).all()
    every_third = open_loop_drift(model, episodes=episodes, horizon=8, start_every=3)
    # starts: t = 0 of the 4-step episode (t = 3 has no next step), t = 0 and 3 of the 7-step one
    assert list(every_third.count) == [3, 3, 3, 1, 1, 1, 0, 0]


def test_collect_episodes_records_steps_as_the_replay_does(tiny_kwargs):
    model = tiny_model("CartPole-v1", tiny_kwargs)
    space, actions = model.observation_space, model.action_space
    ended = collect_episodes(model, SpaceEnv(space, actions, length=5), n_episodes=2, seed=1)
    truncated = collect_episodes(model, gym.wrappers.TimeLimit(SpaceEnv(space, actions, length=50), 6), n_episodes=2)
    for episode in ended:
        assert len(episode) == 6 and episode.obs["obs"].shape == (6, 4) and episode.action.shape == (6, 2)
        assert list(episode.terminated) == [False] * 5 + [True]
        assert not episode.action[0].any() and episode.reward[0] == 0
        assert (episode.action[1:].sum(-1) == 1).all()  # one-hot encoded actions
    for episode in truncated:
        assert len(episode) == 7 and not episode.terminated.any()  # a truncation is not a termination


def test_seeded_and_leaves_the_global_random_stream_alone(tiny_kwargs):
    model = tiny_model("CartPole-v1", tiny_kwargs)
    torch.manual_seed(123)
    first = open_loop_drift(model, "CartPole-v1", n_episodes=2, horizon=3, seed=5)
    after = torch.rand(3)
    torch.manual_seed(123)
    again = open_loop_drift(model.policy, "CartPole-v1", n_episodes=2, horizon=3, seed=5)  # the policy works too
    np.testing.assert_array_equal(after, torch.rand(3))
    np.testing.assert_array_equal(first["latent_error"], again["latent_error"])


def test_bad_arguments_say_what_to_do(tiny_kwargs):
    model = tiny_model("CartPole-v1", tiny_kwargs)
    with pytest.raises(ValueError, match="horizon"):
        open_loop_drift(model, "CartPole-v1", horizon=0)
    with pytest.raises(ValueError, match="at least one episode"):
        open_loop_drift(model, episodes=[])
    with pytest.raises(TypeError, match="env must be"):
        collect_episodes(model, 3)
    with pytest.raises(ValueError, match="trained on other spaces"):
        collect_episodes(model, "Pendulum-v1")


def test_dict_observation_with_image_and_vector_reconstruction(tiny_kwargs):
    space = spaces.Dict({"frame": spaces.Box(0, 255, (3, 16, 16), np.uint8), "state": spaces.Box(-1, 1, (3,))})
    env = make_vec_env(lambda: SpaceEnv(space, spaces.MultiDiscrete([2, 3]), length=6), n_envs=1, seed=0)
    model = JEPADreamer("MultiInputPolicy", env, **tiny_kwargs, representation="reconstruction", image_size=16)
    curves = open_loop_drift(model, env, n_episodes=2, horizon=3)
    check_curves(curves, 3, COMMON + RECON_ONLY, JEPA_ONLY)


def test_readme_drift_example_runs_and_the_shipped_model_beats_copy_last_one_step_ahead():
    namespace: dict = {}
    exec(compile(readme_block("## Diagnostics: open-loop drift"), "README.md", "exec"), namespace)  # noqa: S102
    latent_error = namespace["curves"]["latent_error"]
    assert latent_error.shape == (50,)
    assert latent_error[0] < 1  # one step ahead, the shipped CartPole model predicts better than "nothing changes"
