"""Is a reward's cause in the sampled latent state the reward head learns from? (issue 13, wm/DelayedReward-v0)

    python -m benchmarks.reward_probe --env-kwargs delay=0 --checkpoints 1600,3200,6400
    python -m benchmarks.reward_probe --env-kwargs delay=0 --hyperparams '{"kl_free": 3.0}'

Trains JEPADreamer (the default config, plus ``--hyperparams``) on one env and, at each checkpoint, filters the same
replayed sequences twice: with sampled posterior latents, as the world model's heads and the imagination starts are
trained, and with each latent's most likely class, as acting and `open_loop_drift` read them. Per checkpoint:

- ``post_max_prob``: the posterior's mean probability of its most likely class (1 / classes: uniform, 1: certain)
- ``head_sign_acc``: the reward head's sign accuracy on steps with a non-zero reward, from sampled / mode features
- ``probe_r2``: held-out R^2 of a ridge regression from the features to the reward (`benchmarks.probe.ridge_r2`),
  sampled / mode: what any head could read from them

On ``wm/DelayedReward-v0`` at delay 0 the reward is +1 or -1 by whether the last action matched the last target, so
the mode features give R^2 1 as soon as the model encodes the target; where the sampled ones do not, the reward
head, trained on samples, cannot learn the reward.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from benchmarks.probe import ridge_r2
from wm_agent import JEPADreamer
from wm_agent.common import parse_kwargs, register_project_envs


@torch.no_grad()
def measure(model: JEPADreamer, batches: int, seed: int) -> dict[str, list[float] | float]:
    """The probe's numbers on `batches` replayed batches, filtered with sampled latents and then with their modes.

    The batches and the latent draws come from generators seeded with `seed`; the replay's and torch's own random
    streams are left as they were, so measuring does not change the training that follows.
    """
    wm, cfg, replay = model.policy.world_model, model.config, model.replay_buffer
    model.policy.set_training_mode(False)
    replay_rng, replay.rng = replay.rng, np.random.default_rng(seed)
    try:
        replayed = [replay.sample(cfg.batch_size, cfg.seq_len, model.device) for _ in range(batches)]
    finally:
        replay.rng = replay_rng
    result: dict[str, list[float] | float] = {"head_sign_acc": [], "probe_r2": []}
    for sample in (True, False):
        features, rewards, predicted, max_prob = [], [], [], []
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for batch in replayed:
                embed = wm.encoder(wm.preprocess(batch.obs, 2)).reshape(cfg.batch_size, cfg.seq_len, -1)
                post, post_log_probs, _ = wm.rssm.observe(embed, batch.action, batch.is_first, sample)
                keep = ~batch.is_first  # a window's first step has no action or reward in the window
                features.append(post.feat[keep])
                rewards.append(batch.reward[keep])
                predicted.append(wm.reward_head(post.feat[keep]).mean)
                max_prob.append(post_log_probs.exp().amax(-1).mean())
        reward, prediction = torch.cat(rewards), torch.cat(predicted)
        paid = reward != 0
        result["head_sign_acc"].append(float((prediction[paid].sign() == reward[paid].sign()).float().mean()))
        r2 = ridge_r2(torch.cat(features).double().numpy(), reward[:, None].double().numpy())
        result["probe_r2"].append(float(r2[0]))
        if sample:
            result["post_max_prob"] = float(torch.stack(max_prob).mean())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reward_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="wm/DelayedReward-v0")
    parser.add_argument("--env-kwargs", default="", help="gym.make settings, k=v,... (e.g. delay=0)")
    parser.add_argument("--hyperparams", default="{}", help="JEPADreamer settings over the defaults, JSON")
    parser.add_argument("--checkpoints", default="1600,3200,6400", help="env steps at which to measure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batches", type=int, default=8, help="replayed batches per measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON file for the results (default: print only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    register_project_envs(args.env)
    env_kwargs = parse_kwargs(args.env_kwargs) if args.env_kwargs else {}
    hyperparams = json.loads(args.hyperparams)
    model = JEPADreamer("MlpPolicy", gym.make(args.env, **env_kwargs), seed=args.seed, **hyperparams)
    began, rows = time.perf_counter(), []
    print("| env steps | updates | posterior max prob | reward head sign acc (sampled / mode) | probe R^2 (same) |")
    print("|---:|---:|---:|---|---|")
    for steps in sorted(int(s) for s in args.checkpoints.split(",")):
        model.learn(steps - model.num_timesteps, reset_num_timesteps=False)
        row = {"steps": model.num_timesteps, "updates": model._n_updates, **measure(model, args.batches, args.seed)}
        row["wall_s"] = round(time.perf_counter() - began, 1)
        rows.append(row)
        acc, r2 = row["head_sign_acc"], row["probe_r2"]
        print(
            f"| {row['steps']:,} | {row['updates']:,} | {row['post_max_prob']:.2f} | {acc[0]:.2f} / {acc[1]:.2f} | "
            f"{r2[0]:.2f} / {r2[1]:.2f} |",
            flush=True,
        )
    if args.out:
        record = {"env": args.env, "env_kwargs": env_kwargs, "hyperparams": hyperparams, "seed": args.seed}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({**record, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
