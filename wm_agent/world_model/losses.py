"""World-model loss terms: KL balance with free bits, JEPA prediction, anti-collapse, inverse dynamics."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def categorical_kl(lhs_log_probs: torch.Tensor, rhs_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(lhs || rhs) of factorised categoricals given by normalised log-probabilities (..., S, C), summed over S."""
    return (lhs_log_probs.exp() * (lhs_log_probs - rhs_log_probs)).sum((-2, -1))


def kl_balance(
    post_log_probs: torch.Tensor, prior_log_probs: torch.Tensor, free: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DreamerV3's dynamics and representation losses, each clipped below `free` nats.

    The dynamics loss trains the prior toward the (fixed) posterior; the representation loss
    pulls the posterior toward the (fixed) prior. Inputs are normalised log-probabilities (..., S, C)
    (the RSSM's unimix outputs). Returns (dyn, rep, raw KL), each (...,).
    """
    dyn = categorical_kl(post_log_probs.detach(), prior_log_probs)
    rep = categorical_kl(post_log_probs, prior_log_probs.detach())
    return dyn.clamp(min=free), rep.clamp(min=free), dyn.detach()


def vicreg_terms(embed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Variance and covariance penalties of VICReg on embeddings (N, D).

    Variance: hinge keeping each dimension's std above 1. Covariance: mean squared off-diagonal
    covariance, which decorrelates the dimensions. Both are large for a collapsed (constant) encoder.
    """
    centred = embed - embed.mean(0)
    std = torch.sqrt(centred.var(0) + 1e-4)
    variance = F.relu(1.0 - std).mean()
    cov = centred.T @ centred / max(embed.shape[0] - 1, 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    covariance = off_diagonal.square().sum() / embed.shape[1]
    return variance, covariance


def barlow_twins(online: torch.Tensor, target: torch.Tensor, redundancy: float) -> torch.Tensor:
    """Barlow Twins between two views (N, D): diagonal of the cross-correlation to 1, off-diagonal to 0."""
    online = (online - online.mean(0)) / (online.std(0) + 1e-5)
    target = (target - target.mean(0)) / (target.std(0) + 1e-5)
    corr = online.T @ target / online.shape[0]
    diagonal = torch.diagonal(corr)
    on_diag = (1.0 - diagonal).square().sum()
    off_diag = corr.square().sum() - diagonal.square().sum()
    return (on_diag + redundancy * off_diag) / online.shape[1]


def inverse_dynamics_loss(
    logits_or_mean: torch.Tensor, action: torch.Tensor, nvec: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss and accuracy of predicting the action taken between two embeddings.

    Discrete (`nvec` non-empty): cross-entropy summed over the action factors, accuracy of all
    factors right. Continuous: squared error; the 'accuracy' is the fraction within 0.1.
    """
    if nvec:
        losses, correct = [], []
        for logits, target in zip(logits_or_mean.split(nvec, -1), action.split(nvec, -1)):
            losses.append(-(logits.log_softmax(-1) * target).sum(-1))
            correct.append(logits.argmax(-1) == target.argmax(-1))
        return torch.stack(losses, -1).sum(-1), torch.stack(correct, -1).all(-1).float()
    error = (logits_or_mean.tanh() - action).square()
    return error.sum(-1), (error.sqrt() < 0.1).all(-1).float()


def weighted_total(
    losses: dict[str, torch.Tensor], scales: Mapping[str, float]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The one place a model's loss is assembled: ``sum(scales[name] * losses[name])`` over the named scalar terms,
    and each term's value as the metric ``{name}_loss``. Every term needs a scale (a missing one raises), so a new
    term cannot be summed without being logged, or logged without being summed."""
    missing = set(losses) - set(scales)
    if missing:
        raise KeyError(f"loss terms without a scale: {sorted(missing)}")
    total = sum(scales[name] * term for name, term in losses.items())
    return total, {f"{name}_loss": term.detach() for name, term in losses.items()}
