"""JEPADreamer: a JEPA + RSSM world model with an actor-critic trained in imagination, as an SB3 algorithm."""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import pathlib
import pickle
import shutil
import sys
import time
import warnings
from collections import deque
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import (
    json_to_data,
    load_from_pkl,
    load_from_zip_file,
    save_to_zip_file,
)
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.utils import check_for_correct_spaces, safe_mean
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.patch_gym import _patch_env

from wm_agent.checkpoint import (
    FORMAT_VERSION,
    check_json,
    pickled_entries,
    read_data,
    refuse_pickled,
    resolve_path,
    space_from_json,
    space_to_json,
    tensor_file_error,
    weights_mismatch_error,
)
from wm_agent.common import episode_limit, register_project_envs
from wm_agent.config import (
    JEPADreamerConfig,
    config_from_dict,
    discount_for_episode_limit,
    make_config,
    unknown_settings_error,
    upgrade_config,
)
from wm_agent.exploration import ColoredNoise
from wm_agent.files import atomic_path, with_suffix
from wm_agent.policies import JEPADreamerPolicy
from wm_agent.precision import reuse_freed_memory, update_autocast
from wm_agent.replay import (
    ObsShapes,
    SequenceReplay,
    available_memory_bytes,
    is_replay_file,
    read_replay,
    step_bytes,
    write_replay,
)
from wm_agent.spaces import (
    ActionSpec,
    CheckedObservations,
    FlatDictObservation,
    ObsSpec,
    needs_flattening,
    warn_about_reading,
)
from wm_agent.version import __version__

SelfJEPADreamer = TypeVar("SelfJEPADreamer", bound="JEPADreamer")


