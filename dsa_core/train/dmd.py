"""Stage `dmd`: Self-Forcing DMD with the DSA confidence loss (DESIGN §6).

Each generator step rolls the student out autoregressively with its KV cache exactly as at
inference (`pipeline.Rollout`), exiting every chunk after a step count drawn per rollout (or
per chunk, `exit_per_chunk`), with gradient at that exit step only.  The distribution-matching
gradient compares the teacher's guided x0 (real score) with a critic's x0 (fake score) at a
random noise level; the confidence head learns, per chunk, how far the student's x0 is from
the teacher's.  The critic learns the student's distribution with the plain flow loss,
`critic_steps` times per generator step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import Preset
from ..model import CausalWanModel
from ..pipeline import Rollout
from ..scheduler import FlowMatchScheduler
from ..schedules import RandomExits, Schedule, Timesteps
from ..world import caption_corpus
from .common import Run, Stage, StageConfig, ema_update, optimizer_step
from .teacher import add_random_noise, chunk_distance, flow_loss, guided_flow, load_teacher


@dataclass
class DmdConfig(StageConfig):
    # 500 rather than 250: every benchmark row rose, on both worlds (docs/training.md: "A
    # longer DMD stage"), though the adaptive row's gap to fixed 4 steps mostly did not close.
    steps: int = 500
    batch_size: int = 4
    # A step takes about 11 s on the 2-core CPU, and ASD and diagonal (which inherit this) run
    # only 100 steps: checkpointing every 100 would lose a whole stage to a kill.
    ckpt_every: int = 10
    lr: float = 2e-5
    # The confidence head starts from scratch while the denoiser is only fine-tuned: at the
    # generator's rate it would barely move in a few hundred steps.
    head_lr: float = 1e-3
    critic_lr: float = 4e-5
    critic_steps: int = 5
    cfg_scale: float = 3.0
    ema_decay: float = 0.99
    # Range of the DMD noise level, as a fraction of the shifted grid.
    min_t: float = 0.02
    max_t: float = 0.98
    # L = L_DMD + conf_weight · (c·sg(d) − λ·log c), λ = conf_lambda × running mean of d.
    conf_weight: float = 1.0
    conf_lambda: float = 0.5
    captions: int = 20000
    # Draw the exit step list per chunk, not once per rollout (Self-Forcing's default): an
    # adaptive schedule stops chunks at different depths, so each chunk sees a KV context of
    # mixed depths, which per-rollout exits never show the student.
    exit_per_chunk: bool = False

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.min_t < self.max_t <= 1:
            raise ValueError(f"min_t={self.min_t}, max_t={self.max_t} must satisfy 0 <= min_t < max_t <= 1")
        for name in ("head_lr", "critic_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive number")
        if self.critic_steps < 1:
            raise ValueError(f"critic_steps={self.critic_steps} must be >= 1")
        if self.exit_per_chunk and type(self) is not DmdConfig:
            raise ValueError("exit_per_chunk applies to the dmd stage only: this stage chooses its own rollout steps")


class RunningMean(torch.nn.Module):
    """An exponential running mean kept as a buffer, so checkpoints carry it."""

    def __init__(self, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("value", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def update(self, x: float) -> float:
        m = self.momentum if self.count > 0 else 0.0
        self.value.mul_(m).add_((1 - m) * x)
        self.count += 1
        return float(self.value)


def exit_lists(preset: Preset) -> list[list[float]]:
    """Every step list a schedule at inference can end a chunk on: prefixes of the full list
    (adaptive stops early) and the shorter lists of fixed(n) / FFE."""
    s = preset.sampling
    warp = FlowMatchScheduler(s.shift).warp
    lists = {tuple(warp(s.raw_steps[:n])) for n in range(1, s.max_steps + 1)}
    lists |= {tuple(warp(s.steps_for(n))) for n in range(1, s.max_steps + 1)}
    return [list(x) for x in sorted(lists)]


def confidence_loss(logits: torch.Tensor, d: torch.Tensor, lam: float) -> torch.Tensor:
    """DSA's quality-aware confidence loss: c·sg(d) − λ·log c, minimised at c = min(1, λ/d)."""
    c = torch.sigmoid(logits)
    return (c * d.detach() - lam * torch.nn.functional.logsigmoid(logits)).mean()


