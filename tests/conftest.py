"""Shared test fixtures: a tiny env for any pair of spaces, and a fast thread setting."""

from __future__ import annotations

import pathlib
import re

import gymnasium as gym
import numpy as np
import pytest
import torch

torch.set_num_threads(1)


class SpaceEnv(gym.Env):
    """Random observations from `observation_space`; reward = a fixed function of the action; episodes of `length`.

    Terminates (not truncates) on even episodes so both end kinds are exercised with a TimeLimit on top.
    """

    metadata = {"render_modes": []}

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, length: int = 12) -> None:
        self.observation_space, self.action_space, self.length = observation_space, action_space, length
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(
            np.asarray(action, dtype=self.action_space.dtype).reshape(self.action_space.shape)
        ), action
        self.t += 1
        reward = float(np.sum(np.asarray(action, dtype=np.float64)))
        return self.observation_space.sample(), reward, self.t >= self.length, False, {}


@pytest.fixture
def tiny_kwargs() -> dict:
    """The smallest settings that exercise every code path quickly."""
    return dict(preset="tiny", seed=0, learning_starts=24, train_ratio=16)


README = pathlib.Path(__file__).parents[1] / "README.md"


def readme_block(heading: str) -> str:
    """The first ```python block after `heading` in the README."""
    text = README.read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)
