"""The grid of a comparison: what to run (envs x algorithm labels x seeds) and the runs it expands into."""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from wm_agent.common import ALGO_NAMES, OUR_ALGO, parse_kwargs, register_project_envs

# Action spaces each SB3 algorithm supports; our agent takes any standard space.
_ON_POLICY_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ACTION_SPACES: dict[str, tuple[type[spaces.Space], ...]] = {
    "ppo": _ON_POLICY_SPACES,
    "a2c": _ON_POLICY_SPACES,
    "dqn": (spaces.Discrete,),
    "sac": (spaces.Box,),
    "td3": (spaces.Box,),
}

# Success thresholds for envs whose spec sets no reward_threshold (a spec's value wins; --threshold beats both).
# Pendulum-v1: -200 is the usual "solved" line (zoo SAC/TD3 reach about -150 in 20k steps).
# The project's pixel, no-velocity and distractor variants keep their base env's line (same dynamics, same
# episode length); other envs without a threshold get none, and steps to threshold is then not reported.
THRESHOLDS: dict[str, float] = {
    "Pendulum-v1": -200.0,
    "wm/PixelCartPole-v0": 475.0,
    "wm/CartPoleNoVel-v0": 475.0,
    "wm/DistractorCartPole-v0": 475.0,
    "wm/PixelPendulum-v0": -200.0,
    "wm/PendulumNoVel-v0": -200.0,
}


def env_slug(env_id: str) -> str:
    """A file-name-safe form of an env id (``wm/PixelCartPole-v0`` -> ``wm_PixelCartPole-v0``)."""
    return env_id.replace("/", "_").replace(":", "_")


def base_algo(label: str) -> str:
    """The algorithm of a label, without its variant (``jepa_dreamer@r256`` -> ``jepa_dreamer``)."""
    return label.split("@")[0]


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One training run: an algorithm label (``ppo``, ``jepa_dreamer@r256``) on an env with one seed.

    :param env_id: the Gymnasium env id
    :param label: the algorithm, optionally with a variant after ``@``
    :param seed: seed of the training env and the algorithm; the eval env gets seed + EVAL_SEED_OFFSET
    :param steps: env steps to train for
    :param eval_every: env steps between evaluations (plus one at step 0 and one at the end)
    :param eval_episodes: deterministic episodes per evaluation
    :param algo_kwargs: constructor overrides (and the harness keys n_envs, normalize, frame_stack)
    :param env_kwargs: ``gym.make`` keyword arguments of the training and eval envs
    :param threads: torch threads of the run
    :param device: torch device of the algorithm
    :param save_model: keep the trained model beside the result; not part of the run's identity
    :param checkpoint_every: env steps between checkpoints that a stopped run resumes from (0: none); not part of
        the run's identity
    :param eval_stochastic: evaluate with actions sampled from the policy instead of its deterministic mode
    """

    env_id: str
    label: str
    seed: int
    steps: int
    eval_every: int
    eval_episodes: int = 10
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    device: str = "auto"
    save_model: bool = False
    checkpoint_every: int = 0
    eval_stochastic: bool = False

    @property
    def algo(self) -> str:
        """The algorithm's name, without the variant."""
        return base_algo(self.label)

    @property
    def key(self) -> str:
        """``env/label/seedK``: how progress and errors name the run."""
        return f"{self.env_id}/{self.label}/seed{self.seed}"

    def path(self, out_dir: str | Path) -> Path:
        """Where the finished run is stored."""
        return Path(out_dir) / "runs" / env_slug(self.env_id) / self.label / f"seed{self.seed}.json"

    def identity(self) -> dict[str, Any]:
        """The spec as stored in its result file (JSON round-tripped), to tell a finished run from a stale one."""
        identity = json.loads(json.dumps(dataclasses.asdict(self), default=str))
        identity.pop("save_model")
        identity.pop("checkpoint_every")
        if not identity["eval_stochastic"]:
            del identity["eval_stochastic"]  # as runs stored before the option existed, which stay finished
        if not identity["env_kwargs"]:
            del identity["env_kwargs"]  # as runs stored before the field existed, which stay finished
        return identity

    def model_path(self, out_dir: str | Path) -> Path:
        """Where the trained model is saved with ``--save-models``."""
        return self.path(out_dir).with_suffix(".zip")


