"""Collapse diagnostics for learned embeddings, logged every update."""

from __future__ import annotations

import torch


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
