"""Planning at act time (issue 11): what it costs per action, and what it adds to the eval return.

`timing`: milliseconds per `predict` call with planner none / mppi / cem, small preset, one env, the torch threads
given (default 1), interleaved round by round in one run so that every planner meets the same machine load.

    python -m benchmarks.planning timing --rounds 5

`eval`: for each env and seed, train the small preset once, saving checkpoints at the given steps, then evaluate
every checkpoint with each planner (loaded with ``planner=...``) on the same eval env (seed + 1000, 10 deterministic
episodes, `evaluate_policy`). Resumable: a finished training (all its checkpoints) or evaluation (same settings) is
skipped; `--jobs` runs (env, seed) pairs in parallel processes. Writes ``results.json`` and prints a markdown table.

    python -m benchmarks.planning eval --env CartPole-v1,Pendulum-v1,MountainCarContinuous-v0,wm/CartPoleNoVel-v0 \\
        --seeds 3 --checkpoints 2500,5000,10000 --jobs 2 --threads 1

`pretrained`: the shipped agents (`load_pretrained`), each evaluated with the actor alone and with mppi at each
policy-prior weight given (`plan_prior_weight`), on an env seeded 1000, deterministic, in this process.

    python -m benchmarks.planning pretrained --env CartPole-v1,Acrobot-v1,Pendulum-v1 --prior-weights 0,0.1,1
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import pathlib
import time

import numpy as np

PLANNERS = ("none", "mppi", "cem")
# training settings per env beyond the small preset, as the suite used them when RESULTS.md's planning figures were
# measured (MountainCar then trained at 0.99, the default before the discount followed the episode limit)
TRAIN_KWARGS: dict[str, dict] = {"MountainCarContinuous-v0": {"prefill_repeat_prob": 0.9, "gamma": 0.99}}


def timing(env_ids: list[str], rounds: int, calls: int, threads: int, plan_settings: dict) -> list[dict]:
    """Median milliseconds per single-env `predict` call for each env and planner, interleaved by round."""
    import gymnasium as gym
    import torch

    from wm_agent import JEPADreamer

    torch.set_num_threads(threads)
    rows = []
    for env_id in env_ids:
        env = gym.make(env_id)
        models = {p: JEPADreamer("MlpPolicy", env_id, seed=0, planner=p, **plan_settings) for p in PLANNERS}
        times: dict[str, list[float]] = {p: [] for p in PLANNERS}
        for round_index in range(rounds + 1):  # round 0 warms up
            for planner, model in models.items():
                obs, _ = env.reset(seed=round_index)
                action, state = model.predict(obs, episode_start=np.array([True]), deterministic=True)
                start = time.perf_counter()
                for _ in range(calls):
                    obs, _, terminated, truncated, _ = env.step(action)
                    if terminated or truncated:
                        obs, _ = env.reset()
                    start_flag = np.array([terminated or truncated])
                    action, state = model.predict(obs, state=state, episode_start=start_flag, deterministic=True)
                if round_index:
                    times[planner].append(1000 * (time.perf_counter() - start) / calls)
        for planner, values in times.items():
            rows.append({"env": env_id, "planner": planner, "ms_per_action": float(np.median(values)),
                         "rounds_ms": values})  # fmt: skip
    return rows


def folder_of(out: pathlib.Path, env_id: str, seed: int) -> pathlib.Path:
    return out / env_id.replace("/", "-") / f"seed{seed}"


def train_and_evaluate(
    env_id: str, seed: int, checkpoints: list[int], out: str, episodes: int, threads: int, plan_settings: dict
) -> list[dict]:
    """Train (unless every checkpoint exists), then evaluate each checkpoint with each planner (unless done)."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    import envs  # noqa: F401  (registers the wm/ ids)
    from wm_agent import JEPADreamer
    from wm_agent.common import EVAL_SEED_OFFSET

    torch.set_num_threads(threads)
    folder = folder_of(pathlib.Path(out), env_id, seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {step: folder / f"step{step}.zip" for step in checkpoints}
    if not all(path.exists() for path in paths.values()):

        class SaveAt(BaseCallback):
            def _on_step(self) -> bool:
                if self.model.num_timesteps in paths:
                    self.model.save(paths[self.model.num_timesteps])
                return True

        start = time.perf_counter()
        model = JEPADreamer("MlpPolicy", make_vec_env(env_id, seed=seed), seed=seed, **TRAIN_KWARGS.get(env_id, {}))
        model.learn(max(checkpoints), callback=SaveAt())
        (folder / "train.json").write_text(json.dumps({"seconds": time.perf_counter() - start}) + "\n")
    rows = []
    for step in checkpoints:
        for planner in PLANNERS:
            settings = {"planner": planner, **(plan_settings if planner != "none" else {})}
            result_path = folder / f"step{step}_{planner}.json"
            if result_path.exists():
                row = json.loads(result_path.read_text())
                if row["settings"] == settings and row["episodes"] == episodes:
                    rows.append(row)
                    continue
            model = JEPADreamer.load(paths[step], **settings)
            eval_env = make_vec_env(env_id, n_envs=1, seed=seed + EVAL_SEED_OFFSET)
            start = time.perf_counter()
            returns, lengths = evaluate_policy(
                model, eval_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
            )
            seconds = time.perf_counter() - start
            row = {
                "env": env_id, "seed": seed, "step": step, "planner": planner, "settings": settings,
                "episodes": episodes, "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
                "returns": [float(r) for r in returns], "eval_seconds": seconds,
                "ms_per_action": 1000 * seconds / max(sum(lengths), 1),
            }  # fmt: skip
            tmp = result_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(row, indent=1) + "\n")
            tmp.replace(result_path)
            rows.append(row)
    return rows


