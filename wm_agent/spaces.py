"""How Gymnasium spaces map to the model's tensors: observation keys and the action encoding.

Observations are always handled as a dict internally (a non-Dict space becomes {"obs": ...}).
Actions are encoded as one vector per env: concatenated one-hots for Discrete, MultiDiscrete and
MultiBinary, values in [-1, 1] for Box.
"""

from __future__ import annotations

import typing
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space

SUPPORTED_OBS_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
OBS_KEY = "obs"  # the key of a non-Dict observation
SMALLEST_IMAGE = 16  # uint8 frames with a side under this (symbolic grids, e.g. MiniGrid's 7x7x3) are vectors
STRUCTURES = (spaces.Dict, spaces.Tuple)


def is_text_space(space: spaces.Space) -> bool:
    """A space of strings: Gymnasium's Text, or any ``Space[str]`` (e.g. MiniGrid's MissionSpace)."""
    if isinstance(space, spaces.Text):
        return True
    bases = (base for cls in type(space).__mro__ for base in getattr(cls, "__orig_bases__", ()))
    return any(typing.get_origin(base) is spaces.Space and typing.get_args(base) == (str,) for base in bases)


def flatten_space(space: spaces.Space, prefix: str = "") -> tuple[dict[str, spaces.Space], list[str]]:
    """Nested Dict and Tuple spaces -> (flat {dotted key: leaf space}, the dotted keys of the Text leaves left out).

    Tuple entries are keyed by their index: ``Tuple(Box, Dict(pos=Box))`` -> ``{"0": Box, "1.pos": Box}``.
    """
    if not isinstance(space, STRUCTURES):
        return ({}, [prefix or OBS_KEY]) if is_text_space(space) else ({prefix or OBS_KEY: space}, [])
    children = space.spaces.items() if isinstance(space, spaces.Dict) else enumerate(space.spaces)
    leaves: dict[str, spaces.Space] = {}
    dropped: list[str] = []
    for name, child in children:
        child_leaves, child_dropped = flatten_space(child, f"{prefix}{name}" if not prefix else f"{prefix}.{name}")
        leaves.update(child_leaves)
        dropped += child_dropped
    return leaves, dropped


