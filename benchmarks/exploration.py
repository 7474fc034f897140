"""How far an untrained actor's random actions get, sampled with white, coloured or sticky noise (issue 13).

Before the actor has learned anything its distribution is near uniform (discrete actions) or a wide normal around 0
(continuous: mean 0, the std the initial `BoundedNormal` has, about 0.89). This plays that distribution on an env,
drawing its noise afresh every step (white, `exploration_noise_beta=0`), from a 1/f^beta sequence (`ColoredNoise`,
beta 1 pink, 2 red), or, for discrete actions, repeating the last action with probability 0.75 (the sticky prefill),
and counts the episodes that end by termination (Acrobot's and MountainCar's goal) and their mean return:

    python -m benchmarks.exploration --env Acrobot-v1,MountainCarContinuous-v0 --episodes 20
"""

from __future__ import annotations

import argparse
import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from wm_agent.exploration import ColoredNoise

INITIAL_STD = 0.1 + 0.9 / (1 + math.exp(-2.0))  # BoundedNormal's std at zero logits with the default min/max std


def play(env_id: str, noise: str, episodes: int) -> tuple[int, float]:
    """Episodes that terminated (of `episodes`) and the mean return, seeds 0..episodes-1."""
    env = gym.make(env_id)
    discrete = isinstance(env.action_space, spaces.Discrete)
    dims = 1 if discrete else int(np.prod(env.action_space.shape))
    terminated_episodes, returns = 0, []
    for seed in range(episodes):
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        beta = {"white": 0.0, "pink": 1.0, "red": 2.0}.get(noise, 0.0)
        colored = ColoredNoise(beta, 1, dims, 1000, rng)
        start, action, total = True, None, 0.0
        while True:
            draw = colored(np.array([start]))[0]  # (dims,) standard normal
            if discrete:
                n = int(env.action_space.n)
                if noise == "sticky" and action is not None and rng.random() < 0.75:
                    pass  # repeat the last action
                else:
                    uniform = 0.5 * (1 + math.erf(draw[0] / math.sqrt(2)))  # inverse-CDF sampling, as the actor
                    action = min(n - 1, int(uniform * n))
            else:
                action = np.clip(INITIAL_STD * draw, -1, 1).astype(env.action_space.dtype)
            start = False
            _, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        terminated_episodes += int(terminated)
        returns.append(total)
    return terminated_episodes, float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Acrobot-v1,MountainCarContinuous-v0", help="comma-separated env ids")
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    print("| env | noise | episodes that reached the goal | mean return |")
    print("|---|---|---:|---:|")
    for env_id in args.env.split(","):
        discrete = isinstance(gym.make(env_id).action_space, spaces.Discrete)
        for noise in ("white", "sticky", "pink", "red") if discrete else ("white", "pink", "red"):
            reached, mean_return = play(env_id, noise, args.episodes)
            print(f"| {env_id} | {noise} | {reached} / {args.episodes} | {mean_return:.1f} |")


if __name__ == "__main__":
    main()
