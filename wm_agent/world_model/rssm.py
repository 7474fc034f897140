"""Recurrent state-space model: a GRU deterministic state and categorical stochastic latents."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from wm_agent.config import JEPADreamerConfig
from wm_agent.distributions import mode_one_hot, sample_one_hot, unimix_logits
from wm_agent.world_model.heads import mlp


class Latent(NamedTuple):
    """The model state of a batch: `deter` (..., D) and the flattened one-hot latents `stoch` (..., S * C)."""

    deter: torch.Tensor
    stoch: torch.Tensor

    @property
    def feat(self) -> torch.Tensor:
        """What heads, actor and critic read: (..., D + S * C)."""
        return torch.cat([self.deter, self.stoch], -1)

    def detach(self) -> Latent:
        return Latent(self.deter.detach(), self.stoch.detach())

    def flatten(self) -> Latent:
        """Merge all leading dims into one: (B, T, ...) -> (B * T, ...)."""
        return Latent(self.deter.reshape(-1, self.deter.shape[-1]), self.stoch.reshape(-1, self.stoch.shape[-1]))

    def select(self, index: torch.Tensor) -> Latent:
        """The states at `index` of the leading dim."""
        return Latent(self.deter[index], self.stoch[index])


class RSSM(nn.Module):
    """h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}]); prior p(z_t | h_t); posterior q(z_t | h_t, e_t)."""

    def __init__(self, cfg: JEPADreamerConfig, action_size: int, embed_size: int) -> None:
        super().__init__()
        self.stoch, self.classes, self.unimix = cfg.stoch, cfg.classes, cfg.unimix
        stoch_size = cfg.stoch * cfg.classes
        self.img_in = mlp(stoch_size + action_size, cfg.hidden, 1)
        self.gru = nn.GRUCell(cfg.hidden, cfg.deter)
        self.prior_net = mlp(cfg.deter, cfg.hidden, 1, stoch_size)
        self.post_net = mlp(cfg.deter + embed_size, cfg.hidden, 1, stoch_size)
        assert self.post_net[0].bias is None, "_filter_step splits the first layer's weight and has no bias to add"
        self.deter_size = cfg.deter

    def initial(self, batch_size: int, device: torch.device) -> Latent:
        return Latent(
            torch.zeros(batch_size, self.deter_size, device=device),
            torch.zeros(batch_size, self.stoch * self.classes, device=device),
        )

    def _logits(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = net(x).reshape(*x.shape[:-1], self.stoch, self.classes)
        return unimix_logits(logits, self.unimix)  # (..., S, C)

    def _sample(
        self, logits: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        one_hot = sample_one_hot(logits, generator=generator) if sample else mode_one_hot(logits)
        return one_hot.flatten(-2)

    def deterministic_step(self, state: Latent, action: torch.Tensor) -> torch.Tensor:
        """The next deterministic state from the previous latent and the action taken there."""
        return self.gru(self.img_in(torch.cat([state.stoch, action], -1)), state.deter)

    def prior_logits(self, deter: torch.Tensor) -> torch.Tensor:
        return self._logits(self.prior_net, deter)

    def img_step(
        self, state: Latent, action: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> Latent:
        """One open-loop step through the prior (imagination, multi-step prediction, planning); the latents are
        sampled (from `generator` when given) or, without `sample`, the most likely ones."""
        deter = self.deterministic_step(state, action)
        return Latent(deter, self._sample(self.prior_logits(deter), sample, generator))

    def embed_projection(self, embed: torch.Tensor) -> torch.Tensor:
        """The embedding's share of the posterior's first layer (..., hidden).

        The posterior reads [h_t, e_t]; the e_t half does not depend on the recurrence, so `observe` computes it
        for a whole sequence in one matmul instead of once per step.
        """
        return F.linear(embed, self.post_net[0].weight[:, self.deter_size :])

    def obs_step(
        self, state: Latent, action: torch.Tensor, embed: torch.Tensor, is_first: torch.Tensor, sample: bool = True
    ) -> tuple[Latent, torch.Tensor]:
        """One filtering step: reset where `is_first` (N,), advance, and condition on the embedding (N, E).

        Returns the posterior state and its unimix log-probabilities (N, S, C).
        """
        return self._filter_step(state, action, self.embed_projection(embed), is_first, sample)

    def _filter_step(
        self, state: Latent, action: torch.Tensor, embed_proj: torch.Tensor, is_first: torch.Tensor, sample: bool
    ) -> tuple[Latent, torch.Tensor]:
        keep = (1.0 - is_first.float()).unsqueeze(-1)
        state = Latent(state.deter * keep, state.stoch * keep)
        deter = self.deterministic_step(state, action * keep)
        hidden = F.linear(deter, self.post_net[0].weight[:, : self.deter_size]) + embed_proj
        for layer in itertools.islice(self.post_net, 1, None):
            hidden = layer(hidden)
        logits = unimix_logits(hidden.reshape(*hidden.shape[:-1], self.stoch, self.classes), self.unimix)
        return Latent(deter, self._sample(logits, sample)), logits

    def observe(
        self, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, sample: bool = True
    ) -> tuple[Latent, torch.Tensor, torch.Tensor]:
        """Filter a batch of sequences from zero state; the latents are sampled (training) or, without `sample`, the
        most likely ones.

        embed (B, T, E), action (B, T, A) (the action that led to step t), is_first (B, T).
        Returns the posterior states (B, T, ...), posterior and prior log-probabilities (B, T, S, C).
        """
        batch, length = embed.shape[:2]
        state = self.initial(batch, embed.device)
        embed_proj = self.embed_projection(embed)  # (B, T, hidden)
        deters, stochs, post_log_probs = [], [], []
        for t in range(length):
            state, log_probs = self._filter_step(state, action[:, t], embed_proj[:, t], is_first[:, t], sample)
            deters.append(state.deter)
            stochs.append(state.stoch)
            post_log_probs.append(log_probs)
        post = Latent(torch.stack(deters, 1), torch.stack(stochs, 1))
        # the prior depends only on h_t, so it is computed for all steps at once after the loop
        return post, torch.stack(post_log_probs, 1), self.prior_logits(post.deter)
