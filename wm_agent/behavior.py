"""Actor-critic trained only inside the world model's imagination.

The imagined rollouts run without gradient, so the actor and critic losses can never reach the
world model: the actor learns with REINFORCE on percentile-normalised lambda-return advantages,
the critic regresses the returns with a two-hot head and is regularised toward a slow copy.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from stable_baselines3.common.utils import polyak_update
from torch import nn

from wm_agent.config import JEPADreamerConfig
from wm_agent.distributions import BoundedNormal, TwoHot, mode_one_hot, sample_one_hot, unimix_logits
from wm_agent.precision import wide_autocast
from wm_agent.spaces import ActionSpec
from wm_agent.world_model.heads import TwoHotHead, mlp
from wm_agent.world_model.losses import weighted_total
from wm_agent.world_model.model import WorldModel
from wm_agent.world_model.rssm import Latent


class ActionDist:
    """The actor's distribution over model actions: categorical factors (one-hot, unimix) or a bounded normal."""

    def __init__(self, out: torch.Tensor, action_spec: ActionSpec, cfg: JEPADreamerConfig) -> None:
        self.nvec = action_spec.nvec
        if self.nvec:
            self.log_probs = [unimix_logits(x, cfg.unimix) for x in out.split(self.nvec, -1)]
        else:
            mean, std = out.chunk(2, -1)
            self.normal = BoundedNormal(mean, std, cfg.min_std, cfg.max_std)

    def rsample(self) -> torch.Tensor:
        """Reparameterised sample (continuous actions only), clipped to [-1, 1]."""
        return self.normal.rsample().clamp(-1, 1)

    def sample(self, generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """A sample of model actions (..., A); its noise from `generator` when given (planning), else torch's global
        generator, or given: `noise` holds one standard-normal draw per action dimension (..., A) or per categorical
        factor (..., len(nvec)), as `ColoredNoise` makes them for exploration."""
        if not self.nvec:
            return self.normal.sample(generator=generator, noise=noise)
        if noise is None:
            return torch.cat([sample_one_hot(lp, False, generator) for lp in self.log_probs], -1)
        uniform = torch.special.ndtr(noise).unsqueeze(-1)  # (..., factors, 1): a normal draw's CDF is uniform
        one_hots = [sample_one_hot(lp, False, uniform=u) for lp, u in zip(self.log_probs, uniform.unbind(-2))]
        return torch.cat(one_hots, -1)

    @property
    def mode(self) -> torch.Tensor:
        if not self.nvec:
            return self.normal.mode
        return torch.cat([mode_one_hot(lp) for lp in self.log_probs], -1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        if not self.nvec:
            return self.normal.log_prob(action).sum(-1)
        return sum((lp * a).sum(-1) for lp, a in zip(self.log_probs, action.split(self.nvec, -1)))

    def entropy(self) -> torch.Tensor:
        if not self.nvec:
            return self.normal.entropy().sum(-1)
        return sum(-(lp.exp() * lp).sum(-1) for lp in self.log_probs)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Let gradients flow through `module` to its inputs without any reaching its weights."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


class Actor(nn.Module):
    def __init__(self, action_spec: ActionSpec, cfg: JEPADreamerConfig) -> None:
        super().__init__()
        self.action_spec, self.cfg = action_spec, cfg
        out_size = action_spec.size if action_spec.discrete else 2 * action_spec.size
        self.net = mlp(cfg.feat_size, cfg.hidden, cfg.mlp_layers, out_size)
        self.net[-1].weight.data.mul_(0.01)  # start close to uniform / zero-mean

    def forward(self, feat: torch.Tensor) -> ActionDist:
        return ActionDist(self.net(feat).float(), self.action_spec, self.cfg)


class ReturnNormalizer(nn.Module):
    """Scale of returns: EMA of the 5th-95th percentile range, never below 1 (so small returns are not amplified)."""

    def __init__(self, decay: float, percentiles: tuple[float, float]) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("quantiles", torch.tensor(percentiles))
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    def update(self, returns: torch.Tensor) -> torch.Tensor:
        """Move the range toward this batch's percentiles; a non-finite batch (an update that will be skipped)
        leaves it as it was, without a host sync."""
        low, high = torch.quantile(returns.detach().flatten().float(), self.quantiles)
        finite = torch.isfinite(low) & torch.isfinite(high)
        self.low.lerp_(torch.where(finite, low, self.low), 1 - self.decay)
        self.high.lerp_(torch.where(finite, high, self.high), 1 - self.decay)
        return self.scale

    @property
    def scale(self) -> torch.Tensor:
        return (self.high - self.low).clamp(min=1.0)


def lambda_returns(reward: torch.Tensor, value: torch.Tensor, discount: torch.Tensor, lam: float) -> torch.Tensor:
    """R_t = r_t + d_t * ((1 - lam) * v_{t+1} + lam * R_{t+1}), bootstrapped with R_H = v_H.

    reward, discount: (H, N), for the step from state t to t+1; value: (H + 1, N). Returns (H, N).
    """
    returns = []
    last = value[-1]
    for t in reversed(range(reward.shape[0])):
        last = reward[t] + discount[t] * ((1 - lam) * value[t + 1] + lam * last)
        returns.append(last)
    return torch.stack(returns[::-1])


class Behavior(nn.Module):
    """Actor, critic, slow critic and return normalizer, with the imagination loss."""

    def __init__(self, action_spec: ActionSpec, cfg: JEPADreamerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.actor = Actor(action_spec, cfg)
        self.critic = TwoHotHead(cfg.feat_size, cfg.hidden, cfg.mlp_layers, cfg.num_bins)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNormalizer(cfg.return_norm_decay, cfg.return_norm_percentiles)
        # the weight of every loss term in the total (see `weighted_total`): the actor's are the policy objective and
        # the entropy bonus, the critic's the fit to the returns and to the slow critic
        self.loss_scales = {
            "policy": 1.0,
            "entropy": cfg.entropy_scale,
            "value": 1.0,
            "slow_value": cfg.slow_critic_scale,
        }

    def imagine(
        self, world_model: WorldModel, start: Latent, backprop: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Roll the prior forward `horizon` steps with the actor. Returns feats (H + 1, N, F) and actions (H, N, A).

        With `backprop`, actions are reparameterised samples and the rollout keeps its graph, so returns can be
        differentiated through the (frozen) dynamics with respect to the actions.
        """
        state, feats, actions = start, [start.feat], []
        with torch.set_grad_enabled(backprop):
            for _ in range(self.cfg.horizon):
                policy = self.actor(state.feat.detach())
                action = policy.rsample() if backprop else policy.sample()
                state = world_model.rssm.img_step(state, action)
                feats.append(state.feat)
                actions.append(action)
        return torch.stack(feats), torch.stack(actions)

    def loss(
        self, world_model: WorldModel, start: Latent, start_cont: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Actor-critic loss (the actor's and the critic's terms summed: their weights do not overlap) and its
        metrics, from imagined rollouts that start at `start` (N) with continue flags (N,).

        Discrete actions: REINFORCE on normalised advantages. Continuous actions: the normalised lambda-returns are
        backpropagated through the frozen world model into the actions (as Dreamer does). Either way no gradient
        reaches a world-model weight.
        """
        with frozen(world_model):
            return self.frozen_model_loss(world_model, start, start_cont)

    def frozen_model_loss(
        self, world_model: WorldModel, start: Latent, start_cont: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`loss`, for a caller that has frozen the world model (`frozen`) around the call.

        What torch.compile compiles: flipping `requires_grad` inside a compiled function would split its graph.
        """
        cfg = self.cfg
        backprop = not self.actor.action_spec.discrete
        feats, actions = self.imagine(world_model, start.detach(), backprop)
        # every head below reads all (H + 1) * N imagined states at once: wide matmuls, where bf16 pays
        with wide_autocast(feats.device, cfg.precision), torch.set_grad_enabled(backprop):
            reward = world_model.reward_head(feats[1:]).mean  # (H, N)
            if cfg.intrinsic_scale > 0:
                novelty = world_model.novelty(feats[:-1], actions).float()  # (H, N)
                reward = reward + cfg.intrinsic_scale * novelty
            # backprop bootstraps with the slow critic: its weights never take gradient
            bootstrap = self.slow_critic(feats).mean if backprop else None
        with wide_autocast(feats.device, cfg.precision), torch.no_grad():
            cont_logits = world_model.cont_head(feats[1:]).float().squeeze(-1)
            cont = torch.cat([start_cont[None], torch.sigmoid(cont_logits)])

        with wide_autocast(feats.device, cfg.precision):
            value_logits = self.critic.net(feats.detach())  # (H + 1, N, bins); the last step only bootstraps
            with torch.no_grad():
                slow_value = bootstrap[:-1].detach() if backprop else self.slow_critic(feats[:-1]).mean
            policy = self.actor(feats[:-1].detach())
        with torch.no_grad():
            value = TwoHot(value_logits.detach(), self.critic.bins).mean  # (H + 1, N)
            # probability that the imagined trajectory is still alive at each step where an action is taken
            weight = torch.cumprod(cont[:-1], 0)
        returns = lambda_returns(reward, value if bootstrap is None else bootstrap, cfg.gamma * cont[1:], cfg.lam)
        scale = self.return_norm.update(returns)

        entropy = policy.entropy()
        if backprop:
            objective = returns / scale
        else:
            objective = policy.log_prob(actions) * ((returns - value[:-1]) / scale).detach()
        value_dist = TwoHot(value_logits[:-1], self.critic.bins)
        losses = {  # each (H, N) term weighted by the chance the imagined trajectory is still alive
            "policy": -(weight * objective).mean(),
            "entropy": -(weight * entropy).mean(),
            "value": -(weight * value_dist.log_prob(returns.detach())).mean(),
            "slow_value": -(weight * value_dist.log_prob(slow_value)).mean(),
        }
        loss, metrics = weighted_total(losses, self.loss_scales)
        scales = self.loss_scales
        metrics.update({
            "actor_loss": (losses["policy"] + scales["entropy"] * losses["entropy"]).detach(),
            "critic_loss": (losses["value"] + scales["slow_value"] * losses["slow_value"]).detach(),
            "actor_entropy": entropy.mean().detach(),
            "imagined_return": returns.mean().detach(),
            "imagined_reward": reward.mean().detach(),
            **({"imagined_novelty": novelty.mean().detach()} if cfg.intrinsic_scale > 0 else {}),
            "imagined_cont": cont[1:].mean(),
            "return_scale": scale.clone(),
        })  # fmt: skip
        return loss, metrics

    def update_slow_critic(self) -> None:
        polyak_update(self.critic.parameters(), self.slow_critic.parameters(), self.cfg.slow_critic_rate)
