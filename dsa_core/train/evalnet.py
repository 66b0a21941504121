"""Stage `evalnet`: the attribute classifier of `dsa_core.eval`, on rendered world clips.

Clips are rendered once at the start (deterministic from the seed) and windows drawn from
them at random.  Generated videos are softer than renders, so each window is blurred by a
random amount and lightly noised: the classifier must name a blurry red ball a red ball.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ..evalnet import (
    ATTRIBUTES,
    SETS,
    AttributeNet,
    attribute_loss,
    dense_labels,
    exact_match,
    predictions,
    to_input,
    window_frames,
    window_labels,
    windows,
)
from ..world import heldout_seed, render_spec, sample_clip, train_seed
from .common import Run, Stage, StageConfig, optimizer_step, set_lr
from .data import world_config

CLIP_SEED0 = 4 * 10**7  # training clips of this stage: train_seed(CLIP_SEED0 + i)


@dataclass
class EvalnetConfig(StageConfig):
    steps: int = 8000
    batch_size: int = 32
    lr: float = 2e-3
    # Many scenes, few windows each: with 1024 clips the classifier memorised them (train
    # windows 98% right, held-out ones 5% on shapes); 8192 clips keep it general.
    clips: int = 8192
    windows_per_clip: int = 2
    heldout_clips: int = 128
    channels: int = 64  # AttributeNet's width
    blocks: int = 1  # AttributeNet's residual blocks per frame resolution
    max_blur: float = 1.2  # pixels (Gaussian sigma)
    noise: float = 0.04

    def validate(self) -> None:
        super().validate()
        if min(self.clips, self.heldout_clips, self.windows_per_clip, self.channels) < 1:
            raise ValueError(f"clips={self.clips}, heldout_clips={self.heldout_clips}, windows_per_clip="
                             f"{self.windows_per_clip} and channels={self.channels} must be >= 1")
        if self.blocks < 0:
            raise ValueError(f"blocks={self.blocks} must be >= 0")


def render_windows(seeds: list[int], cfg: EvalnetConfig, desc: str, per_clip: int | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Windows of every clip (all of them, or `per_clip` drawn from the clip's seed): uint8
    frames [N, S, H, W, 3], their labels and their dense object maps."""
    world = world_config(cfg.height, cfg.width, cfg.num_frames)
    frames, labels, maps = [], [], []
    for seed in tqdm(seeds, desc=desc):
        spec = sample_clip(seed, world)
        video = render_spec(spec)
        chosen = windows(spec.attributes)
        if per_clip is not None and per_clip < len(chosen):
            pick = np.random.default_rng(seed).choice(len(chosen), per_clip, replace=False)
            chosen = [chosen[i] for i in sorted(pick)]
        for start, length in chosen:
            frames.append(window_frames(video, start, length))
            labels.append(window_labels(spec.attributes, start, length))
            maps.append(dense_labels(spec, start, length))
    stacked = {k: torch.tensor([lab[k] for lab in labels]) for k in ATTRIBUTES}
    return torch.from_numpy(np.stack(frames)), stacked, {k: torch.from_numpy(np.stack([m[k] for m in maps]))
                                                         for k in SETS}


def soften(x: torch.Tensor, g: torch.Generator, max_blur: float, noise: float) -> torch.Tensor:
    """Per-sample Gaussian blur of random strength plus Gaussian noise, on [B, 3, S, H, W]."""
    b = x.shape[0]
    sigma = torch.rand(b, generator=g) * max_blur + 1e-3
    r = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # [B, 5]
    c = x[0].numel() // (x.shape[-1] * x.shape[-2])  # channels × frames, blurred alike
    kh = k.repeat_interleave(c, 0)[:, None, :, None]  # one separable 5-tap kernel per (sample, channel)
    kw = k.repeat_interleave(c, 0)[:, None, None, :]
    y = x.reshape(1, b * c, *x.shape[-2:])
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kh, groups=b * c)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kw, groups=b * c)
    y = y.reshape(x.shape)
    return y + noise * torch.randn(y.shape, generator=g)


class EvalnetStage(Stage):
    name = "evalnet"
    Config = EvalnetConfig

    def __init__(self, cfg: EvalnetConfig, run: Run) -> None:
        super().__init__(cfg, run)
        torch.manual_seed(cfg.seed)
        self.net = AttributeNet(width=cfg.channels, blocks=cfg.blocks).to(run.device).train()
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        seeds = [train_seed(CLIP_SEED0 + i) for i in range(cfg.clips)]
        self.frames, self.labels, self.maps = render_windows(seeds, cfg, "rendering training clips",
                                                             cfg.windows_per_clip)

    def modules(self) -> dict[str, nn.Module]:
        return {"evalnet": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"evalnet": self.opt}

    def train_step(self, step: int, g: torch.Generator) -> dict[str, float]:
        set_lr(self.opt, [self.cfg.lr], step, self.cfg.steps, decay_fraction=1.0)
        idx = torch.randint(0, len(self.frames), (self.cfg.batch_size,), generator=g)
        x = soften(to_input(self.frames[idx]), g, self.cfg.max_blur, self.cfg.noise).to(self.run.device)
        labels = {k: v[idx].to(self.run.device) for k, v in self.labels.items()}
        out = self.net(x)
        loss = attribute_loss(out, labels, {k: v[idx].to(self.run.device) for k, v in self.maps.items()})
        optimizer_step(loss, self.opt, self.run)
        pred = predictions(out.logits)
        acc = float(np.mean([hit.mean().item() for hit in exact_match(pred, labels).values()]))
        return {"loss": loss.item(), "accuracy": acc}

    @torch.no_grad()
    def heldout_accuracy(self) -> dict[str, float]:
        """Per-attribute window accuracy on held-out clips (printed at export, for the record)."""
        frames, labels, _ = render_windows([heldout_seed(i) for i in range(self.cfg.heldout_clips)], self.cfg,
                                        "rendering held-out clips")
        self.net.eval()
        correct = {k: [] for k in ATTRIBUTES}
        for s in range(0, len(frames), 64):
            pred = predictions(self.net(to_input(frames[s : s + 64]).to(self.run.device)).logits)
            for k, hit in exact_match(pred, {k: v[s : s + 64] for k, v in labels.items()}).items():
                correct[k] += hit.tolist()
        self.net.train()
        return {k: float(np.mean(v)) for k, v in correct.items()}

    def export(self, folder: Path) -> None:
        self.net.eval()
        self.net.save(folder)
        accuracy = self.heldout_accuracy()
        (folder / "heldout_accuracy.json").write_text(json.dumps(accuracy, indent=2))
        print("held-out window accuracy:", {k: round(v, 3) for k, v in accuracy.items()})
        self.net.train()
