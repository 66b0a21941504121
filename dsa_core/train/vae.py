"""Stage `vae`: the small Wan VAE (diffusers' `AutoencoderKLWan`) on world clips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from ..vae import make_vae
from .common import Stage, StageConfig, optimizer_step
from .data import pixel_batch, world_config


@dataclass
class VaeConfig(StageConfig):
    steps: int = 7000
    batch_size: int = 4
    lr: float = 1e-3
    # Short clips suffice: the VAE is causal with a 4-frame temporal receptive field per latent.
    clip_frames: int = 9
    kl_weight: float = 1e-6
    # Clips whose latents set the per-channel mean/std the DiT's latents are normalised with.
    stats_clips: int = 32

    def validate(self) -> None:
        super().validate()
        if self.clip_frames < 5 or (self.clip_frames - 1) % 4:
            raise ValueError(f"clip_frames={self.clip_frames} must be 1 + 4k with k >= 1")


class VaeStage(Stage):
    name = "vae"
    Config = VaeConfig

    def __init__(self, cfg: VaeConfig, run) -> None:
        super().__init__(cfg, run)
        torch.manual_seed(cfg.seed)
        self.vae = make_vae(self.preset.vae).train().to(run.device)
        self.opt = torch.optim.AdamW(self.vae.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.world = world_config(cfg.height, cfg.width, cfg.clip_frames)

    def modules(self):
        return {"vae": self.vae}

    def optimizers(self):
        return {"vae": self.opt}

    def train_step(self, step: int, g: torch.Generator) -> dict[str, float]:
        x = pixel_batch(g, self.cfg.batch_size, self.world).to(self.run.device)
        posterior = self.vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g).to(x.device)
        rec = self.vae.decode(z).sample
        l1 = F.l1_loss(rec, x)
        mse = F.mse_loss(rec, x)
        kl = posterior.kl().mean()
        loss = l1 + mse + self.cfg.kl_weight * kl
        optimizer_step(loss, self.opt, self.run, max_norm=None)
        return {"loss": loss.item(), "l1": l1.item(), "kl": kl.item()}

    @torch.no_grad()
    def export(self, folder: Path) -> None:
        """Save in diffusers' format with the latent statistics the DiT is trained on."""
        self.vae.eval()
        g = torch.Generator().manual_seed(12345)
        world = world_config(self.cfg.height, self.cfg.width, self.cfg.num_frames)
        zs = [self.vae.encode(pixel_batch(g, 4, world).to(self.run.device)).latent_dist.mode()
              for _ in range(max(1, self.cfg.stats_clips // 4))]
        z = torch.cat(zs).transpose(0, 1).flatten(1)  # [C, everything]
        self.vae.register_to_config(latents_mean=z.mean(1).tolist(), latents_std=z.std(1).clamp_min(1e-3).tolist())
        self.vae.save_pretrained(folder, safe_serialization=True)
        self.vae.train()

