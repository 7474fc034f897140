"""What the `wm-agent` command, the comparison harness, the benchmarks and the pretrained loader share.

The algorithm table, the SB3 policy name an observation space needs, the ``key=value`` syntax of keyword
arguments on a command line, the registration of the project's ``wm/`` env ids, and the evaluation protocol's
seed offset. Light on purpose: importing it imports neither torch nor the agent.
"""

from __future__ import annotations

import ast
import importlib
import json
import warnings
from typing import Any

from gymnasium import spaces

OUR_ALGO = "jepa_dreamer"
SB3_ALGO_NAMES = ("ppo", "a2c", "dqn", "sac", "td3")
ALGO_NAMES = (OUR_ALGO, *SB3_ALGO_NAMES)
"""Every algorithm name the command and the harness accept: ours, then SB3's."""

EVAL_SEED_OFFSET = 1000
"""An agent trained on seed k is evaluated on an env seeded k + 1000, apart from every training env."""


def algo_class(name: str) -> type:
    """The class of an algorithm of :data:`ALGO_NAMES` (``"ppo"`` -> ``stable_baselines3.PPO``), imported lazily.

    :param name: an algorithm name, without a ``@variant``
    """
    if name == OUR_ALGO:
        from wm_agent import JEPADreamer

        return JEPADreamer
    if name not in SB3_ALGO_NAMES:
        raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(ALGO_NAMES)}")
    import stable_baselines3

    return getattr(stable_baselines3, name.upper())


def episode_limit(env: Any) -> int | None:
    """The time limit of a VecEnv's episodes (its first env's), or None: no env, no `TimeLimit`, or a VecEnv that
    cannot say.

    Read from the `TimeLimit` wrapper (``gym.make`` adds one wherever the spec has ``max_episode_steps``, and a user's
    own wrapping has one): a plain int, which a subprocess env sends back where the whole spec (with its kwargs) may not
    pickle.
    """
    if env is None:
        return None
    try:
        if env.has_attr("_max_episode_steps"):
            return int(env.get_attr("_max_episode_steps", indices=[0])[0])
    except (AttributeError, NotImplementedError):  # a VecEnv of another library without these calls
        pass
    return None


def policy_for(observation_space: spaces.Space) -> str:
    """The SB3 policy name an observation space needs: ``MultiInputPolicy``, ``CnnPolicy`` or ``MlpPolicy``.

    An image is what SB3's ``CnnPolicy`` takes, whatever its channel count (a stack of 4 RGB frames has 12).

    :param observation_space: the (vectorized) env's observation space
    """
    from stable_baselines3.common.preprocessing import is_image_space

    if isinstance(observation_space, spaces.Dict):
        return "MultiInputPolicy"
    return "CnnPolicy" if is_image_space(observation_space, check_channels=False) else "MlpPolicy"


_KWARGS_SYNTAX = "k=v pairs (KEY=VALUE[,KEY=VALUE...], values as Python literals) or a JSON object"


def _split_pairs(text: str) -> list[str]:
    """Split at the commas that start a new ``key=``: outside brackets and quotes, and followed by a name and ``=``
    (so ``sizes=1,2`` stays one pair, whose value is the tuple ``(1, 2)``)."""
    pairs, start, depth, quote = [], 0, 0, ""
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote and text[i - 1] != "\\" else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            key, sep, _ = text[i + 1 :].partition("=")
            if sep and key.strip().isidentifier():
                pairs.append(text[start:i])
                start = i + 1
    pairs.append(text[start:])
    return pairs


def parse_kwargs(items: str | list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Keyword arguments from a command line: ``k=v`` pairs, as separate items or joined by commas, or a JSON object.

    A value is a Python literal (``3``, ``1e-3``, ``True``, ``None``, ``[64, 64]``, ``{'net_arch': [64]}``); anything
    else (``small``, ``CartPole-v1``, ``/tmp/x``) is a string. ``["lr=1e-3", "preset=tiny"]``,
    ``"lr=1e-3,preset=tiny"`` and ``'{"lr": 0.001, "preset": "tiny"}'`` all give ``{"lr": 0.001, "preset": "tiny"}``.

    :param items: one string, or one string per pair (as ``argparse`` collects ``nargs="*"``)
    :return: the keyword arguments; a later pair wins over an earlier one with the same key
    :raises ValueError: an item that is neither ``k=v`` pairs nor a JSON object
    """
    kwargs: dict[str, Any] = {}
    for item in [items] if isinstance(items, str) else items:
        item = item.strip()
        if item.startswith("{"):
            try:
                parsed = json.loads(item)
            except json.JSONDecodeError as e:
                raise ValueError(f"bad JSON in kwargs {item!r}: {e}") from None
            if not isinstance(parsed, dict):
                raise ValueError(f"kwargs must be {_KWARGS_SYNTAX}, got {item!r}")
            kwargs.update(parsed)
            continue
        for pair in _split_pairs(item) if item else []:
            key, sep, value = pair.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key.isidentifier():
                raise ValueError(f"kwargs must be {_KWARGS_SYNTAX}, got {item!r}")
            try:
                kwargs[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                kwargs[key] = value
    return kwargs


# Env packages whose Gymnasium ids stopped registering by themselves (Gymnasium 1.x loads no plugin entry points):
# id prefix -> (module to import, its registering function, or None when importing it registers)
PACKAGE_REGISTRATION: dict[str, tuple[str, str | None]] = {
    "MinAtar/": ("minatar.gym", "register_envs"),
    "dm_control/": ("shimmy", None),
}


def register_project_envs(*env_ids: str) -> None:
    """Register the project's ``wm/...`` Gymnasium ids by importing its ``envs`` package, when it is installed,
    and what each of ``env_ids`` needs from an installed package that no longer registers its ids by itself
    (:data:`PACKAGE_REGISTRATION`: ``MinAtar/...``, shimmy's ``dm_control/...``), as that package's users must.

    Without the package (wm_agent alone) this does nothing. When the package is there but fails to import (a
    missing dependency inside it), that is warned about, naming the error, and the ``wm/`` ids stay unregistered:
    envs outside the project still work. Any other error inside ``envs`` propagates. A package of ``env_ids`` that
    is not installed is left alone: ``gym.make`` then names the missing namespace.
    """
    try:
        import envs  # noqa: F401
    except ImportError as error:
        if not (isinstance(error, ModuleNotFoundError) and error.name == "envs"):
            warnings.warn(f"the project's wm/ envs are not registered: `import envs` failed: {error!r}", stacklevel=2)
    from gymnasium.envs.registration import registry

    for env_id in env_ids:
        for prefix, (module_name, function) in PACKAGE_REGISTRATION.items():
            if env_id.startswith(prefix) and env_id not in registry:
                try:
                    module = importlib.import_module(module_name)
                except ModuleNotFoundError:
                    continue
                if function is not None:
                    getattr(module, function)()
