"""Hand-written reference policies for the diagnostic envs: the "good agent" rows of docs/ENVS.md.

Each policy is called once per step with the observation and returns an action; ``reset()`` starts an episode.
Policies that have ``memory=True`` use past observations (finite differences or a remembered cue) and show what
an agent with a recurrent state can reach; with ``memory=False`` they show the best a reactive policy does.
"""

from __future__ import annotations

import math

import numpy as np


class Policy:
    """Base class: ``reset()`` at episode start, then ``policy(obs) -> action``."""

    def reset(self) -> None:
        pass

    def __call__(self, obs: np.ndarray):
        raise NotImplementedError


class CartPoleController(Policy):
    """Linear bang-bang controller on CartPole's state ``[x, x_dot, theta, theta_dot]``.

    With ``memory=True`` the velocities are replaced by finite differences of the last two observations, so it
    also balances ``wm/CartPoleNoVel-v0``; with ``memory=False`` on NoVel it only sees positions.
    """

    gains = np.array([0.05, 0.3, 1.0, 0.4])
    tau = 0.02  # CartPole's time step

    def __init__(self, memory: bool = False) -> None:
        self.memory = memory
        self.reset()

    def reset(self) -> None:
        self._prev: np.ndarray | None = None

    def __call__(self, obs: np.ndarray) -> int:
        state = np.asarray(obs, dtype=np.float64).copy()
        if self.memory:
            prev = state if self._prev is None else self._prev
            self._prev = state.copy()
            state[1] = (state[0] - prev[0]) / self.tau
            state[3] = (state[2] - prev[2]) / self.tau
        return int(state @ self.gains > 0)


class PendulumController(Policy):
    """Energy-pumping swing-up plus a PD controller near the top, for Pendulum's ``[cos, sin, theta_dot]``.

    Tuned for the default physics (g=10, m=1, l=1). With ``memory=True`` it ignores ``theta_dot`` and uses the
    finite difference of the angle, so it also solves ``wm/PendulumNoVel-v0``.
    """

    dt = 0.05  # Pendulum's time step

    def __init__(self, memory: bool = False, g: float = 10.0, l: float = 1.0) -> None:  # noqa: E741
        self.memory = memory
        self.w2 = 3 * g / (2 * l)  # theta_ddot = w2 * sin(theta) + ... (theta = 0 is upright)
        self.reset()

    def reset(self) -> None:
        self._prev: float | None = None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        theta = math.atan2(float(obs[1]), float(obs[0]))
        if self.memory:
            prev = theta if self._prev is None else self._prev
            self._prev = theta
            theta_dot = (math.remainder(theta - prev, 2 * math.pi)) / self.dt
        else:
            theta_dot = float(obs[2])
        if math.cos(theta) > 0.85:
            u = -10.0 * theta - 2.0 * theta_dot
        else:
            energy = 0.5 * theta_dot**2 + self.w2 * math.cos(theta)
            u = 2.0 * math.copysign(1.0, (self.w2 - energy) * theta_dot) if theta_dot != 0 else 2.0
        return np.array([np.clip(u, -2.0, 2.0)], dtype=np.float32)


class CueMemoryPolicy(Policy):
    """Remember the cue of the first observation and answer it when the query flag is shown (``memory=True``);
    ``memory=False`` always answers 0, the best any reactive policy can do (it scores ``2/n_cues - 1``)."""

    def __init__(self, memory: bool = True) -> None:
        self.memory = memory
        self.reset()

    def reset(self) -> None:
        self._cue: int | None = None

    def __call__(self, obs: np.ndarray) -> int:
        if self._cue is None:
            self._cue = int(np.argmax(obs[:-1]))
        return self._cue if self.memory else 0


class ConstantPolicy(Policy):
    """Always the same action (e.g. always right in ``wm/SlipperyChain-v0``)."""

    def __init__(self, action: int) -> None:
        self.action = action

    def __call__(self, obs: np.ndarray) -> int:
        return self.action


class MatchTargetPolicy(Policy):
    """Answer the target bit shown now (optimal in ``wm/DelayedReward-v0``)."""

    def __call__(self, obs: np.ndarray) -> int:
        return int(np.argmax(obs))
