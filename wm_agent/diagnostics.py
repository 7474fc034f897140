"""Diagnostics of a world model: collapse metrics of the embeddings (logged every update), and open-loop drift.

`open_loop_drift` measures how a trained model's open-loop predictions degrade with the horizon on real
trajectories: reward, continue, latent state and (reconstruction) observation errors for k = 1..H steps ahead.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import check_for_correct_spaces
from stable_baselines3.common.vec_env import VecEnv

from wm_agent.distributions import symlog
from wm_agent.world_model.rssm import Latent

if TYPE_CHECKING:  # the policy and algorithm import this module (through the world model): types only
    from wm_agent.jepa_dreamer import JEPADreamer
    from wm_agent.policies import JEPADreamerPolicy


def effective_rank(embed: torch.Tensor) -> torch.Tensor:
    """RankMe: exp of the entropy of the normalised singular values of (N, D) embeddings.

    Equals D for isotropic embeddings and 1 for embeddings on a line; a collapsing encoder drifts to 1.
    """
    singular = torch.linalg.svdvals(embed.float() - embed.float().mean(0))
    p = singular / singular.sum().clamp(min=1e-12) + 1e-12
    return torch.exp(-(p * p.log()).sum())


def embedding_stats(embed: torch.Tensor, max_rows: int = 256) -> dict[str, torch.Tensor]:
    """Per-dimension std (mean over dims), std of the L2-normalised embeddings (healthy ~1/sqrt(D)), RankMe.

    Computed on at most `max_rows` evenly strided rows, so the SVD stays cheap at every update.
    """
    embed = embed.detach().reshape(-1, embed.shape[-1]).float()
    embed = embed[:: max(1, embed.shape[0] // max_rows)]
    normalised = torch.nn.functional.normalize(embed, dim=-1)
    return {
        "embed_std": embed.std(0).mean(),
        "embed_norm_std": normalised.std(0).mean(),
        "embed_rank": effective_rank(embed),
    }


def latent_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of categorical latents given by normalised log-probabilities (..., S, C), summed over S."""
    return -(log_probs.exp() * log_probs).sum((-2, -1)).mean()


# ---------------------------------------------------------------------------------------------- open-loop drift


@dataclass
class Episode:
    """One real episode laid out as the replay stores it: step t holds the observation, the action that led to it,
    the reward that came with it and whether it ended the episode by termination. Step 0 has a zero action and reward.

    :param obs: observation arrays by key (``"obs"`` for a non-Dict space), (L, ...) each, as the model stores
        them: images uint8, channel-first, at the model's ``image_size`` (`ObsSpec.resize_images`)
    :param action: (L, A) model-encoded actions (`ActionSpec.from_env`): ``action[t]`` was taken at step t - 1
    :param reward: (L,) the reward received on reaching step t
    :param terminated: (L,) True where step t ends the episode by termination (a time-limit truncation is False)
    """

    obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray

    def __len__(self) -> int:
        return len(self.reward)


class _EpisodeBuffer:
    """The steps of one env's episode in progress."""

    def __init__(self, first_obs: dict[str, np.ndarray], action_size: int) -> None:
        self.obs = {k: [v] for k, v in first_obs.items()}
        self.action = [np.zeros(action_size, np.float32)]
        self.reward, self.terminated = [0.0], [False]

    def add(self, obs: dict[str, np.ndarray], action: np.ndarray, reward: float, terminated: bool) -> None:
        for k, v in obs.items():
            self.obs[k].append(v)
        self.action.append(np.asarray(action, np.float32))
        self.reward.append(float(reward))
        self.terminated.append(bool(terminated))

    def episode(self) -> Episode:
        return Episode(
            {k: np.stack(v) for k, v in self.obs.items()},
            np.stack(self.action),
            np.asarray(self.reward, np.float32),
            np.asarray(self.terminated, bool),
        )


def _policy(model: JEPADreamer | JEPADreamerPolicy) -> JEPADreamerPolicy:
    return getattr(model, "policy", model)


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """torch's RNGs (CPU, and `device`'s if a GPU) seeded inside and restored afterwards: the caller's random
    streams are untouched."""
    if seed is None:
        yield
        return
    gpu = device.type == "cuda"
    with torch.random.fork_rng(devices=[device.index or 0] if gpu else []):
        torch.manual_seed(seed)
        yield


