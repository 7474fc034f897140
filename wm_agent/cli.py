"""The `wm-agent` command: train, evaluate and compare agents (rl-baselines3-zoo habits)."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

from wm_agent.common import (
    ALGO_NAMES,
    EVAL_SEED_OFFSET,
    OUR_ALGO,
    algo_class,
    episode_limit,
    parse_kwargs,
    policy_for,
    register_project_envs,
)


def _parse_kwargs(pairs: list[str]) -> dict[str, Any]:
    """`["k=v", ...]` (or one "k=v,k2=v2" or a JSON object) -> kwargs, a usage error if malformed."""
    try:
        return parse_kwargs(pairs)
    except ValueError as error:
        raise SystemExit(f"wm-agent: {error}") from None


def _hyperparams_from_file(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of --hyperparams-file (written by `wm-agent tune`), checked against --algo and --env."""
    if not args.hyperparams_file:
        return {}
    from wm_agent.tune import read_hyperparams_file

    try:
        hyperparams, record = read_hyperparams_file(args.hyperparams_file)
    except ValueError as error:
        raise SystemExit(f"wm-agent train: {error}") from None
    if record.get("algo", args.algo) != args.algo:
        raise SystemExit(
            f"wm-agent train: {args.hyperparams_file} holds settings of {record['algo']}, not of --algo {args.algo}"
        )
    if record.get("env_id", args.env) != args.env:
        print(f"note: {args.hyperparams_file} was tuned on {record['env_id']}, not on {args.env}")
    return hyperparams


def _table_settings(env_id: str, chosen: dict[str, Any]) -> dict[str, Any]:
    """The env's entry in wm-agent's table (`ENV_SETTINGS`) that `chosen` does not set, announced."""
    from wm_agent.config import env_settings

    table = {k: v for k, v in env_settings(env_id).items() if k not in chosen}
    if table:
        shown = " ".join(f"{k}={v}" for k, v in table.items())
        print(f"note: {env_id} trains with wm-agent's settings for it: {shown} (ENV_SETTINGS; --hyperparams win)")
    return table


def tune(args: argparse.Namespace) -> int:
    """Search JEPADreamer's settings on an env with optuna and write the best as a hyperparameter file."""
    import torch

    from wm_agent.tune import tune as run_tune

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or f"{args.log_folder}/{OUR_ALGO}/{args.env.replace('/', '-')}_tuned.json"
    try:
        record = run_tune(
            args.env,
            n_trials=args.n_trials,
            n_timesteps=args.n_timesteps,
            out=out,
            seeds=args.seeds,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            env_kwargs=_parse_kwargs(args.env_kwargs),
            fixed={"preset": args.preset, **_parse_kwargs(args.hyperparams)},
            timeout=args.timeout,
            storage=args.storage,
            study_name=args.study_name,
            sampler_seed=args.sampler_seed,
        )
    except (ImportError, ValueError, RuntimeError) as error:
        raise SystemExit(f"wm-agent tune: {error}") from None
    print(
        f"best of {sum(record['trials'].values())} trials on {args.env} ({record['trials']}): objective "
        f"{record['objective']:.1f} ({record['objective_meaning']}) with {record['hyperparams']}\n"
        f"written to {out}; train with it: wm-agent train --env {args.env} --hyperparams-file {out}"
    )
    return 0


def _announce_long_episode_discount(env_id: str, limit: int | None, gamma: float) -> None:
    """Say so where the env's time limit gave the agent another discount than an env without one gets
    (`discount_for_episode_limit`)."""
    from wm_agent.config import discount_for_episode_limit

    if gamma != discount_for_episode_limit(None):
        print(f"note: {env_id} trains with gamma={gamma}, the discount for episodes of up to {limit:,} steps "
              "(--hyperparams gamma=... wins)")  # fmt: skip


def train(args: argparse.Namespace) -> int:
    """Train an agent, evaluate it on a separate env, save it, and print where it went."""
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    if args.threads:
        torch.set_num_threads(args.threads)
    register_project_envs(args.env)
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed, env_kwargs=_parse_kwargs(args.env_kwargs))
    algo_kwargs = {**_hyperparams_from_file(args), **_parse_kwargs(args.hyperparams)}
    if args.algo == OUR_ALGO:
        algo_kwargs.setdefault("preset", args.preset)
        algo_kwargs = {**_table_settings(args.env, algo_kwargs), **algo_kwargs}
    model = algo_class(args.algo)(
        policy_for(env.observation_space),
        env,
        seed=args.seed,
        verbose=args.verbose,
        tensorboard_log=args.tensorboard_log,
        **algo_kwargs,
    )
    if args.algo == OUR_ALGO and "gamma" not in algo_kwargs:
        _announce_long_episode_discount(args.env, episode_limit(env), model.gamma)
    start = time.perf_counter()
    model.learn(args.n_timesteps, progress_bar=not args.no_progress)
    train_seconds = time.perf_counter() - start

    out_dir = pathlib.Path(args.log_folder) / args.algo
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{args.env.replace('/', '-')}_seed{args.seed}.zip"
    model.save(path)

    eval_env = make_vec_env(
        args.env, n_envs=1, seed=args.seed + EVAL_SEED_OFFSET, env_kwargs=_parse_kwargs(args.env_kwargs)
    )
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    print(
        f"{args.algo} on {args.env}: {args.n_timesteps} env steps in {train_seconds:.0f} s; "
        f"eval return {mean:.1f} +/- {std:.1f} over {args.eval_episodes} deterministic episodes; saved to {path}"
    )
    if args.package:
        from wm_agent.pretrained import package

        command = "wm-agent " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("wm-agent") else ""
        env_kwargs = _parse_kwargs(args.env_kwargs)
        folder = package(
            model,
            args.package,
            args.env,
            mean,
            std,
            args.eval_episodes,
            env_kwargs,
            command,
            eval_seed=args.seed + EVAL_SEED_OFFSET,
        )
        print(f"packaged as a pretrained agent in {folder}")
    return 0


