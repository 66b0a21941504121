"""Training data from the procedural world: pixel clips, and a cache of their VAE latents."""

from __future__ import annotations

import multiprocessing
import os
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from tqdm import tqdm

from ..vae import encode, to_video_tensor
from ..world import (
    COLORS,
    MOTIONS,
    SHAPES,
    ClipSpec,
    WorldConfig,
    object_map,
    render_clip,
    render_spec,
    sample_clip,
    train_seed,
)

# What `attribute_cells` says of each latent cell: per attribute, class 0 = no object there and
# 1 + i = value i.  The teacher's attribute readout predicts these (`TeacherConfig.attribute_weight`).
CELL_ATTRIBUTES: dict[str, tuple[str, ...]] = {"color": tuple(COLORS), "shape": SHAPES, "motion": MOTIONS}


def world_config(height: int, width: int, num_frames: int, speed_frames: int | None = None) -> WorldConfig:
    return WorldConfig(height=height, width=width, num_frames=num_frames, speed_frames=speed_frames)


def latent_cache_path(out_dir: str | Path, vae_id: str, clips: int, world: WorldConfig, name: str = "") -> Path:
    """Where a chain keeps the latents of `clips` training clips of `world` (`name`d unless it is
    the full world), keyed by the VAE's hash (a retrained VAE gets a fresh cache), so that
    stages on the same clips share one."""
    speed = f"_speed{world.speed_frames}" if world.speed_frames else ""
    tag = f"_{name}" if name else ""
    # "_attributes": caches from before `LatentCache.attributes` existed are rebuilt, not misread.
    return Path(out_dir) / "latents" / f"{vae_id}_{clips}_{world.num_frames}{speed}{tag}_attributes.pt"


def random_indices(g: torch.Generator, n: int, high: int) -> list[int]:
    return torch.randint(0, high, (n,), generator=g).tolist()


def pixel_batch(g: torch.Generator, batch: int, cfg: WorldConfig) -> torch.Tensor:
    """A batch of freshly rendered training clips, chosen by `g`."""
    return to_video_tensor([render_clip(train_seed(i), cfg).frames for i in random_indices(g, batch, 10**8)])


def object_cells(spec: ClipSpec, cell: int, temporal: int = 4) -> np.ndarray:
    """Which latent cells show an object, bool `[F, h, w]`: a cell of cell×cell pixels counts
    where `world.object_map` finds an object in any of the pixel frames its latent frame
    encodes (the Wan VAE keeps frame 0 alone, then packs `temporal` frames per latent frame)."""
    frames = spec.cfg.num_frames
    groups = [[0]] + [range(f, min(f + temporal, frames)) for f in range(1, frames, temporal)]
    return np.stack([np.any([object_map(spec, f, cell) >= 0 for f in group], axis=0) for group in groups])


