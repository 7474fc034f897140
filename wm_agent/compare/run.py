"""One run of the grid: settings, envs and model of a RunSpec, training with evaluations, the stored result."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecNormalize

from wm_agent.common import (
    EVAL_SEED_OFFSET,
    OUR_ALGO,
    SB3_ALGO_NAMES,
    algo_class,
    episode_limit,
    policy_for,
    register_project_envs,
)
from wm_agent.compare.grid import RunSpec
from wm_agent.compare.zoo_hyperparams import HARNESS_KEYS, has_zoo_hyperparams, zoo_hyperparams
from wm_agent.config import discount_for_episode_limit, env_settings

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


# Settings the harness records for every run of an algorithm but once did not, with the value such older records
# trained with: JEPADreamer's discount was 0.99 wherever it was not set, before it followed the episode limit.
UNRECORDED_SETTINGS: dict[str, dict[str, Any]] = {OUR_ALGO: {"gamma": 0.99}}


def hyperparams_for(spec: RunSpec) -> tuple[dict[str, Any], str]:
    """The settings of a run and where they come from: the env's table (the zoo's for SB3, `ENV_SETTINGS` for ours)
    where it has an entry, then --algo-kwargs. Ours always include the discount, as the preset resolves it for the
    run's env where nothing sets it, so that the run's record says what it trained with."""
    if spec.algo in SB3_ALGO_NAMES:
        tuned = has_zoo_hyperparams(spec.algo, spec.env_id)
        hyperparams = zoo_hyperparams(spec.algo, spec.env_id) if tuned else {}
        source = "zoo" if tuned else "defaults"
    else:
        hyperparams = env_settings(spec.env_id)
        source = "preset+table" if hyperparams else "preset"
    hyperparams.update(copy.deepcopy(spec.algo_kwargs))
    if spec.algo == OUR_ALGO and hyperparams.get("gamma") is None:
        hyperparams["gamma"] = discount_for_episode_limit(_episode_limit_of(spec))
    return hyperparams, source + ("+overrides" if spec.algo_kwargs else "")


def _episode_limit_of(spec: RunSpec) -> int | None:
    """The time limit of the run's env, read from an env made as the run makes its own."""
    register_project_envs(spec.env_id)
    env = make_vec_env(spec.env_id, n_envs=1, env_kwargs=spec.env_kwargs)
    try:
        return episode_limit(env)
    finally:
        env.close()


