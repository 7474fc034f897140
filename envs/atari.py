"""Atari through ale-py with the world-model preprocessing (DreamerV3 / Atari 100k conventions).

Conventions (:class:`AtariSettings`, the keyword arguments of :func:`make_atari` and :func:`make_atari_vector`):

* frame skip 4 with a max-pool over the last two raw frames, sticky actions with probability 0.25 (applied by ALE
  on every raw frame), up to 30 no-op actions after reset, 64x64 observations (RGB by default), no reward
  clipping, minimal action set, episodes truncated at 108,000 raw frames (27,000 agent steps, 30 minutes of play).
* Life loss ends the episode only if ``terminal_on_life_loss=True`` (Gymnasium's ``AtariPreprocessing`` then
  fully resets the game on the next ``reset``); the current life count is always in ``info["lives"]``.
* Atari 100k budget: 100,000 *agent* steps = 400,000 raw frames at frame skip 4 (about 2 hours of play),
  counted over all envs together; see :data:`ATARI_100K_GAMES` for the 26-game list.

ale-py ships its ROMs in the wheel; it is imported lazily so that ``import envs`` works without it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

ATARI_100K_STEPS = 100_000
"""Agent steps (not frames) in the Atari 100k budget; at frame skip 4 that is 400k frames."""

ATARI_100K_GAMES = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout", "ChopperCommand",
    "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero", "Jamesbond", "Kangaroo", "Krull",
    "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert", "RoadRunner", "Seaquest", "UpNDown",
)  # fmt: skip

MAX_FRAMES_PER_EPISODE = 108_000


def _ale():
    try:
        import ale_py
    except ImportError as err:  # pragma: no cover - exercised only without the atari extra
        raise ImportError("Atari envs need ale-py and opencv: pip install 'wm-agent[atari]'") from err
    gym.register_envs(ale_py)
    return ale_py


@dataclass(frozen=True, kw_only=True)
class AtariSettings:
    """The preprocessing of :func:`make_atari` and :func:`make_atari_vector`, given to either as keyword arguments.

    :param size: observation height and width
    :param grayscale: one luminance channel instead of RGB
    :param frame_skip: raw frames per agent step, max-pooled over the last two
    :param sticky_action_prob: probability that ALE repeats the previous action on each raw frame
    :param noop_max: up to this many no-op actions after reset
    :param terminal_on_life_loss: a lost life ends the episode
    :param frame_stack: observations stacked on a leading axis (1: none)
    """

    size: int = 64
    grayscale: bool = False
    frame_skip: int = 4
    sticky_action_prob: float = 0.25
    noop_max: int = 30
    terminal_on_life_loss: bool = False
    frame_stack: int = 1

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """``(size, size, C)``, or ``(frame_stack, size, size, C)`` when stacked; C = 1 (grayscale) or 3."""
        frame = (self.size, self.size, 1 if self.grayscale else 3)
        return frame if self.frame_stack == 1 else (self.frame_stack, *frame)


def make_atari(
    game: str = "Pong", full_action_space: bool = False, render_mode: str | None = None, **settings: Any
) -> gym.Env:
    """One preprocessed Atari env, e.g. ``make_atari("Breakout", grayscale=True)``.

    Observation: ``Box(0, 255, settings.observation_shape, uint8)``: ``(size, size, 3)`` RGB, ``(size, size, 1)``
    with ``grayscale=True``; with ``frame_stack=k > 1`` Gymnasium's ``FrameStackObservation`` adds a leading axis,
    ``(k, size, size, C)``. Action: ``Discrete(n)``, the game's minimal action set. Reward: the game score change,
    unclipped.

    :param game: an ALE game name, e.g. ``"Pong"``, ``"MsPacman"``
    :param full_action_space: all 18 actions instead of the game's minimal set
    :param render_mode: Gymnasium's render mode
    :param settings: fields of :class:`AtariSettings`
    """
    _ale()
    atari = AtariSettings(**settings)
    env = gym.make(
        f"ALE/{game}-v5",
        frameskip=1,  # AtariPreprocessing does the skipping and max-pooling
        repeat_action_probability=atari.sticky_action_prob,
        full_action_space=full_action_space,
        max_num_frames_per_episode=MAX_FRAMES_PER_EPISODE,
        render_mode=render_mode,
    )
    env = AtariPreprocessing(
        env,
        noop_max=atari.noop_max,
        frame_skip=atari.frame_skip,
        screen_size=atari.size,
        terminal_on_life_loss=atari.terminal_on_life_loss,
        grayscale_obs=atari.grayscale,
        grayscale_newaxis=True,
    )
    if atari.frame_stack > 1:
        env = FrameStackObservation(env, atari.frame_stack)
    return env


def make_atari_vector(
    game: str = "Pong", num_envs: int = 4, num_threads: int = 0, **kwargs: Any
) -> gym.vector.VectorEnv:
    """``num_envs`` Atari games stepped in C++ threads by ale-py's ``AtariVectorEnv``, same conventions as
    :func:`make_atari` (but FIRE is not pressed on reset and autoreset is ale-py's next-step mode).

    Observation: ``Box(0, 255, (num_envs, *single), uint8)`` where ``single`` is exactly :func:`make_atari`'s
    observation shape (ale-py's own layout, ``(num_envs, frame_stack, size, size[, 3])``, is reshaped to match).
    Action: ``MultiDiscrete([n] * num_envs)``. Reward: unclipped game score change, shape ``(num_envs,)``.

    :param game: an ALE game name
    :param num_envs: games stepped together
    :param num_threads: ale-py's worker threads (0: its default)
    :param kwargs: fields of :class:`AtariSettings`; anything else goes to ``AtariVectorEnv``
    """
    ale_py = _ale()
    names = {f.name for f in fields(AtariSettings)}
    atari = AtariSettings(**{name: kwargs.pop(name) for name in names & kwargs.keys()})
    vec = ale_py.AtariVectorEnv(
        game=_rom_id(game),
        num_envs=num_envs,
        num_threads=num_threads,
        img_height=atari.size,
        img_width=atari.size,
        grayscale=atari.grayscale,
        stack_num=atari.frame_stack,
        frameskip=atari.frame_skip,
        maxpool=True,
        noop_max=atari.noop_max,
        repeat_action_probability=atari.sticky_action_prob,
        episodic_life=atari.terminal_on_life_loss,
        max_num_frames_per_episode=MAX_FRAMES_PER_EPISODE,
        reward_clipping=False,
        use_fire_reset=False,
        **kwargs,
    )
    from gymnasium.wrappers.vector import TransformObservation

    single = atari.observation_shape
    return TransformObservation(
        vec,
        lambda obs: obs.reshape((num_envs, *single)),  # drops the length-1 stack axis and/or adds the gray channel
        observation_space=gym.spaces.Box(0, 255, (num_envs, *single), dtype=np.uint8),
        single_observation_space=gym.spaces.Box(0, 255, single, dtype=np.uint8),
    )


def _rom_id(game: str) -> str:
    """``"MsPacman"`` -> ``"ms_pacman"``: the ROM id ale-py's vector env expects, from ale-py's own name mapping."""
    from ale_py import roms
    from ale_py.registration import rom_id_to_name

    ids = {rom_id_to_name(rom): rom for rom in roms.get_all_rom_ids()}
    if game not in ids and game not in ids.values():
        raise ValueError(f"unknown Atari game {game!r}")
    return ids.get(game, game)
