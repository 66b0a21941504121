"""The attribute classifier that `dsa_core.eval` judges videos with.

A small video network that looks at one window (a few evenly spaced frames inside one scene)
and says what the world's captions talk about: the background's kind and main colour, how
many objects there are (0 while a scene waits for an entering one), and which colours,
shapes and motions they have.  It is trained on world clips by `python -m dsa_core.train
evalnet`; its per-frame and per-window features also feed the temporal-consistency and
Fréchet metrics.

The labels of a window come from the world's attribute dictionary (`window_labels`), so a
caption's attributes are the ground truth for any video generated from that caption.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import EVAL, EvalConfig
from .weights import default_weights_dir, verify_manifest
from .world import BACKGROUNDS, COLORS, MOTIONS, SHAPES, scene_at

# What the classifier predicts.  Single-label heads pick one value; set heads say, per value,
# whether some object in the window has it (objects are unordered).
SINGLE: dict[str, tuple] = {"background": BACKGROUNDS, "bg_color": tuple(COLORS), "count": (0, 1, 2, 3)}
SETS: dict[str, tuple] = {"colors": tuple(COLORS), "shapes": SHAPES, "motions": MOTIONS}
ATTRIBUTES = (*SINGLE, *SETS)


def windows(attributes: dict, cfg: EvalConfig = EVAL) -> list[tuple[int, int]]:
    """(start, length) of the windows a clip is judged on: inside each scene, evenly spread."""
    out = []
    for sc in attributes["scenes"]:
        n = sc["end"] - sc["start"]
        length = min(cfg.window_frames, n)
        count = 1 + max(0, -(-(n - length) // cfg.window_stride))
        starts = np.linspace(sc["start"], sc["end"] - length, count).round().astype(int)
        out += [(int(s), length) for s in starts]
    return out


def window_frames(video: np.ndarray, start: int, length: int, cfg: EvalConfig = EVAL) -> np.ndarray:
    """The `window_samples` frames [S, H, W, 3] the classifier sees of one window."""
    idx = np.linspace(start, start + length - 1, cfg.window_samples).round().astype(int)
    return video[idx]


def window_labels(attributes: dict, start: int, length: int) -> dict[str, int | list[int]]:
    """What is true of a window, read at its middle frame: an entering object counts once it
    has entered, a turning object moves in its new direction once it has turned."""
    mid = start + length // 2
    sc = scene_at(attributes, start)
    objects = [o for o in sc["objects"] if o["enter"] is None or o["enter"]["frame"] <= mid]
    bg = sc["background"]

    def motion(o: dict) -> str:
        return o["turn"]["to"] if o["turn"] is not None and o["turn"]["frame"] <= mid else o["motion"]

    present = {"colors": {o["color"] for o in objects}, "shapes": {o["shape"] for o in objects},
               "motions": {motion(o) for o in objects}}
    return {
        "background": BACKGROUNDS.index(bg["kind"]),
        "bg_color": SINGLE["bg_color"].index(bg["color"]),
        "count": len(objects),
        **{k: [int(v in present[k]) for v in values] for k, values in SETS.items()},
    }


def to_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 windows [..., S, H, W, 3] → float [..., 3, S, H, W] in [-1, 1]."""
    x = torch.as_tensor(frames)
    return (x.movedim(-1, -4).float() / 127.5) - 1.0


class AttributeNet(nn.Module):
    """Per-frame 2-D convolutions, then 3-D convolutions across the frames, then one linear
    head per attribute.  About 60 MMAC per window at 64×64: it trains on this CPU in minutes."""

    def __init__(self, width: int = 64, feature_dim: int = 128) -> None:
        super().__init__()
        w = width

        # 4×4 patches first: the smallest object is 13 px across, so little is lost, and the
        # network costs a quarter of what stride-2 convolutions from the pixels would.
        self.frame = nn.Sequential(
            nn.Conv2d(3, w, 4, 4), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),
        )
        self.temporal = nn.Sequential(
            nn.Conv3d(w, 2 * w, 3, (1, 2, 2), 1), nn.BatchNorm3d(2 * w), nn.ReLU(),
            nn.Conv3d(2 * w, feature_dim, 3, 2, 1), nn.BatchNorm3d(feature_dim), nn.ReLU(),
        )
        sizes = {**{k: len(v) for k, v in SINGLE.items()}, **{k: len(v) for k, v in SETS.items()}}
        self.heads = nn.ModuleDict({k: nn.Linear(feature_dim, n) for k, n in sizes.items()})
        self.config = {"width": width, "feature_dim": feature_dim}

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, H, W] → per-frame feature maps [B, C, S, h, w]."""
        b, c, s, h, w = x.shape
        f = self.frame(x.transpose(1, 2).reshape(b * s, c, h, w))
        return f.reshape(b, s, *f.shape[1:]).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Logits per attribute, the window feature [B, D] and per-frame features [B, S, C]."""
        frames = self.frame_features(x)
        feature = self.temporal(frames).mean(dim=(2, 3, 4))
        return {k: head(feature) for k, head in self.heads.items()}, feature, frames.mean(dim=(3, 4)).transpose(1, 2)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "evalnet.safetensors"))
        (folder / "evalnet.json").write_text(json.dumps(self.config))

    @classmethod
    def load(cls, folder: Path) -> AttributeNet:
        """From a stage's export folder."""
        folder = Path(folder)
        net = cls(**json.loads((folder / "evalnet.json").read_text()))
        net.load_state_dict(load_file(str(folder / "evalnet.safetensors")))
        return net.eval().requires_grad_(False)

    @classmethod
    def shipped(cls, weights: Path | None = None) -> AttributeNet:
        """The classifier shipped in `weights/tiny/evalnet`, its files checked against the MANIFEST."""
        weights = Path(weights) if weights is not None else default_weights_dir("tiny")
        verify_manifest(weights)
        if not (weights / "evalnet" / "evalnet.safetensors").is_file():
            raise FileNotFoundError(f"{weights / 'evalnet'} is missing: run `python -m dsa_core.train evalnet` "
                                    "and `python -m dsa_core.train export`")
        return cls.load(weights / "evalnet")


def attribute_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy for single-label heads, binary cross-entropy for set heads, summed."""
    f = nn.functional
    loss = sum(f.cross_entropy(logits[k], labels[k]) for k in SINGLE)
    return loss + sum(f.binary_cross_entropy_with_logits(logits[k], labels[k].float()) for k in SETS)


def exact_match(pred: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per attribute and window: 1.0 where the prediction is exactly right (every member of a set)."""
    return {k: (pred[k].cpu() == labels[k].cpu()).reshape(len(labels[k]), -1).all(1).float() for k in ATTRIBUTES}


def predictions(logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Argmax for single-label heads, a 0/1 vector (threshold ½) for set heads."""
    out = {k: logits[k].argmax(-1) for k in SINGLE}
    return out | {k: (logits[k] > 0).long() for k in SETS}
