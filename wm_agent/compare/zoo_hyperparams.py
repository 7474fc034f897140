"""Tuned SB3 hyperparameters from rl-baselines3-zoo for the wm-agent benchmark suite.

Source: DLR-RM/rl-baselines3-zoo, ``hyperparams/{ppo,a2c,dqn,sac,td3}.yml`` (MIT licence), transcribed by hand
for the envs of our suite only. Versions read (commit of the yml file in the zoo repository):

- ppo.yml 208b6fdf, a2c.yml c6c209e7, dqn.yml ce95481b, sac.yml c94924e5
- the ``LunarLander-v3`` entries of ppo.yml, a2c.yml and dqn.yml from the zoo's commit 22e3ff2 (blobs 1f2f25db,
  fd24e21d, eaa0e904)
- td3.yml a02f4fbf (its ``Pendulum-v0`` entry, identical to the hyperparameters published with the
  ``sb3/td3-Pendulum-v1`` agent on the Hugging Face hub) and its ``MountainCarContinuous-v0`` entry.

Conventions (same as the zoo's yml files, so entries can be compared line by line):

- ``"lin_X"``: a learning rate or clip range that decays linearly from X to 0 over the run.
- ``n_envs``: number of training envs (``make_vec_env``); default 1.
- ``normalize``: ``True`` wraps the training env in ``VecNormalize`` (obs and reward), a dict gives its kwargs;
  evaluation then uses the training statistics with reward normalization off.
- ``frame_stack``: ``VecFrameStack`` depth (none of our envs use it in the zoo).
- ``noise_type`` / ``noise_std``: TD3 action noise (``normal`` or ``ornstein-uhlenbeck``).
- ``n_timesteps``: the zoo's training budget, kept for reference only; the harness trains for ``--steps``.
- ``policy``: not stored; the harness picks ``MlpPolicy`` or ``CnnPolicy`` from the observation space.

Envs or algorithms missing here use SB3's defaults.
"""

from __future__ import annotations

import copy
from typing import Any

ZOO_SOURCE = "rl-baselines3-zoo hyperparams/*.yml (github.com/DLR-RM/rl-baselines3-zoo)"

# Keys the harness handles itself; everything else is a constructor argument of the SB3 algorithm.
HARNESS_KEYS = ("n_envs", "normalize", "frame_stack", "noise_type", "noise_std", "n_timesteps")