@dataclass(frozen=True, kw_only=True)
class ComparisonSpec:
    """A comparison grid: every algorithm label on every env, with seeds first_seed..first_seed+seeds-1, under one
    protocol.

    :param env_ids: Gymnasium env ids
    :param algos: algorithm labels, from ``ALGO_NAMES``, each optionally with a ``@variant``
    :param steps: env steps per run
    :param seeds: K: seeds first_seed..first_seed+K-1
    :param first_seed: the first seed (0): a later seed run on its own, or on another machine, lands in the same
        folder as the others, e.g. ``seeds=1, first_seed=2`` adds seed 2 to a grid of seeds 0 and 1
    :param eval_every: env steps between evaluations
    :param eval_episodes: deterministic episodes per evaluation
    :param algo_kwargs: constructor overrides per label (see :func:`parse_algo_kwargs`)
    :param env_kwargs: ``gym.make`` keyword arguments per env id (see :func:`parse_env_kwargs`)
    :param steps_by_label: a budget of its own for some labels; a base name's entry reaches its variants, a
        variant's own entry wins
    :param thresholds: success thresholds per env, beating the spec's and :data:`THRESHOLDS`
    :param threads: torch threads per run
    :param device: torch device for every algorithm
    :param save_models: keep each trained model beside its result
    :param checkpoint_every: env steps between checkpoints of each run in progress (0: none): a run stopped midway
        resumes from its last checkpoint when the comparison is started again
    :param eval_stochastic: evaluate with actions sampled from each policy instead of its deterministic mode (an
        untrained deterministic policy can play an Atari game for 27,000 steps without pressing FIRE)
    """

    env_ids: Sequence[str]
    algos: Sequence[str]
    steps: int = 50_000
    seeds: int = 3
    first_seed: int = 0
    eval_every: int = 5_000
    eval_episodes: int = 10
    algo_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    env_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps_by_label: dict[str, int] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    threads: int = 1
    device: str = "auto"
    save_models: bool = False
    checkpoint_every: int = 0
    eval_stochastic: bool = False

    @property
    def labels(self) -> list[str]:
        """The algorithm labels, each once, in the order given."""
        return list(dict.fromkeys(self.algos))

    def budget(self, label: str) -> int:
        """The env steps of a label's runs."""
        return self.steps_by_label.get(label, self.steps_by_label.get(base_algo(label), self.steps))


# ----------------------------------------------------------------------------------------------------------------
# Command-line values


def _names_label(name: str, labels: Sequence[str]) -> bool:
    """Whether ``name`` is one of ``labels`` or the base algorithm of one."""
    return name in labels or name in {base_algo(label) for label in labels}


