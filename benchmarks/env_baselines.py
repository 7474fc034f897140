"""Reference scores for the diagnostic envs: random policy, scripted policies and short SB3 PPO runs.

Every row is evaluated on episodes seeded 1000, 1001, ...; PPO trains with seed 0 and one torch thread.
Prints a markdown table (docs/ENVS.md keeps the measured one).

    python benchmarks/env_baselines.py [--ppo-steps 20000] [--episodes 20] [--no-ppo]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402
from envs.scripted import (  # noqa: E402
    CartPoleController,
    ConstantPolicy,
    CueMemoryPolicy,
    MatchTargetPolicy,
    PendulumController,
    Policy,
)


class RandomPolicy(Policy):
    def __init__(self, space: gym.Space) -> None:
        self.space = space
        space.seed(0)

    def __call__(self, obs):
        return self.space.sample()


class StateOracle(Policy):
    """Scripted CartPole controller reading the simulator state (ignores the pixels it is given)."""

    def __init__(self, env: gym.Env) -> None:
        self.env, self.controller = env, CartPoleController()

    def __call__(self, obs):
        return self.controller(np.asarray(self.env.unwrapped.state))


class SB3Policy(Policy):
    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, obs):
        return self.model.predict(obs, deterministic=True)[0]


def evaluate(env: gym.Env, policy: Policy, episodes: int) -> tuple[float, float]:
    """Mean and std of the undiscounted return over ``episodes`` seeded episodes."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=1000 + i)
        policy.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def train_ppo(env_id: str, steps: int, **env_kwargs) -> SB3Policy:
    """PPO with rl-zoo's CartPole settings (8 envs x 32 steps, 20 epochs, lr 1e-3), MLP policy, no memory."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    vec = make_vec_env(env_id, n_envs=8, seed=0, env_kwargs=env_kwargs)
    model = PPO(
        "MlpPolicy", vec, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
        learning_rate=1e-3, clip_range=0.2, seed=0, device="cpu",
    )  # fmt: skip
    model.learn(steps)
    vec.close()
    return SB3Policy(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--ppo-steps", type=int, default=20_000)
    parser.add_argument("--no-ppo", action="store_true", help="skip the PPO rows")
    args = parser.parse_args()
    n, ppo_steps = args.episodes, args.ppo_steps
    many = 10 * n  # the toy envs are cheap: more episodes, tighter means
    ppo = f"PPO MLP {ppo_steps // 1000}k steps (no memory)"

    # (env id, settings, policy label, policy factory taking the env, episodes)
    rows: list[tuple[str, dict, str, Callable[[gym.Env], Policy], int]] = []

    def add(env_id, settings, label, make_policy, episodes=n):
        rows.append((env_id, settings, label, make_policy, episodes))

    rand = ("random", lambda env: RandomPolicy(env.action_space))
    cart = "wm/CartPoleNoVel-v0"
    add(cart, {}, *rand)
    add(cart, {}, "scripted, positions only (no memory)", lambda env: CartPoleController(memory=False))
    add(cart, {}, "scripted, finite-difference velocity (memory)", lambda env: CartPoleController(memory=True))
    if not args.no_ppo:
        add(cart, {}, ppo, lambda env: train_ppo(cart, ppo_steps))
    pend = "wm/PendulumNoVel-v0"
    add(pend, {}, *rand)
    add(pend, {}, "scripted swing-up, velocity read as 0 (no memory)", lambda env: PendulumController(memory=False))
    add(pend, {}, "scripted swing-up, finite-difference velocity", lambda env: PendulumController(memory=True))
    add("Pendulum-v1", {}, "same scripted swing-up on full state", lambda env: PendulumController(memory=False))
    for settings in ({}, {"delay": 50, "n_cues": 4}):
        add("wm/CueMemory-v0", settings, *rand, many)
        add("wm/CueMemory-v0", settings, "scripted, no memory (always 0)", lambda env: CueMemoryPolicy(False), many)
        add("wm/CueMemory-v0", settings, "scripted, remembers the cue", lambda env: CueMemoryPolicy(True), many)
    if not args.no_ppo:
        add("wm/CueMemory-v0", {}, ppo, lambda env: train_ppo("wm/CueMemory-v0", ppo_steps), many)
    for noise in (0.0, 0.25, 0.4):
        add("wm/SlipperyChain-v0", {"noise": noise}, *rand, many)
        add("wm/SlipperyChain-v0", {"noise": noise}, "always right (optimal)", lambda env: ConstantPolicy(1), many)
    if not args.no_ppo:
        add("wm/SlipperyChain-v0", {"noise": 0.25}, ppo, lambda env: train_ppo("wm/SlipperyChain-v0", ppo_steps), many)
    for delay in (0, 10, 50):
        add("wm/DelayedReward-v0", {"delay": delay}, *rand, many)
        add("wm/DelayedReward-v0", {"delay": delay}, "match the target", lambda env: MatchTargetPolicy(), many)
    if not args.no_ppo:
        for delay in (10, 50):
            add("wm/DelayedReward-v0", {"delay": delay}, ppo,
                lambda env, d=delay: train_ppo("wm/DelayedReward-v0", ppo_steps, delay=d), many)  # fmt: skip
    for strength in (0.0, 1.0):
        for kind in ("shapes", "noise") if strength else ("shapes",):
            settings = {"distractor_strength": strength, "distractor": kind}
            add("wm/DistractorCartPole-v0", settings, *rand, 10)
            add("wm/DistractorCartPole-v0", settings, "scripted on the hidden state (oracle)", StateOracle, 2)
    variant = "wm/CartPoleVariant-v0"
    variants = ({}, {"length": 1.5}, {"masspole": 1.0}, {"gravity": 20.0}, {"force_mag": 3.0})
    ppo_cart: dict[str, SB3Policy] = {}

    def ppo_on_default(env):
        if "model" not in ppo_cart:
            ppo_cart["model"] = train_ppo(variant, ppo_steps)
        return ppo_cart["model"]

    for settings in variants:
        add(variant, settings, *rand)
        add(variant, settings, "scripted, tuned on default", lambda env: CartPoleController())
        if not args.no_ppo:
            add(variant, settings, f"PPO MLP {ppo_steps // 1000}k steps, trained on default", ppo_on_default)
    for settings in ({}, {"g": 15.0}, {"m": 1.5}, {"l": 1.5}, {"g": (8.0, 12.0)}):
        add("wm/PendulumVariant-v0", settings, *rand)
        add("wm/PendulumVariant-v0", settings, "scripted swing-up, tuned on default",
            lambda env: PendulumController())  # fmt: skip

    print(f"# diagnostic env baselines ({n} eval episodes unless noted, seeds 1000+)")
    print()
    print("| env | settings | policy | episodes | return (mean +/- std) | wall s |")
    print("|---|---|---|---:|---:|---:|")
    for env_id, settings, label, make_policy, episodes in rows:
        start = time.perf_counter()
        env = gym.make(env_id, **settings)
        mean, std = evaluate(env, make_policy(env), episodes)
        env.close()
        shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "default"
        wall = time.perf_counter() - start
        print(f"| `{env_id}` | {shown} | {label} | {episodes} | {mean:.2f} +/- {std:.2f} | {wall:.1f} |", flush=True)
    chain = envs.SlipperyChainEnv
    print()
    print("Always-right expected return in wm/SlipperyChain-v0 (gambler's ruin, no step limit): "
          + ", ".join(f"noise {p}: {chain(noise=p).always_right_score():.3f}" for p in (0.0, 0.25, 0.4)))  # fmt: skip


if __name__ == "__main__":
    main()
