"""The what-if API (`JEPADreamer.imagine`) and planning at act time (`planner`): shapes, the latent-state contract,
determinism, batching, bad inputs, load overrides, and the README's what-if example."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

import wm_agent.planning as planning
from tests.conftest import SpaceEnv, readme_block
from wm_agent import JEPADreamer

BOX_OBS = spaces.Box(-1, 1, (3,), np.float32)
ACTION_SPACES = {
    "discrete": spaces.Discrete(3, start=1),
    "box": spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)),
    "multidiscrete": spaces.MultiDiscrete([2, 3]),
}


def sequences(action_space: spaces.Space, plans: int, horizon: int, seed: int = 0) -> np.ndarray:
    """Candidate plans (P, H, *shape) of actions sampled from `action_space`."""
    action_space.seed(seed)
    return np.stack([np.stack([action_space.sample() for _ in range(horizon)]) for _ in range(plans)])


@pytest.mark.parametrize("name", sorted(ACTION_SPACES))
def test_imagine_shapes_and_dtypes(name, tiny_kwargs):
    action_space = ACTION_SPACES[name]
    model = JEPADreamer("MlpPolicy", SpaceEnv(BOX_OBS, action_space), **tiny_kwargs)
    cfg, obs = model.config, BOX_OBS.sample()
    out = model.imagine(obs, sequences(action_space, plans=4, horizon=6))
    assert out["reward"].shape == out["continue"].shape == (4, 6)
    assert out["value"].shape == (4, 7)
    assert out["return"].shape == (4,)
    assert out["feat"].shape == (4, 7, cfg.feat_size)
    assert "obs" not in out  # JEPA has no decoder
    for value in out.values():
        assert value.dtype == np.float32 and np.isfinite(value).all()
    assert ((out["continue"] >= 0) & (out["continue"] <= 1)).all()
    # every plan starts from the same filtered state
    np.testing.assert_array_equal(out["feat"][:, 0], np.broadcast_to(out["feat"][:1, 0], out["feat"][:, 0].shape))

    batch = model.imagine(np.stack([obs, BOX_OBS.sample()]), sequences(action_space, plans=4, horizon=6))
    assert batch["reward"].shape == (2, 4, 6) and batch["feat"].shape == (2, 4, 7, cfg.feat_size)
    np.testing.assert_allclose(batch["feat"][0, :, 0], out["feat"][:, 0], atol=1e-6)  # env 0 is `obs`


def test_imagine_is_reproducible_and_follows_the_actions(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    obs = np.array([1.0, 0.0, 0.5], np.float32)
    plans = np.array([[[2.0]] * 4, [[-2.0]] * 4], np.float32)  # (2, 4, 1)
    first, second = model.imagine(obs, plans), model.imagine(obs, plans)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.allclose(first["feat"][0, 1:], first["feat"][1, 1:])  # other actions, other futures
    # the score: rewards discounted by gamma and the continues, plus the last state's value discounted likewise
    expected = first["value"][:, -1]
    for t in reversed(range(4)):
        expected = first["reward"][:, t] + model.config.gamma * first["continue"][:, t] * expected
    np.testing.assert_allclose(first["return"], expected, rtol=1e-5)


def test_imagine_from_a_state_continues_predict(tiny_kwargs):
    """The state `imagine` starts its plans from is the one `predict` would carry on with."""
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(64)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=1)
    action, state = model.predict(obs, episode_start=np.array([True]), deterministic=True)
    obs, *_ = env.step(action)
    _, next_state = model.predict(obs, state=state, episode_start=np.array([False]), deterministic=True)
    out = model.imagine(obs, np.zeros((3, 2), np.int64), state=state, episode_start=np.array([False]))
    deter, stoch = model.config.deter, next_state[1].shape[1]
    np.testing.assert_allclose(out["feat"][:, 0, :deter], np.repeat(next_state[0], 3, 0), atol=1e-6)
    np.testing.assert_allclose(out["feat"][:, 0, deter : deter + stoch], np.repeat(next_state[1], 3, 0))
    # an episode start ignores the state, as predict does
    fresh = model.imagine(obs, np.zeros((1, 2), np.int64))
    reset = model.imagine(obs, np.zeros((1, 2), np.int64), state=state, episode_start=np.array([True]))
    np.testing.assert_allclose(fresh["feat"], reset["feat"], atol=1e-6)


def test_imagine_decodes_observations_with_a_decoder(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "Pendulum-v1", **tiny_kwargs, representation="reconstruction")
    out = model.imagine(np.zeros(3, np.float32), np.zeros((2, 4, 1), np.float32))
    assert out["obs"].shape == (2, 4, 3) and np.isfinite(out["obs"]).all()
    image = spaces.Dict({"frame": spaces.Box(0, 255, (3, 32, 32), np.uint8), "vector": BOX_OBS})
    model = JEPADreamer("MultiInputPolicy", SpaceEnv(image, spaces.Discrete(2)), **tiny_kwargs,
                        representation="reconstruction")  # fmt: skip
    out = model.imagine(image.sample(), np.zeros((2, 4), np.int64))
    size = model.config.image_size  # frames come back at the model's resolution, as float pixels
    assert out["obs"]["frame"].shape == (2, 4, 3, size, size) and out["obs"]["vector"].shape == (2, 4, 3)
    assert 0 <= out["obs"]["frame"].min() and out["obs"]["frame"].max() <= 255


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("planner", ["mppi", "cem"])
def test_planner_acts_batched_deterministic_and_keeps_the_state_contract(env_id, planner, tiny_kwargs):
    env = make_vec_env(env_id, n_envs=3, seed=0)
    model = JEPADreamer("MlpPolicy", env, **tiny_kwargs, planner=planner)
    model.learn(48)
    actor = JEPADreamer("MlpPolicy", env, **tiny_kwargs)  # the same weights, acting with the actor alone
    actor.set_parameters(model.get_parameters())
    obs = env.reset()
    starts = np.ones(3, dtype=bool)
    action, state = model.predict(obs, episode_start=starts, deterministic=True)
    again, _ = model.predict(obs, episode_start=starts, deterministic=True)
    np.testing.assert_array_equal(action, again)  # a function of the observation and the state
    assert action.shape == (3, *env.action_space.shape)
    assert all(env.action_space.contains(a) for a in action)
    # the state is the filtered latent (the same as the actor's) and the action the planner took
    _, actor_state = actor.predict(obs, episode_start=starts, deterministic=True)
    np.testing.assert_allclose(state[0], actor_state[0], atol=1e-6)
    np.testing.assert_array_equal(state[1], actor_state[1])
    np.testing.assert_allclose(model.policy.action_spec.to_env(state[2]), action, atol=1e-6)
    sampled, _ = model.predict(obs, state=state, episode_start=np.zeros(3, bool))
    assert all(env.action_space.contains(a) for a in sampled)


def test_planner_runs_only_in_predict(monkeypatch, tiny_kwargs):
    """learn collects with the actor; predict (so evaluation) plans."""
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs, planner="mppi")
    calls = []
    plan = planning.plan
    monkeypatch.setattr(planning, "plan", lambda *args: calls.append(1) or plan(*args))
    model.learn(40)
    assert not calls
    model.predict(np.zeros(4, np.float32), deterministic=True)
    assert calls == [1]


@pytest.mark.parametrize("planner", ["mppi", "cem"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_planner_maximises_the_imagined_return_against_the_actor(monkeypatch, env_id, planner, tiny_kwargs):
    """With a score that pays for action 1 (CartPole) or for 1.0 (Pendulum, in [-2, 2]) at every step, the planner
    picks it, though the actor prefers the opposite (no policy prior in the score: the search alone)."""
    model = JEPADreamer("MlpPolicy", env_id, **tiny_kwargs, planner=planner, plan_iterations=4, plan_prior_weight=0)
    discrete = model.policy.action_spec.discrete
    bias = model.policy.behavior.actor.net[-1].bias
    bias.data = torch.tensor([5.0, -5.0]) if discrete else torch.tensor([-3.0, -5.0])  # actor: 0, or about -2
    imagine_outcomes = planning.imagine_outcomes

    def score(world_model, behavior, start, actions, generator=None, actor_rows=0, every_value=True):  # (H, N, A)
        outcome = imagine_outcomes(world_model, behavior, start, actions, generator, actor_rows, every_value)
        target = actions[..., 1] if discrete else -(actions[..., 0] - 0.5).square()  # model units: 0.5 is 1.0
        outcome["return"] = target.sum(0)
        return outcome

    monkeypatch.setattr(planning, "imagine_outcomes", score)
    obs = model.observation_space.sample()
    action, _ = model.predict(obs, deterministic=True)
    actor_action = JEPADreamer("MlpPolicy", env_id, **tiny_kwargs)
    actor_action.set_parameters(model.get_parameters())
    if discrete:
        assert action == 1 and actor_action.predict(obs, deterministic=True)[0] == 0
    else:
        assert abs(action[0] - 1.0) < 0.3 and actor_action.predict(obs, deterministic=True)[0][0] < -1.5


@pytest.mark.parametrize("pay, planned", [(0.5, 0), (50.0, 1)])
def test_the_policy_prior_keeps_the_actors_action_unless_the_model_sees_a_clear_gain(monkeypatch, pay, planned):
    """Score: `pay` (in return-scale units) per step of action 1, which the actor gives a probability of about 0.005
    (log -5.3, unimix): with plan_prior_weight 1, half a unit per step is within the prior's doubt and the actor's
    action 0 stays; fifty units per step is a clear gain and the planner takes action 1."""
    model = JEPADreamer("MlpPolicy", "CartPole-v1", preset="tiny", planner="mppi", plan_prior_weight=1.0)
    model.policy.behavior.actor.net[-1].bias.data = torch.tensor([5.0, -5.0])
    imagine_outcomes = planning.imagine_outcomes

    def score(world_model, behavior, start, actions, generator=None, actor_rows=0, every_value=True):  # (H, N, A)
        outcome = imagine_outcomes(world_model, behavior, start, actions, generator, actor_rows, every_value)
        outcome["return"] = pay * actions[..., 1].sum(0)
        return outcome

    monkeypatch.setattr(planning, "imagine_outcomes", score)
    action, _ = model.predict(model.observation_space.sample(), deterministic=True)
    assert action == planned


def test_load_with_a_planner(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    model.learn(40)
    model.save(tmp_path / "agent")
    obs = np.array([1.0, 0.0, 0.5], np.float32)
    for planner in ("mppi", "cem"):
        loaded = JEPADreamer.load(tmp_path / "agent", planner=planner, plan_samples=16, plan_elites=4)
        assert loaded.config.planner == planner and loaded.config.plan_samples == 16
        action, _ = loaded.predict(obs, deterministic=True)
        assert loaded.action_space.contains(action)
    assert JEPADreamer.load(tmp_path / "agent").config.planner == "none"


def test_plan_settings_are_checked():
    with pytest.raises(ValueError, match="plan_elites must be in"):
        JEPADreamer("MlpPolicy", "CartPole-v1", preset="tiny", planner="mppi", plan_samples=8, plan_elites=9)
    with pytest.raises(ValueError, match="plan_actor_share"):
        JEPADreamer("MlpPolicy", "CartPole-v1", preset="tiny", plan_actor_share=1.5)


def test_readme_what_if_example_runs_and_its_prediction_matches_the_env():
    namespace: dict = {}
    exec(compile(readme_block("## Ask the model what-if"), "README.md", "exec"), namespace)  # noqa: S102
    predicted, survived = namespace["predicted"], namespace["survived"]
    assert np.abs(predicted - survived).max() < 3  # steps the pole stays up, within 3 of what the env did