def attribute_cells(spec: ClipSpec, cell: int, temporal: int = 4) -> np.ndarray:
    """What each latent cell shows, uint8 `[len(CELL_ATTRIBUTES), F, h, w]`: the colour, shape
    and motion class (`CELL_ATTRIBUTES`) of the object `world.object_map` finds there at the
    middle pixel frame its latent frame encodes, 0 where none.  A turning object's motion is
    its new one from the turn on; an entering object's, its direction of travel."""
    frames = spec.cfg.num_frames
    middles = [0] + [min(f + temporal // 2, frames - 1) for f in range(1, frames, temporal)]
    out = []
    for frame in middles:
        sc = next(s for s in spec.scenes if s.start <= frame < s.end)
        # Row i: the classes of the scene's object i; the last row (index -1, no object) stays 0.
        lut = np.zeros((len(sc.objects) + 1, len(CELL_ATTRIBUTES)), dtype=np.uint8)
        for i, o in enumerate(sc.objects):
            turned = o.turn_at is not None and frame - sc.start >= o.turn_at
            values = (o.color, o.shape, o.turn_to if turned else o.motion)
            lut[i] = [1 + names.index(v) for names, v in zip(CELL_ATTRIBUTES.values(), values)]
        out.append(lut[object_map(spec, frame, cell)])
    return np.stack(out).transpose(3, 0, 1, 2)


def _render(seed: int, cfg: WorldConfig, cell: int, temporal: int) -> tuple[np.ndarray, str, np.ndarray, np.ndarray]:
    spec = sample_clip(seed, cfg)
    return render_spec(spec), spec.caption, object_cells(spec, cell, temporal), attribute_cells(spec, cell, temporal)


class LatentCache:
    """VAE latents, captions, object cells and attribute cells of `n` training clips, computed
    once and kept on disk.

    The teacher sees each clip many times; encoding 81 frames costs more than a teacher
    step, so it is done once.
    """

    def __init__(self, latents: torch.Tensor, captions: list[str], objects: torch.Tensor,
                 attributes: torch.Tensor) -> None:
        self.latents = latents  # float16 [N, C, F, h, w]
        self.captions = captions
        self.objects = objects  # bool [N, 1, F, h, w]: `object_cells` of each clip
        self.attributes = attributes  # uint8 [N, len(CELL_ATTRIBUTES), F, h, w]: `attribute_cells`

    def __len__(self) -> int:
        return len(self.captions)

    def to(self, device: torch.device) -> LatentCache:
        """The latents on `device`: on a GPU a batch is then gathered there, not copied over each step."""
        return LatentCache(self.latents.to(device), self.captions, self.objects.to(device), self.attributes.to(device))

    @classmethod
    def concat(cls, caches: list[LatentCache]) -> LatentCache:
        """One cache of the clips of several (of equal clip length)."""
        return cls(torch.cat([c.latents for c in caches]), [t for c in caches for t in c.captions],
                   torch.cat([c.objects for c in caches]), torch.cat([c.attributes for c in caches]))

    def batch(self, g: torch.Generator, size: int) -> tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor]:
        """Latents, captions, object cells and attribute cells (as int64 class indices) of
        `size` clips chosen by `g`."""
        idx = random_indices(g, size, len(self))
        captions = [self.captions[i] for i in idx]
        return self.latents[idx].float(), captions, self.objects[idx], self.attributes[idx].long()

    @classmethod
    def load(cls, path: Path) -> LatentCache:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(state["latents"], state["captions"], state["objects"], state["attributes"])

    @staticmethod
    def build(path: Path, vae: AutoencoderKLWan, n: int, cfg: WorldConfig, workers: int | None = None) -> None:
        """Render and encode training clips 0..n-1 into `path` (written atomically).

        Clips render in `workers` processes (default: every core) while the VAE encodes the
        previous batch where it lives; a GPU takes bigger batches.  The result does not depend
        on either: each clip is a function of its seed.
        """
        batch = 256 if vae.device.type == "cuda" else 8
        latents, captions, objects, attributes = [], [], [], []
        # spawn, not fork: the parent may hold CUDA and torch's thread pools.
        pool = multiprocessing.get_context("spawn").Pool(workers or os.cpu_count() or 1)
        with pool, torch.no_grad():
            render = partial(_render, cfg=cfg, cell=vae.config.scale_factor_spatial,
                             temporal=vae.config.scale_factor_temporal)
            clips = pool.imap(render, map(train_seed, range(n)), chunksize=16)
            for start in tqdm(range(0, n, batch), desc="encoding world clips"):
                frames, caps, cells, attrs = zip(*islice(clips, min(batch, n - start)))
                latents.append(encode(vae, to_video_tensor(list(frames))).half().cpu())
                captions += caps
                objects += cells
                attributes += attrs
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own: runs side by side (scripts/teachers_side_by_side.sh) may build the
        # same cache at once, and each must replace the file whole.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save({"latents": torch.cat(latents), "captions": captions,
                    "objects": torch.from_numpy(np.stack(objects))[:, None],
                    "attributes": torch.from_numpy(np.stack(attributes))}, tmp)
        tmp.replace(path)
