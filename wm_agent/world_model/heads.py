"""Building blocks shared by the world model and the behavior: MLPs and prediction heads."""

from __future__ import annotations

import torch
from torch import nn

from wm_agent.distributions import TwoHot


def mlp(in_size: int, hidden: int, layers: int, out_size: int | None = None) -> nn.Sequential:
    """`layers` x (Linear -> LayerNorm -> SiLU), then an optional plain Linear to `out_size`."""
    modules: list[nn.Module] = []
    size = in_size
    for _ in range(layers):
        modules += [nn.Linear(size, hidden, bias=False), nn.LayerNorm(hidden), nn.SiLU()]
        size = hidden
    if out_size is not None:
        modules.append(nn.Linear(size, out_size))
    return nn.Sequential(*modules)


def symlog_bins(num_bins: int) -> torch.Tensor:
    """Two-hot bin centres, evenly spaced in symlog space over [-20, 20]."""
    return torch.linspace(-20.0, 20.0, num_bins)


class TwoHotHead(nn.Module):
    """MLP -> logits over symlog bins. The output layer starts at zero, so the first predictions are 0."""

    def __init__(self, in_size: int, hidden: int, layers: int, num_bins: int) -> None:
        super().__init__()
        self.net = mlp(in_size, hidden, layers, num_bins)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("bins", symlog_bins(num_bins), persistent=False)

    def forward(self, x: torch.Tensor) -> TwoHot:
        return TwoHot(self.net(x), self.bins)


class EnsembleHead(nn.Module):
    """`members` MLPs from the same input to the same target; their disagreement (spread) marks what the data
    they were trained on does not pin down."""

    def __init__(self, members: int, in_size: int, hidden: int, layers: int, out_size: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(mlp(in_size, hidden, layers, out_size) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's prediction, stacked first: (K, ..., out_size)."""
        return torch.stack([member(x) for member in self.members])

    def disagreement(self, x: torch.Tensor) -> torch.Tensor:
        """Standard deviation over the members, averaged over the output: (...), in the output's units.

        Two passes (mean, then squared deviations) instead of `Tensor.std(0)`: torch's CPU kernel for a reduction
        over a few members into many outputs took about 100 ms for the 5 x 3,840 x 128 predictions of an update,
        the two passes about 13 ms (benchmarks/RESULTS.md, levers); they agree to float32 rounding.
        """
        predictions = self(x).float()  # (K, ..., out_size)
        spread = (predictions - predictions.mean(0)).square().sum(0) / (len(self.members) - 1)
        return spread.sqrt().mean(-1)
