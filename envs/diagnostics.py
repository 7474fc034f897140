"""Small, fast, seeded environments that each isolate one thing that makes world models hard.

* partial observability: :func:`make_novel` (velocities hidden) and :class:`CueMemoryEnv`;
* stochasticity: :class:`SlipperyChainEnv`;
* multiple time scales: :class:`DelayedRewardEnv`;
* domain variants: :class:`CartPoleVariantEnv`, :class:`PendulumVariantEnv`;
* distractors live in :mod:`envs.pixel` (``wm/DistractorCartPole-v0``).

Scores of random and scripted policies are in docs/ENVS.md (``benchmarks/env_baselines.py``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv

# Which observation entries are velocities, as in sb3-contrib / rl-zoo's MaskVelocityWrapper.
VELOCITY_INDICES = {
    "CartPole-v1": (1, 3),
    "Pendulum-v1": (2,),
    "MountainCar-v0": (1,),
    "MountainCarContinuous-v0": (1,),
    "Acrobot-v1": (4, 5),
}


class MaskVelocity(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Set the observation entries ``velocity_indices`` to zero; the observation space is unchanged."""

    def __init__(self, env: gym.Env, velocity_indices: tuple[int, ...]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, velocity_indices=tuple(velocity_indices))
        gym.ObservationWrapper.__init__(self, env)
        self._mask = np.ones(env.observation_space.shape, dtype=env.observation_space.dtype)
        self._mask[list(velocity_indices)] = 0

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self._mask


