"""The agent's file format: JSON for settings, spaces and counters, torch tensors loaded with ``weights_only``.

Loading a checkpoint unpickles nothing, so an agent file from a stranger cannot run code. The zip keeps SB3's
layout, so SB3 tools that list or read it still work:

- ``data``: JSON with ``format_version``, ``wm_agent_version``, the config, the spaces and the run's counters
- ``policy.pth`` and ``policy.{name}_optimizer.pth``: state dicts (tensors and numbers only)
- ``pytorch_variables.pth``, ``_stable_baselines3_version``, ``system_info.txt``: as SB3 writes them

Files saved by wm-agent 0.1 (and by SB3) hold cloudpickled entries in ``data``; those load only with an
explicit ``allow_pickle=True``.
"""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from wm_agent.version import __version__

FORMAT_VERSION = 1  # raise it when a saved file could not be read by the previous loader
PICKLED_KEY = ":serialized:"  # how SB3's data_to_json marks a cloudpickled entry
REQUIRED_ENTRIES = ("policy_class", "observation_space", "action_space")  # besides the version and the config


# ------------------------------------------------------------------ spaces as JSON


def _bound(values: np.ndarray) -> float | int | list:
    """A Box bound as JSON: one number when every element is the same, else the nested list."""
    flat = values.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return flat[0].item()
    return values.tolist()


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """A Gymnasium space as plain JSON values; `space_from_json` rebuilds an equal space."""
    if isinstance(space, spaces.Box):
        low, high = _bound(space.low), _bound(space.high)
        return {"type": "Box", "low": low, "high": high, "shape": list(space.shape), "dtype": space.dtype.name}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": space.nvec.tolist(),
            "start": space.start.tolist(),
            "dtype": space.dtype.name,
        }
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_json(sub) for key, sub in space.spaces.items()}}
    raise TypeError(f"Cannot store the space {space} in a checkpoint: JEPADreamer supports Box, Discrete, "
                    "MultiDiscrete, MultiBinary and Dict spaces")  # fmt: skip


