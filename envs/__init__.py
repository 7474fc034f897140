"""Gymnasium environments the agent is developed, tested and benchmarked on.

``import envs`` registers every id in :data:`ENV_IDS` under the ``wm/`` namespace, e.g.
``gymnasium.make("wm/PixelCartPole-v0")``. Settings are keyword arguments of ``gymnasium.make``:
``gymnasium.make("wm/SlipperyChain-v0", noise=0.1)``. The table of ids is in docs/ENVS.md.
Depends only on gymnasium, numpy and (for Atari) ale-py + opencv; never on ``wm_agent``.
"""

from __future__ import annotations

import os

# Pixel envs render through pygame; without a display it needs the dummy video driver. SDL would also catch
# SIGTERM (into a quit event nobody reads), so `kill`, `timeout` and job schedulers could not stop a pixel run.
# A user's choice wins for both.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")

import gymnasium as gym  # noqa: E402

from envs.atari import ATARI_100K_GAMES, ATARI_100K_STEPS, AtariSettings, make_atari, make_atari_vector  # noqa: E402
from envs.diagnostics import (  # noqa: E402
    CartPoleVariantEnv,
    CueMemoryEnv,
    DelayedRewardEnv,
    MaskVelocity,
    PendulumVariantEnv,
    SlipperyChainEnv,
    make_novel,
)
from envs.pixel import BackgroundDistractor, make_distractor_env, make_pixel_env  # noqa: E402

# id -> (entry point, default kwargs, max_episode_steps added by gym.make or None, category)
_SPECS: dict[str, tuple[str, dict, int | None, str]] = {
    "wm/PixelCartPole-v0": ("envs.pixel:make_pixel_env", {"env_id": "CartPole-v1"}, None, "pixel"),
    "wm/PixelPendulum-v0": ("envs.pixel:make_pixel_env", {"env_id": "Pendulum-v1"}, None, "pixel"),
    "wm/Atari-v0": ("envs.atari:make_atari", {"game": "Pong"}, None, "atari"),
    # the two Atari 100k games the benchmarks name, as ids of their own so results tables keep them apart
    "wm/Pong-v0": ("envs.atari:make_atari", {"game": "Pong"}, None, "atari"),
    "wm/Breakout-v0": ("envs.atari:make_atari", {"game": "Breakout"}, None, "atari"),
    "wm/CartPoleNoVel-v0": ("envs.diagnostics:make_novel", {"env_id": "CartPole-v1"}, None, "partial observability"),
    "wm/PendulumNoVel-v0": ("envs.diagnostics:make_novel", {"env_id": "Pendulum-v1"}, None, "partial observability"),
    "wm/CueMemory-v0": ("envs.diagnostics:CueMemoryEnv", {}, None, "partial observability"),
    "wm/SlipperyChain-v0": ("envs.diagnostics:SlipperyChainEnv", {}, 100, "stochasticity"),
    "wm/DelayedReward-v0": ("envs.diagnostics:DelayedRewardEnv", {}, None, "time scales"),
    "wm/DistractorCartPole-v0": ("envs.pixel:make_distractor_env", {"env_id": "CartPole-v1"}, None, "distractors"),
    "wm/CartPoleVariant-v0": ("envs.diagnostics:CartPoleVariantEnv", {}, 500, "domain variants"),
    "wm/PendulumVariant-v0": ("envs.diagnostics:PendulumVariantEnv", {}, 200, "domain variants"),
}

ENV_IDS: tuple[str, ...] = tuple(_SPECS)
"""Every id this package registers."""

DIAGNOSTIC_IDS: tuple[str, ...] = tuple(i for i, s in _SPECS.items() if s[3] not in ("pixel", "atari"))
"""The diagnostic ids (partial observability, stochasticity, time scales, distractors, domain variants)."""


def _register() -> None:
    for env_id, (entry_point, kwargs, max_steps, _) in _SPECS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs, max_episode_steps=max_steps)


_register()

__all__ = [
    "ATARI_100K_GAMES",
    "ATARI_100K_STEPS",
    "AtariSettings",
    "DIAGNOSTIC_IDS",
    "ENV_IDS",
    "BackgroundDistractor",
    "CartPoleVariantEnv",
    "CueMemoryEnv",
    "DelayedRewardEnv",
    "MaskVelocity",
    "PendulumVariantEnv",
    "SlipperyChainEnv",
    "make_atari",
    "make_atari_vector",
    "make_distractor_env",
    "make_novel",
    "make_pixel_env",
]
