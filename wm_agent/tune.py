"""`wm-agent tune`: search JEPADreamer's few settings that matter on a user's env with optuna, as rl-baselines3-zoo
does for SB3, and write the best as a hyperparameter file that `wm-agent train --hyperparams-file` reads.

Each trial trains on the env for ``n_timesteps`` (one run per seed), evaluates deterministically every
``eval_every`` steps on an env seeded ``seed + 1000`` (the harness's protocol), and scores the mean of those
evaluations: the area under the learning curve, so a setting that learns sooner beats one that gets there last.
Optuna's TPE sampler picks the settings; its median pruner stops a trial whose curve falls below the median of
the earlier trials at the same step. Needs ``pip install 'wm-agent[tune]'``.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from wm_agent.common import EVAL_SEED_OFFSET, OUR_ALGO, policy_for, register_project_envs
from wm_agent.compare.run import EvalRecorder
from wm_agent.config import env_settings
from wm_agent.version import __version__

if TYPE_CHECKING:
    import optuna

HYPERPARAMS_FILE_FORMAT = 1
"""Version of the JSON layout `write_hyperparams_file` writes and `read_hyperparams_file` reads."""


def sample_settings(trial: optuna.Trial, n_timesteps: int) -> dict[str, Any]:
    """The search space: the settings the config names as the ones to tune first, plus exploration.

    ``learning_starts`` is kept under a quarter of the budget so every trial trains for most of it.
    """
    starts = [s for s in (250, 500, 1000, 2000) if s <= n_timesteps // 4] or [n_timesteps // 4]
    return {
        "train_ratio": trial.suggest_categorical("train_ratio", [32, 64, 128, 256]),
        "learning_starts": trial.suggest_categorical("learning_starts", starts),
        "prefill_repeat_prob": trial.suggest_categorical("prefill_repeat_prob", [0.0, 0.5, 0.75, 0.9]),
        "exploration_noise_beta": trial.suggest_categorical("exploration_noise_beta", [0.0, 1.0, 2.0]),
        "model_lr": trial.suggest_float("model_lr", 1e-4, 1e-3, log=True),
        "actor_lr": trial.suggest_float("actor_lr", 1e-5, 3e-4, log=True),
        "critic_lr": trial.suggest_float("critic_lr", 3e-5, 1e-3, log=True),
        "entropy_scale": trial.suggest_float("entropy_scale", 1e-4, 1e-2, log=True),
        "horizon": trial.suggest_categorical("horizon", [10, 15, 25]),
        "gamma": trial.suggest_categorical("gamma", [0.97, 0.99, 0.995, 0.997]),
    }


class TrialEvalRecorder(EvalRecorder):
    """The harness's evaluation recorder that also reports each evaluation to an optuna trial and stops the run
    when the pruner says so. ``offset`` places this run's steps after the trial's earlier seeds."""

    def __init__(self, eval_env, eval_every: int, n_episodes: int, trial: optuna.Trial, offset: int) -> None:
        super().__init__(eval_env, eval_every, n_episodes)
        self.trial, self.offset, self.pruned = trial, offset, False

    def _evaluate(self) -> None:
        super()._evaluate()
        row = self.rows[-1]
        if row["step"] > 0:
            self.trial.report(row["return_mean"], self.offset + row["step"])
            self.pruned = self.trial.should_prune()

    def _on_step(self) -> bool:
        return super()._on_step() and not self.pruned


def run_trial(
    trial: optuna.Trial,
    env_id: str,
    n_timesteps: int,
    seeds: list[int],
    eval_every: int,
    eval_episodes: int,
    env_kwargs: dict[str, Any],
    fixed: dict[str, Any],
) -> float:
    """Train one JEPADreamer per seed with the trial's settings; the mean of all their evaluations after step 0."""
    import optuna
    from stable_baselines3.common.env_util import make_vec_env

    from wm_agent import JEPADreamer

    # the env's table entry is where a trial starts from, as `wm-agent train` does; the search and `fixed` win
    settings = {**env_settings(env_id), **sample_settings(trial, n_timesteps), **fixed}
    scores = []
    for index, seed in enumerate(seeds):
        env = make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs=env_kwargs)
        eval_env = make_vec_env(env_id, n_envs=1, seed=seed + EVAL_SEED_OFFSET, env_kwargs=env_kwargs)
        model = JEPADreamer(policy_for(env.observation_space), env, seed=seed, **settings)
        recorder = TrialEvalRecorder(eval_env, eval_every, eval_episodes, trial, offset=index * n_timesteps)
        model.learn(n_timesteps, callback=recorder)
        env.close()
        eval_env.close()
        if recorder.pruned:
            raise optuna.TrialPruned()
        scores += [row["return_mean"] for row in recorder.rows if row["step"] > 0]
    return float(np.mean(scores))


