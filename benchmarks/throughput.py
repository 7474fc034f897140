"""Throughput of JEPADreamer per size preset and observation kind: updates/s, acting steps/s, memory, GFLOP/s.

    python benchmarks/throughput.py --presets tiny,small --obs vector,image --threads 2

Prints a markdown table. Achieved GFLOP/s (counted with torch's FlopCounterMode on one update) is reported
against the machine's measured fp32 matmul peak. CUDA is measured too when present (`--device cuda`).
"""

from __future__ import annotations

import argparse
import resource
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from torch.utils.flop_counter import FlopCounterMode

from wm_agent import JEPADreamer

OBS_KINDS = {
    "vector": gym.spaces.Box(-1, 1, (8,), np.float32),
    "image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
}


class RandomEnv(gym.Env):
    """Random observations of a given space, 2 discrete actions, 100-step episodes: measures the agent, not an env."""

    def __init__(self, observation_space: gym.Space) -> None:
        self.observation_space, self.action_space, self.t = observation_space, gym.spaces.Discrete(2), 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), 1.0, False, self.t >= 100, {}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak_gflops(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def measure(preset: str, obs_kind: str, device: str, updates: int, act_steps: int) -> dict:
    env = make_vec_env(lambda: RandomEnv(OBS_KINDS[obs_kind]), n_envs=1, seed=0)
    model = JEPADreamer("MlpPolicy", env, preset=preset, seed=0, device=device, learning_starts=10**9)
    cfg = model.config
    # fill the replay with enough steps to sample sequences, acting with the policy (no updates yet)
    start = time.perf_counter()
    model.learn(max(act_steps, cfg.seq_len * 2))
    act_steps_per_s = model.num_timesteps / (time.perf_counter() - start)

    model.train(2)  # warm-up
    with FlopCounterMode(display=False) as counter:
        model.train(1)
    flops_per_update = counter.get_total_flops()
    sync(model.device)
    start = time.perf_counter()
    model.train(updates)
    sync(model.device)
    seconds = (time.perf_counter() - start) / updates
    return {
        "preset": preset,
        "obs": obs_kind,
        "device": str(model.device),
        "params_M": sum(p.numel() for p in model.policy.parameters()) / 1e6,
        "batch": f"{cfg.batch_size}x{cfg.seq_len}",
        "updates_per_s": 1 / seconds,
        "replayed_steps_per_s": cfg.batch_size * cfg.seq_len / seconds,
        "act_steps_per_s": act_steps_per_s,
        "gflop_per_update": flops_per_update / 1e9,
        "gflops": flops_per_update / seconds / 1e9,
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small,medium")
    parser.add_argument("--obs", default="vector,image")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--act-steps", type=int, default=500)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = matmul_peak_gflops(device)
    print(f"device {device}, torch {torch.__version__}, threads {args.threads}, fp32 matmul peak {peak:.0f} GFLOP/s\n")
    print(
        "| preset | obs | params (M) | batch | updates/s | replayed steps/s | acting steps/s | GFLOP/update "
        "| GFLOP/s | of peak | peak RSS (MB) |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for preset in args.presets.split(","):
        for obs_kind in args.obs.split(","):
            r = measure(preset, obs_kind, args.device, args.updates, args.act_steps)
            print(
                f"| {r['preset']} | {r['obs']} | {r['params_M']:.2f} | {r['batch']} | {r['updates_per_s']:.2f} "
                f"| {r['replayed_steps_per_s']:.0f} | {r['act_steps_per_s']:.0f} | {r['gflop_per_update']:.2f} "
                f"| {r['gflops']:.1f} | {r['gflops'] / peak:.0%} | {r['peak_rss_MB']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
