"""Transfer to new physics: zero-shot, then fine-tuning against training from scratch (issue 11, item 4).

    python -m benchmarks.transfer train --env cartpole --seeds 3
    python -m benchmarks.transfer zeroshot --env cartpole
    python -m benchmarks.transfer finetune --env cartpole          # the setting zero-shot hurt most
    python -m benchmarks.transfer report                          # tables and figures from what exists
    (the same with --env pendulum)

Steps, each resumable (a finished run or evaluation stored under ``OUT`` is reused; ``--force`` redoes it):

``train``: JEPADreamer (small preset, default config) and the SB3 baseline (PPO on ``wm/CartPoleVariant-v0``, SAC on
``wm/PendulumVariant-v0``, with rl-zoo's hyperparameters for CartPole-v1 / Pendulum-v1 through the comparison
harness) at the default physics, seeds 0..K-1; each agent is saved as ``OUT/<env>/train/<algo>/seed<k>.zip``.

``zeroshot``: every saved agent, unchanged, evaluated deterministically (``--eval-episodes`` episodes on an env
seeded seed + EVAL_SEED_OFFSET, the harness protocol) on a one-factor-at-a-time grid of physics settings
(:data:`GRIDS`); a uniform random policy is evaluated on the same episodes as the floor.

``finetune``: on a changed setting (``--setting length=2.0``; by default the one where JEPADreamer's zero-shot
return dropped most), each saved agent is loaded with the new env and trained on (see :func:`load_for_finetune`
for the recipe), and a fresh agent of the same algorithm is trained from scratch, same seeds, same budget, an
evaluation every ``--eval-every`` steps; steps to threshold = the first evaluation at or above it.
``--stop-at-threshold`` (the default) ends a run at that evaluation, to save compute.

Writes ``OUT/<env>/zeroshot.json``, ``OUT/<env>/finetune/<setting>/<algo>/<mode>/seed<k>.json``,
``OUT/transfer.md`` (the tables) and ``FIGURES/transfer_zeroshot_<env>.png``, ``FIGURES/transfer_finetune_<env>.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wm_agent.common import EVAL_SEED_OFFSET, OUR_ALGO, register_project_envs


@dataclass(frozen=True)
class Task:
    """One env of the study: the variant id, its default physics, threshold, the SB3 baseline and the grid."""

    name: str
    env_id: str
    zoo_env_id: str  # the env whose rl-zoo hyperparameters the baseline uses (same dynamics at default physics)
    threshold: float
    defaults: dict[str, float]
    grid: dict[str, tuple[float, ...]]
    baseline: str
    baseline_steps: int  # training budget of the baseline at the default physics


TASKS: dict[str, Task] = {
    "cartpole": Task(
        name="cartpole",
        env_id="wm/CartPoleVariant-v0",
        zoo_env_id="CartPole-v1",
        threshold=475.0,
        defaults={"length": 0.5, "masspole": 0.1, "gravity": 9.8, "force_mag": 10.0},
        grid={
            "length": (0.25, 0.5, 1.0, 2.0),
            "masspole": (0.05, 0.1, 0.5, 1.0),
            "gravity": (4.9, 9.8, 19.6),
            "force_mag": (5.0, 10.0, 20.0),
        },
        baseline="ppo",
        baseline_steps=50_000,
    ),
    "pendulum": Task(
        name="pendulum",
        env_id="wm/PendulumVariant-v0",
        zoo_env_id="Pendulum-v1",
        threshold=-200.0,
        defaults={"g": 10.0, "m": 1.0, "l": 1.0},
        grid={"g": (5.0, 10.0, 15.0), "m": (0.5, 1.0, 1.5), "l": (0.5, 1.0, 1.5)},
        baseline="sac",
        baseline_steps=20_000,
    ),
}
GRIDS = {name: task.grid for name, task in TASKS.items()}
LABELS = {OUR_ALGO: "JEPADreamer", "ppo": "PPO", "sac": "SAC", "random": "random"}


def setting_name(factor: str | None, value: float | None) -> str:
    """``length=2.0``, or ``default`` for the training physics."""
    return "default" if factor is None else f"{factor}={value:g}"


def parse_setting(text: str) -> dict[str, float]:
    """``"length=2"`` -> ``{"length": 2.0}``; ``"default"`` -> ``{}``."""
    if text == "default":
        return {}
    factor, _, value = text.partition("=")
    return {factor.strip(): float(value)}


def grid_settings(task: Task) -> list[tuple[str, dict[str, float]]]:
    """The default physics, then every non-default value of each factor with the others at their defaults."""
    settings = [("default", {})]
    for factor, values in task.grid.items():
        for value in values:
            if value != task.defaults[factor]:
                settings.append((setting_name(factor, value), {factor: float(value)}))
    return settings


def algos_of(task: Task, args: argparse.Namespace) -> list[str]:
    """The algorithms to run: JEPADreamer and the task's SB3 baseline, unless ``--algos`` narrows them."""
    wanted = [a for a in args.algos.split(",") if a] if args.algos else [OUR_ALGO, task.baseline]
    return [a if a == OUR_ALGO else task.baseline for a in wanted if a in (OUR_ALGO, task.baseline, "sb3")]


