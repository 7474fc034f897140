"""Env steps per second while training, this tree against another revision, interleaved in one run.

    python benchmarks/speed.py --against git:1f5953d --case vector --case image --rounds 5

Each side is a worker process that builds the agent on a real env (prefill and a warm-up excluded), then
trains in segments of `--segment` env steps at the preset's train_ratio (collect + train, as `learn` does) when
told to. The parent alternates the sides segment by segment, so both meet the same machine load; it prints the
median env steps/s of each side and their ratio. A speed claim is that ratio, never two runs made at different
times on a noisy machine.

A side is `git:REV` (the revision exported to a temporary folder and imported from there), `python:PATH` (an
installed version in another environment, run by that interpreter) or `tree:DIR` (a source folder).

The machine's fp32 and bf16 matmul peaks are printed, with the fraction of each that the training reaches
(FLOPs of one update counted with torch's FlopCounterMode, times updates/s).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

# case -> (env id, policy name, keyword overrides of the preset); the image case uses 64x64x3 frames of pixel
# CartPole. The policy name is spelled out: the other side may be a revision without wm_agent.common.policy_for.
CASES: dict[str, tuple[str, str, dict]] = {
    "vector": ("CartPole-v1", "MlpPolicy", {}),
    "image": ("wm/PixelCartPole-v0", "CnnPolicy", {}),
    "continuous": ("Pendulum-v1", "MlpPolicy", {}),
}


def matmul_peak_gflops(dtype_name: str, size: int = 2048, repeats: int = 10) -> float:
    """Measured dense matmul rate of this CPU (all torch threads) in GFLOP/s."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


# ---------------------------------------------------------------------------------------------- worker side


def worker(case: str, preset: str, threads: int, overrides: dict) -> None:
    """Build the agent, prefill and warm up, then answer 'segment N' requests with timings on stdout (JSON lines)."""
    import torch

    torch.set_num_threads(threads)
    from torch.utils.flop_counter import FlopCounterMode

    import envs  # noqa: F401  (registers wm/ ids)
    import wm_agent
    from wm_agent import JEPADreamer

    env_id, policy, case_overrides = CASES[case]
    model = JEPADreamer(policy, env_id, preset=preset, seed=0, **{**case_overrides, **overrides})
    cfg = model.config
    model.learn(cfg.learning_starts + 64)  # prefill, then a few updates (one-off allocations, lazy inits, compiling)
    # the counter cannot see inside compiled graphs, and a compiled loss called under it ran at eager speed afterwards
    # (measured, torch 2.13): count one update with the eager losses swapped in, as throughput.py does
    policy = model.policy
    names = ("world_model_loss", "behavior_loss")
    compiled = {name: policy.__dict__[name] for name in names if name in policy.__dict__}
    if compiled:
        policy.__dict__.update(world_model_loss=policy.world_model.loss, behavior_loss=policy.behavior.loss)
    try:
        with FlopCounterMode(display=False) as counter:
            model.train(1)
        flop_per_update = counter.get_total_flops()
    except AssertionError:  # torch's module tracker fails on no-grad heads over inputs that need grad
        flop_per_update = float("nan")
    policy.__dict__.update(compiled)
    params = sum(p.numel() for p in model.policy.parameters())
    reply = {"file": wm_agent.__file__, "version": wm_agent.__version__, "flop_per_update": flop_per_update}
    print(json.dumps({**reply, "params": params, "config": cfg.to_dict()}, default=str), flush=True)
    for line in sys.stdin:
        steps = int(line.split()[1])
        updates_before, start = model._n_updates, time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        seconds = time.perf_counter() - start
        reply = {"seconds": seconds, "updates": model._n_updates - updates_before, "steps": steps}
        print(json.dumps(reply), flush=True)


# ---------------------------------------------------------------------------------------------- parent side