def parse_algo_kwargs(items: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["jepa_dreamer:train_ratio=256", ...]`` -> kwargs per label; a base name's kwargs reach its variants."""
    per_key: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in items:
        key, sep, body = item.partition(":")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--algo-kwargs expects ALGO:k=v[,k=v] or ALGO:{{json}}, got {item!r}")
        if not _names_label(key, labels):
            raise ValueError(f"--algo-kwargs names {key!r}, which is not in --algos {','.join(labels)}")
        per_key[key].update(parse_kwargs(body))
    return {label: {**per_key.get(base_algo(label), {}), **per_key.get(label, {})} for label in labels}


def parse_env_kwargs(items: Sequence[str], env_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["wm/DelayedReward-v0:delay=50", ...]`` -> ``gym.make`` kwargs per env id of ``env_ids``.

    The id ends at the last ``:`` before the first ``=`` or ``{``, so ids with a namespace work.
    """
    kwargs: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in items:
        head_end = min((i for i in (item.find("="), item.find("{")) if i >= 0), default=len(item))
        env_id, sep, body = item[:head_end].rpartition(":")
        env_id = env_id.strip()
        body += item[head_end:]
        if not sep or not env_id:
            raise ValueError(f"--env-kwargs expects ENV:k=v[,k=v] or ENV:{{json}}, got {item!r}")
        if env_id not in env_ids:
            raise ValueError(f"--env-kwargs names {env_id!r}, which is not in --env {','.join(env_ids)}")
        kwargs[env_id].update(parse_kwargs(body))
    return dict(kwargs)


def parse_algo_steps(items: Sequence[str]) -> dict[str, int]:
    """``["jepa_dreamer=10000", ...]`` -> ``{"jepa_dreamer": 10000}``."""
    steps_by_label: dict[str, int] = {}
    for item in items:
        label, _, value = item.partition("=")
        label = label.strip()
        try:
            steps = int(value.replace("_", ""))
        except ValueError:
            raise ValueError(f"--algo-steps expects ALGO=N with an integer N, got {item!r}") from None
        if label in steps_by_label and steps_by_label[label] != steps:
            raise ValueError(f"--algo-steps gives {label!r} two budgets ({steps_by_label[label]} and {steps})")
        steps_by_label[label] = steps
    return steps_by_label


def parse_thresholds(items: Sequence[str]) -> dict[str, float]:
    """``["Pendulum-v1=-150"]`` -> ``{"Pendulum-v1": -150.0}``."""
    thresholds = {}
    for item in items:
        env_id, sep, value = item.rpartition("=")
        try:
            thresholds[env_id] = float(value)
        except ValueError:
            sep = ""
        if not sep or not env_id:
            raise ValueError(f"--threshold expects ENV=VALUE, got {item!r}")
    return thresholds


# ----------------------------------------------------------------------------------------------------------------
# Planning


def check_env_id(env_id: str) -> None:
    """Raise a clear ValueError if ``env_id`` is not registered with Gymnasium."""
    try:
        gym.spec(env_id)
    except gym.error.Error:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown env {env_id!r}{hint} (project envs are registered by `import envs`)") from None


def threshold_for(env_id: str, overrides: dict[str, float] | None = None) -> float | None:
    """The return an env counts as solved at: ``overrides``, else the spec's reward_threshold, else THRESHOLDS."""
    if overrides and env_id in overrides:
        return overrides[env_id]
    try:
        spec_threshold = gym.spec(env_id).reward_threshold
    except gym.error.Error as e:
        raise ValueError(f"env {env_id!r} is not registered here ({e}); import the package that registers it") from None
    return float(spec_threshold) if spec_threshold is not None else THRESHOLDS.get(env_id)


def _check(grid: ComparisonSpec) -> None:
    """Raise a ValueError naming the flag for anything in ``grid`` that cannot run."""
    if not grid.env_ids:
        raise ValueError("no env given (--env ID[,ID...])")
    if not grid.algos:
        raise ValueError("no algorithm given (--algos)")
    for label in grid.labels:
        if base_algo(label) not in ALGO_NAMES:
            raise ValueError(f"unknown algorithm {label!r}; choose from {', '.join(ALGO_NAMES)}")
    for label in grid.steps_by_label:
        if not _names_label(label, grid.labels):
            raise ValueError(f"--algo-steps names {label!r}, which is not in --algos ({', '.join(grid.labels)})")
    budgets = [("--steps", grid.steps), *((f"--algo-steps {k}", v) for k, v in grid.steps_by_label.items())]
    for name, value in (*budgets, ("--seeds", grid.seeds), ("--eval-every", grid.eval_every)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if grid.eval_episodes < 1:
        raise ValueError(f"--eval-episodes must be at least 1, got {grid.eval_episodes}")
    if grid.first_seed < 0:
        raise ValueError(f"--first-seed must be at least 0, got {grid.first_seed}")
    if grid.checkpoint_every < 0:
        raise ValueError(
            f"--checkpoint-every must be 0 (no checkpoints) or more env steps, got {grid.checkpoint_every}"
        )
    if any(base_algo(label) == OUR_ALGO for label in grid.labels):
        try:
            from wm_agent import JEPADreamer  # noqa: F401
        except ImportError as e:
            raise ValueError(f"{OUR_ALGO} needs `from wm_agent import JEPADreamer`, which fails: {e}") from None
    register_project_envs(*grid.env_ids)
    for env_id in grid.env_ids:
        check_env_id(env_id)


def plan_runs(grid: ComparisonSpec) -> tuple[list[RunSpec], list[tuple[str, str, str]]]:
    """Validate the grid and list its runs, seed by seed (every env and algorithm on seed 0 first, then seed 1...),
    so that a grid stopped part-way has compared its algorithms on the same seeds.

    :return: the runs, and the (env, label, reason) pairs left out because the algorithm lacks the action space
    :raises ValueError: a grid that cannot run, or one where no pair is left
    """
    _check(grid)
    specs, incompatible = [], []
    for env_id in grid.env_ids:
        try:
            env = gym.make(env_id, **grid.env_kwargs.get(env_id, {}))
        except TypeError as e:
            raise ValueError(f"--env-kwargs for {env_id!r} do not fit its constructor: {e}") from None
        action_space = env.action_space
        env.close()
        for label in grid.labels:
            allowed = ACTION_SPACES.get(base_algo(label))
            if allowed is not None and not isinstance(action_space, allowed):
                incompatible.append((env_id, label, f"{base_algo(label)} does not support {action_space}"))
                continue
            specs += [
                RunSpec(
                    env_id=env_id,
                    label=label,
                    seed=seed,
                    steps=grid.budget(label),
                    eval_every=grid.eval_every,
                    eval_episodes=grid.eval_episodes,
                    algo_kwargs=grid.algo_kwargs.get(label, {}),
                    env_kwargs=grid.env_kwargs.get(env_id, {}),
                    threads=grid.threads,
                    device=grid.device,
                    save_model=grid.save_models,
                    checkpoint_every=grid.checkpoint_every,
                    eval_stochastic=grid.eval_stochastic,
                )
                for seed in range(grid.first_seed, grid.first_seed + grid.seeds)
            ]
    specs.sort(key=lambda spec: spec.seed)  # stable: env and algorithm order kept within a seed
    if not specs:
        reasons = "; ".join(f"{e}/{a}: {why}" for e, a, why in incompatible)
        raise ValueError(f"no algorithm in --algos can run on the given envs ({reasons})")
    return specs, incompatible