# ------------------------------------------------------------------------------------------------------- running


def run_spec(task: Task, algo: str, seed: int, steps: int, eval_every: int, eval_episodes: int, preset: str) -> Any:
    """The comparison harness's RunSpec of one run; the SB3 baseline gets rl-zoo's hyperparameters of the base env."""
    from wm_agent.compare.grid import RunSpec
    from wm_agent.compare.zoo_hyperparams import zoo_hyperparams

    kwargs = {"preset": preset} if algo == OUR_ALGO else zoo_hyperparams(algo, task.zoo_env_id)
    return RunSpec(
        env_id=task.env_id, label=algo, seed=seed, steps=steps, eval_every=eval_every, eval_episodes=eval_episodes,
        algo_kwargs=kwargs, threads=1, device="cpu",
    )  # fmt: skip


def make_env(task: Task, physics: dict[str, float], seed: int, n_envs: int = 1) -> Any:
    """A Monitor-wrapped VecEnv of the task at ``physics`` (the other settings at their defaults), seeded."""
    from stable_baselines3.common.env_util import make_vec_env

    register_project_envs()
    return make_vec_env(task.env_id, n_envs=n_envs, seed=seed, env_kwargs=dict(physics))


def stop_at_threshold(recorder: Any, threshold: float | None) -> Any:
    """The harness's EvalRecorder followed by a callback that stops learning once the recorder's last evaluation
    is at or above ``threshold`` (None: never)."""
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList

    class _Stop(BaseCallback):
        def _on_step(self) -> bool:
            return threshold is None or not recorder.rows or recorder.rows[-1]["return_mean"] < threshold

    return CallbackList([recorder, _Stop()])


def pretrained_folder(path: Path, task: Task) -> Path:
    """The agent saved at ``path`` (``Algo.save``) as a pretrained-agent folder (`wm_agent.package`, default
    settings: the Adam moments are left out, as in a shipped agent), written beside it on first use."""
    from wm_agent import JEPADreamer, package
    from wm_agent.pretrained import model_name

    parent = path.with_suffix("")
    folder = parent / model_name(task.env_id)
    if not (folder / "results.json").exists() or folder.stat().st_mtime_ns < path.stat().st_mtime_ns:
        record = json.loads(path.with_suffix(".json").read_text())
        last = record["evals"][-1]
        model = JEPADreamer.load(path, device="cpu")
        package(
            model, parent, task.env_id, last["return_mean"], last["return_std"], record.get("eval_episodes", 10),
            command=f"python -m benchmarks.transfer train --env {task.name}",
            eval_seed=record["seed"] + EVAL_SEED_OFFSET,
        )  # fmt: skip
    return folder