def make_novel(env_id: str = "CartPole-v1", render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """``env_id`` with its velocity entries set to zero (the sb3-contrib / rl-zoo "NoVel" convention).

    The observation space, actions, rewards and episode ends are those of ``env_id``; only the velocity entries
    (:data:`VELOCITY_INDICES`) read 0, so velocity must be inferred from at least two observations.
    ``wm/CartPoleNoVel-v0``: obs ``[x, 0, theta, 0]``, ``Discrete(2)``, +1 per step, 500 steps.
    ``wm/PendulumNoVel-v0``: obs ``[cos, sin, 0]``, ``Box(-2, 2, (1,))`` torque, reward -(angle^2 + ...), 200 steps.
    """
    return MaskVelocity(gym.make(env_id, render_mode=render_mode, **kwargs), VELOCITY_INDICES[env_id])


class _RenderObservation:
    """``render()`` for the small vector envs: the current observation as a row of grey cells (for videos, and
    because SB3's ``make_vec_env`` asks every env for ``render_mode="rgb_array"``)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    render_mode: str | None

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        cells = np.clip(self._obs(), 0.0, 1.0)  # type: ignore[attr-defined]
        row = np.repeat(np.rint(255 * cells).astype(np.uint8), 16)
        return np.repeat(np.repeat(row[None, :], 16, axis=0)[..., None], 3, axis=-1)


class CueMemoryEnv(_RenderObservation, gym.Env):
    """Remember a cue over a delay: the cue is shown only on the first observation and decides the final reward.

    Observation: ``Box(0, 1, (n_cues + 1,), float32)``: a one-hot cue at reset, all zeros for ``delay`` steps, then
    the last entry (the "query" flag) set to 1. Action: ``Discrete(n_cues)``; only the action taken while the
    query flag is shown counts. Reward: +1 if that action equals the cue, -1 otherwise, then the episode
    terminates; 0 on every other step. Episode length: ``delay + 1`` steps.
    Random policy: ``2/n_cues - 1`` (0 for two cues); any memoryless policy is no better; perfect memory: +1.
    """

    def __init__(self, n_cues: int = 2, delay: int = 10, render_mode: str | None = None) -> None:
        if n_cues < 2 or delay < 0:
            raise ValueError("need n_cues >= 2 and delay >= 0")
        self.n_cues, self.delay = int(n_cues), int(delay)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, (self.n_cues + 1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_cues)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.n_cues + 1, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        if self._t == self.delay:
            obs[-1] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.n_cues))
        self._t = 0
        return self._obs(), {"cue": self._cue}

    def step(self, action):
        if self._t == self.delay:
            correct = int(action) == self._cue
            return self._obs(), 1.0 if correct else -1.0, True, False, {"cue": self._cue, "correct": correct}
        self._t += 1
        return self._obs(), 0.0, False, False, {"cue": self._cue}


class SlipperyChainEnv(_RenderObservation, gym.Env):
    """A corridor where each move goes the wrong way with a known probability ``noise``.

    The agent starts in the middle of ``length`` cells (odd, default 7). Action: ``Discrete(2)``, 0 = left,
    1 = right; with probability ``noise`` the move is reversed. Observation: ``Box(0, 1, (length,), float32)``,
    one-hot position. Reward: +1 and terminate on reaching the right end, -1 and terminate on the left end,
    0 otherwise; registered with a 100-step limit. The next state is bimodal ({s-1, s+1}), so a model predicting
    one point (the mean, s + 1 - 2 * noise) predicts a state that never occurs. ``info["slipped"]`` says whether
    the last move was reversed. Always-right scores ``2 * P - 1`` with the gambler's-ruin probability
    :meth:`always_right_score`; a random policy scores about 0. ``noise=0`` is deterministic, 0.5 is pure noise.
    """

    def __init__(self, noise: float = 0.25, length: int = 7, render_mode: str | None = None) -> None:
        if not 0.0 <= noise <= 1.0 or length < 3 or length % 2 == 0:
            raise ValueError("need 0 <= noise <= 1 and an odd length >= 3")
        self.noise, self.length = float(noise), int(length)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, (self.length,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, dtype=np.float32)
        obs[self._pos] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pos = self.length // 2
        return self._obs(), {}

    def step(self, action):
        slipped = bool(self.np_random.random() < self.noise)
        move = 1 if int(action) == 1 else -1
        self._pos += -move if slipped else move
        terminated = self._pos in (0, self.length - 1)
        reward = 0.0 if not terminated else (1.0 if self._pos == self.length - 1 else -1.0)
        return self._obs(), reward, terminated, False, {"slipped": slipped}

    def always_right_score(self) -> float:
        """Expected return of always moving right (optimal for noise < 0.5), ignoring the step limit."""
        n, k = self.length - 1, self.length // 2
        if self.noise == 0.5:
            return 2 * k / n - 1
        if self.noise == 1.0:
            return -1.0
        ratio = self.noise / (1 - self.noise)
        p_right = (1 - ratio**k) / (1 - ratio**n)
        return 2 * p_right - 1


class DelayedRewardEnv(_RenderObservation, gym.Env):
    """Each action is scored ``delay`` steps after it was taken.

    At each of ``n_decisions`` steps a random target bit is shown; the reward for matching it arrives ``delay``
    steps later, followed by ``delay`` steps of blank observations so every decision is paid within the episode.
    Observation: ``Box(0, 1, (2,), float32)``, the one-hot target (zeros in the tail). Action: ``Discrete(2)``.
    Reward at step t: +1 if the action at step t - delay matched that step's target, -1 if not, 0 when there
    was no decision then. Episode length: ``n_decisions + delay``. Random: 0; matching the target: ``n_decisions``.
    The policy is reactive; what is hard is the model's credit assignment: a reward model must carry the action
    and target of ``delay`` steps ago in its state.
    """

    def __init__(self, delay: int = 10, n_decisions: int = 32, render_mode: str | None = None) -> None:
        if delay < 0 or n_decisions < 1:
            raise ValueError("need delay >= 0 and n_decisions >= 1")
        self.delay, self.n_decisions = int(delay), int(n_decisions)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(2, dtype=np.float32)
        if self._t < self.n_decisions:
            obs[self._targets[self._t]] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._targets = self.np_random.integers(2, size=self.n_decisions)
        self._t = 0
        self._pending: deque[float] = deque([0.0] * self.delay)
        return self._obs(), {}

    def step(self, action):
        if self._t < self.n_decisions:
            self._pending.append(1.0 if int(action) == self._targets[self._t] else -1.0)
        else:
            self._pending.append(0.0)
        reward = self._pending.popleft()
        self._t += 1
        terminated = self._t >= self.n_decisions + self.delay
        return self._obs(), reward, terminated, False, {}


Param = float | tuple[float, float]


class _PhysicsVariant:
    """Mixin: physics parameters given as a value, or a (low, high) range re-sampled at every reset."""

    _defaults: dict[str, float]

    def _init_physics(self, params: dict[str, Param]) -> None:
        for name, value in params.items():
            if not isinstance(value, int | float) and len(value) != 2:
                raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        self._params = params
        self._set_physics({k: v if isinstance(v, int | float) else 0.5 * (v[0] + v[1]) for k, v in params.items()})

    def _sample_physics(self) -> dict[str, float]:
        values = {}
        for name, value in self._params.items():
            if isinstance(value, int | float):
                values[name] = float(value)
            else:
                values[name] = float(self.np_random.uniform(value[0], value[1]))
        self._set_physics(values)
        return values


class CartPoleVariantEnv(_PhysicsVariant, CartPoleEnv):
    """Gymnasium's CartPole with its physics as settings, to train on one setting and evaluate on another.

    Settings (defaults are CartPole-v1's): ``gravity`` 9.8, ``masscart`` 1.0, ``masspole`` 0.1, ``length`` 0.5
    (half the pole length), ``force_mag`` 10.0. Each may be a number or a ``(low, high)`` range sampled
    uniformly at every reset (domain randomization). Spaces and reward are CartPole-v1's: observation
    ``Box((4,), float32)`` ``[x, x_dot, theta, theta_dot]``, actions ``Discrete(2)``, reward +1 per step,
    500-step limit.
    ``info["physics"]`` holds this episode's values.
    """

    def __init__(
        self,
        gravity: Param = 9.8,
        masscart: Param = 1.0,
        masspole: Param = 0.1,
        length: Param = 0.5,
        force_mag: Param = 10.0,
        render_mode: str | None = None,
    ) -> None:
        CartPoleEnv.__init__(self, render_mode=render_mode)
        params = dict(gravity=gravity, masscart=masscart, masspole=masspole, length=length, force_mag=force_mag)
        self._init_physics(params)

    def _set_physics(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self.total_mass = self.masspole + self.masscart
        self.polemass_length = self.masspole * self.length

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        info["physics"] = self._sample_physics()
        return obs, info


class PendulumVariantEnv(_PhysicsVariant, PendulumEnv):
    """Gymnasium's Pendulum with gravity ``g`` (10.0), mass ``m`` (1.0) and length ``l`` (1.0) as settings.

    Each may be a number or a ``(low, high)`` range sampled at every reset. Spaces and reward are Pendulum-v1's:
    observation ``Box((3,), float32)`` ``[cos, sin, theta_dot]``, action ``Box(-2, 2, (1,), float32)`` torque,
    reward ``-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2)``, 200-step limit. ``info["physics"]`` holds the values.
    """

    def __init__(self, g: Param = 10.0, m: Param = 1.0, l: Param = 1.0, render_mode: str | None = None) -> None:  # noqa: E741
        PendulumEnv.__init__(self, render_mode=render_mode)
        self._init_physics(dict(g=g, m=m, l=l))

    def _set_physics(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        info["physics"] = self._sample_physics()
        return obs, info
