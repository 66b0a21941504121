"""Stage `vae`: the small Wan VAE (diffusers' `AutoencoderKLWan`) on world clips."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from torch import nn
from torch.nn import functional as F

from ..vae import load_vae, make_vae, use_fast_cpu_kernels
from .common import Run, Stage, StageConfig, optimizer_step, set_lr
from .data import pixel_batch, world_config


@dataclass
class VaeConfig(StageConfig):
    steps: int = 7400
    batch_size: int = 4
    lr: float = 1e-3
    # A curriculum: short clips (cheap, batched) teach the spatial code, then whole 81-frame
    # clips teach the causal feature cache's steady state.  Its receptive field spans most of
    # a clip: trained on 9-frame clips the VAE shifted colours from the 4th latent frame on,
    # and trained on 21-frame ones it still washed out patterns after frame 30.
    clip_frames: int = 9
    long_clip_frames: int = 81
    long_batch_size: int = 1
    # One clip per step is a noisy gradient: at the short phase's 1e-3 the loss diverged.
    long_lr: float = 2e-4
    long_from_step: int = 7000
    # A cosine tail over (most of) the long-clip phase settles the reconstruction (see `set_lr`).
    decay_fraction: float = 0.05
    kl_weight: float = 1e-6
    # Clips whose latents set the per-channel mean/std the DiT's latents are normalised with.
    stats_clips: int = 32
    # Linear warmup of the rate over the first steps (0: none, the `vae` stage's recipe).
    warmup_steps: int = 0

    def validate(self) -> None:
        super().validate()
        for name in ("clip_frames", "long_clip_frames"):
            n = getattr(self, name)
            if n < 5 or (n - 1) % 4:
                raise ValueError(f"{name}={n} must be 1 + 4k with k >= 1")
        if not 0 <= self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction={self.decay_fraction} must be in [0, 1]")
        if not (self.long_lr > 0 and math.isfinite(self.long_lr)):
            raise ValueError(f"long_lr={self.long_lr} must be a positive number")
        if self.long_batch_size < 1:
            raise ValueError(f"long_batch_size={self.long_batch_size} must be >= 1")
        if self.long_from_step < 0:
            raise ValueError(f"long_from_step={self.long_from_step} must be >= 0")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be in [0, {self.steps})")


class VaeStage(Stage):
    name = "vae"
    Config = VaeConfig
    # The encoder learns here; `vae-decoder` freezes it.
    trains_encoder = True

    def __init__(self, cfg: VaeConfig, run: Run) -> None:
        super().__init__(cfg, run)
        torch.manual_seed(cfg.seed)
        # The whole-clip phase runs one clip a step, where PyTorch's CPU convolution would
        # pick its slow kernel, and every step normalises channels (see `use_fast_cpu_kernels`).
        self.vae = use_fast_cpu_kernels(self.build_vae()).train().to(run.device)
        trainable = [p for p in self.vae.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
        self.short = world_config(cfg.height, cfg.width, cfg.clip_frames)
        self.long = world_config(cfg.height, cfg.width, cfg.long_clip_frames)

    def build_vae(self) -> AutoencoderKLWan:
        return make_vae(self.preset.vae)

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae": self.opt}

    def train_step(self, step: int, g: torch.Generator) -> dict[str, float]:
        long = step >= self.cfg.long_from_step
        set_lr(self.opt, [self.cfg.long_lr if long else self.cfg.lr], step, self.cfg.steps, self.cfg.decay_fraction,
               self.cfg.warmup_steps)
        batch = self.cfg.long_batch_size if long else self.cfg.batch_size
        x = pixel_batch(g, batch, self.long if long else self.short).to(self.run.device)
        with torch.set_grad_enabled(self.trains_encoder):
            posterior = self.vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g).to(x.device)
        rec = self.vae.decode(z).sample
        l1 = F.l1_loss(rec, x)
        mse = F.mse_loss(rec, x)
        kl = posterior.kl().mean()
        loss = l1 + mse + (self.cfg.kl_weight * kl if self.trains_encoder else 0.0)
        optimizer_step(loss, self.opt, self.run, max_norm=None)
        return {"loss": loss.item(), "l1": l1.item(), "kl": kl.item()}

    @torch.no_grad()
    def export(self, folder: Path) -> None:
        """Save in diffusers' format with the latent statistics the DiT is trained on.

        They are the encoder's: a stage that froze it keeps the ones it was loaded with."""
        self.vae.eval()
        if self.trains_encoder:
            g = torch.Generator().manual_seed(12345)
            world = world_config(self.cfg.height, self.cfg.width, self.cfg.num_frames)
            zs = [self.vae.encode(pixel_batch(g, 4, world).to(self.run.device)).latent_dist.mode()
                  for _ in range(max(1, self.cfg.stats_clips // 4))]
            z = torch.cat(zs).transpose(0, 1).flatten(1)  # [C, everything]
            self.vae.register_to_config(latents_mean=z.mean(1).tolist(),
                                        latents_std=z.std(1).clamp_min(1e-3).tolist())
        self.vae.save_pretrained(folder, safe_serialization=True)
        self.vae.train()


@dataclass
class VaeDecoderConfig(VaeConfig):
    # The `vae` stage's decoder at batch 4 was under-trained: refined alone at batch 32 (one
    # GPU run of about 7 minutes), real clips' round trips keep objects' count and colours in
    # 77% and 73% of full-world windows instead of 63% and 57% (docs/training.md, "A refined decoder").
    steps: int = 1840
    batch_size: int = 32
    lr: float = 5e-4
    long_from_step: int = 1717
    long_batch_size: int = 8
    long_lr: float = 2e-4
    decay_fraction: float = 123 / 1840  # the cosine spans the long-clip phase
    warmup_steps: int = 100


class VaeDecoderStage(VaeStage):
    """Stage `vae-decoder`: the `vae` stage's decoder refined alone, its encoder frozen.

    The encoder makes the latents every later stage learns, so freezing it keeps the teacher
    and the students valid whichever decoder ships: only how their latents are drawn changes.
    The loss and phases are the `vae` stage's, without the KL term (no encoder to shape).
    """

    name = "vae-decoder"
    Config = VaeDecoderConfig
    trains_encoder = False

    def build_vae(self) -> AutoencoderKLWan:
        source = Stage.final_dir(self.cfg, "vae")
        if not source.is_dir():
            raise FileNotFoundError(f"{source} is missing: run `python -m dsa_core.train vae` first")
        vae = load_vae(source, self.preset, use_safetensors=True)
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
        return vae
