"""Pixel observations for classic-control tasks, and a background-distractor wrapper.

The frame comes from the env's own ``render()`` (``render_mode="rgb_array"``, headless through pygame's
dummy video driver) and is resized with Gymnasium's wrappers; nothing here re-implements them.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import (
    AddRenderObservation,
    FrameStackObservation,
    GrayscaleObservation,
    ResizeObservation,
    TransformObservation,
)

DISTRACTOR_KINDS = ("shapes", "noise")


class BackgroundDistractor(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Paint task-irrelevant moving content into the background of a uint8 RGB frame.

    Background means pixels that are exactly ``background_color`` (white for Gymnasium's classic-control
    renders); every other pixel (cart, pole, track, pendulum rod) is passed through unchanged, so the
    task-relevant content is identical at any strength. ``strength`` in [0, 1] blends the distractor over the
    background colour: 0 leaves the frame untouched, 1 replaces the background with the distractor.

    ``kind="shapes"``: ``n_shapes`` coloured rectangles drift at constant velocity and bounce off the borders.
    ``kind="noise"``: fresh uniform per-pixel colour noise every step.
    The distractor has its own RNG, seeded from ``reset(seed=...)``, so it never perturbs the task's RNG.
    """

    def __init__(
        self,
        env: gym.Env,
        strength: float = 1.0,
        kind: str = "shapes",
        n_shapes: int = 6,
        background_color: tuple[int, int, int] = (255, 255, 255),
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, strength=strength, kind=kind, n_shapes=n_shapes, background_color=background_color
        )
        gym.ObservationWrapper.__init__(self, env)
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"distractor_strength must be in [0, 1], got {strength}")
        if kind not in DISTRACTOR_KINDS:
            raise ValueError(f"distractor kind must be one of {DISTRACTOR_KINDS}, got {kind!r}")
        space = env.observation_space
        if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3):
            raise ValueError(f"BackgroundDistractor needs an (H, W, 3) uint8 observation, got {space}")
        self.strength = float(strength)
        self.kind = kind
        self.n_shapes = int(n_shapes)
        self.background_color = np.asarray(background_color, dtype=np.uint8)
        self._hw = space.shape[:2]
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            # A separate stream, derived from the seed, so that the task's own RNG is untouched.
            self._rng = np.random.default_rng([seed, 0xD15])
        h, w = self._hw
        n = self.n_shapes
        self._size = self._rng.uniform(0.12, 0.3, size=(n, 2)) * (h, w)
        self._pos = self._rng.uniform(0, 1, size=(n, 2)) * ((h, w) - self._size)
        self._vel = self._rng.uniform(-0.06, 0.06, size=(n, 2)) * (h, w)
        self._color = self._rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
        return super().reset(seed=seed, options=options)

    def _pattern(self) -> np.ndarray:
        h, w = self._hw
        if self.kind == "noise":
            return self._rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        self._pos += self._vel
        high = np.array([h, w], dtype=np.float64) - self._size
        over, under = self._pos > high, self._pos < 0
        self._vel[over | under] *= -1
        self._pos = np.clip(self._pos, 0, high)
        img = np.empty((h, w, 3), dtype=np.uint8)
        img[:] = self.background_color
        for (y, x), (sh, sw), color in zip(self._pos.astype(int), self._size.astype(int), self._color):
            img[y : y + sh, x : x + sw] = color
        return img

    def observation(self, observation: np.ndarray) -> np.ndarray:
        pattern = self._pattern()  # advance the distractor even at strength 0, so seeds stay aligned
        if self.strength == 0.0:
            return observation
        background = np.all(observation == self.background_color, axis=-1)
        mixed = (1.0 - self.strength) * self.background_color + self.strength * pattern[background]
        out = observation.copy()
        out[background] = np.rint(mixed).astype(np.uint8)
        return out


def _stack_on_channels(obs: np.ndarray) -> np.ndarray:
    """(k, H, W, C) -> (H, W, k*C), oldest frame first. A module-level function so env specs compare equal."""
    return np.concatenate(list(obs), axis=-1)


def make_pixel_env(
    env_id: str,
    size: int = 64,
    grayscale: bool = False,
    frame_stack: int = 1,
    distractor_strength: float = 0.0,
    distractor: str = "shapes",
    render_mode: str | None = "rgb_array",
    **env_kwargs: Any,
) -> gym.Env:
    """Make ``env_id`` observe its own rendered frame, resized to ``size`` x ``size`` uint8.

    ``wm/PixelCartPole-v0``: CartPole-v1, ``Discrete(2)``, +1 per step, 500 steps; ``wm/PixelPendulum-v0``:
    Pendulum-v1, ``Box(-2, 2, (1,), float32)`` torque, reward ``-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2)``,
    200 steps. A single frame shows no velocity: these are partially observable, as pixel tasks usually are.

    Observation: ``Box(0, 255, (size, size, C), uint8)`` with C = 3 (RGB) or 1 (``grayscale``); with
    ``frame_stack=k > 1`` the last k frames are concatenated on the channel axis, ``(size, size, k*C)``, which is
    the layout SB3's ``CnnPolicy`` and ``VecTransposeImage`` expect. Actions, rewards and episode ends are the
    wrapped env's. ``distractor_strength > 0`` adds :class:`BackgroundDistractor` (before grayscale/stacking).
    Extra keyword arguments go to ``gym.make(env_id, ...)`` (e.g. physics of ``wm/CartPoleVariant-v0``).
    """
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"pixel envs render with render_mode='rgb_array' only, got {render_mode!r}")
    env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
    env = AddRenderObservation(env, render_only=True)
    env = ResizeObservation(env, (size, size))
    if distractor_strength > 0.0:
        env = BackgroundDistractor(env, strength=distractor_strength, kind=distractor)
    if grayscale:
        env = GrayscaleObservation(env, keep_dim=True)
    if frame_stack > 1:
        env = FrameStackObservation(env, frame_stack)
        k, h, w, c = env.observation_space.shape
        stacked = spaces.Box(0, 255, (h, w, k * c), dtype=np.uint8)
        env = TransformObservation(env, _stack_on_channels, stacked)
    # The observation is the rgb_array frame, so that is the only render mode these envs offer.
    env.metadata = {**env.metadata, "render_modes": ["rgb_array"]}
    return env


def make_distractor_env(
    env_id: str = "CartPole-v1",
    distractor_strength: float = 1.0,
    distractor: str = "shapes",
    size: int = 64,
    **kwargs: Any,
) -> gym.Env:
    """Pixel ``env_id`` with moving background distractors (the entry point of ``wm/DistractorCartPole-v0``).

    Observation: ``Box(0, 255, (size, size, 3), uint8)``, the rendered frame with :class:`BackgroundDistractor`
    painted into its white background at ``distractor_strength`` (0 = the plain pixel env, 1 = default, full
    strength); ``distractor`` is ``"shapes"`` (moving rectangles) or ``"noise"`` (per-pixel noise each step).
    Actions, reward and episode ends are ``env_id``'s (CartPole-v1: ``Discrete(2)``, +1 per step, 500 steps).
    """
    return make_pixel_env(env_id, size=size, distractor_strength=distractor_strength, distractor=distractor, **kwargs)