def _model_obs(policy: JEPADreamerPolicy, raw: Any) -> dict[str, np.ndarray]:
    """Env observations (a VecEnv batch, or one observation) -> arrays by key (N, ...) as the replay stores them."""
    tensor, _ = policy.obs_to_tensor(raw)  # transposes channel-last images, adds a batch dim to a single observation
    obs = {k: v.cpu().numpy() for k, v in policy.obs_spec.as_dict(tensor).items()}
    return policy.obs_spec.resize_images(obs, policy.config.image_size)


def _as_vec_env(env: gym.Env | VecEnv | str, policy: JEPADreamerPolicy) -> tuple[VecEnv, bool]:
    """The env as the policy sees it: a VecEnv, channel-last images transposed as ``learn`` does (SB3's
    `_wrap_env`, without Monitor), its spaces checked against the policy's. Also: whether it was made here."""
    made_here = isinstance(env, str)
    if made_here:
        from wm_agent.common import register_project_envs

        register_project_envs(env)
        env = gym.make(env)
    if not isinstance(env, (gym.Env, VecEnv)):
        raise TypeError(f"env must be a Gymnasium env, an SB3 VecEnv or an env id, got {type(env).__name__}")
    venv = BaseAlgorithm._wrap_env(env, verbose=0, monitor_wrapper=False)
    try:
        check_for_correct_spaces(venv, policy.observation_space, policy.action_space)
    except ValueError as error:
        if made_here:
            venv.close()
        raise ValueError(
            f"{error}: the model was trained on other spaces; give an env like the one it learned on"
        ) from error
    return venv, made_here


