"""One run of the grid: settings, envs and model of a RunSpec, training with evaluations, the stored result."""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecNormalize

from wm_agent.common import EVAL_SEED_OFFSET, OUR_ALGO, SB3_ALGO_NAMES, algo_class, policy_for, register_project_envs
from wm_agent.compare.grid import RunSpec
from wm_agent.compare.zoo_hyperparams import HARNESS_KEYS, has_zoo_hyperparams, zoo_hyperparams
from wm_agent.config import env_settings

OFF_POLICY = ("dqn", "sac", "td3")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


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
    """The settings of a run and where they come from: the env's table (the zoo's for SB3, `ENV_SETTINGS` for ours)
    where it has an entry, then --algo-kwargs."""
    if spec.algo in SB3_ALGO_NAMES:
        tuned = has_zoo_hyperparams(spec.algo, spec.env_id)
        hyperparams = zoo_hyperparams(spec.algo, spec.env_id) if tuned else {}
        source = "zoo" if tuned else "defaults"
    else:
        hyperparams = env_settings(spec.env_id)
        source = "preset+table" if hyperparams else "preset"
    hyperparams.update(copy.deepcopy(spec.algo_kwargs))
    return hyperparams, source + ("+overrides" if spec.algo_kwargs else "")


def make_envs(spec: RunSpec, hyperparams: dict[str, Any]) -> tuple[VecEnv, VecEnv]:
    """Training and eval VecEnvs (Monitor-wrapped); VecNormalize/VecFrameStack as the settings ask.

    SB3 algorithms on image observations get ``frame_stack: 4`` unless set (``hyperparams`` is updated so the run
    records it): a feed-forward policy cannot see velocities in one frame, and the zoo stacks 4 frames for every
    image env it tunes. Our agent is recurrent and gets no stack.
    """
    train_env = make_vec_env(
        spec.env_id, n_envs=hyperparams.get("n_envs", 1), seed=spec.seed, env_kwargs=spec.env_kwargs
    )
    eval_env = make_vec_env(spec.env_id, n_envs=1, seed=spec.seed + EVAL_SEED_OFFSET, env_kwargs=spec.env_kwargs)
    if spec.algo in SB3_ALGO_NAMES and "frame_stack" not in hyperparams and is_image_space(train_env.observation_space):
        hyperparams["frame_stack"] = 4
    normalize, frame_stack = hyperparams.get("normalize", False), hyperparams.get("frame_stack", 0)
    if frame_stack:
        train_env, eval_env = VecFrameStack(train_env, frame_stack), VecFrameStack(eval_env, frame_stack)
    if normalize:
        norm_kwargs = dict(normalize) if isinstance(normalize, dict) else {}
        if "gamma" in hyperparams:  # as the zoo does: discount the normalized return like the algorithm
            norm_kwargs.setdefault("gamma", hyperparams["gamma"])
        train_env = VecNormalize(train_env, **norm_kwargs)
        eval_env = VecNormalize(eval_env, norm_obs=norm_kwargs.get("norm_obs", True), norm_reward=False, training=False)
    return train_env, eval_env


def build_model(spec: RunSpec, train_env: VecEnv, hyperparams: dict[str, Any]) -> BaseAlgorithm:
    """Construct the algorithm of ``spec`` on ``train_env`` with settings ``hyperparams``."""
    kwargs = {k: v for k, v in hyperparams.items() if k not in HARNESS_KEYS}
    policy = kwargs.pop("policy", policy_for(train_env.observation_space))
    if spec.device != "auto":
        kwargs.setdefault("device", spec.device)
    if spec.algo == OUR_ALGO:
        kwargs.setdefault("preset", "small")
        return algo_class(OUR_ALGO)(policy, train_env, seed=spec.seed, verbose=0, **kwargs)
    for key in ("learning_rate", "clip_range"):
        if key in kwargs:
            kwargs[key] = _schedule(kwargs[key])
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    noise = _action_noise(hyperparams.get("noise_type"), hyperparams.get("noise_std", 0.1), train_env.action_space)
    if noise is not None:
        kwargs["action_noise"] = noise
    if spec.algo in OFF_POLICY:  # a buffer larger than the run never fills: same learning, no 1M-slot allocation
        kwargs["buffer_size"] = min(kwargs.get("buffer_size", 1_000_000), spec.steps)
    return algo_class(spec.algo)(policy, train_env, seed=spec.seed, verbose=0, **kwargs)


class EvalRecorder(BaseCallback):
    """At step 0, every ``eval_every`` env steps and at the end: evaluate deterministically, record one row.

    The training clock (``train_time``) excludes the time spent evaluating.

    :param eval_env: the env to evaluate on
    :param eval_every: env steps between evaluations
    :param n_episodes: deterministic episodes per evaluation
    :param report: called with the env step count after each evaluation, and every ``report_every_s`` seconds
        between them (a long run shows progress before its next evaluation)
    :param report_every_s: seconds between reports outside evaluations
    """

    def __init__(
        self,
        eval_env: VecEnv,
        eval_every: int,
        n_episodes: int,
        report: Callable[[int], None] | None = None,
        report_every_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.eval_env, self.eval_every, self.n_episodes, self.report = eval_env, eval_every, n_episodes, report
        self.report_every_s = report_every_s
        self._last_report = time.perf_counter()
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
        elif self.report is not None and time.perf_counter() - self._last_report >= self.report_every_s:
            self._send_report(self.num_timesteps)
        return True

    def _send_report(self, step: int) -> None:
        self._last_report = time.perf_counter()
        self.report(step)

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
            self._send_report(step)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader never sees half a file, an interrupted run leaves no result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def run_one(spec: RunSpec, out_dir: str | Path, progress: Any = None, isolated: bool = True) -> dict[str, Any]:
    """Train and evaluate one run, store it as ``spec.path(out_dir)`` and return the stored record.

    :param spec: the run
    :param out_dir: the comparison's output folder
    :param progress: a queue, or anything with ``put``, that receives ``(spec.key, env steps done so far)`` after
        each evaluation
    :param isolated: whether this process runs nothing else (its peak memory is then the run's); recorded
    """
    torch.set_num_threads(spec.threads)
    register_project_envs(spec.env_id)
    hyperparams, source = hyperparams_for(spec)
    train_env, eval_env = make_envs(spec, hyperparams)
    model = build_model(spec, train_env, hyperparams)
    report = (lambda step: progress.put((spec.key, min(step, spec.steps)))) if progress is not None else None
    recorder = EvalRecorder(eval_env, spec.eval_every, spec.eval_episodes, report)
    recorder.start_clock()
    model.learn(spec.steps, callback=recorder, progress_bar=False)
    train_wall = recorder.train_time()
    record = {
        "spec": spec.identity(),
        "hyperparams": hyperparams,
        "hyperparams_source": source,
        "policy": hyperparams.get("policy", policy_for(train_env.observation_space)),
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
    model_path = spec.model_path(out_dir)
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
    write_json(spec.path(out_dir), record)
    return json.loads(json.dumps(record, default=str))


def load_finished(spec: RunSpec, out_dir: str | Path) -> dict[str, Any] | None:
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
    if record.get("spec") != spec.identity():
        return None
    # the tables (the zoo's, ours) can change under a stored run: it stays finished only if it used their settings
    expected = json.loads(json.dumps(hyperparams_for(spec)[0], default=str))
    stored = record.get("hyperparams", {})
    return record if all(stored.get(key) == value for key, value in expected.items()) else None
