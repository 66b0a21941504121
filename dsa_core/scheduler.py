"""Flow matching on Wan's shifted timestep grid (DESIGN §2).

`x_t = (1 − σ)·x0 + σ·ε`, the model predicts `v = ε − x0`, timesteps are `t = 1000·σ'` with
`σ' = s·σ / (1 + (s − 1)·σ)`.  A trained step list is given in raw units (`σ = raw / 1000`)
and warped onto the shifted grid, as Self-Forcing does with its `denoising_step_list`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class FlowMatchScheduler:
    def __init__(self, shift: float = 5.0, num_train_timesteps: int = 1000) -> None:
        if shift <= 0:
            raise ValueError(f"shift={shift} must be > 0")
        self.shift = shift
        self.num_train_timesteps = num_train_timesteps

    def shift_sigma(self, sigma: torch.Tensor | float) -> torch.Tensor | float:
        s = self.shift
        return s * sigma / (1 + (s - 1) * sigma)

    @property
    def sigmas(self) -> torch.Tensor:
        """The training grid, high noise first: shifted σ = k / N for k = N … 1."""
        n = self.num_train_timesteps
        raw = torch.arange(n, 0, -1, dtype=torch.float64) / n
        return self.shift_sigma(raw)

    def warp(self, raw_steps: Sequence[float]) -> list[float]:
        """Raw step list (0…N) → timesteps on the shifted grid (0…N)."""
        n = self.num_train_timesteps
        bad = [r for r in raw_steps if not 0 <= r <= n]
        if bad:
            raise ValueError(f"raw steps {bad} outside the allowed range 0..{n}")
        return [float(self.shift_sigma(r / n) * n) for r in raw_steps]

    def sigma(self, t: float) -> float:
        return t / self.num_train_timesteps

    @staticmethod
    def to_x0(x_t: torch.Tensor, flow: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        return x_t - sigma * flow

    @staticmethod
    def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        return (1 - sigma) * x0 + sigma * noise

    @staticmethod
    def flow_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise - x0