def load_for_finetune(algo: str, path: Path, env: Any, learning_starts: int | None, task: Task) -> Any:
    """A saved agent ready to fine-tune on ``env``, as a user would load it: JEPADreamer through
    ``load_pretrained(folder, env=env)`` (the agent packaged by :func:`pretrained_folder`), SB3 through
    ``Algo.load(path, env=env)``.

    The recipe, read from the code: a loaded agent has an empty replay (SB3's off-policy algorithms and
    JEPADreamer save none), and ``learn(n, reset_num_timesteps=True)`` counts steps from 0 again, so
    ``learning_starts`` applies again: JEPADreamer (1000) and SAC (100) first act uniformly at random for that
    many steps, then update. For JEPADreamer we pass ``learning_starts`` (``--finetune-learning-starts``, default
    0) as a load override: it acts with its trained policy from the first step and updates as soon as the replay
    holds one sequence (``seq_len`` steps), which is what ``reset_num_timesteps=False`` does too. SAC keeps its
    default (100 random steps to seed its replay); PPO has no replay.
    """
    from wm_agent import load_pretrained
    from wm_agent.common import algo_class

    if algo != OUR_ALGO:
        return algo_class(algo).load(path, env=env, device="cpu")
    kwargs = {} if learning_starts is None else {"learning_starts": learning_starts}
    return load_pretrained(pretrained_folder(path, task), env=env, device="cpu", **kwargs)


