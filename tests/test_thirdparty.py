"""Third-party Gymnasium packages tried as a new user would: the package's own env id through `gym.make`, a wrapper
only where JEPADreamer cannot read the env as it comes, then learn, predict (with a carried state) and save/load.

Each test skips when its package is missing; `pip install -e ".[dev,thirdparty]"` installs them all. The results are
tabled in docs/THIRDPARTY.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest

from wm_agent import JEPADreamer

TINY = dict(preset="tiny", seed=0, learning_starts=24, train_ratio=16)
POLICY_NAME_WARNING = "was given, but the encoder follows the observation space"


def learn_predict_reload(make_env: Callable[[], gym.Env], policy: str, tmp_path, steps: int = 200) -> JEPADreamer:
    """What a new user does with an env: construct (no warning about the policy name), learn a few hundred steps,
    predict on the env's own observations with the recurrent state carried over three steps, save, load, predict."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = JEPADreamer(policy, make_env(), **TINY)
    assert not [str(w.message) for w in caught if POLICY_NAME_WARNING in str(w.message)]
    model.learn(steps)
    assert model._n_updates > 0

    env = make_env()
    obs, _ = env.reset(seed=1)
    state, start = None, True
    for _ in range(3):
        action, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
        assert env.action_space.contains(np.asarray(action, env.action_space.dtype).reshape(env.action_space.shape))
        obs, _, terminated, truncated, _ = env.step(action)
        start = terminated or truncated
    assert state is not None and state[0].shape[0] == 1

    obs, _ = env.reset(seed=2)
    action, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "agent")
    loaded = JEPADreamer.load(tmp_path / "agent")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)
    return model


def kinds(model: JEPADreamer) -> dict[str, str]:
    return {key.name: key.kind for key in model.policy.obs_spec.keys}


def test_minatar_breakout_bool_grid(tmp_path):
    minatar_gym = pytest.importorskip("minatar.gym")
    if "MinAtar/Breakout-v1" not in gym.registry:  # gymnasium 1.x does not load MinAtar's plugin entry point itself
        minatar_gym.register_envs()
    model = learn_predict_reload(lambda: gym.make("MinAtar/Breakout-v1"), "MlpPolicy", tmp_path)
    assert model.observation_space.dtype == bool and model.observation_space.shape == (10, 10, 4)
    (key,) = model.policy.obs_spec.keys
    assert key.kind == "vector" and key.size == 400  # a 10x10 grid is read at its own resolution, not as a frame


def test_minigrid_without_wrappers(tmp_path):
    pytest.importorskip("minigrid")
    with pytest.warns(UserWarning, match=r"leaves out the Text observation entries \['mission'\]"):
        JEPADreamer("MultiInputPolicy", gym.make("MiniGrid-Empty-5x5-v0"), **TINY)
    model = learn_predict_reload(lambda: gym.make("MiniGrid-Empty-5x5-v0"), "MultiInputPolicy", tmp_path)
    assert kinds(model) == {"direction": "vector", "image": "vector"}  # the 7x7x3 grid is read by the MLP, not upscaled


def test_minigrid_behind_filter_observation_predicts_on_the_raw_observation(tmp_path):
    pytest.importorskip("minigrid")

    def make_env():
        return gym.wrappers.FilterObservation(gym.make("MiniGrid-Empty-5x5-v0"), ["direction", "image"])

    model = learn_predict_reload(make_env, "MultiInputPolicy", tmp_path)
    raw, _ = gym.make("MiniGrid-Empty-5x5-v0").reset(seed=1)
    model.predict(raw, deterministic=True)  # the unwrapped env's observation: its extra 'mission' entry is not read


def test_minigrid_image_only_wrapper(tmp_path):
    wrappers = pytest.importorskip("minigrid.wrappers")
    make_env = lambda: wrappers.ImgObsWrapper(gym.make("MiniGrid-Empty-5x5-v0"))  # noqa: E731
    model = learn_predict_reload(make_env, "MlpPolicy", tmp_path)
    assert kinds(model) == {"obs": "vector"}


def test_highway_env_kinematics(tmp_path):
    pytest.importorskip("highway_env")
    model = learn_predict_reload(lambda: gym.make("highway-fast-v0"), "MlpPolicy", tmp_path, steps=150)
    assert model.observation_space.shape == (5, 5)  # 5 vehicles x 5 features, a 2-D float Box


@pytest.mark.parametrize("env_id", ["LunarLander-v3", "LunarLanderContinuous-v3"])
def test_lunar_lander(env_id, tmp_path):
    pytest.importorskip("Box2D")
    learn_predict_reload(lambda: gym.make(env_id), "MlpPolicy", tmp_path)


@pytest.mark.parametrize(
    "env_id, policy",
    [
        ("popgym-AutoencodeEasy-v0", "MultiInputPolicy"),  # Tuple(Discrete(2), Discrete(4)) observations
        ("popgym-CountRecallEasy-v0", "MlpPolicy"),  # MultiDiscrete observations
        ("popgym-BattleshipEasy-v0", "MlpPolicy"),  # MultiDiscrete actions
    ],
)
def test_popgym(env_id, policy, tmp_path):
    pytest.importorskip("popgym")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*share an object")  # popgym reuses its info dicts
        model = learn_predict_reload(lambda: gym.make(env_id), policy, tmp_path)
    if env_id.startswith("popgym-Autoencode"):
        assert list(model.observation_space.spaces) == ["0", "1"]  # the Tuple, flattened


@pytest.mark.parametrize("env_id", ["dm_control/cartpole-balance-v0", "dm_control/walker-walk-v0"])
def test_dm_control_through_shimmy(env_id, tmp_path):
    pytest.importorskip("shimmy")
    pytest.importorskip("dm_control.suite")
    model = learn_predict_reload(lambda: gym.make(env_id), "MultiInputPolicy", tmp_path)
    assert model.action_space.dtype == np.float64  # dm_control's float64 Dict observations and Box actions
    if env_id == "dm_control/walker-walk-v0":
        assert model.observation_space["height"].shape == ()  # a scalar Box entry
