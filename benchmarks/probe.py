"""Linear probe of a world model's latent state: how much of the env's true state can a linear map read from it?

    python -m benchmarks.probe --runs benchmarks/out/suite/pixel --steps 3000

For every JEPADreamer model kept by ``wm-agent compare --save-models`` under ``--runs`` (``runs/ENV/LABEL/seedK.zip``),
the model filters one fixed stream of experience (uniform random actions, the same env seeds for every model) and
a ridge regression maps its posterior features (deterministic + stochastic state) to the env's hidden state
(``env.unwrapped.state``: cart position and velocity, pole angle and angular velocity for CartPole). The score is
the R^2 on held-out steps, per state variable. An untrained model of the same config is probed too, as the floor.

This is the representation comparison behind JEPA vs reconstruction: on a task with a moving background, a
representation that spends its capacity on the background encodes less of the pole.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from wm_agent import JEPADreamer
from wm_agent.common import policy_for, register_project_envs

RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
TRAIN_FRACTION = 0.7


def rollout_features(model: JEPADreamer, env_id: str, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior features (steps, F) and the env's hidden state (steps, S) along a seeded random-action stream."""
    policy = model.policy
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    latent, prev_action = policy.initial_state(1)
    start = torch.ones(1, device=policy.device)
    features, states = [], []
    for _ in range(steps):
        obs_tensor, _ = policy.obs_to_tensor(obs)
        _, latent = policy.act(policy.obs_spec.as_dict(obs_tensor), latent, prev_action, start, deterministic=True)
        features.append(latent.feat[0].cpu().numpy())
        states.append(np.asarray(env.unwrapped.state, dtype=np.float64))
        action = env.action_space.sample()
        prev_action = torch.as_tensor(policy.action_spec.from_env(np.asarray([action])), device=policy.device)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        start = torch.full((1,), float(done), device=policy.device)
        if done:
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
    env.close()
    return np.stack(features), np.stack(states)


def _ridge_fit_score(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray, alpha: float):
    """R^2 per target column on (x_eval, y_eval) of a ridge regression fit on (x_fit, y_fit); x standardized."""
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
    a = np.concatenate([(x_fit - mean) / std, np.ones((len(x_fit), 1))], axis=1)
    b = np.concatenate([(x_eval - mean) / std, np.ones((len(x_eval), 1))], axis=1)
    weights = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ y_fit)
    residual = ((y_eval - b @ weights) ** 2).sum(0)
    total = ((y_eval - y_eval.mean(0)) ** 2).sum(0)
    return 1.0 - residual / total


def ridge_r2(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Held-out R^2 per target column: ridge fit on the first TRAIN_FRACTION of the steps, its strength picked on
    the last fifth of those, scored on the steps after them."""
    split = int(len(features) * TRAIN_FRACTION)
    inner = int(split * 0.8)
    x_train, y_train, x_test, y_test = features[:split], targets[:split], features[split:], targets[split:]
    alpha = max(
        RIDGE_ALPHAS,
        key=lambda a: _ridge_fit_score(x_train[:inner], y_train[:inner], x_train[inner:], y_train[inner:], a).mean(),
    )
    return _ridge_fit_score(x_train, y_train, x_test, y_test, alpha)


def probe_runs(runs_dir: Path, steps: int, seed: int, env_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per kept model under ``runs_dir/runs`` (plus one untrained model per env and label)."""
    register_project_envs()
    rows = []
    untrained_done = set()
    for zip_path in sorted((runs_dir / "runs").rglob("seed*.zip")):
        record = json.loads(zip_path.with_suffix(".json").read_text())
        env_id, label = record["spec"]["env_id"], record["spec"]["label"]
        if not label.startswith("jepa_dreamer") or (env_ids and env_id not in env_ids):
            continue
        model = JEPADreamer.load(zip_path, device="cpu")
        candidates = [(label, record["spec"]["seed"], model)]
        if (env_id, label) not in untrained_done:  # the floor: same config, no training
            untrained_done.add((env_id, label))
            policy = policy_for(model.observation_space)
            untrained = JEPADreamer(policy, env_id, config=model.config, seed=0, device="cpu")
            candidates.append((f"{label} (untrained)", 0, untrained))
        for name, run_seed, agent in candidates:
            features, states = rollout_features(agent, env_id, steps, seed)
            r2 = ridge_r2(features, states)
            rows.append({"env": env_id, "model": name, "seed": run_seed, "r2": [float(v) for v in r2]})
            print(f"{env_id} {name} seed {run_seed}: R^2 " + " ".join(f"{v:.3f}" for v in r2), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], names: list[str]) -> str:
    """Mean +/- std over seeds of each state variable's held-out R^2, per env and model."""
    groups: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    for row in rows:
        groups[(row["env"], row["model"])].append(row["r2"])
    header = "| env | model | seeds | " + " | ".join(f"R^2 {n}" for n in names) + " | mean |"
    lines = [header, "|" + "---|" * (len(names) + 4)]
    for (env_id, model), values in sorted(groups.items()):
        values = np.array(values)
        cells = [f"{m:.2f} +/- {s:.2f}" for m, s in zip(values.mean(0), values.std(0))]
        lines.append(f"| {env_id} | {model} | {len(values)} | " + " | ".join(cells) + f" | {values.mean():.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="a `wm-agent compare` --out folder whose runs kept their models")
    parser.add_argument("--steps", type=int, default=3000, help="env steps of the probe stream (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the probe stream (default: %(default)s)")
    parser.add_argument("--env", default=None, help="only the runs of these env ids (comma-separated)")
    parser.add_argument("--out", default=None, help="file stem for the .md/.json tables (default: RUNS/probe)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--names", default="x,x_dot,theta,theta_dot", help="names of the state variables")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs_dir = Path(args.runs)
    rows = probe_runs(runs_dir, args.steps, args.seed, args.env.split(",") if args.env else None)
    if not rows:
        parser.error(f"no JEPADreamer model kept under {runs_dir / 'runs'} (run `wm-agent compare` with --save-models)")
    stem = Path(args.out) if args.out else runs_dir / "probe"
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    table = markdown(rows, args.names.split(","))
    stem.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
