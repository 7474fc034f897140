"""Environment steps per second of every registered ``wm/`` id, and Atari single env vs ale-py's AtariVectorEnv.

Random actions, auto-reset on episode end, one process. Prints a markdown table.

    python benchmarks/env_speed.py [--seconds 2.0] [--game Pong]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402


def single_env_speed(make, seconds: float) -> tuple[float, str]:
    """Steps per second of one env under random actions for about ``seconds`` (after a short warm-up)."""
    env = make()
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(20):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        steps += 50
    rate = steps / (time.perf_counter() - start)
    shape = f"{env.observation_space.shape} {env.observation_space.dtype}"
    env.close()
    return rate, shape


def vector_env_speed(num_envs: int, game: str, seconds: float) -> tuple[float, str]:
    """Total env steps per second of ``make_atari_vector`` (autoreset is built in)."""
    vec = envs.make_atari_vector(game, num_envs=num_envs)
    vec.action_space.seed(0)
    vec.reset(seed=0)
    for _ in range(10):
        vec.step(vec.action_space.sample())
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            vec.step(vec.action_space.sample())
        steps += 20 * num_envs
    rate = steps / (time.perf_counter() - start)
    shape = f"{vec.observation_space.shape} {vec.observation_space.dtype}"
    vec.close()
    return rate, shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per row")
    parser.add_argument("--game", default="Pong", help="Atari game for the single-vs-vector rows")
    args = parser.parse_args()

    print(
        f"# env steps/s, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, gymnasium {gym.__version__}, numpy {np.__version__}"
    )
    print()
    print("| id | observation | steps/s |")
    print("|---|---|---:|")
    for env_id in envs.ENV_IDS:
        rate, shape = single_env_speed(lambda env_id=env_id: gym.make(env_id), args.seconds)
        print(f"| `{env_id}` | {shape} | {rate:,.0f} |", flush=True)

    try:
        import ale_py
    except ImportError:
        print("\n(ale-py not installed: Atari rows skipped)")
        return
    print()
    print(f"Atari {args.game}, 64x64 RGB, frame skip 4, sticky 0.25 (ale-py {ale_py.__version__}):")
    print()
    print("| path | envs | observation | env steps/s |")
    print("|---|---:|---|---:|")
    rate, shape = single_env_speed(lambda: envs.make_atari(args.game), args.seconds)
    print(f"| `make_atari` (AtariPreprocessing) | 1 | {shape} | {rate:,.0f} |", flush=True)
    for n in (1, 2, 4, 8):
        rate, shape = vector_env_speed(n, args.game, args.seconds)
        print(f"| `make_atari_vector` (AtariVectorEnv) | {n} | {shape} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
