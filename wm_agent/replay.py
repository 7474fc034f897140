"""Sequence replay: one ring buffer per env stream, sampled as whole (B, T) sequences."""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import numpy as np
import torch

from wm_agent.spaces import ObsSpec


class SequenceBatch(NamedTuple):
    """B sequences of T consecutive replayed steps, on the model's device.

    Step t holds the observation reached at t and what led to it: the action taken at t - 1 and its reward.
    """

    obs: dict[str, torch.Tensor]  # raw observations, (B, T, *obs_shape) per key (uint8 images stay uint8)
    action: torch.Tensor  # (B, T, A) model-encoded action that led to step t (zeros at an episode start)
    reward: torch.Tensor  # (B, T) reward that came with step t
    terminated: torch.Tensor  # (B, T) bool: step t ended its episode for real (a truncation is not a terminal)
    is_first: torch.Tensor  # (B, T) bool: step t starts an episode (always true at t = 0: the state starts afresh)


class SequenceReplay:
    """Stores steps per env stream: obs (uint8 stays uint8), the action that led to it, reward, terminated, is_first.

    Each stream has its own write position, so an episode end can add two entries to one stream (the
    terminal observation, then the first observation of the next episode) without disturbing the others.
    Sequences may cross episode boundaries: `is_first` tells the model where to reset its state.
    """

    def __init__(
        self,
        capacity: int,
        n_streams: int,
        obs_spec: ObsSpec,
        action_size: int,
        seed: int | None = None,
        initial: int | None = None,
    ) -> None:
        self.n_streams = n_streams
        self.capacity = max(capacity // n_streams, 2)  # per stream: the most it ever keeps (then it is a ring)
        # arrays start at `initial` steps (all of `capacity` when None) and double as they fill, so a short run
        # never reserves a long run's memory
        allocated = self.capacity if initial is None else min(self.capacity, max(-(-initial // n_streams), 2))
        shape = (n_streams, allocated)
        self.obs = {k.name: np.zeros(shape + k.space.shape, dtype=k.space.dtype) for k in obs_spec.keys}
        self.action = np.zeros((*shape, action_size), dtype=np.float32)
        self.reward = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.is_first = np.zeros(shape, dtype=bool)
        self.pos = np.zeros(n_streams, dtype=np.int64)
        self.count = np.zeros(n_streams, dtype=np.int64)
        self.rng = np.random.default_rng(seed)

    @property
    def allocated(self) -> int:
        """Steps per stream the arrays hold now (at most `capacity`)."""
        return self.reward.shape[1]

    def _grow(self, needed: int) -> None:
        """Double the arrays (up to `capacity`) until `needed` steps per stream fit. Only before the ring wraps."""
        if needed > self.capacity:
            raise RuntimeError(f"replay index {needed - 1} is beyond its capacity of {self.capacity} steps per stream")
        size = max(self.allocated, 1)
        while size < needed:
            size = min(2 * size, self.capacity)

        def grown(x: np.ndarray) -> np.ndarray:
            out = np.zeros((x.shape[0], size, *x.shape[2:]), dtype=x.dtype)
            out[:, : x.shape[1]] = x
            return out

        self.obs = {k: grown(v) for k, v in self.obs.items()}
        for name in ("action", "reward", "terminated", "is_first"):
            setattr(self, name, grown(getattr(self, name)))

    def __len__(self) -> int:
        return int(self.count.sum())

    def add(
        self,
        obs: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        is_first: np.ndarray,
        streams: np.ndarray | None = None,
    ) -> None:
        """Append one step to each of `streams` (all streams when None); arrays have the streams as first dim."""
        streams = np.arange(self.n_streams) if streams is None else np.asarray(streams)
        pos = self.pos[streams]
        if pos.max() >= self.allocated:
            self._grow(int(pos.max()) + 1)
        for name, value in obs.items():
            self.obs[name][streams, pos] = value
        self.action[streams, pos] = action
        self.reward[streams, pos] = reward
        self.terminated[streams, pos] = terminated
        self.is_first[streams, pos] = is_first
        self.pos[streams] = (pos + 1) % self.capacity
        self.count[streams] = np.minimum(self.count[streams] + 1, self.capacity)

    def can_sample(self, seq_len: int) -> bool:
        return bool((self.count >= seq_len).any())

    def sample(self, batch_size: int, seq_len: int, device: torch.device) -> SequenceBatch:
        """B sequences of T consecutive steps, uniformly over all valid start positions, as tensors on `device`."""
        starts_per_stream = np.maximum(self.count - seq_len + 1, 0)
        if starts_per_stream.sum() == 0:
            raise ValueError(f"Replay holds no sequence of length {seq_len} yet ({len(self)} steps stored)")
        streams = self.rng.choice(self.n_streams, batch_size, p=starts_per_stream / starts_per_stream.sum())
        offset = self.rng.integers(0, starts_per_stream[streams])
        # when a stream is full its oldest step sits at the write position
        oldest = np.where(self.count[streams] == self.capacity, self.pos[streams], 0)
        index = (oldest + offset)[:, None] + np.arange(seq_len)  # (B, T)
        index %= self.capacity
        rows = streams[:, None]
        is_first = self.is_first[rows, index]
        is_first[:, 0] = True  # every sampled sequence starts from the initial latent state

        def to_tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x).to(device, non_blocking=True)

        return SequenceBatch(
            obs={name: to_tensor(value[rows, index]) for name, value in self.obs.items()},
            action=to_tensor(self.action[rows, index]),
            reward=to_tensor(self.reward[rows, index]),
            terminated=to_tensor(self.terminated[rows, index]),
            is_first=to_tensor(is_first),
        )

    def __getstate__(self) -> dict:
        """Pickle only the filled part of the (possibly huge, mostly unused) arrays."""
        state = self.__dict__.copy()
        filled = int(self.count.max())
        for name in ("action", "reward", "terminated", "is_first"):
            state[name] = getattr(self, name)[:, :filled].copy()
        state["obs"] = {k: v[:, :filled].copy() for k, v in self.obs.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # the saved arrays hold the filled part; they grow again as steps are added
        if self.allocated < 2:
            self._grow(2)


def step_bytes(obs_spec: ObsSpec, action_size: int) -> int:
    """Bytes one stored step takes: observations in their own dtype, the float32 action, reward and two flags."""
    obs = sum(int(np.prod(k.space.shape)) * np.dtype(k.space.dtype).itemsize for k in obs_spec.keys)
    return obs + 4 * action_size + 4 + 2


def available_memory_bytes() -> int | None:
    """Memory this process can still get without swapping: Linux MemAvailable, lowered to a cgroup's (container's)
    remaining limit where one is set; None where neither is known."""
    available = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    try:
        cgroup = pathlib.Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        used = int((cgroup / "memory.current").read_text())
        if limit != "max":
            remaining = int(limit) - used
            available = remaining if available is None else min(available, remaining)
    except (OSError, ValueError):
        pass
    return available
