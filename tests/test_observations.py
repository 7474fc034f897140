"""Every observation a Gymnasium user brings: Tuple and nested spaces, Text entries, small symbolic grids, policy
names that do not match the space, non-square frames."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from tests.conftest import SpaceEnv
from wm_agent import JEPADreamer
from wm_agent.spaces import FlatDictObservation, flatten_obs, flatten_space

TINY = dict(preset="tiny", seed=0, learning_starts=24, train_ratio=16)
GRID = spaces.Box(0, 255, (7, 7, 3), np.uint8)  # MiniGrid's symbolic image
NESTED = spaces.Tuple(
    [
        spaces.Box(-1, 1, (2,), np.float32),
        spaces.Dict({"grid": GRID, "mission": spaces.Text(20), "goal": spaces.Discrete(4)}),
    ]
)


def test_nested_spaces_flatten_to_dotted_keys_and_text_is_left_out():
    leaves, dropped = flatten_space(NESTED)
    assert sorted(leaves) == ["0", "1.goal", "1.grid"] and dropped == ["1.mission"]
    obs = NESTED.sample()
    flat = flatten_obs(obs)
    assert set(flat) == {"0", "1.grid", "1.mission", "1.goal"} and flat["1.goal"] == obs[1]["goal"]


def test_a_tuple_observation_env_learns_predicts_and_reloads(tmp_path):
    model = JEPADreamer("MlpPolicy", "Blackjack-v1", **TINY)  # Tuple(Discrete(32), Discrete(11), Discrete(2))
    assert list(model.observation_space.spaces) == ["0", "1", "2"]
    model.learn(60)
    assert model._n_updates > 0
    obs, _ = gym.make("Blackjack-v1").reset(seed=1)  # the env's own tuple
    action, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "blackjack")
    loaded = JEPADreamer.load(tmp_path / "blackjack")
    assert loaded.predict(obs, deterministic=True)[0] == action


def test_a_nested_space_with_text_learns_with_a_warning_that_names_the_text():
    with pytest.warns(UserWarning, match=r"leaves out the Text observation entries \['1.mission'\]"):
        model = JEPADreamer("MultiInputPolicy", SpaceEnv(NESTED, spaces.Discrete(3)), **TINY)
    model.learn(40)
    assert sorted(model.replay_buffer.obs) == ["0", "1.goal", "1.grid"]
    actions, state = model.predict(NESTED.sample())  # a nested observation, as the env gives it
    assert np.shape(actions) == () and state[0].shape[0] == 1


def test_any_space_of_strings_counts_as_text():
    class MissionSpace(gym.Space[str]):  # as MiniGrid's: a Space[str] that is not a spaces.Text
        def sample(self, mask=None):
            return "get to the goal"

        def contains(self, x):
            return isinstance(x, str)

    leaves, dropped = flatten_space(spaces.Dict({"mission": MissionSpace(), "image": GRID}))
    assert list(leaves) == ["image"] and dropped == ["mission"]


def test_a_vec_env_of_tuples_and_unsupported_leaves_name_the_wrapper_that_fixes_them():
    vec_env = make_vec_env(lambda: SpaceEnv(spaces.Tuple([spaces.Discrete(3)] * 2), spaces.Discrete(2)))
    with pytest.raises(ValueError, match="FlatDictObservation"):
        JEPADreamer("MlpPolicy", vec_env, **TINY)
    with pytest.raises(ValueError, match="holds only text"):
        JEPADreamer("MlpPolicy", SpaceEnv(spaces.Text(10), spaces.Discrete(2)), **TINY)
    wrapped = FlatDictObservation(SpaceEnv(spaces.Tuple([spaces.Discrete(3)] * 2), spaces.Discrete(2)))
    model = JEPADreamer("MultiInputPolicy", make_vec_env(lambda: wrapped), **TINY)  # the fix the error names
    model.learn(30)


def test_a_small_symbolic_grid_is_read_at_its_own_resolution_with_a_warning_for_cnn_policy():
    with pytest.warns(UserWarning, match=r"read with an MLP \(frames of .* under 16 pixels a side"):
        model = JEPADreamer("CnnPolicy", SpaceEnv(GRID, spaces.Discrete(3)), **TINY)
    (key,) = model.policy.obs_spec.keys
    assert key.kind == "vector" and key.size == 147
    model.learn(40)
    assert model.replay_buffer.obs["obs"].shape[2:] == (3, 7, 7) and model.replay_buffer.obs["obs"].dtype == np.uint8
    model.predict(GRID.sample())  # channel-last, as the env gives it


def test_policy_names_that_do_not_match_the_space_warn_and_matching_ones_do_not():
    with pytest.warns(UserWarning, match="CnnPolicy was given.*read with an MLP, as MlpPolicy names it"):
        JEPADreamer("CnnPolicy", "CartPole-v1", **TINY)
    with pytest.warns(UserWarning, match="MlpPolicy was given.*read with a CNN"):
        JEPADreamer("MlpPolicy", SpaceEnv(spaces.Box(0, 255, (3, 32, 32), np.uint8), spaces.Discrete(2)), **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        JEPADreamer("MlpPolicy", "CartPole-v1", **TINY)


def test_non_square_frames_warn_that_their_aspect_ratio_is_not_kept():
    with pytest.warns(UserWarning, match="Frames of 48x80 are resized to 64x64: their aspect ratio is not kept"):
        JEPADreamer("CnnPolicy", SpaceEnv(spaces.Box(0, 255, (48, 80, 3), np.uint8), spaces.Discrete(2)), **TINY)


def test_a_stack_of_frames_warns_that_it_is_read_as_one_vector():
    """(k, H, W, C) uint8 stacks (e.g. FrameStackObservation) are vectors to the model: the warning says so and why
    the stack is not needed; a 4-D float Box does not warn."""
    stack = spaces.Box(0, 255, (4, 32, 32, 3), np.uint8)
    with pytest.warns(UserWarning, match=r"shape \(4, 32, 32, 3\) looks like a stack of 4 frames.*12,288 values"):
        JEPADreamer("MlpPolicy", SpaceEnv(stack, spaces.Discrete(2)), **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        JEPADreamer("MlpPolicy", SpaceEnv(spaces.Box(-1, 1, (4, 2, 2, 3), np.float32), spaces.Discrete(2)), **TINY)
