"""Open-loop drift of JEPA and reconstruction world models, side by side (issue 11, item 3).

    python -m benchmarks.drift --env CartPole-v1,Pendulum-v1,wm/PixelCartPole-v0 --steps 10000 --jobs 2

For every env and representation ("jepa", "reconstruction"), a JEPADreamer is trained with the same settings,
budget and seed (only `representation` differs), saved under ``OUT/models/``, and evaluated; then
`wm_agent.diagnostics.open_loop_drift` measures its open-loop prediction error against the horizon on episodes
collected with its own policy. A trained model or a measured curve that exists is reused (``--force`` redoes
them), so an interrupted call resumes where it stopped. Writes ``OUT/drift.json`` (every curve and run),
``OUT/drift.md`` (a table per env: rows k = 1, 5, 10, 20, 50; columns each metric for JEPA and reconstruction) and
one figure per env, ``FIGURES/drift_<env>.png``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np

from wm_agent.common import EVAL_SEED_OFFSET, parse_kwargs, register_project_envs

REPRESENTATIONS = ("jepa", "reconstruction")
SHORT = {"jepa": "JEPA", "reconstruction": "recon"}
# The settings of the shipped pixel agent (wm_agent/pretrained): the small preset's CNN halved, half the updates
DEFAULT_HYPERPARAMS: dict[str, dict[str, Any]] = {"wm/PixelCartPole-v0": {"cnn_depth": 8, "train_ratio": 64}}
TABLE_HORIZONS = (1, 5, 10, 20, 50)
# (column title, metric, representations that have it)
COLUMNS = (
    ("reward abs err", "reward_error", REPRESENTATIONS),
    ("continue Brier", "cont_error", REPRESENTATIONS),
    ("latent / copy-last", "latent_error", REPRESENTATIONS),
    ("deter / copy-last", "deter_error", REPRESENTATIONS),
    ("embed / copy-last", "embed_error", ("jepa",)),
    ("obs MSE", "obs_error", ("reconstruction",)),
    ("obs copy-last MSE", "obs_copy_last", ("reconstruction",)),
)


def slug(env_id: str) -> str:
    return env_id.replace("/", "_")


def fresh(path: Path, sources: list[Path]) -> bool:
    """`path` exists and was written after every one of `sources` (a retrained model makes its curves stale)."""
    return path.exists() and all(path.stat().st_mtime_ns >= source.stat().st_mtime_ns for source in sources)


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train (or load) one model and measure its drift curves (or read them). Runs in a worker process."""
    import torch

    from wm_agent import JEPADreamer
    from wm_agent.diagnostics import DriftCurves, open_loop_drift

    torch.set_num_threads(job["threads"])
    register_project_envs()
    out = Path(job["out"])
    model_path = out / "models" / slug(job["env"]) / f"{job['representation']}.zip"
    run_path = model_path.with_suffix(".json")
    curves_path = out / "curves" / slug(job["env"]) / f"{job['representation']}.json"
    if job["force"] or not (model_path.exists() and run_path.exists()):
        model = JEPADreamer(
            "MlpPolicy", job["env"], preset=job["preset"], seed=job["seed"], representation=job["representation"],
            **job["hyperparams"],
        )  # fmt: skip
        began = time.perf_counter()
        model.learn(job["steps"])
        train_seconds = time.perf_counter() - began
        model.save(model_path)
        run = {
            "env": job["env"], "representation": job["representation"], "preset": job["preset"],
            "hyperparams": job["hyperparams"], "steps": int(model.num_timesteps), "seed": job["seed"],
            "train_seconds": round(train_seconds, 1),
        }  # fmt: skip
        run_path.write_text(json.dumps(run, indent=1))
    run = json.loads(run_path.read_text())
    if "eval_mean" not in run:  # evaluated apart from training, so a run without it (or stripped of it) gets one
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.evaluation import evaluate_policy

        model = JEPADreamer.load(model_path, device="cpu")
        eval_env = make_vec_env(job["env"], n_envs=1, seed=job["seed"] + EVAL_SEED_OFFSET)
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=job["eval_episodes"], deterministic=True)
        eval_env.close()
        run.update(eval_mean=float(mean), eval_std=float(std), eval_episodes=job["eval_episodes"])
        run_path.write_text(json.dumps(run, indent=1))
    if job["force"] or not fresh(curves_path, [model_path]):
        model = JEPADreamer.load(model_path, device="cpu")
        curves = open_loop_drift(
            model, job["env"], n_episodes=job["episodes"], horizon=job["horizon"], start_every=job["start_every"],
            seed=job["seed"] + EVAL_SEED_OFFSET,
        )  # fmt: skip
        curves_path.parent.mkdir(parents=True, exist_ok=True)
        curves_path.write_text(json.dumps(curves.to_dict()))
    return {"run": run, "curves": DriftCurves.from_dict(json.loads(curves_path.read_text())).to_dict()}


