"""Memory per stored replay step, in memory and memory-mapped (`replay_dir`), and the sampling speed of both.

    python -m benchmarks.replay_memory --steps 100000

Each (task, mode) runs in a fresh process: an agent of the tiny preset makes its replay through `learn` (sized for
`--steps` steps, stopped after one env step), the replay is filled with `--steps` random steps, and the process's
resident memory is read from /proc/self/status before and after the filling (and before the
replay is made, to show its arrays take no memory until written). RssAnon is the memory the process itself needs;
RssFile is the mapped page cache of the memory-mapped files, which the kernel writes back and evicts under memory
pressure. A replay's arrays are a fixed number of bytes per step, so GB per million steps is the measured bytes per
step times one million (extrapolated). Sampling (batch 16 x 32 steps, the small preset's) is timed for both
replays filled with the same steps in one process, alternating rounds; memory-mapped "cold" first evicts the
replay's pages from the page cache, so every sample reads the disk.

Prints a markdown table for benchmarks/RESULTS.md. Linux only (/proc, posix_fadvise).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import subprocess
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

import envs  # noqa: F401  (registers wm/PixelCartPole-v0)
from wm_agent import JEPADreamer


class FrameEnv(gym.Env):
    """Random 84x84 RGB frames, Atari-sized (ale-py is not needed to measure a replay)."""

    observation_space = spaces.Box(0, 255, (84, 84, 3), np.uint8)
    action_space = spaces.Discrete(4)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


TASKS = {
    "CartPole-v1 (4 floats)": lambda: gym.make("CartPole-v1"),
    "wm/PixelCartPole-v0 (64x64x3)": lambda: gym.make("wm/PixelCartPole-v0"),
    "84x84x3 frame (synthetic Box)": FrameEnv,
}


class StopAtOnce(BaseCallback):
    def _on_step(self) -> bool:
        return False


def memory() -> dict[str, int]:
    """Resident memory of this process in bytes: total, anonymous, file-backed."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "RssAnon", "RssFile")}


def make_agent(task: str, steps: int, replay_dir: str | None) -> JEPADreamer:
    """An agent whose `learn(steps)` makes its replay for `steps` steps, allocated whole (the run fits its
    buffer_size)."""
    model = JEPADreamer("MultiInputPolicy", TASKS[task](), preset="tiny", seed=0, buffer_size=steps,
                        learning_starts=10**9, replay_dir=replay_dir)  # fmt: skip
    model.predict(model.env.reset())  # torch's first-call allocations happen before the baseline
    return model


def fill(replay, steps: int) -> None:
    """`steps` random steps into the replay's one stream (a pool of 64 random observations)."""
    rng = np.random.default_rng(0)
    pool = {
        name: rng.integers(0, 256, (64, 1, *value.shape[2:])).astype(value.dtype) for name, value in replay.obs.items()
    }
    action = np.zeros((1, replay.action.shape[2]), np.float32)
    for step in range(steps):
        obs = {name: frames[step % 64] for name, frames in pool.items()}
        replay.add(obs, action, np.ones(1), np.zeros(1, bool), np.array([step % 500 == 0]))


def measure_memory(task: str, mode: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("REPLAY_DIR")) as folder:
        model = make_agent(task, steps, folder if mode == "memory-mapped" else None)
        start = memory()
        model.learn(steps, callback=StopAtOnce())
        before = memory()  # the arrays are made (zeroed lazily: no page is resident until written)
        replay = model.replay_buffer
        fill(replay, steps - len(replay))
        after = memory()
        disk = sum(os.stat(p).st_blocks * 512 for p in replay.directory.glob("*.npy")) if replay.directory else 0
        assert len(replay) == steps, len(replay)
        return {
            "task": task,
            "mode": mode,
            "steps": steps,
            **{key: (after[key] - before[key]) / steps for key in after},
            "disk": disk / steps,
            "made_mb": (before["VmRSS"] - start["VmRSS"]) / 1e6,
            "stored_shape": {k: list(v.shape[2:]) for k, v in replay.obs.items()},
        }


