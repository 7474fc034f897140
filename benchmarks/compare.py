"""Compare agents side by side on Gymnasium envs, under one evaluation protocol.

    python -m benchmarks.compare --env CartPole-v1,Pendulum-v1 --algos jepa_dreamer,ppo,dqn,sac,a2c \\
        --steps 50000 --seeds 3 --eval-every 5000 --jobs 2

A run is one (env, algo, seed). Each run trains in its own process; every ``eval_every`` env steps it stops the
training clock and plays ``eval_episodes`` deterministic episodes on a separate eval env. A finished run is stored
as ``<out>/runs/<env>/<algo>/seed<k>.json`` and is not redone. From all runs of the grid the harness writes
``evals.csv`` / ``evals.json`` (every evaluation point), ``summary.md`` / ``summary.json`` and ``curves_<env>.png``.

SB3 baselines use rl-baselines3-zoo's tuned hyperparameters where the zoo has them (``zoo_hyperparams.py``),
SB3 defaults otherwise. An algorithm label may carry a variant, ``jepa_dreamer@r256``, so that one algorithm can be
compared under several settings (``--algo-kwargs jepa_dreamer@r256:train_ratio=256``).
"""

from __future__ import annotations

import argparse
import ast
import copy
import csv
import difflib
import json
import math
import os
import platform
import resource
import sys
import time
import traceback
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (python benchmarks/compare.py): make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecNormalize

from benchmarks.zoo_hyperparams import HARNESS_KEYS, ZOO_SOURCE, has_zoo_hyperparams, zoo_hyperparams

OUR_ALGO = "jepa_dreamer"
SB3_ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC, "td3": TD3}
ALGO_NAMES = (OUR_ALGO, *SB3_ALGOS)
DEFAULT_ALGOS = "jepa_dreamer,ppo,dqn,sac,a2c"
OFF_POLICY = ("dqn", "sac", "td3")

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

EVAL_SEED_OFFSET = 1000  # the eval env of seed k is seeded with k + 1000, apart from every training env


@dataclass
class RunSpec:
    """One training run: an algorithm label (``ppo``, ``jepa_dreamer@r256``) on an env with one seed."""

    env_id: str
    label: str
    seed: int
    steps: int
    eval_every: int
    eval_episodes: int = 10
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    device: str = "auto"
    save_model: bool = False  # keep the trained model beside the result; not part of the run's identity

    @property
    def algo(self) -> str:
        """The algorithm's name, without the variant."""
        return self.label.split("@")[0]

    def path(self, out_dir: Path) -> Path:
        """Where the finished run is stored."""
        return Path(out_dir) / "runs" / env_slug(self.env_id) / self.label / f"seed{self.seed}.json"

    def identity(self) -> dict[str, Any]:
        """The spec as stored in its result file (JSON round-tripped), to tell a finished run from a stale one."""
        identity = json.loads(json.dumps(asdict(self), default=str))
        identity.pop("save_model")
        return identity

    def model_path(self, out_dir: Path) -> Path:
        """Where the trained model is saved with ``--save-models``."""
        return self.path(out_dir).with_suffix(".zip")


