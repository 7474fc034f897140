"""The JEPADreamer policy: world model + behavior, with stateful acting (as RecurrentPPO's policies)."""

from __future__ import annotations

import functools
import json
import pathlib
import pickle
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import get_device

from wm_agent import planning
from wm_agent.behavior import Behavior, frozen
from wm_agent.checkpoint import FORMAT_VERSION, space_from_json, space_to_json, tensor_file_error
from wm_agent.config import JEPADreamerConfig, config_from_dict
from wm_agent.files import atomic_path
from wm_agent.precision import native_bf16
from wm_agent.spaces import ActionSpec, ObsSpec, flatten_obs
from wm_agent.version import __version__
from wm_agent.world_model.model import WorldModel
from wm_agent.world_model.rssm import Latent

# What `predict` returns as `state`: numpy arrays (deter (N, D), stoch (N, S * C), previous action (N, A)).
State = tuple[np.ndarray, np.ndarray, np.ndarray]


class JEPADreamerPolicy(BasePolicy):
    """Holds every network and optimizer; `act` is the batched acting step, `predict` its SB3 face.

    The encoder is chosen from the observation space (MLP for vectors, CNN for images, both for a
    Dict), so "MlpPolicy", "CnnPolicy" and "MultiInputPolicy" all name this class.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        config: JEPADreamerConfig,
        normalize_images: bool = False,  # images are scaled in ObsSpec.preprocess; kept for BasePolicy.load
    ) -> None:
        super().__init__(observation_space, action_space, normalize_images=False)
        if config.gamma is None:
            raise ValueError(
                "config.gamma is None, which only JEPADreamer resolves (from its env's episode limit): give the policy "
                "a config with a number, e.g. dataclasses.replace(config, gamma=0.99)"
            )
        self.config = config
        self.obs_spec = ObsSpec(observation_space)
        self.action_spec = ActionSpec(action_space)
        self.world_model = WorldModel(self.obs_spec, self.action_spec, config)
        self.behavior = Behavior(self.action_spec, config)
        self.model_optimizer = torch.optim.Adam(self.world_model.trainable_parameters(), lr=config.model_lr, eps=1e-8)
        self.actor_optimizer = torch.optim.Adam(self.behavior.actor.parameters(), lr=config.actor_lr, eps=1e-5)
        self.critic_optimizer = torch.optim.Adam(self.behavior.critic.parameters(), lr=config.critic_lr, eps=1e-5)
        self.plan_seed = 0  # seeds the planner's and `imagine`'s noise when deterministic (JEPADreamer sets its seed)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer by the name of the config's learning rate it uses (``{name}_lr``)."""
        return {"model": self.model_optimizer, "actor": self.actor_optimizer, "critic": self.critic_optimizer}

    @functools.cached_property
    def world_model_loss(self) -> Callable:
        """`world_model.loss`, compiled with torch.compile when the config asks for it (on first use)."""
        if not self.config.compile:
            return self.world_model.loss
        native_bf16(self.device.type)  # asked here: the hardware query cannot be traced
        return torch.compile(self.world_model.loss)

    @functools.cached_property
    def behavior_loss(self) -> Callable:
        """`behavior.loss`, compiled with torch.compile when the config asks for it (on first use).

        Compiled is the body that runs with the world model frozen; the freezing itself stays outside the graph.
        """
        if not self.config.compile:
            return self.behavior.loss
        native_bf16(self.device.type)
        compiled = torch.compile(self.behavior.frozen_model_loss)

        def loss(world_model: WorldModel, start: Latent, start_cont: torch.Tensor) -> tuple:
            with frozen(world_model):
                return compiled(world_model, start, start_cont)

        return loss

    def save(self, path: str | pathlib.Path) -> None:
        """Save the policy alone (weights, config and spaces) in a file that loads without unpickling anything."""
        data = {
            "format_version": FORMAT_VERSION,
            "wm_agent_version": __version__,
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "config": self.config.to_dict(),
        }
        with atomic_path(path) as temporary:
            torch.save({"state_dict": self.state_dict(), "data": json.dumps(data)}, temporary)

    @classmethod
    def load(cls, path: str | pathlib.Path, device: torch.device | str = "auto") -> JEPADreamerPolicy:
        """Load a policy saved by `save`; tensors are read ``weights_only``, so the file cannot run code."""
        device = get_device(device)
        if _is_agent_zip(path):
            raise ValueError(
                f"{path} is an agent saved by JEPADreamer.save, not a policy file: load it with "
                "JEPADreamer.load(path), whose .policy is the JEPADreamerPolicy"
            )
        try:
            saved = torch.load(path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as error:
            raise tensor_file_error(path, error) from error
        if not isinstance(saved, dict) or not isinstance(saved.get("data"), str) or "state_dict" not in saved:
            raise ValueError(f"{path} is not a JEPADreamerPolicy file saved by JEPADreamerPolicy.save")
        data = json.loads(saved["data"])
        policy = cls(
            space_from_json(data["observation_space"]),
            space_from_json(data["action_space"]),
            config_from_dict(data["config"]),
        )
        policy.load_state_dict(saved["state_dict"])
        return policy.to(device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(config=self.config)
        return data

    def initial_state(self, n: int) -> tuple[Latent, torch.Tensor]:
        """Zero latent state and zero previous action for `n` envs."""
        return self.world_model.rssm.initial(n, self.device), torch.zeros(n, self.action_spec.size, device=self.device)

    def noise_generator(self, deterministic: bool) -> torch.Generator | None:
        """Where the planner and `imagine` draw their noise: deterministic, from a generator seeded afresh with
        `plan_seed` on every call (the answer is a function of the observation and state alone); otherwise torch's
        global one."""
        if not deterministic:
            return None
        return torch.Generator(device=self.device).manual_seed(self.plan_seed)

    def filter(
        self, obs: dict[str, torch.Tensor], latent: Latent, prev_action: torch.Tensor, episode_start: torch.Tensor,
        deterministic: bool = False,
    ) -> Latent:  # fmt: skip
        """Filter the new observation (raw tensors (N, ...)) into the latent state after `prev_action` (N, A);
        episode_start (N,) resets the state of the envs whose episode begins with this observation. Deterministic:
        the posterior's most likely latents."""
        embed = self.world_model.encoder(self.obs_spec.preprocess(obs, self.config.image_size))
        latent, _ = self.world_model.rssm.obs_step(latent, prev_action, embed, episode_start, sample=not deterministic)
        return latent

    @torch.inference_mode()
    def act(
        self,
        obs: dict[str, torch.Tensor],
        latent: Latent,
        prev_action: torch.Tensor,
        episode_start: torch.Tensor,
        deterministic: bool = False,
        plan: bool = False,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Latent]:
        """One batched step: filter the new observation into the latent state, then act (sample, or the mode).

        obs: raw tensors (N, ...); latent/prev_action: the state after the previous step; episode_start (N,)
        resets the state of the envs whose episode begins with this observation. With `plan` and a `planner` in the
        config, the planner picks the action instead of the actor (`predict` plans, `learn` collects with the
        actor). `noise`: the actor's standard-normal draws (see `ActionDist.sample`), for correlated exploration.
        Returns model actions (N, A) and the filtered state.
        """
        latent = self.filter(obs, latent, prev_action, episode_start, deterministic)
        if plan and self.config.planner != "none":
            generator = self.noise_generator(deterministic)
            return planning.plan(self.world_model, self.behavior, latent, self.config, deterministic, generator), latent
        policy = self.behavior.actor(latent.feat)
        action = policy.mode if deterministic else policy.sample(noise=noise)
        return action, latent

    def _predict(self, observation: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Stateless SB3 hook: one step from the initial latent state (use `predict` to carry the state)."""
        obs = observation if isinstance(observation, dict) else {self.obs_spec.keys[0].name: observation}
        n = next(iter(obs.values())).shape[0]
        latent, prev_action = self.initial_state(n)
        action, _ = self.act(obs, latent, prev_action, torch.ones(n, device=self.device), deterministic, plan=True)
        return action

    def _inputs(
        self, observation: np.ndarray | dict[str, np.ndarray], state: State | None, episode_start: np.ndarray | None
    ) -> tuple[dict[str, torch.Tensor], Latent, torch.Tensor, torch.Tensor, bool]:
        """`predict`'s and `imagine`'s arguments checked and as tensors: observation (N, ...) by key, the latent
        state and previous action to filter it from, episode starts (N,), and whether the observation was a batch."""
        if self.obs_spec.is_dict and isinstance(observation, (tuple, dict)):  # Tuple and nested: as FlatDictObservation
            flat = flatten_obs(observation)
            if all(key.name in flat for key in self.obs_spec.keys):
                observation = {key.name: flat[key.name] for key in self.obs_spec.keys}
        if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], dict):
            raise ValueError(
                "predict() got a tuple (obs, info): `obs, info = env.reset()` is the Gymnasium API, "
                "`obs = vec_env.reset()` the SB3 VecEnv API; pass only the observation `obs`"
            )
        if isinstance(observation, dict) != self.obs_spec.is_dict:
            expected = "a dict" if self.obs_spec.is_dict else "an array"
            raise ValueError(
                f"Expected {expected} observation for the space {self.observation_space}, "
                f"got {type(observation).__name__}"
            )
        self.obs_spec.check(self.obs_spec.as_dict(observation))
        obs_tensor, vectorized = self.obs_to_tensor(observation)  # checks shapes, transposes channel-last images
        obs_dict = self.obs_spec.as_dict(obs_tensor)
        n = next(iter(obs_dict.values())).shape[0]
        if state is None:
            latent, prev_action = self.initial_state(n)
            episode_start = np.ones(n, dtype=bool)
        else:
            if len(state) != 3 or any(np.asarray(s).shape[0] != n for s in state):
                raise ValueError(
                    f"state does not match the observation batch of {n}: pass the state returned by the previous "
                    "predict call for the same number of envs, or None to start afresh"
                )
            sizes = tuple(np.asarray(s).shape[1:] for s in state)
            cfg = self.config
            expected_sizes = ((cfg.deter,), (cfg.stoch * cfg.classes,), (self.action_spec.size,))
            if sizes != expected_sizes:
                raise ValueError(
                    f"state has sizes {sizes} (deter, stoch, previous action) but this model's are {expected_sizes}: "
                    "pass the state returned by this model's predict, or None to start afresh"
                )
            deter, stoch, prev = (torch.as_tensor(np.asarray(s), device=self.device).float() for s in state)
            latent, prev_action = Latent(deter, stoch), prev
        if episode_start is None:
            episode_start = np.zeros(n, dtype=bool)
        episode_start_tensor = torch.as_tensor(np.asarray(episode_start).reshape(n), device=self.device).float()
        return obs_dict, latent, prev_action, episode_start_tensor, vectorized

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: State | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, State]:
        """Act on a single observation or a VecEnv batch, carrying the latent state between calls.

        Pass back the returned `state`, and `episode_start` (True where an episode begins), as with RecurrentPPO.
        With a `planner` in the config, the action is planned (`wm_agent.planning.plan`), for every env at once.
        """
        if self.training:  # switching every module costs about 0.8 ms a call on a CPU: not on the acting path
            self.set_training_mode(False)
        obs_dict, latent, prev_action, starts, vectorized = self._inputs(observation, state, episode_start)
        action, latent = self.act(obs_dict, latent, prev_action, starts, deterministic, plan=True)
        action = action.cpu().numpy()
        env_action = self.action_spec.to_env(action)
        new_state = (latent.deter.cpu().numpy(), latent.stoch.cpu().numpy(), action)
        if not vectorized:
            env_action = env_action.squeeze(axis=0)
        return env_action, new_state

    @torch.inference_mode()
    def imagine(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        actions: np.ndarray,
        state: State | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> dict[str, Any]:
        """What the model expects if the candidate action sequences `actions` (P, H, *action_shape), env units, were
        taken from `observation`; see `JEPADreamer.imagine`. Outputs lead with (N, P) for a batch of N observations,
        (P,) for a single one."""
        if self.training:
            self.set_training_mode(False)
        obs_dict, latent, prev_action, starts, vectorized = self._inputs(observation, state, episode_start)
        env_actions = np.asarray(actions)
        self.action_spec.check_sequences(env_actions)
        plans, horizon = env_actions.shape[:2]
        envs, size = latent.deter.shape[0], self.action_spec.size
        flat = env_actions.reshape(plans * horizon, *self.action_space.shape)
        model_actions = torch.as_tensor(self.action_spec.from_env(flat), device=self.device)
        model_actions = model_actions.reshape(plans, horizon, size)  # (P, H, A)
        latent = self.filter(obs_dict, latent, prev_action, starts, deterministic)
        rows = Latent(latent.deter.repeat_interleave(plans, 0), latent.stoch.repeat_interleave(plans, 0))  # (N * P)
        sequences = model_actions.transpose(0, 1).repeat(1, envs, 1)  # (H, N * P, A): row e * P + p is plan p
        generator = self.noise_generator(deterministic)
        outcome = planning.imagine_outcomes(
            self.world_model, self.behavior, rows, sequences, generator, sample_latents=True
        )
        if self.config.representation == "reconstruction":
            decoded = self.world_model.decoder.decode(outcome["feat"][1:].flatten(0, 1))  # (H * N * P, ...) by key
            outcome["obs"] = {k: v.reshape(horizon, envs * plans, *v.shape[1:]) for k, v in decoded.items()}

        def per_plan(x: torch.Tensor) -> np.ndarray:  # (H, N * P, ...) -> (N, P, H, ...), or (P, H, ...)
            x = x.reshape(x.shape[0], envs, plans, *x.shape[2:]).movedim(0, 2).cpu().numpy()
            return x if vectorized else x[0]

        result: dict[str, Any] = {name: per_plan(outcome[name]) for name in ("reward", "continue", "value", "feat")}
        returns = outcome["return"].reshape(envs, plans).cpu().numpy()
        result["return"] = returns if vectorized else returns[0]
        if "obs" in outcome:
            decoded = {k: per_plan(v) for k, v in outcome["obs"].items()}
            result["obs"] = decoded if self.obs_spec.is_dict else next(iter(decoded.values()))
        return result


def _is_agent_zip(path: str | pathlib.Path) -> bool:
    """Whether `path` is an agent's zip (`JEPADreamer.save`: SB3's layout, with a ``data`` entry), not a policy file
    (torch's own zip, whose entries sit in a folder)."""
    start = path.tell() if hasattr(path, "tell") else None  # a file object: leave it where it was
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return "data" in archive.namelist()
    finally:
        if start is not None:
            path.seek(start)
