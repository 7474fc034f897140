"""Does a run resumed from a checkpoint and its replay continue the same run?

For each seed, one uninterrupted `learn(total)` saves the agent and its replay at `total / 2` steps (from a
callback, without stopping); a fresh process then loads both and learns the second half. Both end agents are
evaluated on the same eval env.

    python -m benchmarks.resume --env CartPole-v1 --steps 10000 --seeds 3 --jobs 2
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import pathlib
import time

import numpy as np


def evaluate(model, env_id: str, seed: int, episodes: int) -> float:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from wm_agent.common import EVAL_SEED_OFFSET

    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + EVAL_SEED_OFFSET)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    return float(mean)


def uninterrupted(env_id: str, steps: int, seed: int, folder: str, episodes: int, threads: int) -> dict:
    """`learn(steps)` in one call, saving agent and replay halfway; returns both evaluations."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from wm_agent import JEPADreamer

    torch.set_num_threads(threads)
    half = steps // 2
    checkpoint = pathlib.Path(folder) / f"seed{seed}"

    class SaveHalfway(BaseCallback):
        def _on_step(self) -> bool:
            if self.model.num_timesteps == half:
                self.model.save(checkpoint / "agent")
                self.model.save_replay_buffer(checkpoint / "replay")
            return True

    start = time.perf_counter()
    model = JEPADreamer("MlpPolicy", make_vec_env(env_id, seed=seed), seed=seed)
    model.learn(steps, callback=SaveHalfway())
    halfway = JEPADreamer.load(checkpoint / "agent")
    return {
        "seed": seed,
        "halfway_eval": evaluate(halfway, env_id, seed, episodes),
        "uninterrupted_eval": evaluate(model, env_id, seed, episodes),
        "uninterrupted_seconds": time.perf_counter() - start,
    }


def resumed(env_id: str, steps: int, seed: int, folder: str, episodes: int, threads: int) -> dict:
    """In a fresh process: load the halfway agent and replay, learn the second half, evaluate."""
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    from wm_agent import JEPADreamer

    torch.set_num_threads(threads)
    checkpoint = pathlib.Path(folder) / f"seed{seed}"
    start = time.perf_counter()
    model = JEPADreamer.load(checkpoint / "agent", env=make_vec_env(env_id, seed=seed + 1))
    model.load_replay_buffer(checkpoint / "replay")
    model.learn(steps - model.num_timesteps, reset_num_timesteps=False)
    assert model.num_timesteps == steps
    return {
        "seed": seed,
        "resumed_eval": evaluate(model, env_id, seed, episodes),
        "resumed_seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=20, help="deterministic eval episodes")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--out", default="benchmarks/out/resume")
    args = parser.parse_args()
    folder = pathlib.Path(args.out) / args.env.replace("/", "-")
    folder.mkdir(parents=True, exist_ok=True)
    common = (args.env, args.steps)
    extra = (str(folder), args.episodes, args.threads)
    context = multiprocessing.get_context("spawn")
    # one fresh interpreter per task: the resumed half never shares a process with the run that saved it
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context, max_tasks_per_child=1) as pool:
        first = list(pool.map(uninterrupted, *zip(*[(*common, seed, *extra) for seed in range(args.seeds)])))
        second = list(pool.map(resumed, *zip(*[(*common, seed, *extra) for seed in range(args.seeds)])))
    rows = [{**a, **b} for a, b in zip(first, second)]
    (folder / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"| seed | eval at {args.steps // 2} (saved) | uninterrupted at {args.steps} | resumed at {args.steps} |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        evals = [row[key] for key in ("halfway_eval", "uninterrupted_eval", "resumed_eval")]
        print(f"| {row['seed']} | " + " | ".join(f"{value:.1f}" for value in evals) + " |")
    for key in ("uninterrupted_eval", "resumed_eval"):
        values = np.array([row[key] for row in rows])
        print(f"{key}: {values.mean():.1f} +/- {values.std():.1f}")


if __name__ == "__main__":
    main()
