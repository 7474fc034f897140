"""A short learning check on third-party envs (docs/THIRDPARTY.md): JEPADreamer trained for a few thousand steps
against a uniform-random policy, both evaluated on the same episode seeds.

Needs the `thirdparty` extra. One process, one torch thread; prints a markdown row per env.

    python benchmarks/thirdparty_learning.py [--envs MinAtar/Breakout-v1 LunarLander-v3] [--steps 5000]
        [--preset small] [--seed 0] [--episodes 10]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from wm_agent import JEPADreamer
from wm_agent.common import register_project_envs


def make_env(env_id: str) -> gym.Env:
    """`gym.make(env_id)` after the registration a user of the env's package does."""
    register_project_envs(env_id)
    return gym.make(env_id)


def evaluate(env_id: str, act, episodes: int, max_steps: int = 2000) -> tuple[float, float]:
    """Undiscounted return over episodes seeded 1000, 1001, ...; `act(env, obs, state, start)` -> (action, state)."""
    env, returns = make_env(env_id), []
    for episode in range(episodes):
        obs, _ = env.reset(seed=1000 + episode)
        env.action_space.seed(1000 + episode)
        state, start, total = None, True, 0.0
        for _ in range(max_steps):
            action, state = act(env, obs, state, start)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, start = total + float(reward), False
            if terminated or truncated:
                break
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def random_action(env, obs, state, start):
    return env.action_space.sample(), state


def agent_action(model: JEPADreamer):
    def act(env, obs, state, start):
        return model.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["MinAtar/Breakout-v1"])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| env | preset | steps | seed | random (mean +/- std) | JEPADreamer (mean +/- std) | train s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for env_id in args.envs:
        random_mean, random_std = evaluate(env_id, random_action, args.episodes)
        env = make_env(env_id)
        structured = isinstance(env.observation_space, (gym.spaces.Dict, gym.spaces.Tuple))
        policy = "MultiInputPolicy" if structured else "MlpPolicy"
        model = JEPADreamer(policy, env, preset=args.preset, seed=args.seed)
        began = time.time()
        model.learn(args.steps)
        seconds = time.time() - began
        mean, std = evaluate(env_id, agent_action(model), args.episodes)
        print(
            f"| `{env_id}` | {args.preset} | {args.steps} | {args.seed} | {random_mean:.2f} +/- {random_std:.2f} "
            f"| {mean:.2f} +/- {std:.2f} | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
