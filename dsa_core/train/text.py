"""Stage `text`: the small umT5 encoder, pretrained to read world captions into attribute slots.

Trained from scratch jointly with the teacher, the encoder learned which colour word names
the background and which names an object far slower than the teacher learned anything
else: after 5000 teacher steps samples still showed the data's average colours.  In a probe
on one-object scenes, a teacher with this encoder put the caption's background colour on
screen after 600 steps; one with a random encoder, at the same 600 steps, took an object's
colour for the background or none at all.  So the encoder first learns, from captions
alone (no pixels, hence cheap), to answer "what is scene s's background colour, object k's
shape, ..." through a small attention readout: the tokens must come to carry which scene
and which object each word belongs to, which is what the teacher's cross-attention needs.
The readout is dropped; the teacher stage goes on training the encoder with its flow loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..text import make_tiny_text_encoder
from ..world import WorldConfig, heldout_seed, sample_clip, train_seed
from ..world.vocab import BACKGROUNDS, COLOR_NAMES, MOTIONS, SHAPES, SIZES
from .common import Run, Stage, StageConfig, optimizer_step, set_lr
from .data import world_config

# The slots a caption fills: per scene, the background's fields, then per object (in the
# caption's order: objects present from the start, then the one entering) its fields.
# Each slot has one class per value and a last class for "not in this caption".
BACKGROUND_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kind", BACKGROUNDS), ("color", COLOR_NAMES), ("color2", COLOR_NAMES)
)
OBJECT_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("color", COLOR_NAMES), ("shape", SHAPES), ("size", SIZES), ("motion", MOTIONS)
)
MAX_SCENES, MAX_OBJECTS = 2, 3


def slot_classes() -> list[int]:
    """Number of classes of each slot, in `caption_slots` order."""
    scene = [len(v) + 1 for _, v in BACKGROUND_FIELDS] + [len(v) + 1 for _, v in OBJECT_FIELDS] * MAX_OBJECTS
    return scene * MAX_SCENES


def caption_slots(attributes: dict[str, Any]) -> list[int]:
    """The class of every slot for a clip's attributes (the world's captions mention them all)."""
    out = []
    for s in range(MAX_SCENES):
        scene = attributes["scenes"][s] if s < len(attributes["scenes"]) else None
        background = scene["background"] if scene else {}
        objects = []
        if scene:  # captions name the objects present from the start first, then the entering one
            objects = sorted(scene["objects"], key=lambda o: o["enter"] is not None)
        for key, values in BACKGROUND_FIELDS:
            v = background.get(key)
            out.append(values.index(v) if v in values else len(values))
        for i in range(MAX_OBJECTS):
            for key, values in OBJECT_FIELDS:
                v = objects[i][key] if i < len(objects) else None
                out.append(values.index(v) if v in values else len(values))
    return out


class SlotReadout(nn.Module):
    """One learned query per slot attends over the encoder's token states; a linear layer per
    slot classifies what it read.  Deliberately weak, so the knowledge sits in the encoder."""

    def __init__(self, dim: int, classes: list[int]) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(len(classes), dim) / dim**0.5)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.heads = nn.ModuleList(nn.Linear(dim, n) for n in classes)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """`states [B, L, dim]`, `mask [B, L]` (True on real tokens) → one `[B, classes]` per slot."""
        scores = torch.einsum("sd,bld->bsl", self.queries, self.key(states)) / states.shape[-1] ** 0.5
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        pooled = torch.einsum("bsl,bld->bsd", weights, self.value(states))
        return [head(pooled[:, i]) for i, head in enumerate(self.heads)]


@dataclass
class TextConfig(StageConfig):
    # On the full world the slot accuracy sat near 80% for 1000 steps, then jumped to 99% by
    # step 1500 (batch 64): the margin past that is cheap, ~0.2 s a step.
    steps: int = 2500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    decay_fraction: float = 0.2
    # Captions are sampled, not rendered: many cost little.  The tokenizer is trained on them.
    captions: int = 20000
    heldout_captions: int = 1000

    def validate(self) -> None:
        super().validate()
        for name in ("captions", "heldout_captions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not 0 <= self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction={self.decay_fraction} must be in [0, 1]")


def _caption_set(seeds: list[int], world: WorldConfig) -> tuple[list[str], torch.Tensor]:
    specs = [sample_clip(s, world) for s in seeds]
    return [s.caption for s in specs], torch.tensor([caption_slots(s.attributes) for s in specs])


class TextStage(Stage):
    name = "text"
    Config = TextConfig

    def __init__(self, cfg: TextConfig, run: Run) -> None:
        super().__init__(cfg, run)
        torch.manual_seed(cfg.seed)
        # The teacher's clips: the same length decides whether events happen at all.
        self.world = world_config(cfg.height, cfg.width, cfg.num_frames)
        self.captions, self.slots = _caption_set([train_seed(i) for i in range(cfg.captions)], self.world)
        p = self.preset
        self.text = make_tiny_text_encoder(p.text_encoder, p.model.text_len, self.captions).to(run.device).train()
        self.readout = SlotReadout(self.text.model.config.d_model, slot_classes()).to(run.device)
        self.opt = torch.optim.AdamW(
            [*self.text.parameters(), *self.readout.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay
        )

    def modules(self) -> dict[str, nn.Module]:
        return {"text": self.text, "readout": self.readout}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.opt}

    def _logits(self, captions: list[str]) -> list[torch.Tensor]:
        states = self.text.encode(captions)
        # `encode` zeroes the states past each prompt; its </s> keeps even a short prompt non-empty.
        return self.readout(states, states.abs().sum(-1) > 0)

    def train_step(self, step: int, g: torch.Generator) -> dict[str, float]:
        set_lr(self.opt, [self.cfg.lr], step, self.cfg.steps, self.cfg.decay_fraction)
        idx = torch.randint(0, len(self.captions), (self.cfg.batch_size,), generator=g)
        target = self.slots[idx].to(self.run.device)
        logits = self._logits([self.captions[i] for i in idx.tolist()])
        loss = torch.stack([F.cross_entropy(lg, target[:, j]) for j, lg in enumerate(logits)]).mean()
        optimizer_step(loss, self.opt, self.run)
        acc = torch.stack([(lg.argmax(-1) == target[:, j]).float().mean() for j, lg in enumerate(logits)]).mean()
        return {"slots": loss.item(), "slot_accuracy": acc.item()}

    @torch.no_grad()
    def heldout_accuracy(self) -> float:
        """Mean slot accuracy on held-out captions: did the encoder learn the grammar, not the set?"""
        captions, slots = _caption_set([heldout_seed(i) for i in range(self.cfg.heldout_captions)], self.world)
        self.text.eval()
        hits = []
        for start in range(0, len(captions), 256):
            logits = self._logits(captions[start:start + 256])
            target = slots[start:start + 256].to(self.run.device)
            hits.append(torch.stack([lg.argmax(-1) == target[:, j] for j, lg in enumerate(logits)], 1).float())
        self.text.train()
        return torch.cat(hits).mean().item()

    def export(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.text.save_pretrained(folder)
        report = {"heldout_slot_accuracy": self.heldout_accuracy(), "heldout_captions": self.cfg.heldout_captions}
        (folder / "slot_accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