@dataclass
class Report:
    """What one call of :func:`run_comparison` did and wrote."""

    out_dir: Path
    ran: list[RunSpec] = field(default_factory=list)
    skipped: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    incompatible: list[tuple[str, str, str]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def env_slug(env_id: str) -> str:
    """A file-name-safe form of an env id (``wm/PixelCartPole-v0`` -> ``wm_PixelCartPole-v0``)."""
    return env_id.replace("/", "_").replace(":", "_")


def register_project_envs() -> None:
    """Import the project's ``envs`` package, which registers ids like ``wm/PixelCartPole-v0``, if it exists."""
    try:
        import envs  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "envs":
            warnings.warn(f"`import envs` failed, project envs are not registered: {e}", stacklevel=2)


# ----------------------------------------------------------------------------------------------------------------
# Arguments


def parse_kwargs(text: str) -> dict[str, Any]:
    """Parse ``{"k": v}`` (JSON) or ``k=v,k2=[1,2],k3=name`` (Python literals; a bare name is a string)."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            kwargs = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"bad JSON in algo kwargs {text!r}: {e}") from None
        if not isinstance(kwargs, dict):
            raise ValueError(f"algo kwargs must be a JSON object, got {text!r}")
        return kwargs
    try:
        call = ast.parse(f"_({text})", mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot parse algo kwargs {text!r}; use k=v,k2=v2 or a JSON object") from None
    if not isinstance(call, ast.Call) or call.args or any(kw.arg is None for kw in call.keywords):
        raise ValueError(f"algo kwargs must be k=v pairs, got {text!r}")
    kwargs = {}
    for kw in call.keywords:
        if isinstance(kw.value, ast.Name):  # preset=small
            kwargs[kw.arg] = kw.value.id
            continue
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise ValueError(f"value of {kw.arg!r} in {text!r} is not a literal") from None
    return kwargs


def parse_algo_kwargs(items: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["jepa_dreamer:train_ratio=256", ...]`` -> kwargs per label; a base name's kwargs reach its variants."""
    per_key: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in items:
        key, sep, body = item.partition(":")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--algo-kwargs expects ALGO:k=v[,k=v] or ALGO:{{json}}, got {item!r}")
        if key not in labels and key not in {label.split("@")[0] for label in labels}:
            raise ValueError(f"--algo-kwargs names {key!r}, which is not in --algos {','.join(labels)}")
        per_key[key].update(parse_kwargs(body))
    return {label: {**per_key.get(label.split("@")[0], {}), **per_key.get(label, {})} for label in labels}


def parse_algo_steps(items: Sequence[str]) -> dict[str, int]:
    """``["jepa_dreamer=10000", ...]`` -> ``{"jepa_dreamer": 10000}``."""
    out = {}
    for item in items:
        label, _, value = item.partition("=")
        try:
            steps = int(value.replace("_", ""))
        except ValueError:
            raise ValueError(f"--algo-steps expects ALGO=N with an integer N, got {item!r}") from None
        if label.strip() in out and out[label.strip()] != steps:
            raise ValueError(f"--algo-steps gives {label.strip()!r} two budgets ({out[label.strip()]} and {steps})")
        out[label.strip()] = steps
    return out


def parse_thresholds(items: Sequence[str]) -> dict[str, float]:
    """``["Pendulum-v1=-150"]`` -> ``{"Pendulum-v1": -150.0}``."""
    out = {}
    for item in items:
        env_id, sep, value = item.rpartition("=")
        try:
            out[env_id] = float(value)
        except ValueError:
            sep = ""
        if not sep or not env_id:
            raise ValueError(f"--threshold expects ENV=VALUE, got {item!r}")
    return out


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


def plan_runs(
    env_ids: Sequence[str],
    labels: Sequence[str],
    seeds: int,
    steps: int,
    eval_every: int,
    eval_episodes: int = 10,
    algo_kwargs: dict[str, dict[str, Any]] | None = None,
    threads: int = 1,
    device: str = "auto",
    steps_by_label: dict[str, int] | None = None,
    save_models: bool = False,
) -> tuple[list[RunSpec], list[tuple[str, str, str]]]:
    """Validate the grid and list its runs; (env, label) pairs whose action space the algorithm lacks are skipped.

    ``steps_by_label`` gives some labels their own budget (``{"jepa_dreamer": 10_000}``; a base name also reaches
    its variants, a variant's own entry wins); the rest get ``steps``.
    """
    steps_by_label = steps_by_label or {}
    if not env_ids:
        raise ValueError("no env given (--env ID[,ID...])")
    if not labels:
        raise ValueError("no algorithm given (--algos)")
    for label in labels:
        if label.split("@")[0] not in ALGO_NAMES:
            raise ValueError(f"unknown algorithm {label!r}; choose from {', '.join(ALGO_NAMES)}")
    for label in steps_by_label:
        if label not in labels and label not in {name.split("@")[0] for name in labels}:
            raise ValueError(f"--algo-steps names {label!r}, which is not in --algos ({', '.join(labels)})")
    budgets = [("--steps", steps), *((f"--algo-steps {k}", v) for k, v in steps_by_label.items())]
    for name, value in (*budgets, ("--seeds", seeds), ("--eval-every", eval_every)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if eval_episodes < 1:
        raise ValueError(f"--eval-episodes must be at least 1, got {eval_episodes}")
    if any(label.split("@")[0] == OUR_ALGO for label in labels):
        try:
            from wm_agent import JEPADreamer  # noqa: F401
        except ImportError as e:
            raise ValueError(f"{OUR_ALGO} needs `from wm_agent import JEPADreamer`, which fails: {e}") from None
    register_project_envs()
    for env_id in env_ids:
        check_env_id(env_id)
    specs, incompatible = [], []
    for env_id in env_ids:
        env = gym.make(env_id)
        action_space = env.action_space
        env.close()
        for label in labels:
            allowed = ACTION_SPACES.get(label.split("@")[0])
            if allowed is not None and not isinstance(action_space, allowed):
                incompatible.append((env_id, label, f"{label.split('@')[0]} does not support {action_space}"))
                continue
            kwargs = (algo_kwargs or {}).get(label, {})
            budget = steps_by_label.get(label, steps_by_label.get(label.split("@")[0], steps))
            for seed in range(seeds):
                spec = RunSpec(env_id, label, seed, budget, eval_every, eval_episodes, kwargs, threads, device)
                spec.save_model = save_models
                specs.append(spec)
    if not specs:
        reasons = "; ".join(f"{e}/{a}: {why}" for e, a, why in incompatible)
        raise ValueError(f"no algorithm in --algos can run on the given envs ({reasons})")
    return specs, incompatible


# ----------------------------------------------------------------------------------------------------------------
# One run


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def policy_for(observation_space: spaces.Space) -> str:
    """The SB3 policy name an observation space needs."""
    if isinstance(observation_space, spaces.Dict):
        return "MultiInputPolicy"
    return "CnnPolicy" if is_image_space(observation_space) else "MlpPolicy"


def _action_noise(noise_type: str | None, noise_std: float, action_space: spaces.Space) -> Any:
    if noise_type is None:
        return None
    n = action_space.shape[-1]
    if noise_type == "normal":
        return NormalActionNoise(np.zeros(n), noise_std * np.ones(n))
    if noise_type == "ornstein-uhlenbeck":
        return OrnsteinUhlenbeckActionNoise(np.zeros(n), noise_std * np.ones(n))
    raise ValueError(f"unknown noise_type {noise_type!r}")


def _schedule(value: Any) -> Any:
    """Zoo notation ``"lin_X"``: linear decay from X to 0 over the run."""
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    return value


def hyperparams_for(spec: RunSpec) -> tuple[dict[str, Any], str]:
    """The settings of a run (zoo table for SB3 where tuned, then --algo-kwargs) and where they come from."""
    tuned = spec.algo in SB3_ALGOS and has_zoo_hyperparams(spec.algo, spec.env_id)
    hp = zoo_hyperparams(spec.algo, spec.env_id) if tuned else {}
    hp.update(copy.deepcopy(spec.algo_kwargs))
    source = "zoo" if tuned else ("defaults" if spec.algo in SB3_ALGOS else "preset")
    return hp, source + ("+overrides" if spec.algo_kwargs else "")


def make_envs(spec: RunSpec, hp: dict[str, Any]) -> tuple[VecEnv, VecEnv]:
    """Training and eval VecEnvs (Monitor-wrapped); VecNormalize/VecFrameStack as the settings ask.

    SB3 algorithms on image observations get ``frame_stack: 4`` unless set (``hp`` is updated so the run records
    it): a feed-forward policy cannot see velocities in one frame, and the zoo stacks 4 frames for every image env
    it tunes. Our agent is recurrent and gets no stack.
    """
    train_env = make_vec_env(spec.env_id, n_envs=hp.get("n_envs", 1), seed=spec.seed)
    eval_env = make_vec_env(spec.env_id, n_envs=1, seed=spec.seed + EVAL_SEED_OFFSET)
    if spec.algo in SB3_ALGOS and "frame_stack" not in hp and is_image_space(train_env.observation_space):
        hp["frame_stack"] = 4
    normalize, frame_stack = hp.get("normalize", False), hp.get("frame_stack", 0)
    if frame_stack:
        train_env, eval_env = VecFrameStack(train_env, frame_stack), VecFrameStack(eval_env, frame_stack)
    if normalize:
        norm_kwargs = dict(normalize) if isinstance(normalize, dict) else {}
        if "gamma" in hp:  # as the zoo does: discount the normalized return like the algorithm
            norm_kwargs.setdefault("gamma", hp["gamma"])
        train_env = VecNormalize(train_env, **norm_kwargs)
        eval_env = VecNormalize(eval_env, norm_obs=norm_kwargs.get("norm_obs", True), norm_reward=False, training=False)
    return train_env, eval_env


def build_model(spec: RunSpec, train_env: VecEnv, hp: dict[str, Any]) -> BaseAlgorithm:
    """Construct the algorithm of ``spec`` on ``train_env`` with settings ``hp``."""
    kwargs = {k: v for k, v in hp.items() if k not in HARNESS_KEYS}
    policy = kwargs.pop("policy", policy_for(train_env.observation_space))
    if spec.device != "auto":
        kwargs.setdefault("device", spec.device)
    if spec.algo == OUR_ALGO:
        from wm_agent import JEPADreamer  # lazy: the harness works for SB3 algorithms without our agent

        kwargs.setdefault("preset", "small")
        return JEPADreamer(policy, train_env, seed=spec.seed, verbose=0, **kwargs)
    for key in ("learning_rate", "clip_range"):
        if key in kwargs:
            kwargs[key] = _schedule(kwargs[key])
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    noise = _action_noise(hp.get("noise_type"), hp.get("noise_std", 0.1), train_env.action_space)
    if noise is not None:
        kwargs["action_noise"] = noise
    if spec.algo in OFF_POLICY:  # a buffer larger than the run never fills: same learning, no 1M-slot allocation
        kwargs["buffer_size"] = min(kwargs.get("buffer_size", 1_000_000), spec.steps)
    return SB3_ALGOS[spec.algo](policy, train_env, seed=spec.seed, verbose=0, **kwargs)


class EvalRecorder(BaseCallback):
    """At step 0, every ``eval_every`` env steps and at the end: evaluate deterministically, record one row.

    The training clock (``train_time``) excludes the time spent evaluating.
    """

    def __init__(
        self, eval_env: VecEnv, eval_every: int, n_episodes: int, report: Callable[[int], None] | None = None
    ) -> None:
        super().__init__()
        self.eval_env, self.eval_every, self.n_episodes, self.report = eval_env, eval_every, n_episodes, report
        self.rows: list[dict[str, Any]] = []
        self._start = time.perf_counter()
        self._eval_time = 0.0
        self._next_eval = 0

    def start_clock(self) -> None:
        """Start the training clock (call right before ``learn``)."""
        self._start, self._eval_time = time.perf_counter(), 0.0

    def train_time(self) -> float:
        """Seconds since ``start_clock`` spent outside evaluation."""
        return time.perf_counter() - self._start - self._eval_time

    def _on_training_start(self) -> None:
        self._evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if not self.rows or self.rows[-1]["step"] < self.num_timesteps:
            self._evaluate()

    def _evaluate(self) -> None:
        wall, t0 = self.train_time(), time.perf_counter()
        train_norm = self.model.get_vec_normalize_env()
        if train_norm is not None and isinstance(self.eval_env, VecNormalize):
            self.eval_env.obs_rms = copy.deepcopy(train_norm.obs_rms)
        returns, lengths = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True, return_episode_rewards=True
        )
        eval_time = time.perf_counter() - t0
        self._eval_time += eval_time
        step = self.num_timesteps
        self.rows.append(
            {
                "step": int(step),
                "wall_time_s": round(wall, 3),
                "return_mean": float(np.mean(returns)),
                "return_std": float(np.std(returns)),
                "ep_len_mean": float(np.mean(lengths)),
                "eval_time_s": round(eval_time, 3),
                "peak_rss_mib": round(peak_rss_mib(), 1),
            }
        )
        self._next_eval = (step // self.eval_every + 1) * self.eval_every
        if self.report is not None:
            self.report(step)


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader never sees half a file, an interrupted run leaves no result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def run_one(spec: RunSpec, out_dir: str | Path, progress: Any = None, isolated: bool = True) -> dict[str, Any]:
    """Train and evaluate one run, store it as ``spec.path(out_dir)`` and return the stored record.

    ``progress`` (a queue, or anything with ``put``) receives ``(label, env steps done so far)`` after each
    evaluation.
    """
    torch.set_num_threads(spec.threads)
    register_project_envs()
    hp, source = hyperparams_for(spec)
    train_env, eval_env = make_envs(spec, hp)
    model = build_model(spec, train_env, hp)
    key = f"{spec.env_id}/{spec.label}/seed{spec.seed}"
    report = (lambda step: progress.put((key, min(step, spec.steps)))) if progress is not None else None
    recorder = EvalRecorder(eval_env, spec.eval_every, spec.eval_episodes, report)
    recorder.start_clock()
    model.learn(spec.steps, callback=recorder, progress_bar=False)
    train_wall = recorder.train_time()
    record = {
        "spec": spec.identity(),
        "hyperparams": hp,
        "hyperparams_source": source,
        "policy": hp.get("policy", policy_for(train_env.observation_space)),
        "evals": recorder.rows,
        "train_wall_s": round(train_wall, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "isolated_process": isolated,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gym.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    model_path = spec.model_path(Path(out_dir))
    vecnormalize_path = model_path.with_suffix(".vecnormalize.pkl")
    for stale in (model_path, vecnormalize_path):
        stale.unlink(missing_ok=True)  # a kept model always belongs to the result stored beside it
    if spec.save_model:
        model_path.parent.mkdir(parents=True, exist_ok=True)
        model.save(model_path)
        if isinstance(train_env, VecNormalize):  # SB3 keeps normalization statistics outside the model
            train_env.save(str(vecnormalize_path))
    train_env.close()
    eval_env.close()
    _write_json(spec.path(Path(out_dir)), record)
    return json.loads(json.dumps(record, default=str))


def load_finished(spec: RunSpec, out_dir: Path) -> dict[str, Any] | None:
    """The stored record of ``spec`` if it finished with exactly these settings, else None."""
    path = spec.path(out_dir)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if spec.save_model and not spec.model_path(out_dir).exists():
        return None  # asked for the model, which this run did not keep: run it again
    return record if record.get("spec") == spec.identity() else None


# ----------------------------------------------------------------------------------------------------------------
# Many runs


class _DirectFeed:
    """Stands in for a queue when runs execute in this process."""

    def __init__(self, on_item: Callable[[tuple[str, int]], None]) -> None:
        self.on_item = on_item

    def put(self, item: tuple[str, int]) -> None:
        self.on_item(item)


def execute(specs: Sequence[RunSpec], out_dir: Path, jobs: int = 1, progress: bool = True) -> list[tuple[RunSpec, str]]:
    """Run ``specs``, ``jobs`` at a time, each in a fresh process (``jobs=0``: one by one in this process).

    Returns the failures as (spec, traceback text); the other runs go on.
    """
    from tqdm.auto import tqdm

    failures: list[tuple[RunSpec, str]] = []
    if not specs:
        return failures
    done_steps: dict[str, int] = {}
    bar = tqdm(total=sum(s.steps for s in specs), unit="step", desc=f"{len(specs)} runs", disable=not progress)

    def on_item(item: tuple[str, int]) -> None:
        key, step = item
        bar.update(step - done_steps.get(key, 0))
        done_steps[key] = step

    def finish(spec: RunSpec, error: BaseException | None) -> None:
        key = f"{spec.env_id}/{spec.label}/seed{spec.seed}"
        if error is None:
            on_item((key, spec.steps))
            bar.write(f"done   {key}")
        else:
            failures.append((spec, "".join(traceback.format_exception(error))))
            bar.write(f"FAILED {key}: {type(error).__name__}: {error}")

    if jobs == 0:
        feed = _DirectFeed(on_item)
        for spec in specs:
            try:
                run_one(spec, out_dir, feed, isolated=False)
                finish(spec, None)
            except Exception as e:  # noqa: BLE001 - one failed run must not stop the comparison
                finish(spec, e)
        bar.close()
        return failures

    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a fresh interpreter per run: clean torch state, meaningful ru_maxrss
    pool_kwargs: dict[str, Any] = {"max_workers": jobs, "mp_context": ctx}
    if sys.version_info >= (3, 11):
        pool_kwargs["max_tasks_per_child"] = 1
    with ctx.Manager() as manager, ProcessPoolExecutor(**pool_kwargs) as pool:
        queue = manager.Queue()
        futures = {pool.submit(run_one, spec, str(out_dir), queue): spec for spec in specs}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while not queue.empty():
                on_item(queue.get())
            for future in finished:
                finish(futures[future], future.exception())
    bar.close()
    return failures


# ----------------------------------------------------------------------------------------------------------------
# Results


def first_crossing(evals: Sequence[dict[str, Any]], threshold: float | None) -> tuple[float, float]:
    """(env steps, training wall seconds) at the first evaluation after step 0 whose mean return reaches
    ``threshold``; ``(inf, inf)`` if none does or there is no threshold.

    The step-0 evaluation (the untrained policy) is left out: an initial policy that happens to balance a pole
    has learned nothing, and a crossing at 0 would make every ratio to it meaningless.
    """
    if threshold is not None:
        for row in evals:
            if row["step"] > 0 and row["return_mean"] >= threshold:
                return float(row["step"]), float(row["wall_time_s"])
    return math.inf, math.inf


def group_runs(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int, int, int], list[dict[str, Any]]]:
    """Runs by (env, label, budget, eval interval, eval episodes): the seeds of one setting, never a mix of two
    (``--report`` can find a label run with two budgets by different calls)."""
    groups: dict[tuple[str, str, int, int, int], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        spec = record["spec"]
        key = (
            spec["env_id"],
            spec["label"],
            spec.get("steps", 0),
            spec.get("eval_every", 0),
            spec.get("eval_episodes", 0),
        )
        groups[key].append(record)
    return groups


def summarize(records: Sequence[dict[str, Any]], thresholds: dict[str, float | None]) -> list[dict[str, Any]]:
    """One row per (env, algo label): final return over seeds, steps and wall time to threshold, cost.

    Steps/wall to threshold are medians over seeds of each seed's first crossing; a seed that never reaches the
    threshold counts as infinite, so the median is finite only when at least half the seeds (all, for 2) reach it.
    """
    rows = []
    for (env_id, label, *_), runs in group_runs(records).items():
        threshold = thresholds.get(env_id)
        finals = [run["evals"][-1]["return_mean"] for run in runs]
        crossings = [first_crossing(run["evals"], threshold) for run in runs]
        rows.append(
            {
                "env": env_id,
                "algo": label,
                "hyperparams_source": runs[0].get("hyperparams_source", ""),
                "seeds": len(runs),
                "budget": runs[0]["spec"].get("steps", 0),
                "steps": max(run["evals"][-1]["step"] for run in runs),
                "threshold": threshold,
                "final_return_mean": float(np.mean(finals)),
                "final_return_std": float(np.std(finals)),
                "steps_to_threshold": float(np.median([c[0] for c in crossings])),
                "wall_to_threshold_s": float(np.median([c[1] for c in crossings])),
                "reached": sum(math.isfinite(c[0]) for c in crossings),
                "train_wall_s": float(np.mean([run["train_wall_s"] for run in runs])),
                "peak_rss_mib": float(max(run["peak_rss_mib"] for run in runs)),
            }
        )
    return rows


def our_ratios(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per env and JEPADreamer variant: its steps and wall time to threshold over the best SB3 baseline's.

    Lower is better; the best baseline is picked separately for steps and for wall time. NaN when either side
    never reached the threshold.
    """
    out = []
    for env_id in dict.fromkeys(row["env"] for row in summary):
        rows = [row for row in summary if row["env"] == env_id]
        baselines = [row for row in rows if row["algo"].split("@")[0] in SB3_ALGOS]
        ours = [row for row in rows if row["algo"].split("@")[0] == OUR_ALGO]
        if not baselines or not ours:
            continue
        best_steps = min(baselines, key=lambda row: row["steps_to_threshold"])
        best_wall = min(baselines, key=lambda row: row["wall_to_threshold_s"])
        for row in ours:
            out.append(
                {
                    "env": env_id,
                    "algo": row["algo"],
                    "steps_ratio": _ratio(row["steps_to_threshold"], best_steps["steps_to_threshold"]),
                    "best_sb3_steps": best_steps["algo"],
                    "wall_ratio": _ratio(row["wall_to_threshold_s"], best_wall["wall_to_threshold_s"]),
                    "best_sb3_wall": best_wall["algo"],
                }
            )
    return out


def _ratio(ours: float, best: float) -> float:
    return ours / best if math.isfinite(ours) and math.isfinite(best) and best > 0 else math.nan


def _fmt_steps(value: float) -> str:
    return f"{int(value):,}" if math.isfinite(value) else "not reached"


def _fmt_seconds(value: float) -> str:
    return f"{value:.1f} s" if math.isfinite(value) else "not reached"


def _budget_text(settings: dict[str, Any]) -> str:
    own = ", ".join(f"{label} {steps:,}" for label, steps in settings.get("steps_by_label", {}).items())
    return f"{settings['steps']:,} env steps" + (f" ({own})" if own else "")


def _protocol_text(settings: dict[str, Any]) -> str:
    """One line saying how every run was trained and evaluated; ``settings`` lists several values when mixed."""

    def values(key: str) -> str:
        value = settings[key]
        return ", ".join(f"{v:,}" for v in value) if isinstance(value, list) else f"{value:,}"

    if settings.get("combined"):
        budget = "the budget of each row"
        seeds = "seeds " + ", ".join(str(s) for s in settings["seed_list"])
    else:
        budget = f"{_budget_text(settings)} per run"
        seeds = f"seeds 0..{settings['seeds'] - 1}"
    return (
        f"Protocol: {budget}, {seeds}; every {values('eval_every')} env steps (and at 0 and the end) "
        f"{values('eval_episodes')} deterministic episodes on a separate eval env (seed + {EVAL_SEED_OFFSET}). "
        f"torch threads per run: {values('threads')}."
    )


def markdown_summary(
    summary: Sequence[dict[str, Any]],
    ratios: Sequence[dict[str, Any]],
    settings: dict[str, Any],
    incompatible: Sequence[tuple[str, str, str]] = (),
    failed: Sequence[tuple[RunSpec, str]] = (),
) -> str:
    """The comparison as a markdown document."""
    lines = [
        "# Agent comparison",
        "",
        _protocol_text(settings),
        "",
        "Final return: mean +/- std over seeds of each seed's last evaluation. Steps / wall to threshold: median "
        "over seeds of the first evaluation after step 0 reaching the threshold (a seed that never reaches counts "
        "as never). "
        "Wall time is training only (evaluation excluded). Peak RSS: max over seeds of the run process's peak "
        "resident memory. SB3 hyperparameters: `zoo` = tuned values of " + ZOO_SOURCE + ", `defaults` = SB3's.",
        "",
        "| env (threshold) | algo | hyperparams | seeds | budget | final return | steps to threshold (seeds reached) "
        "| wall to threshold | train wall | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        threshold = "none" if row["threshold"] is None else f"{row['threshold']:g}"
        to_steps, to_wall = _fmt_steps(row["steps_to_threshold"]), _fmt_seconds(row["wall_to_threshold_s"])
        if row["threshold"] is None:
            to_steps, to_wall = "-", "-"
        lines.append(
            f"| {row['env']} ({threshold}) | {row['algo']} | {row['hyperparams_source']} | {row['seeds']} "
            f"| {row['budget']:,} | {row['final_return_mean']:.1f} +/- {row['final_return_std']:.1f} "
            f"| {to_steps} ({row['reached']}/{row['seeds']}) | {to_wall} | {row['train_wall_s']:.1f} s "
            f"| {row['peak_rss_mib']:.0f} MiB |"
        )
    if ratios:
        lines += [
            "",
            "## JEPADreamer against the best SB3 baseline (ratio < 1: JEPADreamer is better)",
            "",
            "| env | agent | steps-to-threshold ratio | best SB3 by steps | wall-to-threshold ratio "
            "| best SB3 by wall |",
            "|---|---|---|---|---|---|",
        ]
        for row in ratios:
            steps_ratio = "n/a" if math.isnan(row["steps_ratio"]) else f"{row['steps_ratio']:.2f}"
            wall_ratio = "n/a" if math.isnan(row["wall_ratio"]) else f"{row['wall_ratio']:.2f}"
            lines.append(
                f"| {row['env']} | {row['algo']} | {steps_ratio} | {row['best_sb3_steps']} "
                f"| {wall_ratio} | {row['best_sb3_wall']} |"
            )
        lines += ["", "n/a: JEPADreamer or every SB3 baseline did not reach the threshold."]
    if not all(settings.get("isolated", [True])):
        lines += ["", "Some runs ran with --jobs 0, in the harness's process: their peak RSS is the harness's."]
    if incompatible:
        lines += ["", "Not run (action space): " + "; ".join(f"{a} on {e}" for e, a, _ in incompatible) + "."]
    if failed:
        names = ", ".join(f"{s.env_id}/{s.label}/seed{s.seed}" for s, _ in failed)
        lines += ["", f"Failed runs (tracebacks in errors.log): {names}."]
    return "\n".join(lines) + "\n"


def plot_curves(
    records: Sequence[dict[str, Any]], env_id: str, threshold: float | None, path: Path, band: str = "std"
) -> Path:
    """Mean return over seeds vs env steps and vs training wall time, with a +/- std band, as one PNG."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_steps, ax_wall = fig.subplots(1, 2, sharey=True)
    for (run_env, label, budget, *_), runs in group_runs(records).items():
        if run_env != env_id:
            continue
        n = min(len(run["evals"]) for run in runs)  # same schedule for every seed of a label
        returns = np.array([[row["return_mean"] for row in run["evals"][:n]] for run in runs])
        steps = np.array([row["step"] for row in runs[0]["evals"][:n]])
        walls = np.array([[row["wall_time_s"] for row in run["evals"][:n]] for run in runs]).mean(axis=0)
        mean, std = returns.mean(axis=0), returns.std(axis=0)
        for ax, x in ((ax_steps, steps), (ax_wall, walls)):
            (line,) = ax.plot(x, mean, label=f"{label} ({len(runs)} seeds, {budget:,} steps)")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    for ax, xlabel in ((ax_steps, "env steps"), (ax_wall, "training wall time (s)")):
        if threshold is not None:
            ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    ax_steps.set_ylabel("eval return (mean +/- std over seeds)")
    ax_steps.legend(fontsize="small")
    fig.suptitle(env_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


EVAL_COLUMNS = (
    "env",
    "algo",
    "seed",
    "step",
    "wall_time_s",
    "return_mean",
    "return_std",
    "ep_len_mean",
    "eval_time_s",
    "peak_rss_mib",
)


def eval_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every evaluation point of every run, flat."""
    return [
        {"env": r["spec"]["env_id"], "algo": r["spec"]["label"], "seed": r["spec"]["seed"], **row}
        for r in records
        for row in r["evals"]
    ]


def write_outputs(
    records: Sequence[dict[str, Any]],
    out_dir: Path,
    thresholds: dict[str, float | None],
    settings: dict[str, Any],
    incompatible: Sequence[tuple[str, str, str]] = (),
    failed: Sequence[tuple[RunSpec, str]] = (),
) -> dict[str, Path]:
    """Write evals.csv/json, summary.md/json and one curves PNG per env; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"evals_csv": out_dir / "evals.csv", "evals_json": out_dir / "evals.json"}
    rows = eval_rows(records)
    with files["evals_csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EVAL_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    files["evals_json"].write_text(json.dumps(rows, indent=1))
    summary = summarize(records, thresholds)
    ratios = our_ratios(summary)
    files["summary_md"] = out_dir / "summary.md"
    files["summary_md"].write_text(markdown_summary(summary, ratios, settings, incompatible, failed))
    files["summary_json"] = out_dir / "summary.json"
    files["summary_json"].write_text(
        json.dumps({"settings": settings, "summary": summary, "ratios": ratios}, indent=1, default=str)
    )
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        print("no learning-curve PNGs: matplotlib is not installed (pip install 'wm-agent[bench]')", file=sys.stderr)
    else:
        for env_id in dict.fromkeys(r["spec"]["env_id"] for r in records):
            path = out_dir / f"curves_{env_slug(env_id)}.png"
            files[f"curves:{env_id}"] = plot_curves(records, env_id, thresholds.get(env_id), path)
    if failed:
        files["errors"] = out_dir / "errors.log"
        files["errors"].write_text("\n".join(f"== {s.env_id}/{s.label}/seed{s.seed}\n{text}" for s, text in failed))
    return files


def run_comparison(
    env_ids: Sequence[str],
    algos: Sequence[str],
    steps: int,
    seeds: int,
    eval_every: int,
    eval_episodes: int = 10,
    jobs: int = 1,
    out_dir: str | Path = "benchmarks/out",
    algo_kwargs: dict[str, dict[str, Any]] | None = None,
    thresholds: dict[str, float] | None = None,
    threads: int = 1,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    steps_by_label: dict[str, int] | None = None,
    save_models: bool = False,
) -> Report:
    """Run (or reuse) every run of the grid envs x algos x seeds, then write the comparison files."""
    out_dir = Path(out_dir)
    labels = list(dict.fromkeys(algos))
    specs, incompatible = plan_runs(
        env_ids,
        labels,
        seeds,
        steps,
        eval_every,
        eval_episodes,
        algo_kwargs,
        threads,
        device,
        steps_by_label=steps_by_label,
        save_models=save_models,
    )
    report = Report(out_dir=out_dir, incompatible=incompatible)
    todo = []
    for spec in specs:
        (todo.append if force or load_finished(spec, out_dir) is None else report.skipped.append)(spec)
    report.failed = execute(todo, out_dir, jobs, progress)
    failed_ids = {id(spec) for spec, _ in report.failed}
    report.ran = [spec for spec in todo if id(spec) not in failed_ids]
    records = [r for r in (load_finished(spec, out_dir) for spec in specs) if r is not None]
    resolved = {env_id: threshold_for(env_id, thresholds) for env_id in env_ids}
    settings = {
        "envs": list(env_ids),
        "algos": labels,
        "steps": steps,
        "steps_by_label": steps_by_label or {},
        "seeds": seeds,
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "threads": threads,
        "algo_kwargs": algo_kwargs or {},
        "thresholds": resolved,
        "isolated": [r.get("isolated_process", True) for r in records],
    }
    if records:
        report.files = write_outputs(records, out_dir, resolved, settings, incompatible, report.failed)
    return report


def report_finished(
    out_dir: str | Path, thresholds: dict[str, float] | None = None, env_ids: Sequence[str] | None = None
) -> Report:
    """Summarize every finished run stored under ``out_dir``, whichever calls made them; runs nothing.

    This is how runs with different budgets or protocols (a baseline's own eval interval, a rerun variant) end up
    in one table and one figure per env.
    """
    out_dir = Path(out_dir)
    records = []
    for path in sorted((out_dir / "runs").rglob("seed*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and "spec" in record and record.get("evals"):
            if env_ids is None or record["spec"]["env_id"] in env_ids:
                records.append(record)
    if not records:
        among = f" for {', '.join(env_ids)}" if env_ids else ""
        raise ValueError(f"no finished run{among} under {out_dir / 'runs'}")
    register_project_envs()
    env_ids = list(dict.fromkeys(r["spec"]["env_id"] for r in records))

    def distinct(key: str) -> list[Any]:
        return sorted({r["spec"][key] for r in records})

    settings = {
        "combined": True,
        "envs": env_ids,
        "algos": list(dict.fromkeys(r["spec"]["label"] for r in records)),
        "seed_list": distinct("seed"),
        "eval_every": distinct("eval_every"),
        "eval_episodes": distinct("eval_episodes"),
        "threads": distinct("threads"),
        "thresholds": {env_id: threshold_for(env_id, thresholds) for env_id in env_ids},
        "isolated": [r.get("isolated_process", True) for r in records],
    }
    report = Report(out_dir=out_dir)
    report.files = write_outputs(records, out_dir, settings["thresholds"], settings)
    return report


# ----------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """The ``compare`` command's arguments."""
    p = argparse.ArgumentParser(
        prog="wm-agent compare",
        epilog="--report summarizes the runs already stored under --out (only those of --env when given).",
        description="Compare JEPADreamer and SB3 baselines on Gymnasium envs under one evaluation protocol.",
    )
    p.add_argument("--env", help="env id(s), comma-separated, e.g. CartPole-v1,wm/PixelCartPole-v0")
    p.add_argument(
        "--report",
        action="store_true",
        help="run nothing: write the tables and figures of every finished run under --out (made by any calls)",
    )
    p.add_argument(
        "--algos",
        default=DEFAULT_ALGOS,
        help=f"comma-separated, from {', '.join(ALGO_NAMES)}; "
        "NAME@VARIANT runs NAME again under its own --algo-kwargs (default: %(default)s)",
    )
    p.add_argument("--steps", type=int, default=50_000, help="env steps per run (default: %(default)s)")
    p.add_argument(
        "--algo-steps",
        action="append",
        default=[],
        metavar="ALGO=N",
        help="a budget of its own for one label of --algos, e.g. jepa_dreamer=10000; repeatable",
    )
    p.add_argument("--seeds", type=int, default=3, help="K: seeds 0..K-1 (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=5_000, help="env steps between evaluations (default: %(default)s)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default: %(default)s)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs in parallel, each in its own process; 0: in this "
        "process, one by one (peak memory then is this process's) (default: %(default)s)",
    )
    p.add_argument("--out", default="benchmarks/out", help="output folder (default: %(default)s)")
    p.add_argument(
        "--algo-kwargs",
        action="append",
        default=[],
        metavar="ALGO:K=V[,K=V]",
        help="constructor overrides, e.g. jepa_dreamer:train_ratio=256 or 'ppo:{\"n_epochs\": 5}'; "
        "repeatable; n_envs/normalize/frame_stack are honoured for every algorithm",
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="ENV=VALUE",
        help="success threshold for an env, beating its spec and the built-in table; repeatable",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default: %(default)s)")
    p.add_argument("--device", default="auto", help="torch device for every algorithm (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="redo runs even if they already finished")
    p.add_argument(
        "--save-models",
        action="store_true",
        help="keep each trained model as runs/ENV/ALGO/seedK.zip (a finished run without one is run again)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if a run failed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report:
        grid = {"--algo-steps": args.algo_steps, "--algo-kwargs": args.algo_kwargs, "--save-models": args.save_models}
        given = [name for name, value in grid.items() if value]
        if given:
            parser.error(f"--report runs nothing, so {', '.join(given)} would be ignored; leave them out")
        env_filter = [e.strip() for e in args.env.split(",") if e.strip()] if args.env else None
        try:
            report = report_finished(args.out, parse_thresholds(args.threshold), env_filter)
        except ValueError as e:
            parser.error(str(e))
        print(report.files["summary_md"].read_text())
        return 0
    if not args.env:
        parser.error("--env is required (or --report to summarize the runs stored under --out)")
    env_ids = [e.strip() for e in args.env.split(",") if e.strip()]
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    try:
        if args.jobs < 0:
            raise ValueError(f"--jobs must be 0 or more, got {args.jobs}")
        report = run_comparison(
            env_ids,
            algos,
            steps=args.steps,
            seeds=args.seeds,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            jobs=args.jobs,
            out_dir=args.out,
            algo_kwargs=parse_algo_kwargs(args.algo_kwargs, list(dict.fromkeys(algos))),
            thresholds=parse_thresholds(args.threshold),
            threads=args.threads,
            device=args.device,
            force=args.force,
            progress=not args.no_progress,
            steps_by_label=parse_algo_steps(args.algo_steps),
            save_models=args.save_models,
        )
    except ValueError as e:
        parser.error(str(e))
    print(f"{len(report.ran)} runs done, {len(report.skipped)} already finished, {len(report.failed)} failed")
    for name, path in report.files.items():
        print(f"  {name}: {path}")
    if "summary_md" in report.files:
        print()
        print(report.files["summary_md"].read_text())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