class Side:
    """One revision's worker process."""

    def __init__(
        self, spec: str, case: str, args: argparse.Namespace, workdir: pathlib.Path, own: dict, extra_env: dict
    ) -> None:
        extras = [json.dumps(own)] if own else []
        extras += [f"{k}={v}" for k, v in extra_env.items()]
        self.spec = spec if not extras else f"{spec} with {', '.join(extras)}"
        python, pythonpath = sys.executable, None
        kind, _, value = spec.partition(":")  # the label above may add overrides; the spec itself is this
        if kind == "git":
            tree = workdir / value.replace("/", "_")
            if not tree.exists():
                tree.mkdir(parents=True)
                archive = subprocess.run(["git", "-C", str(REPO), "archive", value], capture_output=True)
                if archive.returncode:
                    raise SystemExit(f"git archive {value} failed: {archive.stderr.decode().strip()}")
                tarfile.open(fileobj=__import__("io").BytesIO(archive.stdout)).extractall(tree, filter="data")
            pythonpath = str(tree)
        elif kind == "tree":
            pythonpath = str(pathlib.Path(value).resolve())
        elif kind == "python":
            python = value
            # that environment's own wm_agent, with only this checkout's envs package beside it
            envs_only = workdir / "envs_only"
            if not envs_only.exists():
                envs_only.mkdir(parents=True)
                (envs_only / "envs").symlink_to(REPO / "envs")
            pythonpath = None
            env_path = str(envs_only)
        else:
            raise SystemExit(f"--against/--side must be git:REV, tree:DIR or python:PATH, got {spec!r}")
        self.expected_root = pythonpath
        env = {**os.environ, **extra_env}
        env["PYTHONPATH"] = pythonpath if kind != "python" else env_path
        command = [python, str(pathlib.Path(__file__).resolve()), "--worker", case, "--preset", args.preset]
        command += ["--threads", str(args.threads), "--hyperparams", json.dumps({**args.hyperparams, **own})]
        # run from a neutral folder so that a checkout in the current directory is never imported by accident
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                        cwd=tempfile.gettempdir())  # fmt: skip
        self.info = self._read()
        imported = self.info["file"]
        if (self.expected_root and not imported.startswith(self.expected_root)) or (
            kind == "python" and imported.startswith(str(REPO))
        ):
            raise SystemExit(f"{spec}: the worker imported wm_agent from {imported}, not the side's own")
        self.rates: list[float] = []
        self.update_rates: list[float] = []

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"{self.spec}: the worker exited (see its error above)")
        return json.loads(line)

    def segment(self, steps: int) -> None:
        self.process.stdin.write(f"segment {steps}\n")
        self.process.stdin.flush()
        result = self._read()
        self.rates.append(result["steps"] / result["seconds"])
        self.update_rates.append(result["updates"] / result["seconds"])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--against", default="git:HEAD", help="the other side: git:REV, tree:DIR or python:PATH")
    parser.add_argument("--side", default="tree:" + str(REPO), help="this side (default: the working tree)")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="repeatable; default vector, image")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--hyperparams", type=json.loads, default={}, help="JSON config overrides for both sides")
    parser.add_argument("--side-hyperparams", type=json.loads, default={}, help="JSON overrides for --side only")
    parser.add_argument("--side-env", action="append", default=[], help="NAME=VALUE environment of --side only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="segments per side, alternated")
    parser.add_argument("--segment", type=int, default=128, help="env steps per segment")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.preset, args.threads, args.hyperparams)
        return

    import torch

    torch.set_num_threads(args.threads)
    peaks = {name: matmul_peak_gflops(name) for name in ("float32", "bfloat16")}
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu_name()}, {args.threads} threads, torch {torch.__version__}")
    print(f"# matmul peak: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s")
    print(f"# {args.rounds} alternated segments of {args.segment} env steps per side, preset {args.preset}\n")
    print("| case | side | params | env steps/s (median) | updates/s | GFLOP/update | of fp32 peak | of bf16 peak |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as workdir:
        for case in args.case or ["vector", "image"]:
            side_env = dict(item.split("=", 1) for item in args.side_env)
            sides = [
                Side(args.side, case, args, pathlib.Path(workdir), args.side_hyperparams, side_env),
                Side(args.against, case, args, pathlib.Path(workdir), {}, {}),
            ]
            for _ in range(args.rounds):
                for side in sides:
                    side.segment(args.segment)
            for side in sides:
                side.close()
                gflop = side.info["flop_per_update"] / 1e9
                updates = statistics.median(side.update_rates)
                print(
                    f"| {case} | {side.spec} ({side.info['version']}) | {side.info['params'] / 1e6:.2f}M "
                    f"| {statistics.median(side.rates):.1f} | {updates:.2f} | {gflop:.2f} "
                    f"| {gflop * updates / peaks['float32']:.0%} | {gflop * updates / peaks['bfloat16']:.0%} |"
                )
            ratio = statistics.median(sides[0].rates) / statistics.median(sides[1].rates)
            print(f"| {case} | **ratio** {sides[0].spec} / {sides[1].spec} | | **{ratio:.2f}x** | | | | |", flush=True)


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
