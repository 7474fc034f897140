"""The bad-input table (docs/BAD_INPUTS.md): each bad input a user can give raises a named exception whose message
says what is wrong and what to do. Every case here is a row of that table."""

from __future__ import annotations

import pathlib
import pickle
import re
import zipfile
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import wm_agent.jepa_dreamer as jepa_dreamer
from tests.conftest import SpaceEnv
from wm_agent import JEPADreamer, JEPADreamerPolicy, load_pretrained, make_config

TINY = dict(preset="tiny", seed=0, learning_starts=24, train_ratio=16)
BOX = spaces.Box(-1, 1, (3,), np.float32)
IMAGE = spaces.Box(0, 255, (3, 32, 32), np.uint8)
DISCRETE = spaces.Discrete(2)
DOCS = pathlib.Path(__file__).parents[1] / "docs" / "BAD_INPUTS.md"

# case id -> (function of a tmp folder that gives the bad input, exception type, pattern of its message)
CASES: dict[str, tuple[Callable[[pathlib.Path], object], type[Exception], str]] = {}


def case(name: str, error: type[Exception], pattern: str):
    def register(function: Callable[[pathlib.Path], object]):
        CASES[name] = (function, error, pattern)
        return function

    return register


def env_of(observation_space: spaces.Space, action_space: spaces.Space = DISCRETE, **overrides) -> gym.Env:
    """A `SpaceEnv` whose methods are replaced by `overrides` (e.g. ``step=...``)."""
    return type("Env", (SpaceEnv,), overrides)(observation_space, action_space)


def saved_agent(folder: pathlib.Path, n_envs: int = 1) -> JEPADreamer:
    model = JEPADreamer("MlpPolicy", make_vec_env("CartPole-v1", n_envs=n_envs), **TINY)
    model.learn(40)
    model.save(folder / "agent")
    model.save_replay_buffer(folder / "replay")
    return model


def rewritten_replay(folder: pathlib.Path, change: Callable) -> pathlib.Path:
    """The saved replay of a CartPole agent, changed by `change(replay)`, saved again."""
    model = saved_agent(folder)
    change(model.replay_buffer)
    model.save_replay_buffer(folder / "changed")
    return folder / "changed.pkl"


# --- spaces and settings -------------------------------------------------------------------------------


@case("unsupported observation space", ValueError, r"does not support the observation space Graph.*FilterObservation")
def _(tmp):
    JEPADreamer("MlpPolicy", env_of(spaces.Graph(BOX, None)))


@case("Tuple observations in a VecEnv", ValueError, r"only from a Gymnasium env.*FlatDictObservation")
def _(tmp):
    JEPADreamer("MlpPolicy", make_vec_env(lambda: env_of(spaces.Tuple([BOX, BOX]))))