def tune(
    env_id: str,
    n_trials: int,
    n_timesteps: int,
    out: str | pathlib.Path,
    seeds: int = 1,
    eval_every: int | None = None,
    eval_episodes: int = 5,
    env_kwargs: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    sampler_seed: int = 0,
) -> dict[str, Any]:
    """Search the settings of `sample_settings` on `env_id` and write the best to `out` (JSON, see
    `write_hyperparams_file`). Returns what was written.

    :param n_trials: trials to run in this call (a study resumed from `storage` keeps its earlier ones)
    :param n_timesteps: env steps per training run
    :param seeds: training runs per trial, seeds 0..seeds-1 (more: slower, less noisy)
    :param eval_every: env steps between evaluations (default: a fifth of `n_timesteps`)
    :param fixed: settings held fixed in every trial (e.g. ``{"preset": "small"}``), over the sampled ones
    :param timeout: stop starting trials after this many seconds
    :param storage: an optuna storage URL (``sqlite:///tune.db``) to resume or share the study between processes
    """
    try:
        import optuna
    except ImportError:
        raise ImportError("wm-agent tune needs optuna: pip install 'wm-agent[tune]'") from None
    if n_trials < 1 or n_timesteps < 1 or seeds < 1 or eval_episodes < 1:
        raise ValueError("n_trials, n_timesteps, seeds and eval_episodes must be at least 1")
    register_project_envs(env_id)
    env_kwargs, fixed = dict(env_kwargs or {}), dict(fixed or {})
    eval_every = eval_every or max(1, n_timesteps // 5)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=min(5, max(1, n_trials // 3))),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=eval_every),
        storage=storage,
        study_name=study_name or f"wm-agent-{env_id}",
        load_if_exists=storage is not None,
    )
    start = time.perf_counter()
    study.optimize(
        lambda trial: run_trial(
            trial, env_id, n_timesteps, list(range(seeds)), eval_every, eval_episodes, env_kwargs, fixed
        ),
        n_trials=n_trials,
        timeout=timeout,
        catch=(FloatingPointError,),  # a setting that diverges is a failed trial, not a failed search
    )
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise RuntimeError(f"no trial of {len(study.trials)} completed (pruned or diverged): raise n_timesteps")
    best = study.best_trial
    record = {
        "format": HYPERPARAMS_FILE_FORMAT,
        "algo": OUR_ALGO,
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "hyperparams": {**best.params, **fixed},
        "objective": best.value,
        "objective_meaning": f"mean deterministic eval return over the evaluations of {seeds} run(s)",
        "n_timesteps": n_timesteps,
        "seeds": seeds,
        "trials": {s.name.lower(): sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState},
        "search_seconds": round(time.perf_counter() - start, 1),
        "date": datetime.date.today().isoformat(),
        "wm_agent": __version__,
    }
    write_hyperparams_file(out, record)
    return record


def write_hyperparams_file(path: str | pathlib.Path, record: dict[str, Any]) -> None:
    """Write a tuning result as JSON (the settings under ``"hyperparams"``)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def read_hyperparams_file(path: str | pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings and the whole record of a file `wm-agent tune` wrote (or any JSON with a "hyperparams" object).

    :raises ValueError: a file that is not such JSON, naming what is wrong
    """
    path = pathlib.Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the hyperparameter file {path}: {e}") from None
    if not isinstance(record, dict) or not isinstance(record.get("hyperparams"), dict):
        raise ValueError(
            f"{path} is not a hyperparameter file: it needs a JSON object with a 'hyperparams' object, as "
            "`wm-agent tune` writes"
        )
    return record["hyperparams"], record