def dmd_loss(x0: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """½‖x0 − sg(x0 − g)‖² with g = (x0_fake − x0_real) / mean|x0 − x0_real| (per sample)."""
    dims = tuple(range(1, x0.ndim))
    scale = (x0.detach() - x0_real).abs().mean(dim=dims, keepdim=True).clamp_min(1e-6)
    g = (x0_fake - x0_real) / scale
    return 0.5 * ((x0 - (x0 - g).detach()) ** 2).mean()


class DmdStage(Stage):
    name = "dmd"
    Config = DmdConfig
    init_from = "ode"  # the stage whose student this one starts from

    def __init__(self, cfg: DmdConfig, run: Run) -> None:
        super().__init__(cfg, run)
        p = self.preset
        source = Stage.final_dir(cfg, self.init_from) / "student.safetensors"
        if not source.is_file():
            raise FileNotFoundError(f"{source} is missing: run `python -m dsa_core.train {self.init_from}` first")
        self.teacher, self.text = load_teacher(cfg, p, run.device)
        torch.manual_seed(cfg.seed)
        self.student = CausalWanModel(p.model)
        self.student.load_state_dict(load_file(str(source)))
        self.student.to(run.device).train()
        self.ema = copy.deepcopy(self.student).requires_grad_(False)
        self.critic = copy.deepcopy(self.teacher).requires_grad_(True).train()
        critic = Stage.final_dir(cfg, self.init_from) / "critic.safetensors"
        if critic.is_file():  # continuing from DMD: its critic already knows the student's distribution
            self.critic.load_state_dict(load_file(str(critic)))
        betas = (0.0, 0.999)  # DMD2 / Self-Forcing: no first-moment momentum
        head = list(self.student.confidence_head.parameters())
        body = [p for p in self.student.parameters() if all(p is not h for h in head)]
        self.opt = torch.optim.AdamW([{"params": body}, {"params": head, "lr": cfg.head_lr}], lr=cfg.lr,
                                     betas=betas, weight_decay=0.01)
        self.critic_opt = torch.optim.AdamW(self.critic.parameters(), lr=cfg.critic_lr, betas=betas, weight_decay=0.01)
        self.scheduler = FlowMatchScheduler(p.sampling.shift)
        self.captions = caption_corpus(cfg.captions, seed0=2 * 10**7)
        self.exits = exit_lists(p)
        # Running mean of the teacher distance d: sets λ (DESIGN §6: calibrate λ to typical d).
        self.stats = RunningMean()

    def modules(self) -> dict[str, nn.Module]:
        return {"student": self.student, "student_ema": self.ema, "critic": self.critic, "stats": self.stats}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"student": self.opt, "critic": self.critic_opt}

    def _texts(self, g: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(0, len(self.captions), (self.cfg.batch_size,), generator=g).tolist()
        caps = [self.captions[i] for i in idx]
        with torch.no_grad():
            return self.text.encode(caps).to(self.run.device), caps

    def schedule(self, g: torch.Generator) -> Schedule:
        """The step schedule of one rollout: here a random exit list (where adaptive, fixed(n)
        and FFE end a chunk); the ASD and diagonal stages choose their own."""
        if self.cfg.exit_per_chunk:
            return RandomExits(self.exits, g)
        return Timesteps(self.exits[int(torch.randint(0, len(self.exits), (1,), generator=g))])

    def _rollout(self, states: torch.Tensor, g: torch.Generator, grad: bool,
                 schedule: Schedule | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Student video [B, C, F, h, w] and its exit-step confidence logits [B, chunks]."""
        rollout = Rollout(self.student, self.scheduler, schedule or self.schedule(g), self.preset, g,
                          batch=self.cfg.batch_size, device=self.run.device, grad=grad)
        with torch.set_grad_enabled(grad):
            text = self.student.prepare_text(states)
        results = [rollout.next_chunk(text) for _ in range(self.cfg.latent_frames // self.preset.model.chunk_frames)]
        return torch.cat([r.x0 for r in results], 2), torch.cat([r.conf_logits for r in results], 1)

    def extra_losses(self, video: torch.Tensor, states: torch.Tensor, x0_real: torch.Tensor,
                     g: torch.Generator) -> dict[str, torch.Tensor]:
        """Further generator losses, weighted, added to L_DMD + w·L_conf (ASD, motion matching)."""
        return {}

    def after_generator_step(self, video: torch.Tensor, states: torch.Tensor, g: torch.Generator) -> dict[str, float]:
        """Updates that follow the generator's (ASD's discriminator); returns values to log."""
        return {}

    def train_step(self, step: int, g: torch.Generator) -> dict[str, float]:
        cfg = self.cfg
        critic_losses = []
        for _ in range(cfg.critic_steps):
            states, _ = self._texts(g)
            with torch.no_grad():
                video, _ = self._rollout(states, g, grad=False)
            loss = flow_loss(self.critic, self.critic.prepare_text(states), video, g, self.scheduler)
            optimizer_step(loss, self.critic_opt, self.run)
            critic_losses.append(loss.item())

        states, _ = self._texts(g)
        video, logits = self._rollout(states, g, grad=True)
        x_t, t, sigma, _ = add_random_noise(video.detach(), g, self.scheduler, cfg.min_t, cfg.max_t)
        with torch.no_grad():
            cond = self.teacher.prepare_text(states)
            uncond = self.teacher.prepare_text(self.text.encode([""] * cfg.batch_size).to(self.run.device))
            x0_real = self.scheduler.to_x0(x_t, guided_flow(self.teacher, x_t, t, cond, uncond, cfg.cfg_scale), sigma)
            v_fake = self.critic(x_t, t, self.critic.prepare_text(states), causal=False).flow
            x0_fake = self.scheduler.to_x0(x_t, v_fake, sigma)
        l_dmd = dmd_loss(video, x0_real, x0_fake)
        d = chunk_distance(video.detach(), x0_real, self.preset.model.chunk_frames)
        l_conf = confidence_loss(logits, d, cfg.conf_lambda * self.stats.update(float(d.mean())))
        extra = self.extra_losses(video, states, x0_real, g)
        loss = l_dmd + cfg.conf_weight * l_conf + sum(extra.values())
        optimizer_step(loss, self.opt, self.run)
        ema_update(self.ema, self.student, cfg.ema_decay)
        return {
            "dmd": l_dmd.item(),
            "conf": l_conf.item(),
            "critic_flow": sum(critic_losses) / len(critic_losses),
            "d": float(d.mean()),
            "c": float(torch.sigmoid(logits.detach()).mean()),
            **{k: v.item() for k, v in extra.items()},
            **self.after_generator_step(video.detach(), states, g),
        }

    def export(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.ema.state_dict().items()}, str(folder / "student.safetensors"))
        # For the stages that continue from this one (ASD, diagonal); not shipped.
        save_file({k: v.contiguous() for k, v in self.critic.state_dict().items()}, str(folder / "critic.safetensors"))