@case("SB3 network policy_kwargs", TypeError, r"takes no policy_kwargs \['net_arch'\].*preset= and config fields")
def _(tmp):
    JEPADreamer("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[64, 64]))


@case("unsupported action space", ValueError, r"does not support the action space .* use Discrete, Box")
def _(tmp):
    JEPADreamer("MlpPolicy", env_of(BOX, spaces.Tuple([DISCRETE, DISCRETE])))


@case("unbounded Box action space", ValueError, r"finite bounds.*RescaleAction")
def _(tmp):
    JEPADreamer("MlpPolicy", env_of(BOX, spaces.Box(-np.inf, np.inf, (2,), np.float32)))


@case("empty Dict observation space", ValueError, r"empty Dict observation space")
def _(tmp):
    JEPADreamer("MultiInputPolicy", env_of(spaces.Dict({})))


@case("unknown policy name", ValueError, r"FooPolicy.*choose one of.*MlpPolicy")
def _(tmp):
    JEPADreamer("FooPolicy", "CartPole-v1", **TINY)


@case("unknown config key", TypeError, r"setting\(s\) \['trian_ratio'\] .*did you mean 'train_ratio'")
def _(tmp):
    JEPADreamer("MlpPolicy", "CartPole-v1", trian_ratio=64)


@case("invalid preset", ValueError, r"Unknown preset 'huge'; choose one of")
def _(tmp):
    make_config("huge")


@case("invalid config value", ValueError, r"precision must be one of .* got 'fp8'")
def _(tmp):
    make_config(precision="fp8")


@case("config value of the wrong type", TypeError, r"hidden must be int, got 128.5 \(float\)")
def _(tmp):
    make_config(hidden=128.5)


@case("both a config and overrides", TypeError, r"either `config` or keyword overrides")
def _(tmp):
    JEPADreamer("MlpPolicy", "CartPole-v1", config=make_config(), train_ratio=3)


@case("buffer_size too small for a sequence", ValueError, r"fewer than seq_len.*raise buffer_size")
def _(tmp):
    JEPADreamer("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), **{**TINY, "buffer_size": 8}).learn(10)


@case("replay that would not fit in memory", MemoryError, r"set buffer_size to at most .* or train for fewer steps")
def _(tmp):
    memory = jepa_dreamer.available_memory_bytes
    jepa_dreamer.available_memory_bytes = lambda: 1_000_000
    try:
        JEPADreamer("CnnPolicy", env_of(IMAGE), **{**TINY, "buffer_size": 100_000}).learn(1000)
    finally:
        jepa_dreamer.available_memory_bytes = memory


# --- what the env returns while learning ---------------------------------------------------------------


def nan_observation(self, action):
    obs, *rest = SpaceEnv.step(self, action)
    return np.full_like(obs, np.nan), *rest


def inf_reward(self, action):
    obs, _, *rest = SpaceEnv.step(self, action)
    return obs, np.inf, *rest


def float_frames(self, action):
    obs, *rest = SpaceEnv.step(self, action)
    return obs.astype(np.float32) / 255.0, *rest


def wrong_shape(self, action):
    _, *rest = SpaceEnv.step(self, action)
    return np.zeros(5, np.float32), *rest


def out_of_range(self, action):
    _, *rest = SpaceEnv.step(self, action)
    return 7, *rest


@case("env returning a Discrete observation outside its space", ValueError, r"holds \[7\], outside its space Discrete")
def _(tmp):
    JEPADreamer("MlpPolicy", env_of(spaces.Discrete(3), step=out_of_range), **TINY).learn(5)


@case("NaN or inf observation from the env", ValueError, r"contains NaN or inf.*TransformObservation")
def _(tmp):
    JEPADreamer("MlpPolicy", env_of(BOX, step=nan_observation), **TINY).learn(5)


@case("NaN or inf reward from the env", ValueError, r"non-finite reward .*TransformReward")
def _(tmp):
    JEPADreamer("MlpPolicy", env_of(BOX, step=inf_reward), **TINY).learn(5)


@case("env returning float frames for a uint8 image space", TypeError, r"dtype float32.*return uint8 frames")
def _(tmp):
    JEPADreamer("CnnPolicy", env_of(IMAGE, step=float_frames), **TINY).learn(5)


@case("env returning observations of the wrong shape", ValueError, r"shape \(5,\).*shape \(3,\).*fix one or the other")
def _(tmp):
    JEPADreamer("MlpPolicy", env_of(BOX, step=wrong_shape), **TINY).learn(5)


@case("learn() on an agent loaded without an env", ValueError, r"no env to learn from.*pass env= to JEPADreamer.load")
def _(tmp):
    saved_agent(tmp)
    JEPADreamer.load(tmp / "agent").learn(10)


@case("set_env with other spaces", ValueError, r"spaces do not match.*same observation and action spaces")
def _(tmp):
    JEPADreamer("MlpPolicy", "CartPole-v1", **TINY).set_env(make_vec_env("Pendulum-v1"))


# --- predict -------------------------------------------------------------------------------------------


def cartpole() -> JEPADreamer:
    return JEPADreamer("MlpPolicy", "CartPole-v1", **TINY)


@case("predict: observation of the wrong shape", ValueError, r"Unexpected observation shape \(5,\).*please use \(4,\)")
def _(tmp):
    cartpole().predict(np.zeros(5, np.float32))


@case("predict: NaN in the observation", ValueError, r"contains NaN or inf")
def _(tmp):
    cartpole().predict(np.array([0.0, np.nan, 0.0, 0.0], np.float32))


@case("predict: the (obs, info) tuple of reset()", ValueError, r"\(obs, info\).*pass only the observation")
def _(tmp):
    cartpole().predict(gym.make("CartPole-v1").reset(seed=0))


@case("predict: a dict for an array space", ValueError, r"Expected an array observation")
def _(tmp):
    cartpole().predict({"obs": np.zeros(4, np.float32)})


@case("predict: a state of another batch size", ValueError, r"state does not match.*or None to start afresh")
def _(tmp):
    model = cartpole()
    _, state = model.predict(np.zeros((2, 4), np.float32))
    model.predict(np.zeros((3, 4), np.float32), state=state)


@case("predict: a state of another model", ValueError, r"state has sizes .* this model's are .* this model's predict")
def _(tmp):
    _, state = JEPADreamer("MlpPolicy", "CartPole-v1", **{**TINY, "deter": 16}).predict(np.zeros(4, np.float32))
    cartpole().predict(np.zeros(4, np.float32), state=state)


@case("invalid planner", ValueError, r"planner must be one of \('none', 'mppi', 'cem'\), got 'mcts'")
def _(tmp):
    JEPADreamer("MlpPolicy", "CartPole-v1", **TINY, planner="mcts")


@case("imagine: actions of the wrong shape", ValueError, r"= \(n_plans, horizon, 1\) for the action space")
def _(tmp):
    pendulum = JEPADreamer("MlpPolicy", "Pendulum-v1", **TINY)
    pendulum.imagine(np.zeros(3, np.float32), np.zeros((2, 5), np.float32))  # no action dim


@case("imagine: actions outside a Box space", ValueError, r"outside the action space .* np.clip")
def _(tmp):
    pendulum = JEPADreamer("MlpPolicy", "Pendulum-v1", **TINY)
    pendulum.imagine(np.zeros(3, np.float32), np.full((2, 5, 1), 3.0, np.float32))  # bounds are +/- 2


@case("imagine: actions outside a discrete space", ValueError, r"whole numbers of the action space Discrete\(2\)")
def _(tmp):
    cartpole().imagine(np.zeros(4, np.float32), np.array([[0, 1, 2]]))


# --- checkpoints ---------------------------------------------------------------------------------------


@case("missing checkpoint", FileNotFoundError, r"No checkpoint at")
def _(tmp):
    JEPADreamer.load(tmp / "nothing.zip")


@case("corrupted checkpoint", ValueError, r"corrupted or truncated.*save it again")
def _(tmp):
    (tmp / "bad.zip").write_bytes(b"not a zip at all")
    JEPADreamer.load(tmp / "bad.zip")


@case("truncated checkpoint", ValueError, r"corrupted or truncated")
def _(tmp):
    saved_agent(tmp)
    payload = (tmp / "agent.zip").read_bytes()
    (tmp / "half.zip").write_bytes(payload[: len(payload) // 2])
    JEPADreamer.load(tmp / "half.zip")


@case("checkpoint of another library", ValueError, r"not saved by JEPADreamer.*PPO.load")
def _(tmp):
    PPO("MlpPolicy", "CartPole-v1").save(tmp / "ppo")
    JEPADreamer.load(tmp / "ppo")


@case("checkpoint of another env", ValueError, r"spaces do not match.*train a new agent")
def _(tmp):
    saved_agent(tmp)
    JEPADreamer.load(tmp / "agent", env=make_vec_env("Pendulum-v1"))


@case("checkpoint of a newer version", ValueError, r"saved by wm-agent 9.0.0.*install wm-agent==9.0.0")
def _(tmp):
    saved_agent(tmp)
    with zipfile.ZipFile(tmp / "agent.zip") as source, zipfile.ZipFile(tmp / "new.zip", "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "data":
                data = re.sub(rb'"wm_agent_version": "[^"]*"', b'"wm_agent_version": "9.0.0"', data)
            target.writestr(item, data)
    JEPADreamer.load(tmp / "new.zip")


@case("checkpoint with pickled objects", ValueError, r"pickled Python objects.*allow_pickle=True")
def _(tmp):
    model = cartpole()
    model.wm_agent_version = "0.1.0"
    jepa_dreamer.BaseAlgorithm.save(model, tmp / "old.zip")  # how wm-agent 0.1 saved: cloudpickled entries
    JEPADreamer.load(tmp / "old.zip")


@case("invalid config override on load", ValueError, r"jepa_horizon must be in")
def _(tmp):
    saved_agent(tmp)
    JEPADreamer.load(tmp / "agent", jepa_horizon=-1)


@case("unknown setting on load", TypeError, r"\['trian_ratio'\] \(trian_ratio: did you mean 'train_ratio'\?\)")
def _(tmp):
    saved_agent(tmp)
    JEPADreamer.load(tmp / "agent", trian_ratio=64)


@case("network size changed on load", ValueError, r"with your settings \['hidden'\].*train a new agent with it")
def _(tmp):
    saved_agent(tmp)
    JEPADreamer.load(tmp / "agent", hidden=16)


def rewritten_agent(folder: pathlib.Path, change: Callable[[str, bytes], bytes | None]) -> pathlib.Path:
    """The saved CartPole agent with each zip entry replaced by `change(name, data)` (None drops it)."""
    saved_agent(folder)
    with zipfile.ZipFile(folder / "agent.zip") as source, zipfile.ZipFile(folder / "changed.zip", "w") as target:
        for item in source.infolist():
            data = change(item.filename, source.read(item.filename))
            if data is not None:
                target.writestr(item, data)
    return folder / "changed.zip"


@case("checkpoint with damaged bytes", ValueError, r"entry 'policy.pth' fails its checksum.*save it again")
def _(tmp):
    saved_agent(tmp)
    payload = bytearray((tmp / "agent.zip").read_bytes())
    start = payload.find(b"policy.pth") + 2000  # inside the entry's compressed bytes
    payload[start : start + 64] = bytes(b ^ 0xFF for b in payload[start : start + 64])
    (tmp / "flipped.zip").write_bytes(payload)
    JEPADreamer.load(tmp / "flipped.zip")


@case("checkpoint with an unreadable tensor file", ValueError, r"tensor file that cannot be read safely.*save it again")
def _(tmp):
    JEPADreamer.load(rewritten_agent(tmp, lambda name, data: b"garbage" * 10 if name == "policy.pth" else data))


@case("checkpoint without its weights", ValueError, r"lacks the weights \['policy'\].*save it again")
def _(tmp):
    JEPADreamer.load(rewritten_agent(tmp, lambda name, data: None if name == "policy.pth" else data))


@case("checkpoint whose config does not fit its weights", ValueError, r"do not fit the network its saved config")
def _(tmp):
    edit = lambda name, data: data.replace(b'"deter": 32', b'"deter": 16') if name == "data" else data  # noqa: E731
    JEPADreamer.load(rewritten_agent(tmp, edit))


@case("agent file given to JEPADreamerPolicy.load", ValueError, r"not a policy file: load it with JEPADreamer.load")
def _(tmp):
    saved_agent(tmp)
    JEPADreamerPolicy.load(tmp / "agent.zip")


@case("unknown pretrained agent", ValueError, r"No pretrained agent 'NoSuchEnv-v0'.*give a shipped env id")
def _(tmp):
    load_pretrained("NoSuchEnv-v0")


# --- replays -------------------------------------------------------------------------------------------


@case("replay of another number of envs", ValueError, r"2 env streams but the model has 1 envs.*set_env")
def _(tmp):
    saved_agent(tmp, n_envs=2)
    JEPADreamer("MlpPolicy", "CartPole-v1", **TINY).load_replay_buffer(tmp / "replay")


@case("replay of another env", ValueError, r"observations .* do not match .* collected on another env")
def _(tmp):
    saved_agent(tmp)
    JEPADreamer("MlpPolicy", "Acrobot-v1", **TINY).load_replay_buffer(tmp / "replay")


@case("replay with out-of-range actions", ValueError, r"outside 0 or 1 \(one-hot\).*ActionSpec.from_env")
def _(tmp):
    changed = rewritten_replay(tmp, lambda replay: replay.action.__setitem__((0, 3), [0.0, 2.0]))
    cartpole().load_replay_buffer(changed)


@case("replay with actions of the wrong dtype", ValueError, r"actions are float64 .* as float32 of size 2")
def _(tmp):
    changed = rewritten_replay(tmp, lambda replay: setattr(replay, "action", replay.action.astype(np.float64)))
    cartpole().load_replay_buffer(changed)


@case("file that is not a replay", ValueError, r"not a replay file .* pass a file written by save_replay_buffer")
def _(tmp):
    (tmp / "other.pkl").write_bytes(b"something else")
    cartpole().load_replay_buffer(tmp / "other.pkl")


@case("replay pickled by wm-agent 0.1", ValueError, r"pickled by wm-agent 0.1 .* allow_pickle=True")
def _(tmp):
    model = saved_agent(tmp)
    (tmp / "old.pkl").write_bytes(pickle.dumps(model.replay_buffer))
    cartpole().load_replay_buffer(tmp / "old.pkl")


@case("truncated replay", ValueError, r"cut short: save the replay again")
def _(tmp):
    saved_agent(tmp)
    payload = (tmp / "replay.pkl").read_bytes()
    (tmp / "cut.pkl").write_bytes(payload[: len(payload) // 2])
    cartpole().load_replay_buffer(tmp / "cut.pkl")


@pytest.mark.parametrize("name", CASES)
def test_bad_input_raises_a_named_error_that_says_what_to_do(name, tmp_path):
    give_bad_input, error, pattern = CASES[name]
    with pytest.raises(error, match=pattern):
        give_bad_input(tmp_path)


def test_the_docs_list_every_case():
    listed = DOCS.read_text()
    missing = [name for name in CASES if f"| {name} |" not in listed]
    assert not missing, f"add these cases to {DOCS}: {missing}"
    assert len(CASES) >= 20
