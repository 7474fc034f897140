"""Temporally correlated ("coloured") noise for the actor's samples while collecting.

The actor samples each action from its distribution with one standard-normal draw per action dimension (a
Gaussian's noise) or per categorical factor (turned into the uniform of inverse-CDF sampling). Drawing those
numbers from a sequence whose power spectrum falls as 1/f^beta instead of afresh at every step keeps each action's
distribution exactly the actor's and only correlates successive choices: beta 0 is white noise (independent draws),
1 pink, 2 red. Temporally extended exploration reaches states that independent draws rarely do (Eberhard et al.,
"Pink Noise Is All You Need", ICLR 2023, measured it on MountainCarContinuous among others).
"""

from __future__ import annotations

import numpy as np


def powerlaw_noise(beta: float, shape: tuple[int, ...], length: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sequences (*shape, length), each with a 1/f^beta power spectrum and a standard-normal marginal.

    Spectral synthesis (Timmer and Koenig, 1995): random complex amplitudes scaled by f^(-beta/2), transformed back;
    frequencies below 1/length get the scale of 1/length.
    """
    freqs = np.fft.rfftfreq(length)  # (F,), F = length // 2 + 1
    freqs[0] = 1.0 / length
    scale = freqs ** (-beta / 2.0)
    real = rng.standard_normal((*shape, len(freqs))) * scale
    imag = rng.standard_normal((*shape, len(freqs))) * scale
    # the zero frequency (and the Nyquist one, for an even length) is real: its whole variance goes to the real part
    real_only = [0, len(freqs) - 1] if length % 2 == 0 else [0]
    imag[..., real_only] = 0.0
    real[..., real_only] *= np.sqrt(2.0)
    # each complex bin adds 2 |X_k|^2 / length^2 of variance to every step (a real bin |X_k|^2 / length^2)
    weight = np.full(len(freqs), 2.0)
    weight[real_only] = 1.0
    std = np.sqrt((weight * 2.0 * scale**2).sum()) / length
    return np.fft.irfft(real + 1j * imag, n=length, axis=-1) / std


class ColoredNoise:
    """Standard-normal draws (n_envs, dims), correlated across an env's steps, each env's sequence begun afresh
    with its episode (and after `length` steps)."""

    def __init__(self, beta: float, n_envs: int, dims: int, length: int, rng: np.random.Generator) -> None:
        self.beta, self.dims, self.length, self.rng = beta, dims, length, rng
        self.sequences = np.zeros((n_envs, dims, length))
        self.position = np.full(n_envs, length)  # every env draws a fresh sequence at its first step

    def __call__(self, episode_starts: np.ndarray) -> np.ndarray:
        """The next draw of every env; `episode_starts` (n_envs,): envs whose episode begins with this step."""
        fresh = np.asarray(episode_starts, dtype=bool) | (self.position >= self.length)
        if fresh.any():
            self.sequences[fresh] = powerlaw_noise(self.beta, (int(fresh.sum()), self.dims), self.length, self.rng)
            self.position[fresh] = 0
        draw = self.sequences[np.arange(len(self.position)), :, self.position]
        self.position += 1
        return draw