def same_settings(algo: str, stored: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether a stored run's settings (JSON) include every setting of ``expected``, a setting older records lack
    counting as its `UNRECORDED_SETTINGS` value."""
    unrecorded = UNRECORDED_SETTINGS.get(algo, {})
    expected = json.loads(json.dumps(expected, default=str))
    return all(stored.get(key, unrecorded.get(key)) == value for key, value in expected.items())


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
    """At step 0, every ``eval_every`` env steps and at the end: evaluate (deterministically by default), record one
    row.

    The training clock (``train_time``) excludes the time spent evaluating.

    :param eval_env: the env to evaluate on
    :param eval_every: env steps between evaluations
    :param n_episodes: deterministic episodes per evaluation
    :param report: called with the env step count after each evaluation, and every ``report_every_s`` seconds
        between them (a long run shows progress before its next evaluation)
    :param report_every_s: seconds between reports outside evaluations
    :param deterministic: evaluate the policy's deterministic actions (False: sampled ones)
    """

    def __init__(
        self,
        eval_env: VecEnv,
        eval_every: int,
        n_episodes: int,
        report: Callable[[int], None] | None = None,
        report_every_s: float = 5.0,
        deterministic: bool = True,
    ) -> None:
        super().__init__()
        self.deterministic = deterministic
        self.eval_env, self.eval_every, self.n_episodes, self.report = eval_env, eval_every, n_episodes, report
        self.report_every_s = report_every_s
        self._last_report = time.perf_counter()
        self.rows: list[dict[str, Any]] = []
        self._start = time.perf_counter()
        self._eval_time = 0.0
        self._next_eval = 0

    def start_clock(self, already_trained_s: float = 0.0) -> None:
        """Start the training clock (call right before ``learn``); a resumed run starts it at its earlier time."""
        self._start, self._eval_time = time.perf_counter() - already_trained_s, 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Keep the time spent in the block (an evaluation, a checkpoint) off the training clock."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._eval_time += time.perf_counter() - t0

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the recorder: its rows, the next evaluation step and the training time."""
        return {"evals": self.rows, "next_eval": self._next_eval, "train_wall_s": round(self.train_time(), 3)}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (the clock restarts at its training time)."""
        self.rows, self._next_eval = list(state["evals"]), int(state["next_eval"])
        self.start_clock(float(state["train_wall_s"]))

    def train_time(self) -> float:
        """Seconds since ``start_clock`` spent outside evaluation."""
        return time.perf_counter() - self._start - self._eval_time

    def _on_training_start(self) -> None:
        if not self.rows:  # a resumed run has its evaluations so far
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
        with self.paused():
            train_norm = self.model.get_vec_normalize_env()
            if train_norm is not None and isinstance(self.eval_env, VecNormalize):
                self.eval_env.obs_rms = copy.deepcopy(train_norm.obs_rms)
            returns, lengths = evaluate_policy(
                self.model,
                self.eval_env,
                n_eval_episodes=self.n_episodes,
                deterministic=self.deterministic,
                return_episode_rewards=True,
            )
        eval_time = time.perf_counter() - t0
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


class RunCheckpoint:
    """The checkpoint of one run in progress, so that a run stopped midway (killed, a lent machine handed back)
    resumes from it when the comparison is started again instead of from step 0.

    It lives beside the run's result, in ``runs/ENV/LABEL/seedK.checkpoint/``, as two slots written in turn: the
    model (``model.zip``), its replay where it has one (off-policy algorithms, ours), VecNormalize's statistics
    and ``state.json``, written last, so that a slot without it is incomplete and the other slot still holds the
    previous checkpoint whole.
    """

    SLOTS = ("a", "b")
    STATE = "state.json"

    def __init__(self, spec: RunSpec, out_dir: str | Path) -> None:
        self.folder = spec.path(out_dir).with_suffix(".checkpoint")

    @classmethod
    def read_state(cls, slot: Path) -> dict[str, Any] | None:
        """The state of a complete slot, or None."""
        try:
            state = json.loads((slot / cls.STATE).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return state if isinstance(state, dict) and "num_timesteps" in state else None

    @classmethod
    def newest(cls, folder: Path) -> tuple[Path, dict[str, Any]] | None:
        """The newest complete slot of the checkpoint ``folder`` and its state, or None."""
        states = [(slot, state) for slot in cls.SLOTS if (state := cls.read_state(folder / slot)) is not None]
        if not states:
            return None
        slot, state = max(states, key=lambda item: item[1]["num_timesteps"])
        return folder / slot, state

    def latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest complete slot of this run's checkpoint and its state, or None."""
        return self.newest(self.folder)

    def save(self, model: BaseAlgorithm, train_env: VecEnv, state: dict[str, Any]) -> None:
        """Write ``model``, its replay and ``state`` into the slot that does not hold the newest checkpoint."""
        latest = self.latest()
        slot = self.folder / (
            self.SLOTS[1] if latest is not None and latest[0].name == self.SLOTS[0] else self.SLOTS[0]
        )
        shutil.rmtree(slot, ignore_errors=True)
        slot.mkdir(parents=True)
        model.save(slot / "model.zip")
        if getattr(model, "replay_buffer", None) is not None:
            model.save_replay_buffer(slot / "replay.pkl")
        if isinstance(train_env, VecNormalize):
            train_env.save(str(slot / "vecnormalize.pkl"))
        write_json(slot / self.STATE, state)

    def remove(self) -> None:
        """Delete the checkpoint (the run finished, or it is to be redone)."""
        shutil.rmtree(self.folder, ignore_errors=True)


class CheckpointEvery(BaseCallback):
    """Save the run's model, replay and evaluations so far to ``checkpoint`` at the first rollout start at or after
    every ``every`` env steps before ``stop_at``, with ``run`` (what identifies the run).

    A rollout start is the one point every algorithm family shares where all transitions collected so far are
    stored and trained on as they would be uninterrupted: SB3's on-policy algorithms have no half-collected rollout
    there, its off-policy ones no pending transition or gradient steps, and JEPADreamer starts one there per env
    step. The time spent saving stays off the training clock.
    """

    def __init__(
        self,
        checkpoint: RunCheckpoint,
        every: int,
        stop_at: int,
        recorder: EvalRecorder,
        train_env: VecEnv,
        run: dict[str, Any],
    ) -> None:
        super().__init__()
        self.checkpoint, self.every, self.stop_at, self.recorder = checkpoint, every, stop_at, recorder
        self.train_env, self.run = train_env, run
        self._next = every

    def _on_training_start(self) -> None:
        self._next = (self.model.num_timesteps // self.every + 1) * self.every

    def _on_rollout_start(self) -> None:
        steps = self.model.num_timesteps
        if self._next <= steps < self.stop_at:
            with self.recorder.paused():
                state = {**self.run, **self.recorder.state(), "num_timesteps": int(steps)}
                self.checkpoint.save(self.model, self.train_env, state)
            self._next = (steps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        return True


def resume_from(
    checkpoint: RunCheckpoint, spec: RunSpec, train_env: VecEnv, run: dict[str, Any]
) -> tuple[BaseAlgorithm, dict[str, Any]] | None:
    """The model and state of ``checkpoint`` when it holds this run (same spec, same settings), else None; a
    checkpoint of other settings is deleted (it can never resume this run).

    The resumed model gets fresh episodes and random streams seeded from the run's seed and step count: a resumed
    run is reproducible from its checkpoint but not bit-identical to an uninterrupted one.
    """
    latest = checkpoint.latest()
    if latest is None:
        return None
    slot, state = latest
    stored, expected = state.get("hyperparams", {}), run["hyperparams"]
    same = same_settings(spec.algo, stored, expected) and same_settings(spec.algo, expected, stored)
    if state.get("spec") != run["spec"] or not same:
        checkpoint.remove()
        return None
    if isinstance(train_env, VecNormalize):
        saved = VecNormalize.load(str(slot / "vecnormalize.pkl"), train_env.venv)
        train_env.obs_rms, train_env.ret_rms = saved.obs_rms, saved.ret_rms
    model = algo_class(spec.algo).load(slot / "model.zip", env=train_env, device=spec.device)
    if (slot / "replay.pkl").exists():
        model.load_replay_buffer(slot / "replay.pkl")
    model.set_random_seed(spec.seed + int(state["num_timesteps"]))
    return model, state


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
    report = (lambda step: progress.put((spec.key, min(step, spec.steps)))) if progress is not None else None
    recorder = EvalRecorder(
        eval_env, spec.eval_every, spec.eval_episodes, report, deterministic=not spec.eval_stochastic
    )
    checkpoint = RunCheckpoint(spec, out_dir)
    run = {"spec": spec.identity(), "hyperparams": json.loads(json.dumps(hyperparams, default=str))}
    resumed = resume_from(checkpoint, spec, train_env, run)
    if resumed is None:
        model, resumed_at = build_model(spec, train_env, hyperparams), []
        recorder.start_clock()
    else:
        model, state = resumed
        resumed_at = [*state.get("resumed_at", []), int(state["num_timesteps"])]
        recorder.restore(state)
    callbacks: list[BaseCallback] = [recorder]
    if spec.checkpoint_every:
        run["resumed_at"] = resumed_at
        callbacks.append(CheckpointEvery(checkpoint, spec.checkpoint_every, spec.steps, recorder, train_env, run))
    model.learn(
        spec.steps - model.num_timesteps,
        callback=CallbackList(callbacks),
        progress_bar=False,
        reset_num_timesteps=resumed is None,
    )
    train_wall = recorder.train_time()
    record = {
        "spec": spec.identity(),
        "hyperparams": hyperparams,
        "hyperparams_source": source,
        "policy": hyperparams.get("policy", policy_for(train_env.observation_space)),
        "evals": recorder.rows,
        "train_wall_s": round(train_wall, 3),
        # the most of every process the run had (a resumed run's earlier ones are in its rows)
        "peak_rss_mib": round(max(peak_rss_mib(), *(row["peak_rss_mib"] for row in recorder.rows)), 1),
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
    if resumed_at:
        record["resumed_at"] = resumed_at
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
    checkpoint.remove()
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
    # the tables (the zoo's, ours) and the defaults can change under a stored run: it stays finished only if it used
    # their settings
    return record if same_settings(spec.algo, record.get("hyperparams", {}), hyperparams_for(spec)[0]) else None