def pooled_one(job: dict[str, Any]) -> dict[str, Any]:
    """Every representation's model measured on the same episodes.

    Own-policy curves compare models on different data (a policy that balances the pole longer, or swings the
    pendulum up, makes other trajectories). ``pooled_from="models"``: an equal share of the episodes is collected
    by each model's policy, so each model also predicts the other's; ``"pretrained"``: all are collected by the
    shipped agent of the env (`wm_agent.load_pretrained`), a policy neither model was trained with.
    """
    import torch

    from wm_agent import JEPADreamer, load_pretrained
    from wm_agent.diagnostics import collect_episodes, open_loop_drift

    torch.set_num_threads(job["threads"])
    register_project_envs()
    source = job.get("pooled_from", "models")
    folder = Path(job["out"]) / "models" / slug(job["env"])
    model_paths = [folder / f"{rep}.zip" for rep in job["representations"]]
    stem = "pooled" if source == "models" else f"pooled-{source}"
    curves_folder = Path(job["out"]) / "curves" / slug(job["env"])
    paths = {rep: curves_folder / f"{stem}_{rep}.json" for rep in job["representations"]}
    if job["force"] or not all(fresh(path, model_paths) for path in paths.values()):
        models = {rep: JEPADreamer.load(path, device="cpu") for rep, path in zip(job["representations"], model_paths)}
        seed = job["seed"] + EVAL_SEED_OFFSET
        if source == "pretrained":
            collectors = {"shipped agent": load_pretrained(job["env"], device="cpu")}
        else:
            collectors = {f"{SHORT[rep]} agent": model for rep, model in models.items()}
        share = max(1, job["episodes"] // len(collectors))
        episodes = []
        for i, collector in enumerate(collectors.values()):
            episodes += collect_episodes(collector, job["env"], share, seed=seed + 100 * i)
        for rep, model in models.items():
            curves = open_loop_drift(
                model, episodes=episodes, horizon=job["horizon"], start_every=job["start_every"], seed=seed
            )
            curves.info["collected_by"] = {name: share for name in collectors}
            paths[rep].parent.mkdir(parents=True, exist_ok=True)
            paths[rep].write_text(json.dumps(curves.to_dict()))
    return {"env": job["env"], "pooled": {rep: json.loads(path.read_text()) for rep, path in paths.items()}}


def table(results: dict[str, dict[str, Any]], key: str, horizons: tuple[int, ...] = TABLE_HORIZONS) -> list[str]:
    """The rows of one set of curves (`key`: "curves" own-policy, "pooled" same episodes): a row per horizon, a
    column per metric and representation."""
    reps = [r for r in REPRESENTATIONS if r in results and key in results[r]]
    header, rule = ["k", "predictions"], ["---:", "---:"]
    for title, metric, owners in COLUMNS:
        for rep in reps:
            if rep in owners and metric in results[rep][key]["metrics"]:
                header.append(f"{title} ({SHORT[rep]})")
                rule.append("---:")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for k in horizons:
        counts = [results[r][key]["count"][k - 1] if k <= len(results[r][key]["count"]) else 0 for r in reps]
        if not any(counts):
            continue
        row = [str(k), " / ".join(str(c) for c in counts)]
        for _, metric, owners in COLUMNS:
            for rep in reps:
                if rep in owners and metric in results[rep][key]["metrics"]:
                    curve = results[rep][key]["metrics"][metric]
                    value = curve[k - 1] if k <= len(curve) else None
                    row.append("n/a" if value is None else f"{value:.3g}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown(env_id: str, results: dict[str, dict[str, Any]]) -> str:
    """One env's section: the runs, then the tables on own-policy and on the same (pooled) episodes."""
    reps = [r for r in REPRESENTATIONS if r in results]
    lines = [f"#### {env_id}", ""]
    for rep in reps:
        run, info = results[rep]["run"], results[rep]["curves"]["info"]
        lines.append(
            f"- {SHORT[rep]}: {run['steps']:,} steps, eval {run['eval_mean']:.1f} +/- {run['eval_std']:.1f}, "
            f"trained in {run['train_seconds']:.0f} s; {info['episodes']} own-policy episodes "
            f"(mean length {info['episode_length_mean'] - 1:.0f} steps, {info['terminations']} terminated)"
        )
    if all("pooled" in results[r] for r in reps):
        info = results[reps[0]]["pooled"]["info"]
        by = " and ".join(f"{n} by the {name}" for name, n in info.get("collected_by", {}).items()) or "pooled"
        lines += [
            "",
            f"Both models on the same {info['episodes']} episodes ({by}; mean length "
            f"{info['episode_length_mean'] - 1:.0f} steps, {info['terminations']} terminated, "
            f"{info['start_points']} start points):",
            "",
            *table(results, "pooled"),
        ]
    lines += ["", "Each agent on its own policy's episodes:", "", *table(results, "curves")]
    return "\n".join(lines)


def figure(env_id: str, results: dict[str, dict[str, Any]], path: Path) -> None:
    """Four panels against the horizon: reward, continue, latent (and deterministic state), own target; on the
    pooled episodes where measured (the same data for both models), else each on its own policy's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"jepa": "tab:blue", "reconstruction": "tab:orange"}
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for rep, result in results.items():
        curves = result.get("pooled", result["curves"])
        k = np.asarray(curves["horizon"])
        m = {name: np.array([np.nan if v is None else v for v in c]) for name, c in curves["metrics"].items()}
        c, label = colors[rep], SHORT[rep]
        axes[0].plot(k, m["reward_error"], color=c, label=f"{label} open loop")
        axes[0].plot(k, m["reward_error_filtered"], color=c, ls=":", label=f"{label} from posterior")
        axes[1].plot(k, m["cont_error"], color=c, label=f"{label} open loop")
        axes[1].plot(k, m["cont_error_filtered"], color=c, ls=":", label=f"{label} from posterior")
        axes[2].plot(k, m["latent_error"], color=c, label=f"{label} features")
        axes[2].plot(k, m["deter_error"], color=c, ls="--", label=f"{label} deterministic state")
        if rep == "jepa":
            axes[3].plot(k, m["embed_error"], color=c, label=f"{label}: predicted embedding")
        else:
            axes[3].plot(k, m["obs_error"] / m["obs_copy_last"], color=c, label=f"{label}: decoded observation")
    titles = (
        "reward: mean abs error",
        "continue: Brier score",
        "latent vs posterior (copy-last = 1)",
        "own target (copy-last = 1)",
    )
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("open-loop horizon k")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[2:]:
        ax.axhline(1.0, color="grey", lw=0.8)
    axes[0].set_yscale("log")
    fig.suptitle(f"Open-loop drift on {env_id}: JEPA vs reconstruction", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1,Pendulum-v1,wm/PixelCartPole-v0", help="comma-separated ids")
    parser.add_argument("--representations", default=",".join(REPRESENTATIONS))
    parser.add_argument("--steps", type=int, default=10_000, help="env steps of training per model")
    parser.add_argument("--env-steps", action="append", default=[], metavar="ENV=N", help="a budget for one env")
    parser.add_argument(
        "--hyperparams", action="append", default=[], metavar="ENV:k=v,...",
        help=f"config overrides for one env, on top of the defaults {DEFAULT_HYPERPARAMS}",
    )  # fmt: skip
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=10, help="own-policy episodes the drift is measured on")
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--start-every", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1, help="models trained in parallel processes (0: in this one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", default="benchmarks/out/drift")
    parser.add_argument("--figures", default="benchmarks/figures", help="folder of the figures ('' for none)")
    parser.add_argument(
        "--pooled-from", choices=("models", "pretrained"), default="models",
        help="who collects the episodes both models are measured on: the two models' policies, an equal share "
        "each, or the env's shipped agent (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="retrain and remeasure what exists")
    args = parser.parse_args(argv)

    env_ids = [e for e in args.env.split(",") if e]
    reps = [r for r in args.representations.split(",") if r]
    budgets = {e: args.steps for e in env_ids}
    for item in args.env_steps:
        env_id, _, steps = item.rpartition("=")
        budgets[env_id] = int(steps)
    hyperparams = {e: dict(DEFAULT_HYPERPARAMS.get(e, {})) for e in env_ids}
    for item in args.hyperparams:
        env_id, _, pairs = item.partition(":")
        hyperparams.setdefault(env_id, {}).update(parse_kwargs(pairs))
    jobs = [
        dict(
            env=e, representation=r, steps=budgets[e], hyperparams=hyperparams[e], preset=args.preset,
            seed=args.seed, episodes=args.episodes, horizon=args.horizon, start_every=args.start_every,
            eval_episodes=args.eval_episodes, threads=args.threads, out=args.out, force=args.force,
        )
        for e in env_ids
        for r in reps
    ]  # fmt: skip
    # longest first (images, then bigger budgets), so parallel workers finish together
    jobs.sort(key=lambda j: (j["env"].startswith("wm/Pixel"), j["steps"]), reverse=True)
    out = Path(args.out)
    for job in jobs:
        (out / "models" / slug(job["env"])).mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    if args.jobs == 0:
        outputs = [run_one(job) for job in jobs]
    else:
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            outputs = list(pool.map(run_one, jobs))
    results: dict[str, dict[str, Any]] = {}
    for output in outputs:
        results.setdefault(output["run"]["env"], {})[output["run"]["representation"]] = output
    if len(reps) > 1:  # every model again on the same episodes, an equal share from each agent
        pooled_jobs = [
            dict(
                env=e, representations=reps, out=args.out, episodes=args.episodes, horizon=args.horizon,
                start_every=args.start_every, seed=args.seed, threads=args.threads, force=args.force,
                pooled_from=args.pooled_from,
            )
            for e in env_ids
        ]  # fmt: skip
        if args.jobs == 0:
            pooled = [pooled_one(job) for job in pooled_jobs]
        else:
            with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
                pooled = list(pool.map(pooled_one, pooled_jobs))
        for output in pooled:
            for rep, curves in output["pooled"].items():
                results[output["env"]][rep]["pooled"] = curves
    (out / "drift.json").write_text(json.dumps(results, indent=1))
    tables = [markdown(e, results[e]) for e in env_ids]
    (out / "drift.md").write_text("\n\n".join(tables) + "\n")
    if args.figures:
        try:
            for e in env_ids:
                figure(e, results[e], Path(args.figures) / f"drift_{slug(e)}.png")
        except ImportError:
            print("matplotlib is not installed (pip install 'wm-agent[bench]'): no figures, the tables are written")
    print("\n\n".join(tables))
    print(f"\n{len(jobs)} models in {time.perf_counter() - began:.0f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
