"""Observation encoders (MLP for vectors, CNN for images) and the reconstruction decoder."""

from __future__ import annotations

import torch
from gymnasium import spaces
from torch import nn

from wm_agent.config import JEPADreamerConfig
from wm_agent.distributions import symexp, symlog
from wm_agent.precision import wide_autocast
from wm_agent.spaces import ObsSpec
from wm_agent.world_model.heads import mlp

CNN_MULTIPLIERS = (2, 3, 4, 4)  # channels per stage, times cnn_depth; each stage halves the image


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a (N, C, H, W) feature map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def cnn_stages(cfg: JEPADreamerConfig) -> list[int]:
    return [cfg.cnn_depth * m for m in CNN_MULTIPLIERS]


def run_cnn(cnn: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    """Apply a conv stack to (N, C, H, W) in channels-last layout (bf16 where `precision` allows), float32 out.

    Channels-last makes the channel LayerNorms' permutes free and lets oneDNN pick its fastest kernels.
    """
    with wide_autocast(x.device, precision):
        return cnn(x.contiguous(memory_format=torch.channels_last)).float()


class ObsEncoder(nn.Module):
    """Every observation key -> one embedding (N, embed): symlog MLP for vectors, strided CNN for images."""

    def __init__(self, obs_spec: ObsSpec, cfg: JEPADreamerConfig) -> None:
        super().__init__()
        self.obs_spec = obs_spec
        self.vector_names = [k.name for k in obs_spec.vector_keys]
        self.image_names = [k.name for k in obs_spec.image_keys]
        branch_out = 0
        if self.vector_names:
            vector_size = sum(k.size for k in obs_spec.vector_keys)
            self.mlp = mlp(vector_size, cfg.hidden, cfg.mlp_layers)
            branch_out += cfg.hidden if cfg.mlp_layers > 0 else vector_size
        if self.image_names:
            channels = sum(k.size for k in obs_spec.image_keys)
            layers: list[nn.Module] = []
            for out_channels in cnn_stages(cfg):
                layers += [nn.Conv2d(channels, out_channels, 4, 2, 1, bias=False), ChannelLayerNorm(out_channels)]
                layers.append(nn.SiLU())
                channels = out_channels
            self.cnn = nn.Sequential(*layers, nn.Flatten())
            branch_out += channels * (cfg.image_size // 2 ** len(CNN_MULTIPLIERS)) ** 2
        self.out = nn.Linear(branch_out, cfg.embed)
        self.precision = cfg.precision

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`obs` holds preprocessed tensors with one leading batch dim (see ObsSpec.preprocess)."""
        parts = []
        if self.vector_names:
            parts.append(self.mlp(symlog(torch.cat([obs[k] for k in self.vector_names], -1))))
        if self.image_names:
            images = torch.cat([obs[k] for k in self.image_names], 1)
            parts.append(run_cnn(self.cnn, images, self.precision))
        return self.out(torch.cat(parts, -1))


class ObsDecoder(nn.Module):
    """Model state -> observation (reconstruction representation): symlog vectors and images in [-0.5, 0.5]."""

    def __init__(self, obs_spec: ObsSpec, cfg: JEPADreamerConfig) -> None:
        super().__init__()
        self.vector_keys = obs_spec.vector_keys
        self.image_keys = obs_spec.image_keys
        if self.vector_keys:
            self.mlp = mlp(cfg.feat_size, cfg.hidden, cfg.mlp_layers, sum(k.size for k in self.vector_keys))
        if self.image_keys:
            stages = cnn_stages(cfg)
            self.min_res = cfg.image_size // 2 ** len(stages)
            self.image_in = nn.Linear(cfg.feat_size, stages[-1] * self.min_res**2)
            layers: list[nn.Module] = []
            channels = stages[-1]
            for out_channels in reversed(stages[:-1]):
                layers += [nn.ConvTranspose2d(channels, out_channels, 4, 2, 1, bias=False)]
                layers += [ChannelLayerNorm(out_channels), nn.SiLU()]
                channels = out_channels
            layers.append(nn.ConvTranspose2d(channels, sum(k.size for k in self.image_keys), 4, 2, 1))
            self.cnn = nn.Sequential(*layers)
            self.top_channels = stages[-1]
        self.precision = cfg.precision

    def decode(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The observation predicted from `feat` (N, F), per key: vectors in the env's units (one-hot features for
        discrete keys), images as float pixels in [0, 255] (N, C, S, S), or (N, S, S) for a 2-D grayscale key."""
        out = {}
        if self.vector_keys:
            vectors = symexp(self.mlp(feat)).split([k.size for k in self.vector_keys], -1)
            for key, value in zip(self.vector_keys, vectors):
                boxed = key.space.shape if isinstance(key.space, spaces.Box) else (key.size,)
                out[key.name] = value.reshape(-1, *boxed)
        if self.image_keys:
            x = self.image_in(feat).reshape(-1, self.top_channels, self.min_res, self.min_res)
            images = ((run_cnn(self.cnn, x, self.precision) + 0.5) * 255.0).clamp(0.0, 255.0)
            for key, value in zip(self.image_keys, images.split([k.size for k in self.image_keys], 1)):
                out[key.name] = value.squeeze(1) if len(key.space.shape) == 2 else value
        return out

    def loss(self, feat: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared error of the prediction from `feat` (N, F) against the preprocessed `obs`, per sample."""
        loss = torch.zeros(feat.shape[0], device=feat.device)
        if self.vector_keys:
            target = symlog(torch.cat([obs[k.name] for k in self.vector_keys], -1))
            loss = loss + (self.mlp(feat) - target).square().sum(-1)
        if self.image_keys:
            x = self.image_in(feat).reshape(-1, self.top_channels, self.min_res, self.min_res)
            target = torch.cat([obs[k.name] for k in self.image_keys], 1)
            loss = loss + (run_cnn(self.cnn, x, self.precision) - target).square().sum((1, 2, 3))
        return loss
