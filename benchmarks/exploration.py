"""How far an untrained actor's random actions get, sampled with white, coloured or sticky noise (issue 13).

An untrained actor (zero outputs: uniform categoricals, or a normal around 0 with the initial std, about 0.89) is
played on an env through the agent's own `ActionDist`, its noise drawn afresh every step (white,
`exploration_noise_beta=0`), from a 1/f^beta sequence (`ColoredNoise`: beta 1 pink, 2 red), or, for discrete
actions, its last action repeated with probability 0.75 (the sticky prefill). Counts the episodes that end by
termination (Acrobot's and MountainCar's goal) and their mean return:

    python -m benchmarks.exploration --env Acrobot-v1,MountainCarContinuous-v0 --episodes 20
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

from wm_agent.behavior import ActionDist
from wm_agent.config import make_config
from wm_agent.exploration import ColoredNoise
from wm_agent.spaces import ActionSpec

BETAS = {"white": 0.0, "sticky": 0.0, "pink": 1.0, "red": 2.0}
STICKY_REPEAT_PROB = 0.75


def play(env_id: str, noise: str, episodes: int) -> tuple[int, float]:
    """Episodes that terminated (of `episodes`) and the mean return, seeds 0..episodes-1."""
    env = gym.make(env_id)
    spec = ActionSpec(env.action_space)
    actor_outputs = torch.zeros(1, spec.size if spec.discrete else 2 * spec.size)
    actor = ActionDist(actor_outputs, spec, make_config())  # what a freshly built actor outputs
    terminated_episodes, returns = 0, []
    for seed in range(episodes):
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        colored = ColoredNoise(BETAS[noise], 1, spec.noise_size, 1000, rng)
        start, action, total = True, None, 0.0
        while True:
            draw = torch.as_tensor(colored(np.array([start])), dtype=torch.float32)  # (1, noise_size)
            if not (noise == "sticky" and action is not None and rng.random() < STICKY_REPEAT_PROB):
                action = spec.to_env(actor.sample(noise=draw).numpy())[0]
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
        discrete = ActionSpec(gym.make(env_id).action_space).discrete
        for noise in ("white", "sticky", "pink", "red") if discrete else ("white", "pink", "red"):
            reached, mean_return = play(env_id, noise, args.episodes)
            print(f"| {env_id} | {noise} | {reached} / {args.episodes} | {mean_return:.1f} |")


if __name__ == "__main__":
    main()