def flatten_obs(obs: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict / tuple observation -> {dotted key: leaf}, keyed as `flatten_space` keys its space."""
    if isinstance(obs, dict):
        children = obs.items()
    elif isinstance(obs, tuple):
        children = enumerate(obs)
    else:
        return {prefix or OBS_KEY: obs}
    flat: dict[str, Any] = {}
    for name, child in children:
        flat.update(flatten_obs(child, f"{prefix}{name}" if not prefix else f"{prefix}.{name}"))
    return flat


def needs_flattening(space: spaces.Space) -> bool:
    """A Tuple, a Dict holding a Dict, Tuple or Text, or a Text: what SB3's VecEnvs and policies cannot take."""
    if isinstance(space, spaces.Tuple) or is_text_space(space):
        return True
    return isinstance(space, spaces.Dict) and any(isinstance(s, STRUCTURES) or is_text_space(s) for s in space.values())


class FlatDictObservation(gym.ObservationWrapper):
    """Tuple and nested observations as one flat Dict keyed as `flatten_space` keys them; Text entries are left
    out with a warning that names them. JEPADreamer wraps a Gymnasium env with it when its space needs it."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        leaves, dropped = flatten_space(env.observation_space)
        if dropped:
            warnings.warn(
                f"JEPADreamer leaves out the Text observation entries {dropped}: it does not read text. If the "
                "agent needs them, map each text to a Discrete index or an embedding in an ObservationWrapper",
                stacklevel=2,
            )
        if not leaves:
            raise ValueError(
                f"The observation space {env.observation_space} holds only text: JEPADreamer needs numbers; map "
                "the text to a Discrete index or an embedding in an ObservationWrapper"
            )
        self.observation_space = spaces.Dict(leaves)

    def observation(self, observation: Any) -> dict[str, Any]:
        flat = flatten_obs(observation)
        return {key: flat[key] for key in self.observation_space.spaces}


def _is_grayscale_image(space: spaces.Space) -> bool:
    """A 2-D uint8 Box in [0, 255] (e.g. grayscale Atari) is an image with one channel."""
    return (
        isinstance(space, spaces.Box)
        and len(space.shape) == 2
        and space.dtype == np.uint8
        and np.all(space.low == 0)
        and np.all(space.high == 255)
    )


def _frame_size(space: spaces.Box) -> tuple[int, int]:
    """(height, width) of a uint8 frame space: 2-D, channel-first (C, H, W) or channel-last (H, W, C), the
    channels being the smallest of the first and last dims."""
    shape = space.shape
    if len(shape) == 2:
        return shape
    return shape[1:] if shape[0] <= shape[-1] else shape[:2]


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 frames (..., H, W) -> uint8 frames (..., size, size): antialiased bilinear, rounded to the nearest
    grey level. The one resize of the project: the replay stores its output and the policy acts on it.

    Computed on the CPU in float32, one image plane at a time, so the pixels do not depend on the device, the
    batch size or the channel layout; the result is on the frames' device.
    """
    *lead, height, width = frames.shape
    planes = frames.detach().cpu().reshape(-1, 1, height, width).float()  # (N * C, 1, H, W)
    resized = F.interpolate(planes, size=(size, size), mode="bilinear", antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8).reshape(*lead, size, size).to(frames.device)


@dataclass(frozen=True)
class ObsKey:
    """One observation entry: `kind` is "image" (uint8, channel-first or 2-D) or "vector" (flat float features)."""

    name: str
    kind: str
    space: spaces.Space
    size: int  # vector features after one-hot encoding; channels for images


class ObsSpec:
    """The observation entries of a space, checked once at construction."""

    def __init__(self, observation_space: spaces.Space) -> None:
        if needs_flattening(observation_space):
            raise ValueError(
                f"JEPADreamer reads Tuple, nested and Text observation spaces ({observation_space}) only from a "
                "Gymnasium env, which it wraps with wm_agent.spaces.FlatDictObservation: pass the env itself, or "
                "wrap each env of your VecEnv with FlatDictObservation (or gymnasium.wrappers.FlattenObservation)"
            )
        if isinstance(observation_space, spaces.Dict):
            items = list(observation_space.spaces.items())
            if not items:
                raise ValueError("JEPADreamer got an empty Dict observation space: give it at least one key")
        else:
            items = [(OBS_KEY, observation_space)]
        self.keys: list[ObsKey] = []
        for name, space in items:
            if not isinstance(space, SUPPORTED_OBS_SPACES):
                where = f"observation key {name!r}" if isinstance(observation_space, spaces.Dict) else "observation"
                raise ValueError(
                    f"JEPADreamer does not support the {where} space {space}: use Box, Discrete, MultiDiscrete, "
                    "MultiBinary, or Dicts and Tuples of these; drop the entry with gymnasium.wrappers."
                    "FilterObservation, or make it one Box with gymnasium.wrappers.FlattenObservation"
                )
            self.keys.append(self._describe(name, space))
        self.is_dict = isinstance(observation_space, spaces.Dict)

    @staticmethod
    def _describe(name: str, space: spaces.Space) -> ObsKey:
        is_frame = is_image_space(space, check_channels=False) or _is_grayscale_image(space)
        if is_frame and min(_frame_size(space)) < SMALLEST_IMAGE:
            # a symbolic grid (e.g. MiniGrid's 7x7x3 codes): read at its own resolution by the MLP, not upscaled
            return ObsKey(name, "vector", space, int(np.prod(space.shape)))
        if is_image_space(space, check_channels=False):
            # the model sees images channel-first, as SB3's CNN policies do: SB3 transposes channel-last envs
            # (VecTransposeImage) before the policy is built, and `predict` transposes channel-last observations
            return ObsKey(name, "image", space, int(space.shape[0]))
        if _is_grayscale_image(space):
            return ObsKey(name, "image", space, 1)
        if isinstance(space, spaces.Discrete):
            return ObsKey(name, "vector", space, int(space.n))
        if isinstance(space, spaces.MultiDiscrete):
            return ObsKey(name, "vector", space, int(np.sum(space.nvec)))
        return ObsKey(name, "vector", space, int(np.prod(space.shape)))

    @property
    def image_keys(self) -> list[ObsKey]:
        return [k for k in self.keys if k.kind == "image"]

    @property
    def vector_keys(self) -> list[ObsKey]:
        return [k for k in self.keys if k.kind == "vector"]

    def as_dict(self, obs: np.ndarray | dict) -> dict[str, np.ndarray]:
        return dict(obs) if self.is_dict else {OBS_KEY: obs}

    def check(self, obs: dict[str, np.ndarray], n: int | None = None) -> None:
        """Raise a clear error for an observation the model would silently misread: a missing key, a float image
        (images are uint8 in [0, 255]), NaN or inf in a float vector, and, given the batch size `n`, a shape that is
        not the space's."""
        for key in self.keys:
            where = f" (key {key.name!r})" if self.is_dict else ""
            if key.name not in obs:
                raise ValueError(f"The observation has no key {key.name!r} (it has {sorted(obs)}): return every key of "
                                 "the observation space")  # fmt: skip
            value = np.asarray(obs[key.name])
            if key.kind == "image" and value.dtype.kind == "f":
                raise TypeError(
                    f"Image observation{where} has dtype {value.dtype}, but its space is uint8 in [0, 255]: return "
                    "uint8 frames, or declare a float Box observation space (it is then read as a vector)"
                )
            if n is not None and value.shape != (n, *key.space.shape):
                raise ValueError(
                    f"Observation{where} has shape {value.shape[1:]}, but its space has shape {key.space.shape}: the "
                    "env returns observations outside its observation_space; fix one or the other"
                )
            shape = key.space.shape
            fits = value.ndim >= len(shape) and value.shape[value.ndim - len(shape) :] == shape
            if isinstance(key.space, (spaces.Discrete, spaces.MultiDiscrete)) and fits:  # else the shape check says
                counts = key.space.n if isinstance(key.space, spaces.Discrete) else key.space.nvec
                outside = (value < key.space.start) | (value >= key.space.start + counts)
                if np.any(outside):
                    raise ValueError(
                        f"Observation{where} holds {value[outside].reshape(-1)[:5].tolist()}, outside its "
                        f"space {key.space}: the env returns observations outside its observation_space; fix one or "
                        "the other"
                    )
            if key.kind == "vector" and value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(
                    f"Observation{where} contains NaN or inf: {value}. Fix the env, or clean its observations with "
                    "gymnasium.wrappers.TransformObservation"
                )

    def stored_shapes(self, image_size: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of one step of each key as the replay stores it and the policy acts on it: images
        uint8 at the model's resolution, (C, S, S) or (S, S) for 2-D grayscale; other keys as their space."""
        return {
            key.name: (
                (*key.space.shape[:-2], image_size, image_size) if key.kind == "image" else key.space.shape,
                np.dtype(key.space.dtype),
            )
            for key in self.keys
        }

    def resize_images(self, obs: dict[str, np.ndarray], image_size: int) -> dict[str, np.ndarray]:
        """A batch of raw observations (N, ...) with its images at the model's resolution (`resize_frames`):
        what `learn` stores and acts on. Other keys are passed through as they are."""
        out = dict(obs)
        for key in self.image_keys:
            frames = obs[key.name]  # (N, C, H, W) or (N, H, W)
            if frames.shape[-2:] != (image_size, image_size):
                out[key.name] = resize_frames(torch.from_numpy(np.ascontiguousarray(frames)), image_size).numpy()
        return out

    def preprocess(self, obs: dict[str, torch.Tensor], image_size: int) -> dict[str, torch.Tensor]:
        """Raw observation tensors (N, ...) -> model inputs: images (N, C, S, S) in [-0.5, 0.5], vectors (N, F).

        Images not yet at the model's resolution (those given to `predict`) go through `resize_frames`, the resize
        of what `learn` stores, so acting and training see the same pixels."""
        out = {}
        for key in self.keys:
            x = obs[key.name]
            if key.kind == "image":
                if x.shape[-2:] != (image_size, image_size):
                    x = resize_frames(x, image_size)
                if x.dim() == 3:  # (N, H, W) grayscale
                    x = x.unsqueeze(1)
                out[key.name] = x.float() / 255.0 - 0.5
            elif isinstance(key.space, spaces.Discrete):
                out[key.name] = F.one_hot((x.long() - int(key.space.start)).reshape(-1), int(key.space.n)).float()
            elif isinstance(key.space, spaces.MultiDiscrete):
                values = (x.long() - torch.as_tensor(key.space.start, device=x.device)).reshape(x.shape[0], -1)
                nvec = key.space.nvec.reshape(-1)
                out[key.name] = torch.cat([F.one_hot(values[:, i], int(n)) for i, n in enumerate(nvec)], -1).float()
            else:
                out[key.name] = x.reshape(x.shape[0], -1).float()
        return out


class ActionSpec:
    """Encodes env actions as model vectors and back.

    Discrete-like spaces become factors of categoricals (`nvec`); Box becomes `dim` values in [-1, 1]
    scaled to the space's finite bounds.
    """

    def __init__(self, action_space: spaces.Space) -> None:
        if not isinstance(action_space, SUPPORTED_ACTION_SPACES):
            raise ValueError(
                f"JEPADreamer does not support the action space {action_space}: use Discrete, Box, MultiDiscrete "
                "or MultiBinary"
            )
        self.space = action_space
        self.discrete = not isinstance(action_space, spaces.Box)
        if isinstance(action_space, spaces.Discrete):
            self.nvec = [int(action_space.n)]
            self.start = np.array([int(action_space.start)])
        elif isinstance(action_space, spaces.MultiDiscrete):
            self.nvec = [int(n) for n in action_space.nvec.reshape(-1)]
            self.start = np.asarray(action_space.start).reshape(-1)
        elif isinstance(action_space, spaces.MultiBinary):
            self.nvec = [2] * int(np.prod(action_space.shape))
            self.start = np.zeros(len(self.nvec), dtype=np.int64)
        else:
            if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
                raise ValueError(
                    f"JEPADreamer needs a Box action space with finite bounds, got {action_space}: "
                    "wrap the env with gymnasium.wrappers.RescaleAction or ClipAction"
                )
            self.nvec = []
            self.low = action_space.low.reshape(-1).astype(np.float32)
            self.high = action_space.high.reshape(-1).astype(np.float32)
        self.size = sum(self.nvec) if self.discrete else int(np.prod(action_space.shape))
        # standard-normal draws one sample of the actor takes (`ActionDist.sample`'s noise): one per factor or value
        self.noise_size = len(self.nvec) if self.discrete else self.size

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """Model actions (N, size), on the host -> a batch of env actions (N, *space.shape)."""
        n = action.shape[0]
        if not self.discrete:
            scaled = self.low + (action + 1.0) * 0.5 * (self.high - self.low)
            return scaled.reshape(n, *self.space.shape).astype(self.space.dtype)
        parts = np.split(action, np.cumsum(self.nvec)[:-1], axis=-1)
        indices = np.stack([part.argmax(-1) for part in parts], -1) + self.start
        if isinstance(self.space, spaces.Discrete):
            return indices[:, 0].astype(self.space.dtype)
        return indices.reshape(n, *self.space.shape).astype(self.space.dtype)

    def check_sequences(self, actions: np.ndarray) -> None:
        """Raise a ValueError that names the problem unless `actions` are candidate sequences of this space's actions,
        (n_plans, horizon, *space.shape) in env units (what `imagine` takes)."""
        shape = self.space.shape
        expected = "(n_plans, horizon" + "".join(f", {d}" for d in shape) + ")"
        if actions.ndim != 2 + len(shape) or actions.shape[2:] != shape or 0 in actions.shape[:2]:
            raise ValueError(
                f"actions must have shape (n_plans, horizon, *action_shape) = {expected} for the action space "
                f"{self.space}, got {actions.shape}: stack the candidate sequences, e.g. np.stack([plan_a, plan_b]) "
                "with each plan a list of env actions"
            )
        if actions.dtype.kind not in "biuf":
            raise ValueError(f"actions must be numbers, got dtype {actions.dtype}")
        flat = actions.reshape(actions.shape[0] * actions.shape[1], -1).astype(np.float64)  # (P * H, dims)
        if not np.isfinite(flat).all():
            raise ValueError("actions contain NaN or inf: give finite actions of the action space")
        if not self.discrete:
            if (flat < self.low).any() or (flat > self.high).any():
                raise ValueError(
                    f"actions outside the action space {self.space} (min {flat.min():.3g}, max {flat.max():.3g}): "
                    "clip them with np.clip(actions, action_space.low, action_space.high)"
                )
            return
        values = flat - self.start
        if (values != np.round(values)).any() or (values < 0).any() or (values >= np.asarray(self.nvec)).any():
            raise ValueError(
                f"actions must be whole numbers of the action space {self.space} (the env's own action values), got "
                f"values from {flat.min():.3g} to {flat.max():.3g}"
            )

    def from_env(self, action: np.ndarray) -> np.ndarray:
        """A batch of env actions (N, *space.shape) -> model actions (N, size), float32."""
        action = np.asarray(action)
        n = action.shape[0]
        if not self.discrete:
            flat = action.reshape(n, -1).astype(np.float32)
            return np.clip(2.0 * (flat - self.low) / (self.high - self.low) - 1.0, -1.0, 1.0)
        indices = action.reshape(n, -1).astype(np.int64) - self.start
        encoded = np.zeros((n, self.size), dtype=np.float32)
        offsets = np.cumsum([0] + self.nvec[:-1])
        rows = np.arange(n)[:, None]
        encoded[rows, offsets + indices] = 1.0
        return encoded


class CheckedObservations(gym.Wrapper):
    """Checks every observation the env returns against its space (`ObsSpec.check`) before SB3's VecEnv stores it.

    A DummyVecEnv copies observations into arrays of the space's dtype and shape, so past it a float frame of a uint8
    image space is already cast to zeros and a wrongly shaped one fails in numpy, far from its cause.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.obs_spec = ObsSpec(env.observation_space)

    def _checked(self, obs: Any) -> Any:
        self.obs_spec.check({k: np.asarray(v)[None] for k, v in self.obs_spec.as_dict(obs).items()}, n=1)
        return obs

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        return self._checked(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._checked(obs), reward, terminated, truncated, info


def warn_about_reading(obs_spec: ObsSpec, policy: Any, image_size: int) -> None:
    """Warn where the model reads observations otherwise than the user may expect: a policy name that does not
    match the encoder the space gets, frames whose aspect ratio the square resize does not keep, and stacks of
    frames, which are read as one vector."""
    if obs_spec.is_dict:
        chosen, how = "MultiInputPolicy", "each key by its own kind"
    elif obs_spec.image_keys:
        chosen, how = "CnnPolicy", "a CNN"
    else:
        small = obs_spec.keys[0].space.shape if isinstance(obs_spec.keys[0].space, spaces.Box) else None
        chosen, how = "MlpPolicy", "an MLP" + (f" (frames of {small} are under {SMALLEST_IMAGE} pixels a side: "
                                              "read as symbolic grids, not upscaled)" if small and len(small) > 1
                                              else "")  # fmt: skip
    if isinstance(policy, str) and policy != chosen:
        warnings.warn(f"{policy} was given, but the encoder follows the observation space: it is read with {how}, "
                      f"as {chosen} names it", stacklevel=3)  # fmt: skip
    for key in obs_spec.image_keys:
        height, width = _frame_size(key.space)
        if height != width:
            warnings.warn(
                f"Frames{f' of key {key.name!r}' if obs_spec.is_dict else ''} of {height}x{width} are resized to "
                f"{image_size}x{image_size}: their aspect ratio is not kept (crop or pad them to a square with an "
                "ObservationWrapper if it matters)",
                stacklevel=3,
            )
    for key in obs_spec.vector_keys:
        shape = key.space.shape
        stacked = len(shape) == 4 and key.space.dtype == np.uint8
        frame = spaces.Box(key.space.low[0], key.space.high[0], dtype=np.uint8) if stacked else None
        if frame is not None and is_image_space(frame, check_channels=False):
            warnings.warn(
                f"Observation{f' key {key.name!r}' if obs_spec.is_dict else ''} of shape {shape} looks like a stack "
                f"of {shape[0]} frames: it is read as one vector of {int(np.prod(shape)):,} values, not as images. "
                "The model's recurrent state carries the past, so drop the frame stack (e.g. wm/Atari-v0's "
                "frame_stack=1)",
                stacklevel=3,
            )