def _load_agent(args: argparse.Namespace):
    """A saved .zip (any algo), or for jepa_dreamer a shipped env id, agent folder or hub id
    -> (model, env id, env kwargs); a pretrained agent's env and env kwargs come from its metadata."""
    register_project_envs()
    path = pathlib.Path(args.path)
    env_kwargs = _parse_kwargs(args.env_kwargs)
    if args.algo == OUR_ALGO and not (path.is_file() or path.with_suffix(".zip").is_file()):
        from wm_agent.pretrained import load_pretrained

        model = load_pretrained(args.path, device=args.device)
        env_id = args.env or model.pretrained_info["env_id"]
        if env_id == model.pretrained_info["env_id"]:  # the agent's own env: its settings, then the given ones
            env_kwargs = {**model.pretrained_info.get("env_kwargs", {}), **env_kwargs}
    else:
        model = algo_class(args.algo).load(args.path, device=args.device)
        env_id = args.env
    if env_id is None:
        raise SystemExit(f"wm-agent {args.command}: pass --env ID for a bare checkpoint")
    register_project_envs(env_id)
    return model, env_id, env_kwargs


def _eval_seed(args: argparse.Namespace, model) -> int:
    """--seed, else a pretrained agent's own eval seed (so `wm-agent eval ENV_ID` replays its listed score), else 0."""
    if args.seed is not None:
        return args.seed
    info = getattr(model, "pretrained_info", None) or {}
    return int(info.get("eval_seed") or 0)


def evaluate(args: argparse.Namespace) -> int:
    """Evaluate a saved agent: mean +/- std of the return over N deterministic episodes."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    model, env_id, env_kwargs = _load_agent(args)
    env = make_vec_env(env_id, n_envs=1, seed=_eval_seed(args, model), env_kwargs=env_kwargs)
    mean, std = evaluate_policy(model, env, n_eval_episodes=args.n_episodes, deterministic=not args.stochastic)
    print(f"{args.path} on {env_id}: {mean:.2f} +/- {std:.2f} over {args.n_episodes} episodes")
    return 0


def enjoy(args: argparse.Namespace) -> int:
    """Watch an agent: render episodes in a window, or write them to a GIF (headless)."""
    import gymnasium as gym
    import numpy as np

    model, env_id, env_kwargs = _load_agent(args)
    env = gym.make(env_id, **{**env_kwargs, "render_mode": "rgb_array" if args.gif else "human"})
    frames, returns = [], []
    for episode in range(args.n_episodes):
        obs, _ = env.reset(seed=_eval_seed(args, model) + episode)
        state, start, done, episode_return = None, np.ones(1, bool), False, 0.0
        while not done:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=not args.stochastic)
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            start, done = np.zeros(1, bool), terminated or truncated
            if args.gif:
                frames.append(env.render())
        returns.append(episode_return)
        print(f"episode {episode}: return {episode_return:.1f}")
    env.close()
    if args.gif:
        from PIL import Image

        images = [Image.fromarray(frame) for frame in frames[:: args.frame_skip]]
        duration_ms = int(1000 * args.frame_skip / args.fps)
        images[0].save(args.gif, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
        print(f"wrote {len(images)} frames to {args.gif}")
    return 0


def package_agent(args: argparse.Namespace) -> int:
    """Evaluate a saved JEPADreamer checkpoint and write it as a pretrained agent folder (with its score)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from wm_agent import JEPADreamer
    from wm_agent.pretrained import package

    register_project_envs(args.env)
    model = JEPADreamer.load(args.path, device=args.device)
    env_kwargs = _parse_kwargs(args.env_kwargs)
    eval_seed = args.seed if args.seed is not None else (model.seed or 0) + EVAL_SEED_OFFSET
    eval_env = make_vec_env(args.env, n_envs=1, seed=eval_seed, env_kwargs=env_kwargs)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.n_episodes, deterministic=True)
    folder = package(
        model, args.out, args.env, mean, std, args.n_episodes, env_kwargs, args.trained_with, eval_seed=eval_seed
    )
    print(f"{args.path} on {args.env}: {mean:.1f} +/- {std:.1f} over {args.n_episodes} episodes; packaged in {folder}")
    return 0


