"""Stage `asd`: adversarial self-distillation (SAD paper, DESIGN §6) on top of DMD.

One step-unified student serves 1…4 steps.  Each generator step draws n in 1..3 and rolls
the student out with n steps per chunk (gradient at the exit step) and, from other noise,
with n + 1 steps.  Both videos are re-noised to the same t; a discriminator — heads on the
critic's backbone at the confidence taps, one logit per n, the backbone frozen for it as in
DMD2 — tells them apart with the relativistic loss

    L_D = softplus(f(x_n) − f(x_{n+1})) + λ·L_reg,      L_G = softplus(f(x_{n+1}) − f(x_n)),

where L_reg = ½(‖f(x) − f(x + σε)‖² for both samples) is R3GAN's finite-difference form of
R1/R2 (λ = 600, σ = 0.05 in the paper).  The generator minimises L_DMD + w·L_conf + α·L_G, so
the confidence head keeps learning and the one student serves every schedule.  Gradient
flows only through the n-step video (the (n+1)-step one is the moving target).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..model import CausalWanModel, ConfidenceHead, TextContext
from ..schedules import Schedule, Timesteps
from .common import Run, optimizer_step
from .dmd import DmdConfig, DmdStage
from .teacher import add_random_noise


@dataclass
class AsdConfig(DmdConfig):
    steps: int = 100
    alpha: float = 0.5  # weight of L_ASD in the generator loss
    disc_lr: float = 1e-4
    r_weight: float = 600.0  # λ of the R1/R2 term
    r_sigma: float = 0.05

    def validate(self) -> None:
        super().validate()
        if self.alpha < 0 or self.r_weight < 0 or self.r_sigma <= 0 or not self.disc_lr > 0:
            raise ValueError(f"alpha={self.alpha}, r_weight={self.r_weight} must be >= 0; r_sigma={self.r_sigma} "
                             f"and disc_lr={self.disc_lr} must be > 0")


class Discriminator(nn.Module):
    """The critic's backbone (frozen for this loss) read at the taps by a head with one logit
    per step count n; a video's logit is the mean over its chunks."""

    def __init__(self, critic: CausalWanModel, steps: int) -> None:
        super().__init__()
        cfg = critic.cfg
        self.critic = [critic]  # a list: not registered, so the discriminator owns only its head
        self.head = ConfidenceHead(cfg.dim, cfg.num_heads, len(cfg.taps), cfg.conf_hidden, outputs=steps)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, text: TextContext, n: int) -> torch.Tensor:
        critic = self.critic[0]
        taps = critic(x_t, t, text, causal=False, return_taps=True).taps
        h, w = x_t.shape[-2:]
        logits = self.head(taps, critic.cfg.chunk_frames * critic.frame_tokens(h, w))  # [B, chunks, steps]
        return logits[..., n - 1].mean(1)


def relativistic_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's side: `real` (the (n+1)-step logits) should exceed `fake` (n-step)."""
    return F.softplus(fake - real).mean()


def r1r2(f: Callable[[torch.Tensor], torch.Tensor], x_a: torch.Tensor, x_b: torch.Tensor, sigma: float,
         g: torch.Generator) -> torch.Tensor:
    """R3GAN's R1/R2 as finite differences: ½‖f(x) − f(x + σε)‖² on both samples; zero for a
    discriminator that ignores its input."""
    def term(x: torch.Tensor) -> torch.Tensor:
        return (f(x) - f(x + sigma * torch.randn(x.shape, generator=g).to(x.device))).pow(2).mean()

    return 0.5 * (term(x_a) + term(x_b))


class AsdStage(DmdStage):
    name = "asd"
    Config = AsdConfig
    init_from = "dmd"

    def __init__(self, cfg: AsdConfig, run: Run) -> None:
        super().__init__(cfg, run)
        self.max_n = self.preset.sampling.max_steps - 1  # no (n+1)-step partner for the full list
        self.disc = Discriminator(self.critic, self.max_n).to(run.device)
        self.disc_opt = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.0, 0.999),
                                          weight_decay=0.01)
        self.n = 1

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "discriminator": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "discriminator": self.disc_opt}

    def steps_schedule(self, n: int) -> Schedule:
        return Timesteps(self.scheduler.warp(self.preset.sampling.steps_for(n)))

    def schedule(self, g: torch.Generator) -> Schedule:
        """n-step rollouts, n in 1..max_steps−1, drawn per rollout; the last one drawn is the
        generator's."""
        self.n = int(torch.randint(1, self.max_n + 1, (1,), generator=g))
        return self.steps_schedule(self.n)

    def _pair(self, video_n: torch.Tensor, states: torch.Tensor,
              g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (n+1)-step video and both videos re-noised to one shared t."""
        with torch.no_grad():
            video_next, _ = self._rollout(states, g, grad=False, schedule=self.steps_schedule(self.n + 1))
        x_next, t, sigma, _ = add_random_noise(video_next, g, self.scheduler, self.cfg.min_t, self.cfg.max_t)
        noise = torch.randn(video_n.shape, generator=g).to(video_n.device)
        x_n = self.scheduler.add_noise(video_n, noise, sigma)
        return x_n, x_next, t

    def extra_losses(self, video: torch.Tensor, states: torch.Tensor, x0_real: torch.Tensor,
                     g: torch.Generator) -> dict[str, torch.Tensor]:
        self._pending = self._pair(video, states, g)
        x_n, x_next, t_pair = self._pending
        self.critic.requires_grad_(False)  # L_G moves the student through x_n, not the critic
        text = self.critic.prepare_text(states)
        # L_G = softplus(f(x_{n+1}) − f(x_n)): the discriminator's loss with the roles swapped.
        l_g = relativistic_d_loss(self.disc(x_n, t_pair, text, self.n), self.disc(x_next, t_pair, text, self.n))
        self.critic.requires_grad_(True)
        return {"asd_g": self.cfg.alpha * l_g}

    def after_generator_step(self, video: torch.Tensor, states: torch.Tensor, g: torch.Generator) -> dict[str, float]:
        x_n, x_next, t = (x.detach() for x in self._pending)
        with torch.no_grad():
            text = self.critic.prepare_text(states)

        def f(x: torch.Tensor) -> torch.Tensor:
            return self.disc(x, t, text, self.n)

        self.critic.requires_grad_(False)
        l_d = relativistic_d_loss(f(x_next), f(x_n))
        reg = r1r2(f, x_n, x_next, self.cfg.r_sigma, g)
        optimizer_step(l_d + self.cfg.r_weight * reg, self.disc_opt, self.run)
        self.critic.requires_grad_(True)
        return {"asd_d": l_d.item(), "r1r2": reg.item(), "n": float(self.n)}
