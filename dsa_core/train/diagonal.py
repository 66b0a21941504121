"""Stage `diagonal`: diagonal forcing with motion-feature matching (Diagonal Distillation, DESIGN §6).

The student is rolled out exactly as the diagonal schedule runs at inference — more steps for
early chunks, fewer later (4, 3, 2, 2, …), each chunk attending to the previous chunk's last
*noisy* forward (diagonal forcing) — and trained with DMD, the DSA confidence loss, and a
motion loss: a small extractor F (convolutions over differences of consecutive latent
frames, then an MLP) must see the same motion in the student's video as in the teacher's
guided x0 of it,

    L_motion = ‖F(x0_student) − F(x0_teacher)‖² / ‖F(x0_teacher) − F(still)‖²

(the paper's flow regression term, eq. 11), measured relative to the teacher's own motion
energy — F's output at a video that does not move — so that its weight means the same
whatever the extractor's scale: 1 is an error as large as the motion itself.

F is kept at its random initialisation: trained only by this loss it could shrink towards
constant features (the paper's EMA copy slows that, it does not prevent it), while fixed
random convolutions still respond to where and how the latents change.  The paper's
score-based flow term (eq. 9) is left out; its regression term is the part we reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..schedules import Schedule, make_schedule
from .common import Run
from .dmd import DmdConfig, DmdStage


@dataclass
class DiagonalConfig(DmdConfig):
    steps: int = 100
    motion_weight: float = 1.0  # the paper's best weight

    def validate(self) -> None:
        super().validate()
        if self.motion_weight < 0:
            raise ValueError(f"motion_weight={self.motion_weight} must be >= 0")


class MotionFeatures(nn.Module):
    """F: latent frame differences → conv features → per-position MLP, `[B, C, F−1, h, w]` → features."""

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv3d(channels, hidden, (1, 3, 3), padding=(0, 1, 1)), nn.SiLU(),
            nn.Conv3d(hidden, hidden, (3, 3, 3), padding=1), nn.SiLU(),
        )
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x[:, :, 1:] - x[:, :, :-1]
        return self.mlp(self.conv(diff).movedim(1, -1))


def motion_loss(f: MotionFeatures, video: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖F(video) − F(target)‖² relative to the target's motion energy (see the module docstring)."""
    goal = f(target)
    still = f(torch.zeros_like(target[:, :, :2])).mean(dim=2, keepdim=True)  # F of zero change
    energy = (goal - still).pow(2).mean().clamp_min(1e-12)
    return (f(video) - goal).pow(2).mean() / energy


class DiagonalStage(DmdStage):
    name = "diagonal"
    Config = DiagonalConfig
    init_from = "dmd"

    def __init__(self, cfg: DiagonalConfig, run: Run) -> None:
        super().__init__(cfg, run)
        # Drawn after the seeded models, so the same seed gives the same fixed extractor.
        self.motion = MotionFeatures(self.preset.model.in_dim).requires_grad_(False).to(run.device)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "motion": self.motion}

    def schedule(self, g: torch.Generator) -> Schedule:
        return make_schedule("diagonal", self.preset)

    def extra_losses(self, video: torch.Tensor, states: torch.Tensor, x0_real: torch.Tensor,
                     g: torch.Generator) -> dict[str, torch.Tensor]:
        return {"motion": self.cfg.motion_weight * motion_loss(self.motion, video, x0_real.detach())}
