"""The world model: encoder + RSSM + heads, trained with JEPA prediction (default) or reconstruction."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from stable_baselines3.common.utils import polyak_update
from torch import nn

from wm_agent.config import JEPADreamerConfig
from wm_agent.diagnostics import embedding_stats, latent_entropy
from wm_agent.distributions import bernoulli_log_prob
from wm_agent.spaces import ActionSpec, ObsSpec
from wm_agent.world_model.encoders import ObsDecoder, ObsEncoder
from wm_agent.world_model.heads import EnsembleHead, TwoHotHead, mlp
from wm_agent.world_model.losses import barlow_twins, inverse_dynamics_loss, kl_balance, vicreg_terms, weighted_total
from wm_agent.world_model.rssm import RSSM, Latent

if TYPE_CHECKING:  # the replay's batch type only: the world model does not depend on the replay
    from wm_agent.replay import SequenceBatch


class WorldModel(nn.Module):
    """Learns the latent dynamics from replayed sequences.

    JEPA: the posterior features predict the target encoder's (no-gradient) embedding of the same
    step, and the open-loop prior predicts those of steps t+1..t+K. Collapse is prevented by an
    anti-collapse term on the online embeddings and an inverse-dynamics head.
    Reconstruction: a decoder predicts the observation from the posterior features instead.
    """

    def __init__(self, obs_spec: ObsSpec, action_spec: ActionSpec, cfg: JEPADreamerConfig) -> None:
        super().__init__()
        self.cfg, self.obs_spec, self.action_spec = cfg, obs_spec, action_spec
        self.encoder = ObsEncoder(obs_spec, cfg)
        self.rssm = RSSM(cfg, action_spec.size, cfg.embed)
        self.reward_head = TwoHotHead(cfg.feat_size, cfg.hidden, cfg.mlp_layers, cfg.num_bins)
        self.cont_head = mlp(cfg.feat_size, cfg.hidden, cfg.mlp_layers, 1)
        if cfg.representation == "jepa":
            if cfg.jepa_target == "ema":
                self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            self.predictor = mlp(cfg.feat_size, cfg.hidden, cfg.mlp_layers, cfg.embed)
            self.inverse_head = mlp(2 * cfg.embed, cfg.hidden, cfg.mlp_layers, action_spec.size)
        else:
            self.decoder = ObsDecoder(obs_spec, cfg)
        if cfg.intrinsic_scale > 0:  # built last, so that the other modules' initial weights do not depend on it
            self.ensemble = EnsembleHead(
                cfg.ensemble_size, cfg.feat_size + action_spec.size, cfg.hidden, cfg.mlp_layers, cfg.embed
            )
        # the weight of every loss term in the total (see `weighted_total`); a term absent from a variant is unused
        self.loss_scales = {
            "dyn": cfg.kl_dyn_scale,
            "rep": cfg.kl_rep_scale,
            "reward": cfg.reward_scale,
            "cont": cfg.cont_scale,
            "jepa": cfg.jepa_scale,
            "jepa_multistep": cfg.jepa_scale,
            "variance": cfg.var_scale,
            "covariance": cfg.cov_scale,
            "barlow": 1.0,  # its redundancy weight is inside the term (barlow_redundancy)
            "inverse": cfg.inverse_scale,
            "recon": 1.0,
            "ensemble": 1.0,
        }

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def preprocess(self, obs: dict[str, torch.Tensor], lead: int) -> dict[str, torch.Tensor]:
        """Raw obs with `lead` leading dims -> preprocessed, flattened to one leading dim."""
        flat = {k: v.reshape(-1, *v.shape[lead:]) for k, v in obs.items()}
        return self.obs_spec.preprocess(flat, self.cfg.image_size)

    @torch.no_grad()
    def target_embed(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embeddings that the JEPA predictor regresses: from the EMA target encoder (or the online one), no grad."""
        encoder = self.target_encoder if self.cfg.jepa_target == "ema" else self.encoder
        return encoder(obs)

    def novelty(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The ensemble's disagreement on the step from states `feat` (..., F) under `action` (..., A): (...)."""
        return self.ensemble.disagreement(torch.cat([feat, action], -1))

    def update_target(self) -> None:
        """Move the target encoder toward the online encoder by `jepa_target_rate` (1 makes it an exact copy)."""
        if self.cfg.representation == "jepa" and self.cfg.jepa_target == "ema":
            polyak_update(self.encoder.parameters(), self.target_encoder.parameters(), self.cfg.jepa_target_rate)

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor], Latent]:
        """Total world-model loss on a batch of sequences, its terms, and the posterior states (B, T)."""
        cfg = self.cfg
        action, reward, is_first = batch.action, batch.reward, batch.is_first
        batch_size, length = reward.shape
        obs = self.preprocess(batch.obs, 2)
        embed = self.encoder(obs)  # (B * T, E)
        post, post_logits, prior_logits = self.rssm.observe(embed.reshape(batch_size, length, -1), action, is_first)
        feat = post.feat  # (B, T, F)

        dyn, rep, kl = kl_balance(post_logits, prior_logits, cfg.kl_free)
        cont_target = 1.0 - batch.terminated.float()
        losses = {  # scalar terms, weighed by `loss_scales`
            "dyn": dyn.mean(),
            "rep": rep.mean(),
            "reward": -self.reward_head(feat).log_prob(reward).mean(),
            "cont": -bernoulli_log_prob(self.cont_head(feat).squeeze(-1), cont_target).mean(),
        }
        diagnostics = {
            "kl": kl.mean(),
            "post_entropy": latent_entropy(post_logits.detach()),
            "prior_entropy": latent_entropy(prior_logits.detach()),
        }
        target = None
        if cfg.representation == "jepa":
            # targets are layer-normalised so the loss scale does not depend on the embedding scale
            target = F.layer_norm(self.target_embed(obs), (cfg.embed,)).reshape(batch_size, length, -1)  # (B, T, E)
            jepa_losses, jepa_diagnostics = self._jepa_losses(target, embed, post, action, is_first)
            losses.update(jepa_losses)
            diagnostics.update(jepa_diagnostics)
        else:
            losses["recon"] = self.decoder.loss(feat.reshape(batch_size * length, -1), obs).mean()
            diagnostics.update(embedding_stats(embed))
        if cfg.intrinsic_scale > 0:
            if target is None:
                target = F.layer_norm(embed.detach(), (cfg.embed,)).reshape(batch_size, length, -1)
            # state and action at t predict the embedding at t + 1 (the action stored at t + 1 was taken at t); the
            # inputs are detached: the ensemble measures the representation, it does not shape it
            members = self.ensemble(torch.cat([feat[:, :-1].detach(), action[:, 1:]], -1))  # (K, B, T - 1, E)
            continuing = 1.0 - is_first[:, 1:].float()
            error = (members - target[None, :, 1:]).square().mean(-1)  # (K, B, T - 1)
            losses["ensemble"] = (error * continuing).sum() / (continuing.sum().clamp(min=1.0) * cfg.ensemble_size)
        loss, metrics = weighted_total(losses, self.loss_scales)
        metrics.update(diagnostics, model_loss=loss.detach())
        return loss, metrics, post

    def _jepa_losses(
        self,
        target: torch.Tensor,
        embed: torch.Tensor,
        post: Latent,
        action: torch.Tensor,
        is_first: torch.Tensor,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The JEPA loss terms (same-step and k-step prediction, anti-collapse, inverse dynamics) and diagnostics,
        toward the layer-normalised `target` embeddings (B, T, E)."""
        cfg = self.cfg
        batch_size, length = is_first.shape
        K = cfg.jepa_horizon
        same_step = (self.predictor(post.feat) - target).square().mean(-1)  # (B, T)

        # k-step open-loop prediction from every posterior state; sequences are padded by K invalid steps
        pad_action = torch.cat([action, action.new_zeros(batch_size, K, action.shape[-1])], 1)
        pad_target = torch.cat([target, target.new_zeros(batch_size, K, target.shape[-1])], 1)
        pad_first = torch.cat([is_first.float(), is_first.new_ones(batch_size, K).float()], 1)
        state = post.flatten()
        valid = torch.ones(batch_size, length, device=embed.device)
        step_losses = []  # (sum of per-step errors, number of valid steps) for k = 1..K
        for k in range(1, K + 1):
            state = self.rssm.img_step(state, pad_action[:, k : k + length].reshape(batch_size * length, -1))
            valid = valid * (1.0 - pad_first[:, k : k + length])
            pred = self.predictor(state.feat).reshape(batch_size, length, -1)
            error = (pred - pad_target[:, k : k + length]).square().mean(-1)
            step_losses.append(((error * valid).sum(), valid.sum()))
        if step_losses:
            multi_step = sum(s for s, _ in step_losses) / sum(c for _, c in step_losses).clamp(min=1.0)
            one_step = (step_losses[0][0] / step_losses[0][1].clamp(min=1.0)).detach()
        else:
            multi_step = one_step = embed.new_zeros(())

        # the trivial predictor: repeat the previous step's target embedding
        continuing = 1.0 - is_first[:, 1:].float()
        copy_last = ((target[:, 1:] - target[:, :-1]).square().mean(-1) * continuing).sum() / continuing.sum().clamp(
            min=1.0
        )

        losses = {"jepa": same_step.mean(), "jepa_multistep": multi_step}
        if cfg.anti_collapse == "vicreg":
            losses["variance"], losses["covariance"] = vicreg_terms(embed)
        elif cfg.anti_collapse == "barlow":
            prediction = self.predictor(post.feat).reshape(-1, cfg.embed)
            losses["barlow"] = barlow_twins(prediction, target.reshape(-1, cfg.embed), cfg.barlow_redundancy)

        # inverse dynamics: embeddings of t and t + 1 predict the action stored at t + 1 (taken at t)
        embed_seq = embed.reshape(batch_size, length, -1)
        inverse_logits = self.inverse_head(torch.cat([embed_seq[:, :-1], embed_seq[:, 1:]], -1))
        inverse_nll, inverse_acc = inverse_dynamics_loss(inverse_logits, action[:, 1:], self.action_spec.nvec)
        losses["inverse"] = (inverse_nll * continuing).sum() / continuing.sum().clamp(min=1.0)
        inverse_acc = (inverse_acc * continuing).sum() / continuing.sum().clamp(min=1.0)

        diagnostics = {
            # the prior's 1-step prediction and the trivial 'repeat the last embedding' on the same targets
            "jepa_prior_1step_loss": one_step,
            "jepa_copy_last_baseline": copy_last,
            "inverse_accuracy": inverse_acc.detach(),
            **embedding_stats(embed),
        }
        return losses, diagnostics