def collect_episodes(
    model: JEPADreamer | JEPADreamerPolicy,
    env: gym.Env | VecEnv | str,
    n_episodes: int = 10,
    deterministic: bool = False,
    seed: int | None = 0,
) -> list[Episode]:
    """Play `n_episodes` whole episodes with the model's own policy, recorded as the replay records them.

    The policy acts as in ``learn`` (sampled actions, unless `deterministic`), on observations resized to the model's
    resolution. With a VecEnv of several envs, the first `n_episodes` to finish are kept (short ones come first).

    :param model: a JEPADreamer or its policy
    :param env: a Gymnasium env, an SB3 VecEnv or an env id (``wm/`` ids are registered when ``envs`` is installed)
    :param n_episodes: episodes to record
    :param deterministic: act with the mode of the actor (as ``evaluate_policy`` does) instead of sampling
    :param seed: seeds the env (``VecEnv.seed``) and the policy's sampling; None leaves both as they are
    :return: the episodes, in the order they finished
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
    policy = _policy(model)
    action_spec = policy.action_spec
    venv, made_here = _as_vec_env(env, policy)
    n = venv.num_envs
    if seed is not None:
        venv.seed(seed)
    policy.set_training_mode(False)
    episodes: list[Episode] = []
    try:
        with _seeded(seed, policy.device):
            obs = _model_obs(policy, venv.reset())
            buffers = [_EpisodeBuffer({k: v[i] for k, v in obs.items()}, action_spec.size) for i in range(n)]
            latent, prev_action = policy.initial_state(n)
            start = torch.ones(n, device=policy.device)
            while len(episodes) < n_episodes:
                obs_tensor = {k: torch.as_tensor(v, device=policy.device) for k, v in obs.items()}
                action, latent = policy.act(obs_tensor, latent, prev_action, start, deterministic)
                model_action = action.cpu().numpy()  # (N, A)
                raw, rewards, dones, infos = venv.step(action_spec.to_env(model_action))
                obs = _model_obs(policy, raw)
                for i in range(n):
                    if dones[i]:  # the VecEnv has reset this env: its true last observation is in the info
                        last = _model_obs(policy, infos[i]["terminal_observation"])
                        truncated = bool(infos[i].get("TimeLimit.truncated", False))
                        buffers[i].add({k: v[0] for k, v in last.items()}, model_action[i], rewards[i], not truncated)
                        episodes.append(buffers[i].episode())
                        buffers[i] = _EpisodeBuffer({k: v[i] for k, v in obs.items()}, action_spec.size)
                    else:
                        buffers[i].add({k: v[i] for k, v in obs.items()}, model_action[i], rewards[i], False)
                prev_action = action
                start = torch.as_tensor(dones, dtype=torch.float32, device=policy.device)
    finally:
        if made_here:
            venv.close()
    return episodes[:n_episodes]


@dataclass
class DriftCurves:
    """Open-loop prediction errors against the horizon k = 1..H (see `open_loop_drift` for each metric).

    ``curves["reward_error"]`` is the (H,) curve of one metric; ``curves.at(5)`` every metric at k = 5.
    """

    horizon: np.ndarray
    """(H,) the horizons 1..H."""
    count: np.ndarray
    """(H,) predictions scored at each horizon: the start points whose episode lasts at least k more steps."""
    metrics: dict[str, np.ndarray]
    """Each metric's (H,) curve; NaN where no prediction reached that horizon."""
    info: dict[str, Any] = field(default_factory=dict)
    """How the curves were measured: representation, episodes, their lengths, start points, settings, seconds."""

    def __getitem__(self, name: str) -> np.ndarray:
        return self.metrics[name]

    def at(self, k: int) -> dict[str, float]:
        """Every metric at horizon `k`."""
        return {name: float(curve[k - 1]) for name, curve in self.metrics.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists of floats (NaN as None), ints, and the info."""

        def clean(values: np.ndarray) -> list:
            return [None if not math.isfinite(float(v)) else float(v) for v in values]

        return {
            "horizon": [int(k) for k in self.horizon],
            "count": [int(c) for c in self.count],
            "metrics": {name: clean(curve) for name, curve in self.metrics.items()},
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftCurves:
        """The inverse of `to_dict`."""
        metrics = {k: np.array([np.nan if v is None else v for v in c], np.float64) for k, c in data["metrics"].items()}
        return cls(np.asarray(data["horizon"]), np.asarray(data["count"]), metrics, dict(data.get("info", {})))

    def table(self, horizons: Sequence[int] = (1, 5, 10, 20, 50), metrics: Sequence[str] | None = None) -> str:
        """A markdown table: one row per horizon in `horizons` (those measured), one column per metric."""
        names = list(metrics) if metrics is not None else list(self.metrics)
        lines = ["| k | predictions | " + " | ".join(names) + " |", "|---:" * (len(names) + 2) + "|"]
        for k in horizons:
            if 1 <= k <= len(self.horizon):
                values = " | ".join(f"{self.metrics[name][k - 1]:.4g}" for name in names)
                lines.append(f"| {k} | {int(self.count[k - 1])} | {values} |")
        return "\n".join(lines)


@dataclass
class _Filtered:
    """Real episodes padded to (E, L) on the model's device, with the posterior and the per-step filtered errors."""

    length: torch.Tensor  # (E,) steps of each episode
    obs: dict[str, torch.Tensor]  # raw, (E, L, ...)
    action: torch.Tensor  # (E, L, A)
    reward: torch.Tensor  # (E, L)
    cont: torch.Tensor  # (E, L) 1 - terminated
    post: Latent  # (E, L, ...)
    filtered: dict[str, torch.Tensor]  # per-step errors of the heads read from the posterior itself, (E, L)
    target: torch.Tensor | None  # JEPA: layer-normalised target embeddings (E, L, E')


def _pad(arrays: list[np.ndarray], length: int, device: torch.device) -> torch.Tensor:
    out = np.zeros((len(arrays), length, *arrays[0].shape[1:]), arrays[0].dtype)
    for i, array in enumerate(arrays):
        out[i, : len(array)] = array
    return torch.as_tensor(out, device=device)


def _flat_obs_target(model: Any, obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Preprocessed observations (N, ...) -> the reconstruction decoder's targets, flattened (N, X): symlog vectors,
    then images in [-0.5, 0.5] (the order and units of `ObsDecoder.loss`)."""
    decoder = model.decoder
    parts = []
    if decoder.vector_keys:
        parts.append(symlog(torch.cat([obs[k.name] for k in decoder.vector_keys], -1)))
    if decoder.image_keys:
        parts.append(torch.cat([obs[k.name] for k in decoder.image_keys], 1).flatten(1))
    return torch.cat(parts, -1)


def _rows(obs: dict[str, torch.Tensor], e: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[e, t] for k, v in obs.items()}


def _filter_episodes(policy: JEPADreamerPolicy, episodes: Sequence[Episode], sample: bool, chunk: int) -> _Filtered:
    """Pad the episodes, encode every observation and filter the posterior along each episode (batched over E)."""
    model, device = policy.world_model, policy.device
    n, length = len(episodes), max(len(ep) for ep in episodes)
    obs = {k: _pad([ep.obs[k] for ep in episodes], length, device) for k in episodes[0].obs}
    action = _pad([ep.action.astype(np.float32) for ep in episodes], length, device)
    reward = _pad([ep.reward.astype(np.float32) for ep in episodes], length, device)
    cont = 1.0 - _pad([ep.terminated.astype(np.float32) for ep in episodes], length, device)
    lengths = torch.as_tensor([len(ep) for ep in episodes], device=device)
    flat_obs = {k: v.reshape(n * length, *v.shape[2:]) for k, v in obs.items()}
    embeds, targets = [], []
    for i in range(0, n * length, chunk):  # chunks keep the image activations small
        pre = model.preprocess({k: v[i : i + chunk] for k, v in flat_obs.items()}, 1)
        embeds.append(model.encoder(pre))
        if model.cfg.representation == "jepa":
            targets.append(F.layer_norm(model.target_embed(pre), (model.cfg.embed,)))
    embed = torch.cat(embeds).reshape(n, length, -1)  # (E, L, E')
    is_first = torch.zeros(n, length, device=device)
    is_first[:, 0] = 1.0
    state = model.rssm.initial(n, device)
    deters, stochs = [], []
    for t in range(length):
        state, _ = model.rssm.obs_step(state, action[:, t], embed[:, t], is_first[:, t], sample)
        deters.append(state.deter)
        stochs.append(state.stoch)
    post = Latent(torch.stack(deters, 1), torch.stack(stochs, 1))  # (E, L, ...)
    feat = post.feat
    filtered = {
        "reward": (model.reward_head(feat).mean - reward).abs(),
        "cont": (torch.sigmoid(model.cont_head(feat).squeeze(-1).float()) - cont).square(),
    }
    target = None
    if model.cfg.representation == "jepa":
        target = torch.cat(targets).reshape(n, length, -1)
        filtered["embed"] = (model.predictor(feat) - target).square().mean(-1)
    else:
        errors = []
        flat_feat = feat.reshape(n * length, -1)
        for i in range(0, n * length, chunk):
            pre = model.preprocess({k: v[i : i + chunk] for k, v in flat_obs.items()}, 1)
            elements = _flat_obs_target(model, pre).shape[-1]  # the decoder's loss is a sum: per element here
            errors.append(model.decoder.loss(flat_feat[i : i + chunk], pre) / elements)
        filtered["obs"] = torch.cat(errors).reshape(n, length)
    return _Filtered(lengths, obs, action, reward, cont, post, filtered, target)


@torch.no_grad()
def open_loop_drift(
    model: JEPADreamer | JEPADreamerPolicy,
    env: gym.Env | VecEnv | str | None = None,
    n_episodes: int = 10,
    horizon: int = 50,
    start_every: int = 1,
    episodes: Sequence[Episode] | None = None,
    deterministic: bool = False,
    sample: bool = False,
    seed: int | None = 0,
    batch_size: int = 1024,
) -> DriftCurves:
    """Open-loop prediction error against the horizon, k = 1..`horizon`, on real trajectories.

    The posterior is filtered along each real episode. From every `start_every`-th step t, the prior is rolled
    open-loop (no observation) under the actions really taken, and its prediction for step t + k is scored against
    what happened. A rollout is cut where its episode ends: ``count[k - 1]`` says how many predictions each horizon
    has. Metrics, per k (means over those predictions):

    - ``reward_error``: mean absolute error of the predicted reward (the two-hot mean), in the env's reward units;
      ``reward_error_filtered``: the same head read from the posterior at t + k, the floor without drift
    - ``cont_error``: Brier score of the predicted continue probability against the real flag (1 - terminated);
      ``cont_error_filtered``: its floor from the posterior
    - ``latent_error``: squared distance between the open-loop prior's features (deterministic state + latents) and
      the posterior's at t + k, divided by the copy-last baseline: the same distance from the posterior at t (the
      error of predicting that nothing changes). Both are summed over the predictions before dividing. Below 1 the
      model beats copying. ``latent_mse`` and ``latent_copy_last_mse`` are the two parts, per feature;
      ``deter_error``: the same ratio on the deterministic (GRU) state alone, without the jumpy categorical latents
    - JEPA only, ``embed_error``: the predictor's embedding from the prior's features against the target encoder's
      (layer-normalised) embedding of the real observation at t + k, in units of the copy-last-embedding baseline
      (as the training diagnostic ``jepa_copy_last_baseline``); ``embed_error_filtered``: from the posterior
    - reconstruction only, ``obs_error``: the decoder's prediction from the prior against the real observation at
      t + k, mean squared error per element in the decoder's target units (symlog vectors, images in [-0.5, 0.5]);
      ``obs_error_filtered``: decoded from the posterior; ``obs_copy_last``: the observation at t against t + k

    Everything runs without gradients, the model in eval mode, batched over start points. Latents are the modes of
    their categoricals unless `sample`: the curves are then deterministic given the episodes.

    :param model: a trained JEPADreamer or its policy, JEPA or reconstruction
    :param env: where to collect episodes with the model's own policy (`collect_episodes`): a Gymnasium env, an SB3
        VecEnv or an env id; not needed with `episodes`
    :param n_episodes: episodes to collect
    :param horizon: the longest open-loop horizon H
    :param start_every: a start point every this many steps of each episode (1: every step but the last)
    :param episodes: pre-collected episodes (e.g. from `collect_episodes`), used instead of collecting
    :param deterministic: collect with the actor's mode instead of sampled actions (the replay the model was trained
        on was collected with samples, the default)
    :param sample: sample the latents of the posterior and the prior instead of taking their modes
    :param seed: seeds the collection and any sampling; the caller's torch random stream is restored afterwards
    :param batch_size: start points rolled out together (lower it for large image models)
    :return: the curves, their counts and how they were measured
    """
    if horizon < 1 or start_every < 1 or batch_size < 1:
        raise ValueError(
            f"horizon, start_every and batch_size must be at least 1, got {horizon}, {start_every}, {batch_size}"
        )
    policy = _policy(model)
    wm = policy.world_model
    began = time.perf_counter()
    if episodes is None:
        if env is None:
            env = getattr(model, "env", None)
        if env is None:
            raise ValueError("open_loop_drift needs an env to collect episodes from, or pre-collected `episodes`")
        episodes = collect_episodes(policy, env, n_episodes, deterministic, seed)
    episodes = [ep for ep in episodes if len(ep) >= 2]
    if not episodes:
        raise ValueError("open_loop_drift needs at least one episode of two or more steps")
    collected = time.perf_counter()
    policy.set_training_mode(False)
    jepa = wm.cfg.representation == "jepa"
    names = ["reward", "reward_filtered", "cont", "cont_filtered", "latent", "latent_copy_last", "deter"]
    names += ["deter_copy_last"]
    names += ["embed", "embed_filtered", "embed_copy_last"] if jepa else ["obs", "obs_filtered", "obs_copy_last"]
    sums = {name: torch.zeros(horizon, dtype=torch.float64) for name in names}
    count = torch.zeros(horizon, dtype=torch.long)

    with _seeded(seed, policy.device):
        data = _filter_episodes(policy, episodes, sample, batch_size)
        post_feat = data.post.feat  # (E, L, F)
        # start points (e, t): every start_every-th step that has a next step
        starts = [(e, t) for e, ep in enumerate(episodes) for t in range(0, len(ep) - 1, start_every)]
        start_index = torch.as_tensor(starts, device=policy.device).reshape(-1, 2)
        for chunk in start_index.split(batch_size):
            e, t0 = chunk[:, 0], chunk[:, 1]  # (N,)
            state = Latent(data.post.deter[e, t0], data.post.stoch[e, t0])
            first_feat = post_feat[e, t0]  # (N, F)
            if jepa:
                first_target = data.target[e, t0]  # (N, E')
            else:
                first_obs = _flat_obs_target(wm, wm.preprocess(_rows(data.obs, e, t0), 1))  # (N, X)
            for k in range(1, horizon + 1):
                alive = t0 + k < data.length[e]  # rollouts stop where their episode ends
                if not alive.all():
                    if not alive.any():
                        break
                    e, t0, first_feat = e[alive], t0[alive], first_feat[alive]
                    state = Latent(state.deter[alive], state.stoch[alive])
                    first_target = first_target[alive] if jepa else None
                    first_obs = None if jepa else first_obs[alive]
                t = t0 + k
                state = wm.rssm.img_step(state, data.action[e, t], sample)
                feat = state.feat  # (N, F)
                row = k - 1
                count[row] += len(e)
                reward = wm.reward_head(feat).mean
                sums["reward"][row] += (reward - data.reward[e, t]).abs().sum().item()
                sums["reward_filtered"][row] += data.filtered["reward"][e, t].sum().item()
                cont = torch.sigmoid(wm.cont_head(feat).squeeze(-1).float())
                sums["cont"][row] += (cont - data.cont[e, t]).square().sum().item()
                sums["cont_filtered"][row] += data.filtered["cont"][e, t].sum().item()
                real_feat = post_feat[e, t]
                sums["latent"][row] += (feat - real_feat).square().mean(-1).sum().item()
                sums["latent_copy_last"][row] += (first_feat - real_feat).square().mean(-1).sum().item()
                deter = slice(0, state.deter.shape[-1])  # the deterministic part of the features
                sums["deter"][row] += (feat[:, deter] - real_feat[:, deter]).square().sum().item()
                sums["deter_copy_last"][row] += (first_feat[:, deter] - real_feat[:, deter]).square().sum().item()
                if jepa:
                    target = data.target[e, t]
                    sums["embed"][row] += (wm.predictor(feat) - target).square().mean(-1).sum().item()
                    sums["embed_filtered"][row] += data.filtered["embed"][e, t].sum().item()
                    sums["embed_copy_last"][row] += (first_target - target).square().mean(-1).sum().item()
                else:
                    pre = wm.preprocess(_rows(data.obs, e, t), 1)
                    real_obs = _flat_obs_target(wm, pre)  # (N, X)
                    sums["obs"][row] += (wm.decoder.loss(feat, pre) / real_obs.shape[-1]).sum().item()
                    sums["obs_filtered"][row] += data.filtered["obs"][e, t].sum().item()
                    sums["obs_copy_last"][row] += (first_obs - real_obs).square().mean(-1).sum().item()

    n = count.double()

    def mean(name: str) -> np.ndarray:
        return (sums[name] / n).numpy()  # NaN where nothing was scored

    def ratio(name: str, baseline: str) -> np.ndarray:
        return (sums[name] / sums[baseline]).where(n > 0, torch.nan).numpy()

    metrics = {
        "reward_error": mean("reward"),
        "reward_error_filtered": mean("reward_filtered"),
        "cont_error": mean("cont"),
        "cont_error_filtered": mean("cont_filtered"),
        "latent_error": ratio("latent", "latent_copy_last"),
        "latent_mse": mean("latent"),
        "latent_copy_last_mse": mean("latent_copy_last"),
        "deter_error": ratio("deter", "deter_copy_last"),
    }
    if jepa:
        metrics["embed_error"] = ratio("embed", "embed_copy_last")
        metrics["embed_error_filtered"] = ratio("embed_filtered", "embed_copy_last")
    else:
        metrics.update(
            obs_error=mean("obs"), obs_error_filtered=mean("obs_filtered"), obs_copy_last=mean("obs_copy_last")
        )
    lengths = [len(ep) for ep in episodes]
    info = {
        "representation": wm.cfg.representation,
        "episodes": len(episodes),
        "episode_length_mean": float(np.mean(lengths)),
        "episode_length_min": int(np.min(lengths)),
        "terminations": int(sum(bool(ep.terminated.any()) for ep in episodes)),
        "start_points": len(starts),
        "start_every": start_every,
        "deterministic": deterministic,
        "sample": sample,
        "seed": seed,
        "collect_seconds": round(collected - began, 3),
        "drift_seconds": round(time.perf_counter() - collected, 3),
    }
    return DriftCurves(np.arange(1, horizon + 1), count.numpy(), metrics, info)