ZOO_HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        "CartPole-v1": {
            "n_timesteps": 100_000,
            "n_envs": 8,
            "n_steps": 32,
            "batch_size": 256,
            "gae_lambda": 0.8,
            "gamma": 0.98,
            "n_epochs": 20,
            "ent_coef": 0.0,
            "learning_rate": "lin_0.001",
            "clip_range": "lin_0.2",
        },
        "Acrobot-v1": {
            "n_timesteps": 1_000_000,
            "normalize": True,
            "n_envs": 16,
            "n_steps": 256,
            "gae_lambda": 0.94,
            "gamma": 0.99,
            "n_epochs": 4,
            "ent_coef": 0.0,
        },
        "Pendulum-v1": {
            "n_timesteps": 100_000,
            "n_envs": 4,
            "n_steps": 1024,
            "gae_lambda": 0.95,
            "gamma": 0.9,
            "n_epochs": 10,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "clip_range": 0.2,
            "use_sde": True,
            "sde_sample_freq": 4,
        },
        "MountainCarContinuous-v0": {
            "n_timesteps": 20_000,
            "normalize": True,
            "n_envs": 1,
            "batch_size": 256,
            "n_steps": 8,
            "gamma": 0.9999,
            "learning_rate": 7.77e-05,
            "ent_coef": 0.00429,
            "clip_range": 0.1,
            "n_epochs": 10,
            "gae_lambda": 0.9,
            "max_grad_norm": 5,
            "vf_coef": 0.19,
            "use_sde": True,
            "policy_kwargs": {"log_std_init": -3.29, "ortho_init": False},
        },
        "LunarLander-v3": {
            "n_timesteps": 1_000_000,
            "n_envs": 16,
            "n_steps": 1024,
            "batch_size": 64,
            "gae_lambda": 0.98,
            "gamma": 0.999,
            "n_epochs": 4,
            "ent_coef": 0.01,
        },
    },
    "a2c": {
        "CartPole-v1": {"n_timesteps": 500_000, "n_envs": 8, "ent_coef": 0.0},
        "Acrobot-v1": {"n_timesteps": 500_000, "normalize": True, "n_envs": 16, "ent_coef": 0.0},
        "Pendulum-v1": {
            "n_timesteps": 1_000_000,
            "normalize": True,
            "n_envs": 8,
            "ent_coef": 0.0,
            "max_grad_norm": 0.5,
            "n_steps": 8,
            "gae_lambda": 0.9,
            "vf_coef": 0.4,
            "gamma": 0.9,
            "use_rms_prop": True,
            "normalize_advantage": False,
            "learning_rate": "lin_7e-4",
            "use_sde": True,
            "policy_kwargs": {"log_std_init": -2, "ortho_init": False},
        },
        "MountainCarContinuous-v0": {
            "n_timesteps": 100_000,
            "normalize": True,
            "n_envs": 4,
            "n_steps": 100,
            "ent_coef": 0.0,
            "use_sde": True,
            "sde_sample_freq": 16,
            "policy_kwargs": {"log_std_init": 0.0, "ortho_init": False},
        },
        "LunarLander-v3": {
            "n_timesteps": 200_000,
            "n_envs": 8,
            "gamma": 0.995,
            "n_steps": 5,
            "learning_rate": "lin_0.00083",
            "ent_coef": 0.00001,
        },
    },
    "dqn": {
        "CartPole-v1": {
            "n_timesteps": 50_000,
            "learning_rate": 2.3e-3,
            "batch_size": 64,
            "buffer_size": 100_000,
            "learning_starts": 1000,
            "gamma": 0.99,
            "target_update_interval": 10,
            "train_freq": 256,
            "gradient_steps": 128,
            "exploration_fraction": 0.16,
            "exploration_final_eps": 0.04,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
        "Acrobot-v1": {
            "n_timesteps": 100_000,
            "learning_rate": 6.3e-4,
            "batch_size": 128,
            "buffer_size": 50_000,
            "learning_starts": 0,
            "gamma": 0.99,
            "target_update_interval": 250,
            "train_freq": 4,
            "gradient_steps": -1,
            "exploration_fraction": 0.12,
            "exploration_final_eps": 0.1,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
        "LunarLander-v3": {
            "n_timesteps": 100_000,
            "learning_rate": 6.3e-4,
            "batch_size": 128,
            "buffer_size": 50_000,
            "learning_starts": 0,
            "gamma": 0.99,
            "target_update_interval": 250,
            "train_freq": 4,
            "gradient_steps": -1,
            "exploration_fraction": 0.12,
            "exploration_final_eps": 0.1,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
    },
    "sac": {
        "Pendulum-v1": {"n_timesteps": 20_000, "learning_rate": 1e-3},
        "MountainCarContinuous-v0": {
            "n_timesteps": 50_000,
            "learning_rate": 3e-4,
            "buffer_size": 50_000,
            "batch_size": 512,
            "ent_coef": 0.1,
            "train_freq": 32,
            "gradient_steps": 32,
            "gamma": 0.9999,
            "tau": 0.01,
            "learning_starts": 0,
            "use_sde": True,
            "policy_kwargs": {"log_std_init": -3.67, "net_arch": [64, 64]},
        },
    },
    "td3": {
        "Pendulum-v1": {
            "n_timesteps": 20_000,
            "gamma": 0.98,
            "buffer_size": 200_000,
            "learning_starts": 10_000,
            "noise_type": "normal",
            "noise_std": 0.1,
            "gradient_steps": -1,
            "train_freq": (1, "episode"),
            "learning_rate": 1e-3,
            "policy_kwargs": {"net_arch": [400, 300]},
        },
        "MountainCarContinuous-v0": {
            "n_timesteps": 300_000,
            "noise_type": "ornstein-uhlenbeck",
            "noise_std": 0.5,
        },
    },
}


def zoo_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """A copy of the zoo's tuned hyperparameters for (algo, env_id), or ``{}`` (SB3 defaults) if none."""
    return copy.deepcopy(ZOO_HYPERPARAMS.get(algo, {}).get(env_id, {}))


def has_zoo_hyperparams(algo: str, env_id: str) -> bool:
    """Whether the zoo has tuned hyperparameters for (algo, env_id)."""
    return env_id in ZOO_HYPERPARAMS.get(algo, {})