def space_from_json(description: Mapping[str, Any]) -> spaces.Space:
    """The space that `space_to_json` described."""
    kind = description.get("type")
    if kind == "Box":
        dtype = np.dtype(description["dtype"])
        shape = tuple(description["shape"])
        low, high = (np.broadcast_to(np.asarray(description[k], dtype), shape) for k in ("low", "high"))
        return spaces.Box(low=low.copy(), high=high.copy(), shape=shape, dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(description["n"], start=description["start"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(description["nvec"], dtype=description["dtype"], start=description["start"])
    if kind == "MultiBinary":
        return spaces.MultiBinary(description["n"])
    if kind == "Dict":
        return spaces.Dict({key: space_from_json(sub) for key, sub in description["spaces"].items()})
    raise ValueError(f"Unknown space type {kind!r} in the checkpoint")


# ------------------------------------------------------------------ reading


def resolve_path(path: str | pathlib.Path | io.BufferedIOBase) -> pathlib.Path | io.BufferedIOBase:
    """`path`, or `path`.zip when only that exists (SB3's rule); a missing file raises FileNotFoundError."""
    if not isinstance(path, (str, pathlib.Path)):
        return path
    path = pathlib.Path(path)
    if not path.exists() and path.with_suffix(".zip").exists():
        path = path.with_suffix(".zip")
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}: check the path (save() writes PATH.zip)")
    return path


def pickled_entries(data: Mapping[str, Any]) -> list[str]:
    """The keys of `data` that SB3 stored as cloudpickle (loading them runs whatever code they hold)."""
    return [key for key, value in data.items() if isinstance(value, dict) and PICKLED_KEY in value]


def read_data(path: pathlib.Path | io.BufferedIOBase) -> dict[str, Any]:
    """The JSON `data` entry of a JEPADreamer checkpoint, checked: a clear ValueError if the file is not one,
    or comes from an incompatible version. Unpickles nothing."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # the first entry whose bytes fail their checksum, if any
            if damaged is not None:
                raise zipfile.BadZipFile(f"its entry {damaged!r} fails its checksum")
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ValueError(
            f"{path} is not a valid checkpoint: the zip file is corrupted or truncated ({error}); save it again, or "
            "download it again"
        ) from error
    except (KeyError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not a valid SB3 checkpoint: its 'data' entry is missing or unreadable; save it again"
        ) from error
    finally:
        if hasattr(path, "seek"):
            path.seek(0)
    if not isinstance(data, dict) or "wm_agent_version" not in data or "config" not in data:
        raise ValueError(
            f"{path} was not saved by JEPADreamer (no wm_agent version or config in it): load it with the class "
            "that saved it, e.g. stable_baselines3.PPO.load"
        )
    missing = [key for key in REQUIRED_ENTRIES if key not in data]
    if missing:
        raise ValueError(
            f"{path} is not a valid checkpoint: its 'data' entry lacks {missing}; it was edited or damaged: save it "
            "again, or download it again"
        )
    saved, ours = _version(data["wm_agent_version"]), _version(__version__)
    if saved[0] != ours[0] or saved > ours or data.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was saved by wm-agent {data['wm_agent_version']}, which is incompatible with this version "
            f"({__version__}); install wm-agent=={data['wm_agent_version']} to load it"
        )
    return data


def _version(text: str) -> tuple[int, int]:
    """(major, minor) of a version string; an unreadable one counts as incompatible."""
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return (-1, -1)


def refuse_pickled(path: Any, data: Mapping[str, Any], provided: Mapping[str, Any] | None) -> None:
    """Raise when loading `data` would unpickle an entry the caller did not provide in `custom_objects`."""
    pickled = [key for key in pickled_entries(data) if key not in (provided or {})]
    if pickled:
        raise ValueError(
            f"{path} holds pickled Python objects ({', '.join(pickled)}): unpickling them can run any code. It was "
            "saved by wm-agent 0.1. If you trust where it comes from, load it with "
            "allow_pickle=True, then save it again: the new file is in the safe format"
        )


def tensor_file_error(path: Any, error: pickle.UnpicklingError) -> ValueError:
    """The error for a tensor entry that `torch.load(weights_only=True)` refused. A refused global (a function or
    class to import) is certainly a file that would run code; other refusals cannot tell damaged bytes from a
    crafted file, so the message names both."""
    if "global" in str(error).lower():
        return ValueError(
            f"{path} holds a tensor file with Python objects other than tensors, which would run code when loaded; "
            f"it was not loaded ({str(error).splitlines()[0]}). Load only files from sources you trust"
        )
    return ValueError(
        f"{path} holds a tensor file that cannot be read safely: it is damaged, or holds Python objects other than "
        "tensors; it was not loaded. If you saved it yourself, save it again; load only files from sources you trust"
    )


def weights_mismatch_error(path: Any, overrides: Mapping[str, Any], error: RuntimeError) -> ValueError:
    """The error for saved weights that do not fit the network the config builds (torch's `load_state_dict`)."""
    detail = " ".join(line.strip() for line in str(error).splitlines()[1:3])[:300]
    if overrides:
        return ValueError(
            f"The weights in {path} do not fit the network its saved config builds with your settings "
            f"{sorted(overrides)}: a setting that sizes the network (hidden, deter, stoch, classes, embed, mlp_layers, "
            "cnn_depth, representation, intrinsic_scale on or off, ...) cannot change on load; train a new agent "
            f"with it, or load without it. If none of yours does, the file was edited or damaged ({detail})"
        )
    return ValueError(
        f"The weights in {path} do not fit the network its saved config builds: the file was edited or damaged; "
        f"save it again, or download it again ({detail})"
    )


# ------------------------------------------------------------------ writing


def check_json(name: str, value: Any) -> Any:
    """`value` if it is plain JSON (numbers, strings, lists, dicts), else a TypeError naming `name`."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"Cannot save {name}={value!r}: checkpoints hold only JSON values and tensors, never pickled objects "
            f"({error}). Exclude it with save(..., exclude=[{name!r}]) or store it as a JSON value"
        ) from error
    return value
