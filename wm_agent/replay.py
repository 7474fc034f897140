"""Sequence replay: one ring buffer per env stream, sampled as whole (B, T) sequences."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import struct
import tempfile
import weakref
from collections.abc import Sequence
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import torch


class SequenceBatch(NamedTuple):
    """B sequences of T consecutive replayed steps, on the model's device.

    Step t holds the observation reached at t and what led to it: the action taken at t - 1 and its reward.
    """

    obs: dict[str, torch.Tensor]  # raw observations, (B, T, *obs_shape) per key (uint8 images stay uint8)
    action: torch.Tensor  # (B, T, A) model-encoded action that led to step t (zeros at an episode start)
    reward: torch.Tensor  # (B, T) reward that came with step t
    terminated: torch.Tensor  # (B, T) bool: step t ended its episode for real (a truncation is not a terminal)
    is_first: torch.Tensor  # (B, T) bool: step t starts an episode (always true at t = 0: the state starts afresh)


ObsShapes = dict[str, tuple[tuple[int, ...], np.dtype]]  # key -> (shape of one step, dtype), as stored
STEP_ARRAYS = ("action", "reward", "terminated", "is_first")  # the per-step arrays beside the observations
FILE_MAGIC = b"WM-AGENT REPLAY 1\n"  # starts a file written by `write_replay`


class SequenceReplay:
    """Stores steps per env stream: obs (uint8 stays uint8), the action that led to it, reward, terminated, is_first.

    Each stream has its own write position, so an episode end can add two entries to one stream (the
    terminal observation, then the first observation of the next episode) without disturbing the others.
    Sequences may cross episode boundaries: `is_first` tells the model where to reset its state.

    With a `directory`, the arrays are memory-mapped .npy files (readable by `np.load`) in a fresh `replay-*`
    folder made inside it and deleted with the replay: the operating system keeps in memory only the pages in
    use, so the replay can be larger than memory. Without, they are in memory.
    """

    def __init__(
        self,
        capacity: int,
        n_streams: int,
        obs_shapes: ObsShapes,
        action_size: int,
        seed: int | None = None,
        initial: int | None = None,
        directory: str | os.PathLike | None = None,
    ) -> None:
        self.n_streams = n_streams
        self.capacity = max(capacity // n_streams, 2)  # per stream: the most it ever keeps (then it is a ring)
        self.directory = _make_folder(self, directory)
        self.obs = {name: np.zeros((n_streams, 0, *shape), dtype) for name, (shape, dtype) in obs_shapes.items()}
        self.action = np.zeros((n_streams, 0, action_size), np.float32)
        self.reward = np.zeros((n_streams, 0), np.float32)
        self.terminated = np.zeros((n_streams, 0), bool)
        self.is_first = np.zeros((n_streams, 0), bool)
        # arrays start at `initial` steps (all of `capacity` when None) and double as they fill, so a short run
        # never reserves a long run's memory
        self._resize(self.capacity if initial is None else min(self.capacity, max(-(-initial // n_streams), 2)))
        self.pos = np.zeros(n_streams, dtype=np.int64)
        self.count = np.zeros(n_streams, dtype=np.int64)
        self.rng = np.random.default_rng(seed)

    @property
    def allocated(self) -> int:
        """Steps per stream the arrays hold now (at most `capacity`)."""
        return self.reward.shape[1]

    def _arrays(self) -> dict[str, np.ndarray]:
        """Every per-step array (n_streams, allocated, ...) by its file name: obs.<index>.<key>, then STEP_ARRAYS."""
        obs = {
            f"obs.{i}.{re.sub(r'[^A-Za-z0-9_-]', '_', key)}": value for i, (key, value) in enumerate(self.obs.items())
        }
        return {**obs, **{name: getattr(self, name) for name in STEP_ARRAYS}}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """The inverse of `_arrays`: arrays in its order (the observation keys keep theirs)."""
        values = list(arrays.values())
        self.obs = dict(zip(self.obs, values[: len(self.obs)]))
        for name, value in zip(STEP_ARRAYS, values[len(self.obs) :]):
            setattr(self, name, value)

    def _resize(self, size: int, heads: dict[str, Sequence[np.ndarray]] | None = None) -> None:
        """Reallocate every array at `size` steps per stream, keeping what they hold (or `heads`: per array, the
        steps of each stream to start with)."""
        arrays = self._arrays()
        self._set_arrays(
            {
                name: _allocate(
                    self.directory,
                    name,
                    (self.n_streams, size, *x.shape[2:]),
                    x.dtype,
                    x if heads is None else heads[name],
                )
                for name, x in arrays.items()
            }
        )

    def _grow(self, needed: int) -> None:
        """Double the arrays (up to `capacity`) until `needed` steps per stream fit. Only before the ring wraps."""
        if needed > self.capacity:
            raise RuntimeError(f"replay index {needed - 1} is beyond its capacity of {self.capacity} steps per stream")
        size = max(self.allocated, 1)
        while size < needed:
            size = min(2 * size, self.capacity)
        self._resize(size)

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

    def stored_shapes(self) -> ObsShapes:
        """Shape and dtype of one step of each observation key, as in `ObsSpec.stored_shapes`."""
        return {name: (value.shape[2:], value.dtype) for name, value in self.obs.items()}

    def __getstate__(self) -> dict:
        """Pickle only the filled part of the (possibly huge, mostly unused) arrays; in memory only."""
        if self.directory is not None:
            raise TypeError(
                "A memory-mapped replay is not pickled (it may be larger than memory): write it with "
                "JEPADreamer.save_replay_buffer, which copies it from disk to the file without holding it in memory"
            )
        state = self.__dict__.copy()
        filled = int(self.count.max())
        for name in STEP_ARRAYS:
            state[name] = getattr(self, name)[:, :filled].copy()
        state["obs"] = {k: v[:, :filled].copy() for k, v in self.obs.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("directory", None)  # pickled before memory-mapped replays existed
        # the saved arrays hold the filled part; they grow again as steps are added
        if self.allocated < 2:
            self._grow(2)


def _make_folder(replay: SequenceReplay, directory: str | os.PathLike | None) -> pathlib.Path | None:
    """A fresh folder inside `directory` for the memory-mapped arrays of `replay` (None: in memory), deleted with
    the replay or at exit. A killed process leaves its `replay-*` folder behind: delete it by hand."""
    if directory is None:
        return None
    pathlib.Path(directory).mkdir(parents=True, exist_ok=True)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="replay-", dir=directory))
    weakref.finalize(replay, shutil.rmtree, folder, ignore_errors=True)
    return folder


def _allocate(
    folder: pathlib.Path | None, name: str, shape: tuple[int, ...], dtype: np.dtype, head: Sequence[np.ndarray]
) -> np.ndarray:
    """A zeroed array of `shape` (n_streams, steps, ...) whose stream s starts with the steps `head[s]`: in
    memory, or memory-mapped as `folder/name.npy`, made under a temporary name and renamed once filled (so the
    growth of a mapped array never overwrites the file it copies from)."""
    if folder is None:
        array = np.zeros(shape, dtype)
    else:
        temporary = folder / f".{name}.new.npy"
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=shape)
    for stream, steps in enumerate(head):
        array[stream, : len(steps)] = steps
    if folder is not None:
        os.replace(temporary, folder / f"{name}.npy")  # the mapping follows the file
    return array


REPLAY_DTYPE_KINDS = "biuf"  # the dtypes a replay file may declare: bool, integers, floats (never objects)
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")  # numpy's, by name


def write_replay(replay: SequenceReplay, file: BinaryIO) -> None:
    """Write the filled part of `replay` to a binary file: FILE_MAGIC, the header's length, the header (JSON: the
    counters, the sampling generator's state, the dtype and per-stream shape of each array), then the raw bytes of
    each stream of each array, in the header's order.

    Nothing is pickled, so reading the file runs no code. The arrays are copied to the file straight from memory
    or from the mapped files: saving a replay larger than memory needs no more memory.
    """
    filled = int(replay.count.max())
    arrays = {name: x.view(np.ndarray) for name, x in replay._arrays().items()}
    header = {
        "n_streams": replay.n_streams,
        "capacity": replay.capacity,
        "pos": replay.pos.tolist(),
        "count": replay.count.tolist(),
        "rng": replay.rng.bit_generator.state,
        "obs_keys": list(replay.obs),
        "arrays": [{"name": name, "dtype": x.dtype.str, "shape": [filled, *x.shape[2:]]} for name, x in arrays.items()],
    }
    encoded = json.dumps(header).encode()
    file.write(FILE_MAGIC)
    file.write(struct.pack("<Q", len(encoded)))
    file.write(encoded)
    for x in arrays.values():
        for stream in range(replay.n_streams):
            steps = x[stream, :filled]  # contiguous: the first steps of one stream
            file.write(memoryview(steps.reshape(-1).view(np.uint8)))


class SavedReplay(NamedTuple):
    """A replay file opened by `read_replay`: its arrays are views of the file, not yet in memory."""

    state: dict[str, Any]  # the replay's small attributes (n_streams, capacity, pos, count, rng)
    obs_keys: list[str]
    parts: dict[str, list[np.ndarray]]  # file name of an array (`SequenceReplay._arrays`) -> per stream (steps, ...)

    @property
    def nbytes(self) -> int:
        """Bytes the arrays take, the room the replay needs once loaded."""
        return sum(part.nbytes for parts in self.parts.values() for part in parts)

    def stored_shapes(self) -> ObsShapes:
        parts = list(self.parts.values())
        return {key: (parts[i][0].shape[1:], parts[i][0].dtype) for i, key in enumerate(self.obs_keys)}

    def restore(self, directory: str | os.PathLike | None = None) -> SequenceReplay:
        """The replay, its arrays copied into memory or, with a `directory`, into memory-mapped files there."""
        replay = SequenceReplay.__new__(SequenceReplay)
        replay.__dict__.update(self.state)
        replay.directory = _make_folder(replay, directory)
        parts = list(self.parts.values())
        empty = [np.zeros((replay.n_streams, 0, *p[0].shape[1:]), p[0].dtype) for p in parts]
        replay.obs = dict(zip(self.obs_keys, empty))
        replay._set_arrays(dict(zip(self.parts, empty)))
        replay._resize(max(len(parts[0][0]), 2), heads=self.parts)  # they grow again as steps are added
        return replay


def is_replay_file(path: str | os.PathLike | BinaryIO) -> bool:
    """Whether `path` starts as a file written by `write_replay` (else: a replay pickled by wm-agent 0.1)."""
    if not isinstance(path, (str, os.PathLike)):
        start = path.tell()
        magic = path.read(len(FILE_MAGIC))
        path.seek(start)
        return magic == FILE_MAGIC
    with open(path, "rb") as file:
        return file.read(len(FILE_MAGIC)) == FILE_MAGIC


def read_replay(path: str | os.PathLike | BinaryIO) -> SavedReplay:
    """Open a file written by `write_replay`. From a path, the arrays are read-only memory maps of the file
    (nothing is read into memory yet); from an open file, they are read into memory. A file that is cut short or
    declares anything but plain arrays raises ValueError."""
    file = open(path, "rb") if isinstance(path, (str, os.PathLike)) else path
    try:
        if file.read(len(FILE_MAGIC)) != FILE_MAGIC:
            raise ValueError(f"{path} is not a replay written by JEPADreamer.save_replay_buffer")
        (header_size,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(header_size))
        n_streams, offset = int(header["n_streams"]), file.tell()
        file_size = os.fstat(file.fileno()).st_size if file is not path else None
        parts: dict[str, list[np.ndarray]] = {}
        for array in header["arrays"]:
            dtype, shape = np.dtype(array["dtype"]), tuple(int(n) for n in array["shape"])
            if dtype.kind not in REPLAY_DTYPE_KINDS:
                raise ValueError(f"{path} declares an array of dtype {dtype}: not a replay file")
            nbytes = int(np.prod(shape)) * dtype.itemsize
            if file_size is not None and offset + n_streams * nbytes > file_size:
                raise ValueError(f"{path} is cut short: save the replay again")
            streams = []
            for _ in range(n_streams):
                if file is path or nbytes == 0:
                    raw = file.read(nbytes)
                    if len(raw) != nbytes:
                        raise ValueError(f"{path} is cut short: save the replay again")
                    streams.append(np.frombuffer(raw, dtype).reshape(shape).copy())
                else:
                    streams.append(np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape))
                offset += nbytes
            parts[array["name"]] = streams
        rng_state = header["rng"]
        if rng_state.get("bit_generator") not in BIT_GENERATORS:
            raise ValueError(f"{path} names an unknown random generator {rng_state.get('bit_generator')!r}")
        rng = np.random.Generator(getattr(np.random, rng_state["bit_generator"])())
        rng.bit_generator.state = rng_state
    except (KeyError, TypeError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable replay file ({error!r}): save the replay again") from error
    finally:
        if file is not path:
            file.close()
    state = {
        "n_streams": n_streams,
        "capacity": int(header["capacity"]),
        "pos": np.array(header["pos"], np.int64),
        "count": np.array(header["count"], np.int64),
        "rng": rng,
    }
    return SavedReplay(state, list(header["obs_keys"]), parts)


def step_bytes(obs_shapes: ObsShapes, action_size: int) -> int:
    """Bytes one stored step takes: observations as stored, the float32 action, reward and two flags."""
    obs = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in obs_shapes.values())
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