class JEPADreamer(BaseAlgorithm):
    """Model-based agent: learns a latent world model from replayed sequences and trains its policy in imagination.

    :param policy: "MlpPolicy", "CnnPolicy" or "MultiInputPolicy" (all pick the encoder from the observation space)
    :param env: a Gymnasium env, a VecEnv or a registered env id
    :param preset: size preset of `wm_agent.config.PRESETS` ("tiny", "small" (default, for a laptop CPU), "medium",
        "large")
    :param config: a full `JEPADreamerConfig`, used instead of `preset` when given
    :param config_overrides: any `JEPADreamerConfig` field, e.g. ``train_ratio=512`` or
        ``representation="reconstruction"``
    """

    policy_aliases: ClassVar[dict[str, type[JEPADreamerPolicy]]] = {
        "MlpPolicy": JEPADreamerPolicy,
        "CnnPolicy": JEPADreamerPolicy,
        "MultiInputPolicy": JEPADreamerPolicy,
    }
    policy: JEPADreamerPolicy
    _last_prefill_actions: np.ndarray | None = None  # (n_envs, ...) last prefill actions, for prefill_repeat_prob
    _exploration_noise: ColoredNoise | None = None  # the collecting actor's draws, for exploration_noise_beta
    _last_model_obs: dict[str, np.ndarray] | None = None  # `_last_obs` with images at the model's resolution

    def __init__(
        self,
        policy: str | type[JEPADreamerPolicy],
        env: GymEnv | str | None,
        preset: str = "small",
        config: JEPADreamerConfig | None = None,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
        **config_overrides: Any,
    ) -> None:
        if config is not None and config_overrides:
            raise TypeError("Pass either `config` or keyword overrides of the preset, not both")
        check_policy_kwargs(policy_kwargs)
        self.config = config if config is not None else make_config(preset, **config_overrides)
        self.preset = preset
        if env is not None:
            # fail before SB3 wraps the env, with the unsupported space named
            env = make_env(env, verbose)
            if not isinstance(env, VecEnv) and needs_flattening(env.observation_space):
                env = FlatDictObservation(env)
            obs_spec = ObsSpec(env.observation_space)
            ActionSpec(env.action_space)
            if _init_setup_model:  # a new agent, not one being loaded
                warn_about_reading(obs_spec, policy, self.config.image_size)
            if obs_spec.is_dict and policy in self.policy_aliases:
                policy = "MultiInputPolicy"  # the one name SB3 accepts for a Dict; all three name one policy
        super().__init__(
            policy,
            env,
            learning_rate=self.config.model_lr,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
        )
        self.wm_agent_version = __version__
        # the run's counters: set here, not in _setup_model, so that load() restores them
        self._train_credit = 0.0  # updates due but not yet made (fractions carry over between env steps)
        self._train_seconds = 0.0
        self._skipped_updates = 0  # updates skipped for a non-finite loss or gradient
        self._consecutive_skips = 0
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        """SB3's wrapping, with a check of each observation a single env returns (`CheckedObservations`)."""
        if not isinstance(env, VecEnv):
            env = _patch_env(env)
            if needs_flattening(env.observation_space):
                env = FlatDictObservation(env)
            env = CheckedObservations(env)
        return BaseAlgorithm._wrap_env(env, verbose, monitor_wrapper)

    def _get_policy_from_name(self, policy_name: str) -> type[JEPADreamerPolicy]:
        if policy_name not in self.policy_aliases:
            raise ValueError(f"Unknown policy {policy_name!r}: choose one of {sorted(self.policy_aliases)}")
        return self.policy_aliases[policy_name]

    def _setup_model(self) -> None:
        upgrade_config(self.config)
        if self.config.gamma is None:
            limit = episode_limit(self.env)
            self.config = dataclasses.replace(self.config, gamma=discount_for_episode_limit(limit))
            if self.verbose >= 1:
                print(f"gamma={self.config.gamma} from the env's episode limit ({limit or 'none'})")
        if self.device.type == "cpu":
            reuse_freed_memory()
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(self.observation_space, self.action_space, self.config, **self.policy_kwargs)
        self.policy = self.policy.to(self.device)
        self.policy.plan_seed = self.seed if self.seed is not None else 0
        self.replay_buffer: SequenceReplay | None = None  # made by the first learn(): inference needs none
        self._act_state = None  # (latent, previous action) of the envs being collected from
        self._metric_sums: torch.Tensor | None = None
        self._metric_names: list[str] = []
        self._metric_count = 0

    def _make_replay(self, run_steps: int) -> None:
        """The sequence replay, sized for this run: arrays start at the run's length and grow up to `buffer_size`."""
        cfg = self.config
        if cfg.buffer_size // self.n_envs < cfg.seq_len:
            raise ValueError(
                f"buffer_size={cfg.buffer_size} leaves {cfg.buffer_size // self.n_envs} steps per env for "
                f"{self.n_envs} envs, fewer than seq_len={cfg.seq_len}: training could never start; raise buffer_size "
                "or lower seq_len"
            )
        capacity = self._replay_capacity(run_steps, stored=0, allocated=0)
        self.replay_buffer = SequenceReplay(
            capacity,
            self.n_envs,
            self._stored_shapes(),
            self.policy.action_spec.size,
            seed=self.seed,
            initial=min(capacity, self._replay_entries(run_steps)),
            directory=cfg.replay_dir,
        )
        per_step = step_bytes(self._stored_shapes(), self.policy.action_spec.size)
        where = f"memory-mapped in {cfg.replay_dir}" if cfg.replay_dir else "in memory"
        self.logger.record("replay/capacity_steps", capacity, exclude="tensorboard")
        if self.verbose >= 1:
            size = f"{capacity:,} steps of {per_step:,} bytes ({capacity * per_step / 1e9:.2f} GB)"
            print(f"Replay: up to {size}, {where}")

    def _stored_shapes(self) -> ObsShapes:
        """What one replayed step of each observation key is: images uint8 at the model's resolution."""
        return self.policy.obs_spec.stored_shapes(self.config.image_size)

    def _replay_room(self) -> tuple[int | None, str]:
        """Bytes the replay can still take (None: unknown), and where: the free disk space in `replay_dir` for a
        memory-mapped replay, else the memory available."""
        folder = self.config.replay_dir
        if folder is None:
            return available_memory_bytes(), "memory"
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(folder).free, f"disk space in {folder}"

    def _fit_replay(self, run_steps: int) -> None:
        """Before a later learn() call: lower the replay's capacity if what this run adds would not fit (in memory,
        or on disk in `replay_dir`)."""
        replay, n = self.replay_buffer, self.n_envs
        if replay.count.max() >= replay.capacity:  # a full ring: it takes no more memory
            return
        capacity = self._replay_capacity(run_steps, stored=len(replay), allocated=replay.allocated * n) // n
        # never below what a stream has written: its next step must still find room
        replay.capacity = min(replay.capacity, max(capacity, int(replay.pos.max()) + 1))

    def _replay_entries(self, run_steps: int) -> int:
        """Replay entries `run_steps` env steps add: the steps plus the first observation of each episode,
        counted generously (one episode start per 8 steps) so that the arrays seldom need to grow."""
        return int(run_steps * 1.125) + self.n_envs * self.config.seq_len

    def _replay_capacity(self, run_steps: int, stored: int, allocated: int) -> int:
        """Replay capacity (steps, all envs) for a run of `run_steps` more env steps, with `stored` steps in
        arrays of `allocated` steps already.

        `buffer_size` when the room the run adds (the last doubling of the arrays holds the old and the new
        copy at once) fits in 80% of what is available now: memory, or disk space in `replay_dir` when set.
        Otherwise a `buffer_size` the user set raises here, before training starts; the preset's is lowered to what
        fits, with a warning.
        """
        cfg = self.config
        per_step = step_bytes(self._stored_shapes(), self.policy.action_spec.size)
        wanted = min(cfg.buffer_size, stored + self._replay_entries(run_steps))
        extra = int(1.5 * wanted) - allocated if wanted > allocated else 0
        available, where = self._replay_room()
        if available is None or extra * per_step <= 0.8 * available:
            return cfg.buffer_size
        fitting = int((0.8 * available / per_step + allocated) / 1.5)
        if cfg.buffer_size != make_config(self.preset).buffer_size:
            room = "point replay_dir at a disk with more room" if cfg.replay_dir else "set replay_dir to a roomy disk"
            raise MemoryError(
                f"This run would fill {wanted:,} replay steps of {per_step:,} bytes ({wanted * per_step / 1e9:.1f} "
                f"GB, more while the arrays grow), but {available / 1e9:.1f} GB of {where} are available: set "
                f"buffer_size to at most {fitting:,} (it is {cfg.buffer_size:,}), {room}, or train for fewer steps"
            )
        capacity = max(fitting, self.n_envs * cfg.seq_len)
        warnings.warn(
            f"Replay capped at {capacity:,} steps ({capacity * per_step / 1e9:.1f} GB) to fit the "
            f"{available / 1e9:.1f} GB of {where} available; the preset's buffer_size is {cfg.buffer_size:,}",
            stacklevel=3,
        )
        return capacity

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "replay_buffer",
            "_act_state",
            "_metric_sums",
            "_last_prefill_actions",
            "_exploration_noise",
            # a loaded agent starts its episodes afresh and rebuilds its schedule from `learning_rate`
            "_last_obs",
            "_last_original_obs",
            "_last_episode_starts",
            "lr_schedule",
            "_last_model_obs",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", *(f"policy.{name}_optimizer" for name in self.policy.optimizers)], []

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        """Use a new env (same spaces). The replay is kept unless the number of envs changes."""
        previous_n_envs = self.n_envs
        env = self._wrap_env(env, self.verbose)
        check_env_spaces(env, self.observation_space, self.action_space)
        super().set_env(env, force_reset)
        if self.replay_buffer is not None and self.n_envs != previous_n_envs:
            if len(self.replay_buffer) > 0:
                warnings.warn(
                    f"The number of envs changed ({previous_n_envs} -> {self.n_envs}): starting a new, empty replay",
                    stacklevel=2,
                )
            self.replay_buffer = None
        self._act_state = None

    # ------------------------------------------------------------------ learning

    def learn(
        self: SelfJEPADreamer,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "JEPADreamer",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
        checkpoint_path: str | pathlib.Path | None = None,
    ) -> SelfJEPADreamer:
        """Collect with the current policy and train the world model and behavior every `train_ratio`-th replayed step.

        :param total_timesteps: env steps to collect in this call (SB3's rule: with ``reset_num_timesteps=False``
            they add to the steps already taken)
        :param callback: SB3 callback(s), called at every env step
        :param log_interval: episodes between log dumps, as in SB3's off-policy algorithms
        :param tb_log_name: the TensorBoard run name
        :param reset_num_timesteps: start the step count (and the envs' episodes) afresh
        :param progress_bar: show a progress bar (needs tqdm and rich)
        :param checkpoint_path: where to save the agent (crash-safe, as `save`) if learning stops because updates
            keep coming out non-finite, so that the last good weights survive the process
        """
        if self.env is None:
            raise ValueError(
                "This agent has no env to learn from (it was loaded without one): pass env= to JEPADreamer.load, or "
                "call set_env(env) first"
            )
        env_is_reset = reset_num_timesteps or self._last_obs is None
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        run_steps = total_timesteps - self.num_timesteps  # `total_timesteps` counts the steps of earlier calls
        if self.replay_buffer is None:
            self._make_replay(run_steps)
        else:
            self._fit_replay(run_steps)
        if self._vec_normalize_env is not None:
            warnings.warn(
                "JEPADreamer replays what the VecEnv returns: under VecNormalize, old and new steps are scaled by "
                "different running statistics. Symlog inputs and two-hot rewards make VecNormalize unnecessary; "
                "prefer the raw env.",
                stacklevel=2,
            )
        if env_is_reset or self._act_state is None:
            self._start_episodes()
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < total_timesteps:
            if not self._collect_step(callback, log_interval):
                break
            try:
                self._train_when_due()
            except FloatingPointError as error:
                if checkpoint_path is None:
                    raise
                self.save(checkpoint_path)  # no skipped update changed a weight: these are the last good ones
                raise FloatingPointError(f"{error}. The agent was saved to {checkpoint_path}") from error
        callback.on_training_end()
        return self

    def _start_episodes(self) -> None:
        """Fresh latent state for every env, and the current observations stored as episode starts."""
        assert self.env is not None and self.replay_buffer is not None
        n = self.n_envs
        self._act_state = self.policy.initial_state(n)
        self._last_prefill_actions = None
        self._exploration_noise = None
        if self.config.exploration_noise_beta > 0:
            self._exploration_noise = ColoredNoise(
                self.config.exploration_noise_beta,
                n,
                self.policy.action_spec.noise_size,
                self.config.exploration_noise_length,
                np.random.default_rng(self.action_space.np_random.integers(2**63)),
            )
        raw_obs = self.policy.obs_spec.as_dict(self._last_obs)
        self.policy.obs_spec.check(raw_obs, n)
        obs = self.policy.obs_spec.resize_images(raw_obs, self.config.image_size)
        self._store_episode_starts(obs, np.arange(n))
        self._last_model_obs = obs
        self._last_episode_starts = np.ones(n, dtype=bool)

    def _prefill_actions(self) -> np.ndarray:
        """Uniform random actions, each env repeating its previous one with probability ``prefill_repeat_prob``.

        Repeats make the random walk temporally extended: a uniform random policy never finishes Acrobot-v1 in
        500 steps, one that holds each action for about 4 steps does in about half its episodes. The latent state
        still follows the actions taken.
        """
        fresh = np.stack([self.action_space.sample() for _ in range(self.n_envs)])
        previous = self._last_prefill_actions
        if previous is not None and self.config.prefill_repeat_prob > 0:
            repeat = self.action_space.np_random.random(self.n_envs) < self.config.prefill_repeat_prob
            repeat &= ~np.asarray(self._last_episode_starts, dtype=bool)
            fresh[repeat] = previous[repeat]
        self._last_prefill_actions = fresh
        return fresh

    def _collect_step(self, callback: BaseCallback, log_interval: int) -> bool:
        """One VecEnv step with one batched forward; stores the transition. Returns False when a callback stops."""
        policy, obs_spec, action_spec = self.policy, self.policy.obs_spec, self.policy.action_spec
        callback.on_rollout_start()
        # the pixels the replay stored for this step (`_store_transition`), so acting and training see the same
        obs_tensor = {k: torch.as_tensor(v, device=self.device) for k, v in self._last_model_obs.items()}
        episode_start = torch.as_tensor(self._last_episode_starts, device=self.device, dtype=torch.float32)
        latent, prev_action = self._act_state
        prefill = self.num_timesteps < self.config.learning_starts
        noise = None  # (n_envs, dims): the actor's draws, correlated across steps (exploration_noise_beta)
        if self._exploration_noise is not None and not prefill:
            draws = self._exploration_noise(self._last_episode_starts)
            noise = torch.as_tensor(draws, dtype=torch.float32, device=self.device)
        action, latent = policy.act(obs_tensor, latent, prev_action, episode_start, noise=noise)
        if prefill:
            actions = self._prefill_actions()
            buffer_actions = action_spec.from_env(actions)
            action = torch.as_tensor(buffer_actions, device=self.device)
        else:
            buffer_actions = action.cpu().numpy()
            actions = action_spec.to_env(buffer_actions)
        self._act_state = (latent, action)

        new_obs, rewards, dones, infos = self.env.step(actions)
        self.num_timesteps += self.n_envs
        # store before the callbacks run, so a callback that stops training leaves replay and state consistent
        self._last_model_obs = self._store_transition(new_obs, buffer_actions, rewards, dones, infos)
        self._last_obs = new_obs
        self._last_episode_starts = dones

        callback.update_locals(locals())
        if not callback.on_step():
            return False
        self._update_info_buffer(infos, dones)
        self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
        for _ in range(int(np.sum(dones))):
            self._episode_num += 1
            if log_interval is not None and self._episode_num % log_interval == 0:
                self.dump_logs()
        callback.on_rollout_end()
        return True

    def _store_transition(
        self, new_obs: Any, buffer_actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray, infos: list[dict]
    ) -> dict[str, np.ndarray]:
        """The replay gets the true last observation of an ended episode, then the first one of the next.

        Images are stored at the model's resolution (`ObsSpec.resize_images`). Returns `new_obs` so resized: what
        the policy acts on next.
        """
        obs_spec, n, size = self.policy.obs_spec, self.n_envs, self.config.image_size
        raw_obs = obs_spec.as_dict(new_obs)
        obs_spec.check(raw_obs, n)
        model_obs = obs_spec.resize_images(raw_obs, size)
        next_obs = {k: np.array(v) for k, v in model_obs.items()}
        done_envs = np.flatnonzero(dones)
        if len(done_envs):
            terminals = [obs_spec.as_dict(infos[i]["terminal_observation"]) for i in done_envs]
            raw_terminal = {k: np.stack([t[k] for t in terminals]) for k in next_obs}
            obs_spec.check(raw_terminal, len(done_envs))
            terminal = obs_spec.resize_images(raw_terminal, size)
            for k in next_obs:
                next_obs[k][done_envs] = terminal[k]
        if not np.isfinite(rewards).all():  # stored, it would poison every update that samples it
            raise ValueError(
                f"The env returned a non-finite reward {rewards.tolist()} at step {self.num_timesteps}: "
                "fix the env, or wrap it with gymnasium.wrappers.TransformReward to clean its rewards"
            )
        truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos])
        self.replay_buffer.add(next_obs, buffer_actions, rewards, dones & ~truncated, np.zeros(n, bool))
        if len(done_envs):
            reset_obs = {k: v[done_envs] for k, v in model_obs.items()}  # checked with `raw_obs`
            self._store_episode_starts(reset_obs, done_envs)
        return model_obs

    def _store_episode_starts(self, obs: dict[str, np.ndarray], streams: np.ndarray) -> None:
        """First observations of episodes: no action led to them and no reward came with them."""
        n = len(streams)
        no_action = np.zeros((n, self.policy.action_spec.size), np.float32)
        self.replay_buffer.add(obs, no_action, np.zeros(n), np.zeros(n, bool), np.ones(n, bool), streams=streams)

    def _train_when_due(self) -> None:
        cfg = self.config
        if self.num_timesteps < cfg.learning_starts or not self.replay_buffer.can_sample(cfg.seq_len):
            return
        if self._n_updates == 0 and self._skipped_updates == 0:
            self._train_credit += cfg.pretrain_updates
        self._train_credit += self.n_envs * cfg.train_ratio / (cfg.batch_size * cfg.seq_len)
        updates = int(self._train_credit)
        if updates > 0:
            self._train_credit -= updates
            self.train(updates)

    def train(self, gradient_steps: int) -> None:
        """`gradient_steps` updates of the world model, then the actor and critic on imagination from its posteriors."""
        cfg, policy = self.config, self.policy
        policy.set_training_mode(True)
        start_time = time.perf_counter()
        applied = 0
        for _ in range(gradient_steps):
            batch = self.replay_buffer.sample(cfg.batch_size, cfg.seq_len, self.device)

            with update_autocast(self.device, cfg.precision):
                model_loss, metrics, post = policy.world_model_loss(batch)
            policy.model_optimizer.zero_grad(set_to_none=True)
            model_loss.backward()
            metrics["model_grad_norm"] = torch.nn.utils.clip_grad_norm_(
                policy.world_model.trainable_parameters(), cfg.model_grad_clip
            )
            # a NaN or inf anywhere in the loss or its gradient shows in the norm: skip the whole update
            if not torch.isfinite(metrics["model_grad_norm"]):
                self._skip_update("world model", metrics, self._n_updates + applied)
                continue
            policy.model_optimizer.step()
            policy.world_model.update_target()

            start = post.detach().flatten()
            start_cont = 1.0 - batch.terminated.float().reshape(-1)
            if cfg.imagine_starts and cfg.imagine_starts < start_cont.shape[0]:
                keep = torch.randperm(start_cont.shape[0], device=self.device)[: cfg.imagine_starts]
                start, start_cont = start.select(keep), start_cont[keep]
            with update_autocast(self.device, cfg.precision):
                behavior_loss, behavior_metrics = policy.behavior_loss(policy.world_model, start, start_cont)
            policy.actor_optimizer.zero_grad(set_to_none=True)
            policy.critic_optimizer.zero_grad(set_to_none=True)
            behavior_loss.backward()
            behavior_metrics["actor_grad_norm"] = torch.nn.utils.clip_grad_norm_(
                policy.behavior.actor.parameters(), cfg.ac_grad_clip
            )
            behavior_metrics["critic_grad_norm"] = torch.nn.utils.clip_grad_norm_(
                policy.behavior.critic.parameters(), cfg.ac_grad_clip
            )
            if not torch.isfinite(behavior_metrics["actor_grad_norm"] + behavior_metrics["critic_grad_norm"]):
                self._skip_update("actor-critic", behavior_metrics, self._n_updates + applied)
                continue
            policy.actor_optimizer.step()
            policy.critic_optimizer.step()
            policy.behavior.update_slow_critic()
            self._accumulate_metrics({**metrics, **behavior_metrics})
            self._consecutive_skips = 0
            applied += 1
        policy.set_training_mode(False)
        self._n_updates += applied
        self._train_seconds += time.perf_counter() - start_time

    def _skip_update(self, part: str, metrics: dict[str, torch.Tensor], update: int) -> None:
        """Count an update skipped for a non-finite loss or gradient; too many in a row stop training.

        The skipped part (the world model, or the actor and critic) changed no weight and no optimizer state, and
        the return normalizer ignores non-finite returns, so that part stays at its last good update.
        """
        self._skipped_updates += 1
        self._consecutive_skips += 1
        if self._consecutive_skips >= self.config.max_skipped_updates:
            bad = [name for name, value in metrics.items() if not torch.isfinite(value).all()]
            self.policy.set_training_mode(False)
            raise FloatingPointError(
                f"{self._consecutive_skips} updates in a row had a non-finite {part} loss or gradient (the last was "
                f"update {update}); non-finite terms: {', '.join(bad)}. The {part} weights are those of its last "
                "good update: save them, then lower the learning rates (e.g. model_lr) or look for huge or non-finite "
                "rewards and observations in the env"
            )

    def _accumulate_metrics(self, metrics: dict[str, torch.Tensor]) -> None:
        """Sum the update's metrics on the device; they are read (one sync) only when logs are dumped."""
        values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()])
        if self._metric_sums is None or len(self._metric_names) != len(metrics):
            self._metric_names = list(metrics)
            self._metric_sums = torch.zeros_like(values)
            self._metric_count = 0
        self._metric_sums += values
        self._metric_count += 1

    @property
    def gamma(self) -> float:
        """The discount of imagined returns (``config.gamma``), where SB3's callbacks look for it."""
        return self.config.gamma

    def dump_logs(self) -> None:
        """Write rollout, time and mean train metrics since the last dump, as SB3's off-policy algorithms do."""
        time_elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        fps = int((self.num_timesteps - self._num_timesteps_at_start) / time_elapsed)
        self.logger.record("time/episodes", self._episode_num, exclude="tensorboard")
        if len(self.ep_info_buffer) > 0 and len(self.ep_info_buffer[0]) > 0:
            self.logger.record("rollout/ep_rew_mean", safe_mean([ep["r"] for ep in self.ep_info_buffer]))
            self.logger.record("rollout/ep_len_mean", safe_mean([ep["l"] for ep in self.ep_info_buffer]))
        if len(self.ep_success_buffer) > 0:
            self.logger.record("rollout/success_rate", safe_mean(self.ep_success_buffer))
        self.logger.record("time/fps", fps)
        self.logger.record("time/time_elapsed", int(time_elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        if self._n_updates:
            self.logger.record("time/updates_per_sec", self._n_updates / max(self._train_seconds, 1e-9))
            self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if self._skipped_updates:
            self.logger.record("train/skipped_updates", self._skipped_updates)
        if self._metric_sums is not None and self._metric_count:
            means = (self._metric_sums / self._metric_count).tolist()
            for name, value in zip(self._metric_names, means):
                self.logger.record(f"train/{name}", value)
            self._metric_sums.zero_()
            self._metric_count = 0
        self.logger.dump(step=self.num_timesteps)

    # ------------------------------------------------------------------ asking the model

    def imagine(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        actions: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> dict[str, Any]:
        """Ask the model what-if: filter `observation` into the latent state, as `predict` does, then roll the model
        forward under each candidate action sequence, without touching an env.

        :param observation: one observation, or a VecEnv batch of N
        :param actions: candidate action sequences, shape (n_plans, horizon, *action_space.shape), in the env's own
            units (integers for discrete spaces, values within the bounds for Box); every plan starts from the same
            state, and with a batch of observations every env gets every plan
        :param state: the state `predict` returned after the previous step (None: the episode starts here)
        :param episode_start: True where an episode begins with this observation, as for `predict`
        :param deterministic: draw the imagined latents from a generator seeded with the model's seed, so the same
            question gets the same answer; False samples from torch's global generator
        :return: a dict of numpy arrays, each shaped (n_plans, ...) for one observation, (N, n_plans, ...) for a
            batch: ``reward`` (n_plans, horizon), the predicted reward of each action; ``continue`` (n_plans,
            horizon), the probability that the episode goes on after it; ``value`` (n_plans, horizon + 1), the
            critic's value of the filtered state and of every imagined one; ``return`` (n_plans,), the plan's score
            (the rewards discounted by gamma and the continues, plus the critic's value of the last state discounted
            likewise: what the planner maximises); ``feat`` (n_plans, horizon + 1, F), the latent features; with
            ``representation="reconstruction"``, ``obs`` (n_plans, horizon, *obs_shape), the decoded observation
            after each action (a dict by key for Dict spaces; images as float pixels at the model's `image_size`)
        """
        return self.policy.imagine(observation, actions, state, episode_start, deterministic)

    # ------------------------------------------------------------------ replay and checkpoints

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """Save the agent as a zip that loads without unpickling anything (`wm_agent.checkpoint`).

        Crash-safe: the zip is written beside `path` and renamed over it once complete, so a kill during a save
        leaves the previous checkpoint loadable. The envs' last observations are saved (as tensors, in
        ``pytorch_variables.pth``) for ``load(env=..., force_reset=False)``; the latent state is not: a loaded agent's
        latent state starts afresh.
        """
        excluded = (set(exclude or ()) | set(self._excluded_save_params()) | {"policy"}) - set(include or ())
        data = {
            name: check_json(name, self._json_value(name, value))
            for name, value in self.__dict__.items()
            if name not in excluded
        }
        data["format_version"] = FORMAT_VERSION
        state_dict_names, _ = self._get_torch_save_params()
        params = {name: state for name, state in self.get_parameters().items() if name in state_dict_names}
        variables = {} if "_last_obs" in set(exclude or ()) - set(include or ()) else self._episode_variables()
        if not isinstance(path, (str, pathlib.Path)):
            return save_to_zip_file(path, data=data, params=params, pytorch_variables=variables)
        with atomic_path(with_suffix(path, ".zip")) as temporary:
            save_to_zip_file(temporary, data=data, params=params, pytorch_variables=variables)

    def _episode_variables(self) -> dict[str, Any]:
        """The envs' last observations and episode starts as tensors, for ``load(env, force_reset=False)``."""
        if self._last_obs is None:
            return {}
        obs = self._last_obs
        variables: dict[str, Any] = {
            "last_obs": {k: torch.as_tensor(np.asarray(v)) for k, v in obs.items()}
            if isinstance(obs, dict)
            else torch.as_tensor(np.asarray(obs))
        }
        if self._last_episode_starts is not None:
            variables["last_episode_starts"] = torch.as_tensor(np.asarray(self._last_episode_starts, dtype=bool))
        return variables

    def _restore_episodes(self, variables: dict[str, Any] | None) -> None:
        """After ``load(force_reset=False)``: the saved last observations, so that ``learn(reset_num_timesteps=False)``
        goes on with the envs' episodes instead of resetting them (a fresh latent state starts from them). Saved for
        another number of envs, they are dropped and the envs are reset."""
        obs = (variables or {}).get("last_obs")
        if obs is None:
            return
        obs = {k: v.cpu().numpy() for k, v in obs.items()} if isinstance(obs, dict) else obs.cpu().numpy()
        n = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        if n != self.n_envs:
            return
        self._last_obs = obs
        starts = variables.get("last_episode_starts")
        self._last_episode_starts = starts.cpu().numpy() if starts is not None else np.ones(n, dtype=bool)

    def _json_value(self, name: str, value: Any) -> Any:
        """An attribute as the plain JSON value the checkpoint stores (`_from_json` reads it back)."""
        if name == "config":
            return value.to_dict()
        if name == "policy_class":
            return value.__name__ if value is JEPADreamerPolicy else f"{value.__module__}.{value.__qualname__}"
        if name in ("observation_space", "action_space"):
            return space_to_json(value)
        if isinstance(value, deque):
            return list(value)
        if isinstance(value, np.generic):
            return value.item()
        return value

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """Write the replay (only its filled part), e.g. to resume training later with `load_replay_buffer`.

        The arrays go to the file straight from memory or from the memory-mapped files (`replay.write_replay`), so
        saving needs no memory beyond the replay's own. Crash-safe as `save`.
        """
        if self.replay_buffer is None:
            raise ValueError("There is no replay to save: it is made by the first call to learn()")
        if not isinstance(path, (str, pathlib.Path)):
            return write_replay(self.replay_buffer, path)
        with atomic_path(with_suffix(path, ".pkl")) as temporary, open(temporary, "wb") as file:
            write_replay(self.replay_buffer, file)

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, allow_pickle: bool = False) -> None:
        """Load a replay written by `save_replay_buffer`: into memory, or into memory-mapped files in `replay_dir`
        when it is set. A replay that would not fit there raises before anything is read.

        :param allow_pickle: also load a replay pickled by wm-agent 0.1 (unpickling can run any code: only for
            files you trust; save it again to convert it)
        """
        if isinstance(path, (str, pathlib.Path)) and not pathlib.Path(path).exists():
            path = with_suffix(path, ".pkl")  # as `save_replay_buffer` names it
        if not is_replay_file(path):
            if not allow_pickle:
                raise ValueError(
                    f"{path} is not a replay file of this wm-agent: if it is a replay pickled by wm-agent 0.1 and you "
                    "trust where it comes from, load it with allow_pickle=True (unpickling can run any code), then "
                    "save it again; otherwise pass a file written by save_replay_buffer"
                )
            replay = load_from_pkl(path, self.verbose)
            if not isinstance(replay, SequenceReplay):
                raise ValueError(
                    f"{path} does not hold a JEPADreamer SequenceReplay (got {type(replay).__name__}): pass a file "
                    "written by save_replay_buffer"
                )
            filled = replay.count.max()
            self._check_replay(path, replay.n_streams, replay.stored_shapes(), list(replay.action[:, :filled]))
            self.replay_buffer = replay
            return
        saved = read_replay(path)
        self._check_replay(path, saved.state["n_streams"], saved.stored_shapes(), saved.parts["action"])
        available, where = self._replay_room()
        if available is not None and saved.nbytes > 0.8 * available:
            room = "point replay_dir at a disk with more room" if self.config.replay_dir else "set replay_dir"
            raise MemoryError(
                f"{path} holds a replay of {saved.nbytes / 1e9:.1f} GB but {available / 1e9:.1f} GB of {where} are "
                f"available: {room} (e.g. JEPADreamer.load(..., replay_dir=...)) to load it memory-mapped on disk"
            )
        self.replay_buffer = saved.restore(self.config.replay_dir)

    def _check_replay(self, path: Any, n_streams: int, shapes: ObsShapes, actions: list[np.ndarray]) -> None:
        """Raise a clear ValueError when a loaded replay cannot be this agent's: env count, observation keys and
        sizes, action encoding (wrong dtype or out of range: the model would train on actions it can never take).

        `actions`: per stream, the stored encoded actions (steps, A).
        """
        if self.n_envs and n_streams != self.n_envs:
            raise ValueError(
                f"The replay has {n_streams} env streams but the model has {self.n_envs} envs: load it into a model "
                f"with {n_streams} envs (set_env), or start a new replay"
            )
        expected = self._stored_shapes()
        found = {key: (tuple(shape), np.dtype(dtype)) for key, (shape, dtype) in shapes.items()}
        other_frame_size = [
            key.name
            for key in self.policy.obs_spec.image_keys
            if key.name in found and found[key.name][0][:-2] == expected[key.name][0][:-2]
        ]
        for key, (shape, dtype) in expected.items():
            if found.get(key) == (tuple(shape), dtype):
                continue
            if key in other_frame_size:
                raise ValueError(
                    f"The replay in {path} stores observation {key!r} as {found[key][0]} {found[key][1]}, this model "
                    f"as {tuple(shape)} {dtype} (images at image_size={self.config.image_size}): load it into a model "
                    "with the image_size it was collected with, or start a new replay"
                )
            raise ValueError(
                f"The replay's observations {found} do not match the model's {expected}: it was collected on another "
                "env: load a replay of this env, or start a new one"
            )
        action_spec = self.policy.action_spec
        for stream in actions:
            if stream.dtype != np.float32 or stream.shape[1:] != (action_spec.size,):
                raise ValueError(
                    f"The replay's actions are {stream.dtype} of size {stream.shape[1:]}, but the model encodes "
                    f"actions of {self.action_space} as float32 of size {action_spec.size}: it was collected on "
                    "another env"
                )
            low, allowed = (0.0, "0 or 1 (one-hot)") if action_spec.discrete else (-1.0, "in [-1, 1]")
            if not (np.isfinite(stream).all() and stream.min(initial=0) >= low and stream.max(initial=0) <= 1.0):
                raise ValueError(
                    f"The replay holds encoded actions outside {allowed} (min {stream.min():.3g}, max "
                    f"{stream.max():.3g}): it was not written by JEPADreamer for this action space; store actions with "
                    "ActionSpec.from_env"
                )

    @classmethod
    def load(
        cls: type[SelfJEPADreamer],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: torch.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> SelfJEPADreamer:
        """Load an agent saved by `save`; nothing in the file is unpickled, so it cannot run code.

        :param path: the zip (the ``.zip`` suffix may be left out)
        :param env: an env with the agent's spaces, to continue learning; None for inference only
        :param device: where the networks go ("auto": CUDA when available)
        :param custom_objects: values used instead of the saved ones, e.g. ``{"policy_class": MyPolicy}`` for an
            agent saved with a policy subclass
        :param print_system_info: print the saving and the current system's versions
        :param force_reset: reset the envs at the next learn() (SB3's default); False keeps the saved last
            observations, so that ``learn(reset_num_timesteps=False)`` continues the envs' episodes (pass the env the
            agent was saved with, in its current state); the latent state starts afresh either way
        :param allow_pickle: also load files with pickled entries (saved by wm-agent 0.1);
            unpickling can run any code: use it only for files you trust, then save them again
        :param kwargs: config fields overriding the saved ones (e.g. ``learning_starts=0``, ``train_ratio=64``),
            or other attributes of the model
        """
        path = resolve_path(path)
        data = read_data(path)
        config_fields = {f.name for f in dataclasses.fields(JEPADreamerConfig)}
        known = config_fields | set(data) | set(inspect.signature(cls.__init__).parameters)
        unknown = set(kwargs) - known
        if unknown:
            raise unknown_settings_error(unknown, known, "load takes config fields and the agent's attributes")
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in config_fields}
        try:
            if pickled_entries(data):
                if not allow_pickle:
                    refuse_pickled(path, data, custom_objects)
                if overrides:  # the config is pickled in these files: the caller allowed unpickling it
                    saved = json_to_data(json.dumps({"config": data["config"]}), custom_objects)["config"]
                    kwargs["config"] = dataclasses.replace(upgrade_config(saved), **overrides)  # validated again
                model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
            else:
                model = cls._load_json(
                    path, data, env, device, custom_objects, print_system_info, overrides, kwargs, force_reset
                )
        except RuntimeError as error:  # torch's load_state_dict: the weights do not fit the network built
            if "state_dict" not in str(error):
                raise
            raise weights_mismatch_error(path, overrides, error) from error
        if overrides:  # the optimizers' saved state carries the old learning rates
            for name, optimizer in model.policy.optimizers.items():
                for group in optimizer.param_groups:
                    group["lr"] = getattr(model.config, f"{name}_lr")
        return model

    @classmethod
    def _load_json(
        cls: type[SelfJEPADreamer],
        path: pathlib.Path | io.BufferedIOBase,
        data: dict[str, Any],
        env: GymEnv | None,
        device: torch.device | str,
        custom_objects: dict[str, Any] | None,
        print_system_info: bool,
        overrides: dict[str, Any],
        kwargs: dict[str, Any],
        force_reset: bool = True,
    ) -> SelfJEPADreamer:
        """SB3's load steps, on the JSON data of the safe format, with tensors loaded ``weights_only``."""
        try:
            _, params, variables = load_from_zip_file(
                path, load_data=False, device=device, print_system_info=print_system_info
            )
        except pickle.UnpicklingError as error:
            raise tensor_file_error(path, error) from error
        provided = custom_objects or {}
        data = {
            name: provided[name] if name in provided else cls._from_json(name, value, data)
            for name, value in data.items()
            if name != "format_version"
        }
        if overrides:
            data["config"] = dataclasses.replace(data["config"], **overrides)  # checked again
        if env is not None:
            env = cls._wrap_env(make_env(env, data.get("verbose", 0)), data.get("verbose", 0))  # an id is made
            check_env_spaces(env, data["observation_space"], data["action_space"])
            data["n_envs"] = env.num_envs
        model = cls(data["policy_class"], env, config=data["config"], device=device, _init_setup_model=False)
        model.__dict__.update(data)
        model.__dict__.update(kwargs)
        model._setup_model()
        missing = sorted(set(model._get_torch_save_params()[0]) - set(params))
        if missing:
            raise ValueError(
                f"{path} is not a valid checkpoint: it lacks the weights {missing}; it was edited or damaged: save "
                "it again, or download it again"
            )
        model.set_parameters(params, exact_match=True, device=device)
        if not force_reset:
            model._restore_episodes(variables)
        return model

    @classmethod
    def _from_json(cls, name: str, value: Any, data: dict[str, Any]) -> Any:
        """The attribute a checkpoint's JSON value stands for (the inverse of `_json_value`)."""
        if name == "config":
            return config_from_dict(value)
        if name == "policy_class":
            if value in cls.policy_aliases or value == JEPADreamerPolicy.__name__:
                return cls.policy_aliases.get(value, JEPADreamerPolicy)
            raise ValueError(
                f"The agent was saved with the policy class {value}: pass it as custom_objects={{'policy_class': ...}} "
                "(a checkpoint never imports code by name)"
            )
        if name in ("observation_space", "action_space"):
            return space_from_json(value)
        if name in ("ep_info_buffer", "ep_success_buffer") and value is not None:  # None before the first learn()
            return deque(value, maxlen=data.get("_stats_window_size", 100))
        return value

    def _get_model_size(self) -> int:
        return sum(p.numel() for p in self.policy.parameters())


def make_env(env: GymEnv | str, verbose: int = 0) -> GymEnv:
    """SB3's `maybe_make_env`, after registering what an env id needs (the project's wm/ ids, MinAtar's...)."""
    if isinstance(env, str):
        register_project_envs(env)
    return maybe_make_env(env, verbose)


POLICY_KWARGS = ("normalize_images",)
"""The `policy_kwargs` JEPADreamerPolicy takes (normalize_images is accepted and ignored, as images are scaled by
`ObsSpec`)."""


def check_policy_kwargs(policy_kwargs: dict[str, Any] | None) -> None:
    """Refuse SB3's network options (net_arch, features_extractor_*, optimizer_*...) with the JEPADreamer settings
    to use instead: without this, the policy's constructor raises a bare "unexpected keyword argument"."""
    unknown = sorted(set(policy_kwargs or {}) - set(POLICY_KWARGS))
    if unknown:
        raise TypeError(
            f"JEPADreamer's policy takes no policy_kwargs {unknown} (SB3's network options do not apply to its world "
            "model): set sizes with preset= and config fields (hidden, mlp_layers, embed, cnn_depth, deter, stoch), "
            "learning rates with model_lr, actor_lr and critic_lr, and drop policy_kwargs"
        )


def check_env_spaces(env: GymEnv, observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """SB3's space check, with the way out in its message."""
    try:
        check_for_correct_spaces(env, observation_space, action_space)
    except ValueError as error:
        raise ValueError(
            f"{error}. The agent was trained on other spaces: give it an env with the same observation and action "
            "spaces, or train a new agent on this env"
        ) from error