def time_samples(replay, rounds: int, samples: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(samples):
            replay.sample(16, 32, torch.device("cpu"))
        times.append((time.perf_counter() - start) / samples)
    return times


def evict(replay) -> None:
    """Drop the memory-mapped replay's pages from this process and from the page cache."""
    for array in [*replay.obs.values(), replay.action, replay.reward, replay.terminated, replay.is_first]:
        array.flush()
        array._mmap.madvise(mmap.MADV_DONTNEED)
    for path in replay.directory.glob("*.npy"):
        descriptor = os.open(path, os.O_RDONLY)
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(descriptor)


def measure_speed(task: str, steps: int) -> dict:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=os.environ.get("REPLAY_DIR")) as folder:
        replays = {}
        for mode, replay_dir in (("memory", None), ("memory-mapped", folder)):
            model = make_agent(task, steps, replay_dir)
            model.learn(steps, callback=StopAtOnce())
            fill(model.replay_buffer, steps - len(model.replay_buffer))
            replays[mode] = model.replay_buffer
        warm = {mode: [] for mode in replays}
        for _ in range(5):  # alternate, so that both see the same load on a shared machine
            for mode, replay in replays.items():
                warm[mode] += time_samples(replay, 1, 100)
        cold = []
        for _ in range(3):
            evict(replays["memory-mapped"])
            cold += time_samples(replays["memory-mapped"], 1, 20)
        median = {mode: float(np.median(t)) for mode, t in warm.items()}
        return {
            "task": task,
            "sample_ms": {**median, "memory-mapped cold": float(np.median(cold))},
            "ratio_warm": median["memory-mapped"] / median["memory"],
            "ratio_cold": float(np.median(cold)) / median["memory"],
        }


def measure_resize(repeats: int = 300) -> list[dict]:
    """Seconds per env step of the CPU resize that `learn` runs on each new observation (one env, one thread),
    beside the step of a pixel env whose frame is rendered and resized by Gymnasium (wm/PixelCartPole-v0)."""
    torch.set_num_threads(1)
    rows = []
    for shape in ((84, 84, 3), (96, 96, 3), (210, 160, 3)):
        env = gym.make("wm/PixelCartPole-v0", size=64)
        model = JEPADreamer("CnnPolicy", env, preset="tiny", seed=0)  # image_size 64
        obs_spec = model.policy.obs_spec
        frames = {"obs": np.random.default_rng(0).integers(0, 256, (1, shape[2], *shape[:2]), dtype=np.uint8)}
        obs_spec.resize_images(frames, 64)
        start = time.perf_counter()
        for _ in range(repeats):
            obs_spec.resize_images(frames, 64)
        resize = (time.perf_counter() - start) / repeats
        env.reset(seed=0)
        start = time.perf_counter()
        for _ in range(repeats):
            if any(env.step(env.action_space.sample())[2:4]):
                env.reset()
        rows.append(
            {"frame": "x".join(map(str, shape)), "resize": resize, "env_step": (time.perf_counter() - start) / repeats}
        )
    return rows


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.replay_memory", *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "TASK", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, task, mode = args.child
        result = measure_memory(task, mode, args.steps) if kind == "memory" else measure_speed(task, args.steps)
        print(json.dumps(result))
        return
    print(f"{args.steps:,} steps per replay, RSS from /proc/self/status; GB per million steps extrapolated\n")
    print(
        "| task | stored obs | mode | RSS at creation (MB) | RSS bytes/step | RssAnon bytes/step | RssFile bytes/step "
        "| disk bytes/step | GB per 1M steps in RAM | on disk |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for task in TASKS:
        for mode in ("memory", "memory-mapped"):
            r = run_child("--steps", str(args.steps), "--child", "memory", task, mode)
            shape = ", ".join("x".join(map(str, s)) for s in r["stored_shape"].values())
            cells = [task, shape, mode, f"{r['made_mb']:.1f}"]
            cells += [f"{r[key]:,.0f}" for key in ("VmRSS", "RssAnon", "RssFile", "disk")]
            cells += [f"{r['RssAnon'] / 1e3:.2f}", f"{r['disk'] / 1e3:.2f}"]
            print("| " + " | ".join(cells) + " |", flush=True)
    print("\n| task | sample ms in memory | memory-mapped (warm) | memory-mapped (cold) | warm ratio | cold ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for task in TASKS:
        r = run_child("--steps", str(args.steps), "--child", "speed", task, "-")
        ms = r["sample_ms"]
        print(f"| {task} | {ms['memory'] * 1e3:.3f} | {ms['memory-mapped'] * 1e3:.3f} "
              f"| {ms['memory-mapped cold'] * 1e3:.3f} | {r['ratio_warm']:.2f}x | {r['ratio_cold']:.2f}x |",
              flush=True)  # fmt: skip

    print("\n| env frame | resize to 64x64 per env step (us) | wm/PixelCartPole-v0 env step (us) | share |")
    print("|---|---:|---:|---:|")
    for r in measure_resize():
        share = r["resize"] / r["env_step"]
        print(f"| {r['frame']} | {r['resize'] * 1e6:.0f} | {r['env_step'] * 1e6:.0f} | {share:.0%} |", flush=True)


if __name__ == "__main__":
    main()