def pretrained(env_ids: list[str], prior_weights: list[float], episodes: int, threads: int) -> list[dict]:
    """Eval return of each shipped agent with the actor alone and with mppi at each policy-prior weight."""
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from wm_agent import load_pretrained
    from wm_agent.common import EVAL_SEED_OFFSET

    torch.set_num_threads(threads)
    rows = []
    for env_id in env_ids:
        variants = [{"planner": "none"}] + [{"planner": "mppi", "plan_prior_weight": w} for w in prior_weights]
        for settings in variants:
            model = load_pretrained(env_id, **settings)
            start = time.perf_counter()
            returns, lengths = evaluate_policy(
                model, make_vec_env(env_id, seed=EVAL_SEED_OFFSET), episodes, deterministic=True,
                return_episode_rewards=True,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            rows.append({
                "env": env_id, "settings": settings, "episodes": episodes, "return_mean": float(np.mean(returns)),
                "return_std": float(np.std(returns)), "ms_per_action": 1000 * seconds / max(sum(lengths), 1),
            })  # fmt: skip
            print(f"| {env_id} | {settings} | {np.mean(returns):.1f} +/- {np.std(returns):.1f} | "
                  f"{rows[-1]['ms_per_action']:.1f} |", flush=True)  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per env and checkpoint, each planner's mean +/- std over seeds of the seeds' eval returns."""
    lines = [
        "| env | steps | seeds | " + " | ".join(f"planner={p}" for p in PLANNERS) + " | mppi - none | ms/action "
        "(none / mppi / cem) |",
        "|---|---:|---:|" + "---:|" * len(PLANNERS) + "---:|---:|",
    ]  # fmt: skip
    keys = sorted({(r["env"], r["step"]) for r in rows})
    for env_id, step in keys:
        cell, seeds, ms, by_planner = [], set(), [], {}
        for planner in PLANNERS:
            found = sorted(
                (r["seed"], r) for r in rows if (r["env"], r["step"], r["planner"]) == (env_id, step, planner)
            )
            values = np.array([r["return_mean"] for _, r in found])
            by_planner[planner] = dict(zip([s for s, _ in found], values))
            seeds |= {s for s, _ in found}
            per_seed = " / ".join(f"{v:.0f}" for v in values)
            cell.append(f"{values.mean():.1f} +/- {values.std():.1f} ({per_seed})" if len(values) else "n/a")
            ms.append(f"{np.mean([r['ms_per_action'] for _, r in found]):.1f}" if found else "n/a")
        common = sorted(set(by_planner["none"]) & set(by_planner["mppi"]))
        gain = np.array([by_planner["mppi"][s] - by_planner["none"][s] for s in common])
        gain_text = f"{gain.mean():+.1f} ({sum(gain > 0)}/{len(gain)} seeds up)" if len(gain) else "n/a"
        lines.append(
            f"| {env_id} | {step:,} | {len(seeds)} | " + " | ".join(cell) + f" | {gain_text} | {' / '.join(ms)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("timing", "eval", "pretrained"))
    parser.add_argument("--env", default=None, help="comma-separated env ids")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--checkpoints", default="2500,5000,10000", help="env steps at which to save and evaluate")
    parser.add_argument("--episodes", type=int, default=10, help="deterministic eval episodes")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--rounds", type=int, default=5, help="timing: interleaved rounds")
    parser.add_argument("--calls", type=int, default=100, help="timing: predict calls per planner and round")
    parser.add_argument("--prior-weights", default="0,0.1,1", help="pretrained: mppi's plan_prior_weight values")
    parser.add_argument("--plan-settings", default="{}", help="JSON of plan_* overrides, e.g. '{\"plan_samples\": 64}'")
    parser.add_argument("--out", default="benchmarks/out/planning")
    args = parser.parse_args()
    plan_settings = json.loads(args.plan_settings)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what == "timing":
        env_ids = (args.env or "CartPole-v1,Pendulum-v1").split(",")
        rows = timing(env_ids, args.rounds, args.calls, args.threads, plan_settings)
        (out / "timing.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(f"ms per action, small preset, 1 env, {args.threads} thread(s), median of {args.rounds} rounds of "
              f"{args.calls} calls; plan settings {plan_settings or 'default'}")  # fmt: skip
        print("| env | " + " | ".join(f"planner={p}" for p in PLANNERS) + " |")
        print("|---|" + "---:|" * len(PLANNERS))
        for env_id in env_ids:
            ms = [next(r["ms_per_action"] for r in rows if (r["env"], r["planner"]) == (env_id, p)) for p in PLANNERS]
            print(f"| {env_id} | " + " | ".join(f"{m:.2f}" for m in ms) + " |")
        return
    if args.what == "pretrained":
        env_ids = (args.env or "CartPole-v1,Acrobot-v1,Pendulum-v1").split(",")
        print("| shipped agent | settings | eval return | ms/action |\n|---|---|---:|---:|")
        rows = pretrained(env_ids, [float(w) for w in args.prior_weights.split(",")], args.episodes, args.threads)
        (out / "pretrained.json").write_text(json.dumps(rows, indent=1) + "\n")
        return
    env_ids = (args.env or "CartPole-v1,Pendulum-v1,MountainCarContinuous-v0,wm/CartPoleNoVel-v0").split(",")
    checkpoints = [int(step) for step in args.checkpoints.split(",")]
    tasks = [(env_id, seed) for seed in range(args.seeds) for env_id in env_ids]
    extra = (checkpoints, str(out), args.episodes, args.threads, plan_settings)
    context = multiprocessing.get_context("spawn")
    rows: list[dict] = []
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context, max_tasks_per_child=1) as pool:
        futures = {pool.submit(train_and_evaluate, env_id, seed, *extra): (env_id, seed) for env_id, seed in tasks}
        for future in concurrent.futures.as_completed(futures):
            env_id, seed = futures[future]
            try:
                rows += future.result()
                print(f"done: {env_id} seed {seed}", flush=True)
            except Exception as error:  # report and go on: the other runs still count, a rerun resumes
                print(f"FAILED: {env_id} seed {seed}: {error!r}", flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