def train_and_record(
    task: Task,
    algo: str,
    seed: int,
    steps: int,
    physics: dict[str, float],
    eval_every: int,
    eval_episodes: int,
    preset: str,
    init_path: Path | None = None,
    stop_at: float | None = None,
    learning_starts: int | None = None,
    save_path: Path | None = None,
) -> dict[str, Any]:
    """Train one agent on ``physics`` (from scratch, or from the agent saved at ``init_path``), evaluating on the
    same physics every ``eval_every`` steps with the harness's EvalRecorder; returns the run's record."""
    import torch
    from stable_baselines3.common.utils import set_random_seed

    from wm_agent.compare.run import EvalRecorder, build_model, hyperparams_for

    torch.set_num_threads(1)
    spec = run_spec(task, algo, seed, steps, eval_every, eval_episodes, preset)
    hyperparams, source = hyperparams_for(spec)
    if hyperparams.get("normalize") or hyperparams.get("frame_stack"):
        raise ValueError("this benchmark does not handle VecNormalize / frame stacking")
    train_env = make_env(task, physics, seed, hyperparams.get("n_envs", 1))
    eval_env = make_env(task, physics, seed + EVAL_SEED_OFFSET)
    if init_path is None:
        model = build_model(spec, train_env, hyperparams)
    else:
        set_random_seed(seed)
        model = load_for_finetune(algo, init_path, train_env, learning_starts, task)
        model.set_random_seed(seed)
    recorder = EvalRecorder(eval_env, eval_every, eval_episodes)
    recorder.start_clock()
    model.learn(steps, callback=stop_at_threshold(recorder, stop_at), reset_num_timesteps=True)
    record = {
        "env_id": task.env_id, "algo": algo, "seed": seed, "steps": steps, "physics": physics,
        "mode": "scratch" if init_path is None else "finetune", "init": None if init_path is None else str(init_path),
        "hyperparams": hyperparams, "hyperparams_source": source, "learning_starts": learning_starts,
        "stop_at": stop_at, "eval_every": eval_every, "eval_episodes": eval_episodes, "evals": recorder.rows,
        "train_wall_s": round(recorder.train_time(), 1),
        "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    if save_path is not None:
        save_path.parent.mkdir(parents=True, exist_ok=True)
        model.save(save_path)
    train_env.close()
    eval_env.close()
    return record


def steps_to(evals: list[dict[str, Any]], threshold: float) -> int | None:
    """The env step of the first evaluation at or above ``threshold``; None if none."""
    return next((row["step"] for row in evals if row["return_mean"] >= threshold), None)


# --------------------------------------------------------------------------------------------------------- steps


def agent_path(out: Path, task: Task, algo: str, seed: int) -> Path:
    """Where the agent trained at the default physics is saved."""
    return out / task.name / "train" / algo / f"seed{seed}.zip"


def cmd_train(task: Task, args: argparse.Namespace) -> None:
    """Train every algorithm and seed at the default physics and save each agent (skipping those that exist)."""
    from wm_agent.compare.run import write_json

    out = Path(args.out)
    for algo in algos_of(task, args):
        steps = args.steps if algo == OUR_ALGO else (args.baseline_steps or task.baseline_steps)
        for seed in range(args.seeds):
            path = agent_path(out, task, algo, seed)
            if path.exists() and path.with_suffix(".json").exists() and not args.force:
                continue
            began = time.perf_counter()
            record = train_and_record(
                task, algo, seed, steps, {}, eval_every=steps, eval_episodes=args.eval_episodes, preset=args.preset,
                save_path=path,
            )  # fmt: skip
            write_json(path.with_suffix(".json"), record)
            last = record["evals"][-1]
            print(
                f"train {task.name} {algo} seed {seed}: {steps:,} steps, eval {last['return_mean']:.1f} "
                f"+/- {last['return_std']:.1f} in {time.perf_counter() - began:.0f} s",
                flush=True,
            )


def evaluate(model: Any, task: Task, physics: dict[str, float], seed: int, episodes: int) -> list[float]:
    """Deterministic episode returns of ``model`` (None: a uniform random policy) on ``physics``, eval seeding."""
    from stable_baselines3.common.evaluation import evaluate_policy

    env = make_env(task, physics, seed + EVAL_SEED_OFFSET)
    if model is None:
        env.action_space.seed(seed + EVAL_SEED_OFFSET)
        returns = []
        env.reset()
        while len(returns) < episodes:
            _, _, dones, infos = env.step(np.array([env.action_space.sample()]))
            if dones[0]:
                returns.append(float(infos[0]["episode"]["r"]))
    else:
        returns, _ = evaluate_policy(
            model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
        )
    env.close()
    return [float(r) for r in returns]


def cmd_zeroshot(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate every saved agent, unchanged, on every setting of the grid; stored in ``zeroshot.json``."""
    import torch

    from wm_agent.common import algo_class
    from wm_agent.compare.run import write_json

    torch.set_num_threads(1)
    out = Path(args.out)
    path = out / task.name / "zeroshot.json"
    results = json.loads(path.read_text()) if path.exists() and not args.force else {}
    results.setdefault("settings", {})
    results.update(env_id=task.env_id, eval_episodes=args.eval_episodes, seed_offset=EVAL_SEED_OFFSET)
    for algo in [*algos_of(task, args), "random"]:
        seeds = range(args.seeds)
        models = {} if algo == "random" else {s: agent_path(out, task, algo, s) for s in seeds}
        models = {s: p for s, p in models.items() if p.exists()}
        if algo != "random" and not models:
            print(f"no saved {algo} agent under {out / task.name / 'train'}: run `train` first")
            continue
        for seed in seeds if algo == "random" else models:
            model = None  # loaded once per seed, when a setting still needs it
            for name, physics in grid_settings(task):
                entry = results["settings"].setdefault(name, {"physics": physics}).setdefault(algo, {})
                if str(seed) in entry:
                    continue
                if model is None and algo != "random":
                    model = algo_class(algo).load(models[seed], device="cpu")
                returns = evaluate(model, task, physics, seed, args.eval_episodes)
                entry[str(seed)] = {"returns": returns, "mean": float(np.mean(returns))}
                print(f"zeroshot {task.name} {algo} seed {seed} {name}: {np.mean(returns):.1f}", flush=True)
                write_json(path, results)
    return results


def zeroshot_summary(results: dict[str, Any], algo: str, name: str) -> tuple[float, float, int] | None:
    """Mean and std over seeds of each seed's mean eval return on a setting, and the seed count."""
    entry = results["settings"].get(name, {}).get(algo)
    if not entry:
        return None
    means = [v["mean"] for v in entry.values()]
    return float(np.mean(means)), float(np.std(means)), len(means)


def fraction_of_default(results: dict[str, Any], algo: str, name: str) -> float | None:
    """(R - R_random) / (R_default - R_random_default): the share of the default-physics margin over a random
    policy that remains, per seed then averaged (equals R / R_default when random scores 0)."""
    entry, default = results["settings"][name].get(algo), results["settings"]["default"].get(algo)
    floor, floor_default = (zeroshot_summary(results, "random", n) for n in (name, "default"))
    if not entry or not default or floor is None or floor_default is None:
        return None
    ratios = [
        (entry[s]["mean"] - floor[0]) / (default[s]["mean"] - floor_default[0])
        for s in entry
        if s in default and abs(default[s]["mean"] - floor_default[0]) > 1e-9
    ]
    return float(np.mean(ratios)) if ratios else None


def worst_settings(results: dict[str, Any], algo: str, n: int) -> list[str]:
    """The ``n`` settings where ``algo``'s zero-shot fraction of default is lowest."""
    scored = [(fraction_of_default(results, algo, name), name) for name in results["settings"] if name != "default"]
    return [name for score, name in sorted((s, n) for s, n in scored if s is not None)[:n]]


def finetune_path(out: Path, task: Task, setting: str, algo: str, mode: str, seed: int) -> Path:
    """Where one fine-tune or scratch run on a changed setting is stored."""
    return out / task.name / "finetune" / setting / algo / mode / f"seed{seed}.json"


def cmd_finetune(task: Task, args: argparse.Namespace) -> None:
    """Fine-tune every saved agent and train from scratch on the chosen settings; one JSON per run."""
    from wm_agent.compare.run import write_json

    out = Path(args.out)
    if args.setting:
        settings = args.setting
    else:
        zeroshot = json.loads((out / task.name / "zeroshot.json").read_text())
        settings = worst_settings(zeroshot, OUR_ALGO, args.n_settings)
        print(f"settings where JEPADreamer's zero-shot return dropped most: {', '.join(settings)}")
    for setting in settings:
        physics = parse_setting(setting)
        for algo in algos_of(task, args):
            budget = args.budget if algo == OUR_ALGO else (args.baseline_budget or task.baseline_steps)
            every = args.eval_every if algo == OUR_ALGO else (args.baseline_eval_every or args.eval_every)
            for seed in range(args.seeds):
                for mode in args.modes.split(","):
                    path = finetune_path(out, task, setting, algo, mode, seed)
                    if path.exists() and not args.force:
                        continue
                    init = agent_path(out, task, algo, seed) if mode == "finetune" else None
                    if init is not None and not init.exists():
                        print(f"no saved agent {init}: run `train` first")
                        continue
                    record = train_and_record(
                        task, algo, seed, budget, physics, every, args.curve_episodes, args.preset, init_path=init,
                        stop_at=task.threshold if args.stop_at_threshold else None,
                        learning_starts=args.finetune_learning_starts if mode == "finetune" else None,
                    )  # fmt: skip
                    record["setting"] = setting
                    write_json(path, record)
                    reached = steps_to(record["evals"], task.threshold)
                    print(
                        f"{mode} {task.name} {setting} {algo} seed {seed}: threshold "
                        f"{'not reached' if reached is None else f'at {reached:,} steps'}; last eval "
                        f"{record['evals'][-1]['return_mean']:.1f} at {record['evals'][-1]['step']:,}, "
                        f"{record['train_wall_s']:.0f} s",
                        flush=True,
                    )


# -------------------------------------------------------------------------------------------------------- report


def load_finetune(out: Path, task: Task) -> dict[str, dict[str, dict[str, dict[int, dict[str, Any]]]]]:
    """Every stored fine-tune / scratch run: ``runs[setting][algo][mode][seed]``."""
    runs: dict[str, Any] = {}
    for path in sorted((out / task.name / "finetune").glob("*/*/*/seed*.json")):
        record = json.loads(path.read_text())
        setting, algo, mode = path.parts[-4], path.parts[-3], path.parts[-2]
        runs.setdefault(setting, {}).setdefault(algo, {}).setdefault(mode, {})[record["seed"]] = record
    return runs


def zeroshot_table(task: Task, results: dict[str, Any]) -> list[str]:
    """Rows = settings, columns = agents: mean +/- std over seeds of the mean eval return (fraction of default)."""
    algos = [a for a in (OUR_ALGO, task.baseline) if any(a in s for s in results["settings"].values())]
    n = {a: max((len(s.get(a, {})) for s in results["settings"].values()), default=0) for a in algos}
    header = ["setting", *(f"{LABELS[a]} ({n[a]} seeds)" for a in algos), "random policy"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(algos) + 1)]
    for name, _ in grid_settings(task):
        if name not in results["settings"]:
            continue
        row = [name if name != "default" else f"default ({_physics_text(task.defaults)})"]
        for algo in algos:
            summary = zeroshot_summary(results, algo, name)
            fraction = fraction_of_default(results, algo, name)
            if summary is None:
                row.append("n/a")
                continue
            cell = f"{summary[0]:.1f} +/- {summary[1]:.1f}"
            if name != "default" and fraction is not None:
                cell += f" ({fraction:.2f})"
            row.append(cell)
        floor = zeroshot_summary(results, "random", name)
        row.append("n/a" if floor is None else f"{floor[0]:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _physics_text(physics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in physics.items())


def finetune_table(task: Task, runs: dict[str, Any]) -> list[str]:
    """Per setting and algorithm: steps to threshold per seed and their mean, fine-tune vs scratch."""
    lines = [
        "| setting | agent | start | steps to threshold, per seed | mean (reached / seeds) | budget |"
        " return at step 0 | last eval |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for setting, by_algo in runs.items():
        for algo in (OUR_ALGO, task.baseline):
            for mode in ("finetune", "scratch"):
                seeds = by_algo.get(algo, {}).get(mode)
                if not seeds:
                    continue
                reached = {s: steps_to(r["evals"], task.threshold) for s, r in sorted(seeds.items())}
                per_seed = " / ".join("not reached" if v is None else f"{v:,}" for v in reached.values())
                hits = [v for v in reached.values() if v is not None]
                mean = f"{np.mean(hits):,.0f} ({len(hits)}/{len(reached)})" if hits else f"- (0/{len(reached)})"
                first = np.mean([r["evals"][0]["return_mean"] for r in seeds.values()])
                last = " / ".join(
                    f"{r['evals'][-1]['return_mean']:.0f}@{r['evals'][-1]['step']:,}" for r in seeds.values()
                )
                budget = next(iter(seeds.values()))["steps"]
                lines.append(
                    f"| {setting} | {LABELS[algo]} | {mode} | {per_seed} | {mean} | {budget:,} | {first:.1f} | {last} |"
                )
    return lines


def figure_zeroshot(task: Task, results: dict[str, Any], path: Path) -> None:
    """One panel per factor: zero-shot return (mean +/- std over seeds) against the factor's value."""
    from matplotlib.figure import Figure

    factors = list(task.grid)
    fig = Figure(figsize=(3.6 * len(factors), 3.4), layout="constrained")
    axes = fig.subplots(1, len(factors), sharey=True)
    for ax, factor in zip(np.atleast_1d(axes), factors):
        for algo in (OUR_ALGO, task.baseline, "random"):
            xs, means, stds = [], [], []
            for value in task.grid[factor]:
                name = "default" if value == task.defaults[factor] else setting_name(factor, value)
                summary = zeroshot_summary(results, algo, name)
                if summary is not None:
                    xs.append(value), means.append(summary[0]), stds.append(summary[1])
            if xs:
                style = {"color": "gray", "linestyle": ":"} if algo == "random" else {}
                ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=LABELS[algo], **style)
        ax.axvline(task.defaults[factor], color="black", linewidth=0.8, alpha=0.4)
        ax.axhline(task.threshold, color="gray", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xticks(task.grid[factor], [f"{v:g}" for v in task.grid[factor]])
        ax.minorticks_off()
        ax.set_xlabel(f"{factor} (default {task.defaults[factor]:g})")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("zero-shot eval return")
    np.atleast_1d(axes)[0].legend(fontsize="small")
    fig.suptitle(f"{task.env_id}: trained at the default physics, evaluated unchanged")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def figure_finetune(task: Task, runs: dict[str, Any], path: Path) -> None:
    """One panel per (setting, algorithm): each seed's eval return vs env steps, fine-tune and scratch."""
    from matplotlib.figure import Figure

    panels = [(s, a) for s in runs for a in (OUR_ALGO, task.baseline) if a in runs[s]]
    if not panels:
        return
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    colors = {"finetune": "tab:blue", "scratch": "tab:orange"}
    for ax, (setting, algo) in zip(axes, panels):
        for mode, seeds in runs[setting][algo].items():
            for i, record in enumerate(seeds.values()):
                steps = [row["step"] for row in record["evals"]]
                returns = [row["return_mean"] for row in record["evals"]]
                ax.plot(steps, returns, marker=".", color=colors.get(mode), alpha=0.8, label=mode if i == 0 else None)
        ax.axhline(task.threshold, color="gray", linestyle="--", linewidth=0.8)
        ax.set_title(f"{LABELS[algo]} on {setting}", fontsize=10)
        ax.set_xlabel("env steps on the new physics")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel("eval return (one line per seed)")
    fig.suptitle(f"{task.env_id}: fine-tuning the default-physics agent vs training from scratch")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def cmd_report(tasks: list[Task], args: argparse.Namespace) -> str:
    """Tables of whatever exists under ``OUT`` (``OUT/transfer.md``) and the figures."""
    out, sections = Path(args.out), []
    for task in tasks:
        zeroshot_file = out / task.name / "zeroshot.json"
        if zeroshot_file.exists():
            results = json.loads(zeroshot_file.read_text())
            sections += [
                f"### {task.env_id}: zero-shot ({results['eval_episodes']} episodes per agent and setting; in "
                "parentheses the fraction of the default-physics margin over a random policy that remains)",
                "",
                *zeroshot_table(task, results),
                "",
            ]
            if args.figures:
                figure_zeroshot(task, results, Path(args.figures) / f"transfer_zeroshot_{task.name}.png")
        runs = load_finetune(out, task)
        if runs:
            sections += [f"### {task.env_id}: fine-tune vs scratch (threshold {task.threshold:g})", ""]
            sections += [*finetune_table(task, runs), ""]
            if args.figures:
                figure_finetune(task, runs, Path(args.figures) / f"transfer_finetune_{task.name}.png")
    text = "\n".join(sections)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    """The command line: ``train``, ``zeroshot``, ``finetune``, ``report`` (``--help`` for the options)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("train", "zeroshot", "finetune", "report"))
    parser.add_argument("--env", default="cartpole", help="comma-separated: cartpole, pendulum")
    parser.add_argument("--algos", default="", help="jepa_dreamer and/or sb3 (the env's baseline); default both")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..K-1")
    parser.add_argument("--preset", default="small", help="JEPADreamer's size preset")
    parser.add_argument("--steps", type=int, default=10_000, help="JEPADreamer's training steps at default physics")
    parser.add_argument("--baseline-steps", type=int, default=0, help="the baseline's (0: PPO 50k, SAC 20k)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes per zero-shot evaluation")
    parser.add_argument("--setting", action="append", default=[], metavar="FACTOR=VALUE", help="fine-tune settings")
    parser.add_argument("--n-settings", type=int, default=1, help="without --setting: the N worst zero-shot ones")
    parser.add_argument("--modes", default="finetune,scratch")
    parser.add_argument("--budget", type=int, default=10_000, help="JEPADreamer's fine-tune / scratch steps")
    parser.add_argument("--baseline-budget", type=int, default=0, help="the baseline's (0: its training budget)")
    parser.add_argument("--eval-every", type=int, default=1_000)
    parser.add_argument("--baseline-eval-every", type=int, default=0, help="0: --eval-every")
    parser.add_argument("--curve-episodes", type=int, default=5, help="episodes per evaluation while fine-tuning")
    parser.add_argument("--finetune-learning-starts", type=int, default=0, help="JEPADreamer's, on load")
    parser.add_argument("--no-stop-at-threshold", dest="stop_at_threshold", action="store_false")
    parser.add_argument("--out", default="benchmarks/out/transfer")
    parser.add_argument("--figures", default="benchmarks/figures", help="'' for none")
    parser.add_argument("--force", action="store_true", help="redo what exists")
    args = parser.parse_args(argv)
    register_project_envs()
    tasks = [TASKS[name] for name in args.env.split(",") if name]
    if args.step == "report":
        print(cmd_report(tasks, args))
        return 0
    for task in tasks:
        {"train": cmd_train, "zeroshot": cmd_zeroshot, "finetune": cmd_finetune}[args.step](task, args)
    print(cmd_report(tasks, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
