"""Throughput of JEPADreamer per size preset and observation kind: updates/s, acting steps/s, memory, GFLOP/s.

    python benchmarks/throughput.py --presets tiny,small --obs vector,image --threads 2
    python benchmarks/throughput.py --device cuda --presets small,medium,large --variant eager-fp32='{"precision":
        "float32"}' --variant compiled-bf16='{"precision": "bfloat16", "compile": true}'

Prints a markdown table. Achieved GFLOP/s (counted with torch's FlopCounterMode on one update) is reported
against the machine's measured matmul peak of the precision the variant runs in. `start-up` is the wall time of
the first two updates (where torch.compile compiles). Isolated updates only: env steps/s while training, against
another revision, is benchmarks/speed.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from torch.utils.flop_counter import FlopCounterMode

from wm_agent import JEPADreamer
from wm_agent.common import policy_for

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


PEAK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def matmul_peak_gflops(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 10
) -> float:
    """Measured dense matmul rate of `device` in `dtype`, GFLOP/s."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def measure(preset: str, obs_kind: str, device: str, updates: int, act_steps: int, overrides: dict) -> dict:
    env = make_vec_env(lambda: RandomEnv(OBS_KINDS[obs_kind]), n_envs=1, seed=0)
    policy = policy_for(env.observation_space)
    model = JEPADreamer(policy, env, preset=preset, seed=0, device=device, learning_starts=10**9, **overrides)
    cfg = model.config
    # fill the replay with enough steps to sample sequences, acting with the policy (no updates yet)
    start = time.perf_counter()
    model.learn(max(act_steps, cfg.seq_len * 2))
    act_steps_per_s = model.num_timesteps / (time.perf_counter() - start)

    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model.train(2)  # warm-up (and compilation)
    sync(model.device)
    startup = time.perf_counter() - start
    # the counter cannot see inside compiled graphs: count one update of the same model run eagerly
    policy = model.policy
    losses = {name: getattr(policy, name) for name in ("world_model_loss", "behavior_loss")}
    policy.__dict__.update(world_model_loss=policy.world_model.loss, behavior_loss=policy.behavior.loss)
    with FlopCounterMode(display=False) as counter:
        model.train(1)
    policy.__dict__.update(losses)
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
        "gpu_MB": torch.cuda.max_memory_allocated() / 2**20 if model.device.type == "cuda" else 0.0,
        "startup_s": startup,
        "precision": cfg.precision,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small,medium")
    parser.add_argument("--obs", default="vector,image")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--act-steps", type=int, default=500)
    parser.add_argument(
        "--variant",
        action="append",
        help='NAME=JSON config overrides, repeatable (default: one variant "default" with none)',
    )
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant or ["default={}"])
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peaks = {name: matmul_peak_gflops(device, dtype) for name, dtype in PEAK_DTYPES.items()}
    peak_text = ", ".join(f"{name} {value:.0f}" for name, value in peaks.items())
    print(f"device {device_name(device)}, torch {torch.__version__}, threads {args.threads}")
    print(f"matmul peak (GFLOP/s): {peak_text}\n")
    print(
        "| preset | obs | variant | params (M) | batch | updates/s | replayed steps/s | acting steps/s | GFLOP/update "
        "| GFLOP/s | of peak | start-up (s) | peak RSS (MB) | GPU memory (MB) |"
    )
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preset in args.presets.split(","):
        for obs_kind in args.obs.split(","):
            for name, overrides in variants.items():
                r = measure(preset, obs_kind, args.device, args.updates, args.act_steps, json.loads(overrides))
                # "auto" runs most matmuls in float32 (convolutions and imagined-state heads in bf16 where the
                # hardware has it): the float32 peak is the bar
                peak = peaks["bfloat16" if r["precision"] == "bfloat16" else "float32"]
                print(
                    f"| {r['preset']} | {r['obs']} | {name} | {r['params_M']:.2f} | {r['batch']} "
                    f"| {r['updates_per_s']:.2f} | {r['replayed_steps_per_s']:.0f} | {r['act_steps_per_s']:.0f} "
                    f"| {r['gflop_per_update']:.2f} | {r['gflops']:.1f} | {r['gflops'] / peak:.0%} "
                    f"| {r['startup_s']:.1f} | {r['peak_rss_MB']:.0f} | {r['gpu_MB']:.0f} |",
                    flush=True,
                )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


if __name__ == "__main__":
    main()