def list_agents(args: argparse.Namespace) -> int:
    """Print the shipped pretrained agents with their scores."""
    from wm_agent.pretrained import list_pretrained

    agents = list_pretrained()
    if not agents:
        print("No pretrained agents are shipped with this installation.")
    for agent in agents:
        print(
            f"{agent['env_id']:<28} {agent['eval_mean']:>9.1f} +/- {agent['eval_std']:<7.1f} "
            f"after {agent['n_timesteps']} steps   wm-agent eval {agent['env_id']}"
        )
    return 0


def compare(rest: list[str]) -> int:
    """Run the comparison harness (`wm_agent.compare`)."""
    from wm_agent.compare import main as compare_main

    return compare_main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wm-agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train, evaluate and save an agent")
    p.add_argument("--env", required=True, help="Gymnasium id, e.g. CartPole-v1 or wm/PixelCartPole-v0")
    p.add_argument("--algo", default=OUR_ALGO, choices=ALGO_NAMES)
    p.add_argument("-n", "--n-timesteps", type=int, default=20_000, help="env steps to train for")
    p.add_argument("--preset", default="small", help="JEPADreamer size preset: tiny, small, medium, large")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="K=V", help="constructor overrides")
    p.add_argument(
        "--hyperparams-file", default=None, metavar="FILE", help="settings from `wm-agent tune` (--hyperparams win)"
    )
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V", help="gym.make keyword arguments")
    p.add_argument("--n-envs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-f", "--log-folder", default="logs", help="where the agent is saved: FOLDER/ALGO/ENV_seedN.zip")
    p.add_argument("--tensorboard-log", default=None)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--package", default=None, metavar="DIR", help="also write a pretrained agent folder in DIR")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=train)

    agent = argparse.ArgumentParser(add_help=False)  # what eval and enjoy share: which agent, on which env
    agent.add_argument("path", help="a saved .zip, a pretrained agent folder, a shipped env id or a hub repo id")
    agent.add_argument("--env", default=None, help="env id (required for a bare .zip)")
    agent.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V", help="gym.make keyword arguments")
    agent.add_argument("--algo", default=OUR_ALGO, choices=ALGO_NAMES)
    agent.add_argument(
        "--seed", type=int, default=None, help="env seed (default: a pretrained agent's own eval seed, else 0)"
    )
    agent.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic policy")
    agent.add_argument("--device", default="auto")

    p = commands.add_parser("eval", parents=[agent], help="evaluate a saved agent")
    p.add_argument("-n", "--n-episodes", type=int, default=10)
    p.set_defaults(func=evaluate)

    p = commands.add_parser("enjoy", parents=[agent], help="watch an agent (a window, or --gif FILE headless)")
    p.add_argument("-n", "--n-episodes", type=int, default=1)
    p.add_argument("--gif", default=None, help="write the frames to this GIF instead of opening a window")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--frame-skip", type=int, default=2, help="keep every k-th frame in the GIF")
    p.set_defaults(func=enjoy)

    p = commands.add_parser("package", help="evaluate a saved JEPADreamer .zip and write a pretrained agent folder")
    p.add_argument("path", help="a JEPADreamer checkpoint .zip")
    p.add_argument("--env", required=True, help="the env id it was trained on")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V", help="gym.make keyword arguments")
    p.add_argument("--out", default="wm_agent/pretrained", help="folder to write jepa_dreamer-ENV/ into")
    p.add_argument("-n", "--n-episodes", type=int, default=10, help="deterministic evaluation episodes")
    p.add_argument("--seed", type=int, default=None, help="eval env seed (default: the agent's seed + 1000, as train)")
    p.add_argument("--trained-with", default="", help="the command that trained it, kept in results.json")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=package_agent)

    p = commands.add_parser("tune", help="search JEPADreamer's settings on an env with optuna (needs wm-agent[tune])")
    p.add_argument("--env", required=True, help="Gymnasium id")
    p.add_argument("--n-trials", type=int, default=20, help="trials to run (each trains --seeds runs)")
    p.add_argument("-n", "--n-timesteps", type=int, default=10_000, help="env steps per training run")
    p.add_argument("--seeds", type=int, default=1, help="training runs per trial, seeds 0..K-1")
    p.add_argument("--eval-every", type=int, default=None, help="env steps between evaluations (default: budget/5)")
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--preset", default="small", help="the size preset every trial uses")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="K=V", help="settings held fixed in every trial")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="K=V", help="gym.make keyword arguments")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    p.add_argument("--storage", default=None, help="optuna storage to resume or share a study: sqlite:///tune.db")
    p.add_argument("--study-name", default=None)
    p.add_argument("--sampler-seed", type=int, default=0)
    p.add_argument("-f", "--log-folder", default="logs", help="the file goes to FOLDER/jepa_dreamer/ENV_tuned.json")
    p.add_argument("--out", default=None, help="the hyperparameter file to write (overrides --log-folder)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.set_defaults(func=tune)

    p = commands.add_parser("list", help="list the shipped pretrained agents")
    p.set_defaults(func=list_agents)

    commands.add_parser("compare", help="compare agents side by side (see `wm-agent compare --help`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "compare":
        return compare(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
