"""Stage `teacher`: the bidirectional flow-matching teacher, trained jointly with the umT5
encoder that the `text` stage pretrained.

The teacher is the same Wan DiT as the student run bidirectionally.  Captions are dropped
(replaced by the empty prompt) now and then so the teacher also learns the unconditional
flow that classifier-free guidance needs.  It trains on short clips first, then on whole ones
(see `TeacherConfig`).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from ..config import Preset
from ..media import contact_sheet
from ..model import CausalWanModel, ModelOutput, TextContext
from ..scheduler import FlowMatchScheduler
from ..text import TextEncoder
from ..vae import encode, latents_to_vae, load_vae, to_uint8_frames, to_video_tensor, use_fast_cpu_kernels
from ..weights import MANIFEST, sha256, verify_manifest
from ..world import WorldConfig, heldout_seed, render_clip, render_spec, sample_clip
from .common import Run, Stage, StageConfig, device_generator, ema_update, optimizer_step, set_lr, video_frames
from .data import CELL_ATTRIBUTES, LatentCache, latent_cache_path, object_cells, world_config


@dataclass
class TeacherConfig(StageConfig):
    # A curriculum, as in the `vae` stage.  Trained on 21-latent-frame clips from the start,
    # the teacher never drew objects: after 96k clip views its samples were backgrounds in the
    # prompt's colour, though it restored objects in place from clips noised up to σ = 0.85.
    # The 3-latent-frame (9-frame) clips cost a ninth as much per view; after about 130k views
    # the teacher begins committing to objects from pure noise, in the prompt's colours.  The
    # long-clip phase then teaches it 81-frame motion, events and the later frames' positions.
    steps: int = 3700
    long_from_step: int = 3300
    short_latent_frames: int = 3
    # 211k 9-frame and 26k whole-clip views, each clip seen about 15 and 5 times: about the
    # views of the earlier recipe (batch 16, lr 2e-4, 12000 + 1500 steps) in a quarter of its
    # updates at a 5× rate, which drew more on both worlds (docs/experiments.md: "A second GPU run").
    short_dataset_clips: int = 14400
    dataset_clips: int = 4800
    batch_size: int = 64
    lr: float = 1e-3
    text_lr: float = 1e-3
    # Linear warmup over the run's first steps (0: none, the shipped recipe).  For a
    # large batch at a large rate, as on a GPU: the one-object GPU teacher that drew motion
    # (docs/experiments.md: "Nine times the clip views") warmed up over 200 steps at batch 256, 2e-3.
    warmup_steps: int = 0
    # Each phase ends on its own cosine tail (see `set_lr`): the short one over its last 20%,
    # which brings the loss and the samples' blur down further than the constant rate; the
    # long one over all of it, since it starts from a trained teacher.
    short_decay_fraction: float = 0.2
    decay_fraction: float = 1.0
    weight_decay: float = 0.01
    ema_decay: float = 0.995
    caption_dropout: float = 0.1
    # Weight of the flow loss on the latent cells objects cover (`data.object_cells`: a fifth
    # of a 9-frame clip's cells, a seventh of a whole clip's), relative to the rest.  Not in
    # the recipe: 4 and 10 made 9-frame teachers draw objects from noise more often, but 600
    # whole-clip steps at 4 traded the full world's adherence for it (docs/experiments.md).
    # One weight per phase: the short phase is where the teacher first commits to objects
    # from noise, so it can be weighted there alone.
    short_object_weight: float = 1.0
    object_weight: float = 1.0
    # The short clips' motion speeds: 81 keeps the whole clips' speeds
    # (`WorldConfig.speed_frames`), so a 9-frame clip shows a slow piece of the motion; 0
    # rescales each world path to the clip's own length, so a 9-frame clip runs a whole 81-frame
    # path (objects smeared across a latent frame).  81 scored higher on both worlds' held-out
    # prompts (one-object 48.6% against 44.4%, full world 32.3% against 31.6%: docs/experiments.md).
    short_speed_frames: int = 81
    # Weight of the attribute readout's loss (0: off).  A linear readout of the first
    # confidence tap's tokens (block 3 of 8; the paper's 13 of 30) predicts, per latent cell,
    # the colour, shape and motion of the object there (`data.attribute_cells`), at every noise
    # level; it is dropped at export.  Near pure noise only the caption can tell them, so the
    # loss asks the denoiser to read the shape and motion words and bind them to the place it
    # is drawing an object, which the flow loss barely asks (docs/experiments.md: "Which caption
    # words the teacher reads").  Ours, after REPA's alignment of a DiT's mid-depth tokens to
    # a representation (Yu et al. 2024), with the world's own labels as that representation:
    # on one-object 9-frame clips it drew the object in 76% of windows instead of 36%, its
    # shape in 16% instead of 5% and its motion in 22% instead of 3%, at the same compute
    # (docs/training.md: "An attribute readout").
    attribute_weight: float = 0.5
    # torch.compile the teacher's training forward: whole steps (text encoder, AdamW and EMAs
    # included) 1.25× faster on 9-frame clips and 1.15× on 81-frame ones on 2 CPU cores, for
    # about 100 s of compiling per phase and per resume.  Numerics differ from eager in the
    # last bits only; a run may switch it when resumed.
    compile: bool = True

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout={self.caption_dropout} must be in [0, 1)")
        for name in ("decay_fraction", "short_decay_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1]")
        for name in ("short_object_weight", "object_weight"):
            if not (getattr(self, name) >= 1 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name}={getattr(self, name)} must be a number >= 1")
        if not (self.attribute_weight >= 0 and math.isfinite(self.attribute_weight)):
            raise ValueError(f"attribute_weight={self.attribute_weight} must be a number >= 0 (0: off)")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay} must be in (0, 1)")
        if self.short_speed_frames != 0 and self.short_speed_frames < 2:
            raise ValueError(f"short_speed_frames={self.short_speed_frames} must be 0 (the clip's own length) or >= 2")
        if self.long_from_step < 0:
            raise ValueError(f"long_from_step={self.long_from_step} must be >= 0")
        first = self.long_from_step or self.steps
        if not 0 <= self.warmup_steps < first:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be in [0, {first}) (the first phase's steps)")
        self.check_latent_frames("short_latent_frames")
        for name in ("dataset_clips", "short_dataset_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")


class AttributeReadout(nn.Module):
    """Per latent cell, logits of each of `CELL_ATTRIBUTES` (class 0: no object) from the
    tokens of one block: one linear map per token to all its patch's cells, as the DiT's own
    head maps a token to its patch."""

    def __init__(self, dim: int, patch_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.classes = [1 + len(values) for values in CELL_ATTRIBUTES.values()]
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, math.prod(patch_size) * sum(self.classes)))

    def forward(self, tokens: torch.Tensor, frames: int, height: int, width: int) -> list[torch.Tensor]:
        """`tokens [B, F·h'·w', dim]` of a latent `[.., frames, height, width]` → one
        `[B, classes, frames, height, width]` per attribute."""
        pt, ph, pw = self.patch_size
        b, f, h, w = tokens.shape[0], frames // pt, height // ph, width // pw
        y = self.proj(tokens).view(b, f, h, w, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return list(y.reshape(b, -1, frames, height, width).split(self.classes, dim=1))


def attribute_loss(readout: AttributeReadout, tokens: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of `readout` against `attributes [B, len(CELL_ATTRIBUTES), F, h, w]`
    (`data.attribute_cells`), summed over the attributes, averaged over the cells."""
    logits = readout(tokens, *attributes.shape[2:])
    return sum(F.cross_entropy(lg, attributes[:, k]) for k, lg in enumerate(logits))


def sample_sigmas(g: torch.Generator, n: int, scheduler: FlowMatchScheduler, lo: float = 0.0,
                  hi: float = 1.0) -> torch.Tensor:
    """Noise levels uniform over the shifted grid's index, as the samplers visit it."""
    u = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    return scheduler.shift_sigma(u).float()


def add_random_noise(x0: torch.Tensor, g: torch.Generator, scheduler: FlowMatchScheduler, lo: float = 0.0,
                     hi: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x0 noised to one random level per sample: (x_t, per-frame t, σ [B,1,1,1,1], the noise)."""
    b, _, frames = x0.shape[:3]
    sigma = sample_sigmas(g, b, scheduler, lo, hi).to(x0.device)
    noise = torch.randn(x0.shape, generator=device_generator(g, x0.device), device=x0.device)
    s = sigma.view(b, 1, 1, 1, 1)
    t = (sigma * scheduler.num_train_timesteps)[:, None].expand(b, frames)
    return scheduler.add_noise(x0, noise, s), t, s, noise


def flow_errors(model: torch.nn.Module, text: TextContext, x0: torch.Tensor, g: torch.Generator,
                scheduler: FlowMatchScheduler,
                causal: bool = False, return_taps: bool = False) -> tuple[torch.Tensor, ModelOutput]:
    """Plain flow matching's squared errors: v = ε − x0 predicted from x_t at one σ per sample;
    and the model's output, with its tapped blocks' tokens when `return_taps`."""
    x_t, t, _, noise = add_random_noise(x0, g, scheduler)
    out = model(x_t, t, text, causal=causal, return_taps=return_taps)
    return (out.flow - scheduler.flow_target(x0, noise)) ** 2, out


def weighted_mean(err: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of `err`, each element weighed by `weight` (broadcast to its shape)."""
    if weight is None:
        return err.mean()
    weight = weight.expand_as(err)
    return (err * weight).sum() / weight.sum()


def flow_loss(model: torch.nn.Module, text: TextContext, x0: torch.Tensor, g: torch.Generator,
              scheduler: FlowMatchScheduler, causal: bool = False, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The flow-matching loss: `flow_errors`' `weighted_mean`."""
    return weighted_mean(flow_errors(model, text, x0, g, scheduler, causal)[0], weight)


def guided_flow(teacher: CausalWanModel, x_t: torch.Tensor, t: torch.Tensor, cond: TextContext, uncond: TextContext,
                cfg_scale: float) -> torch.Tensor:
    """Classifier-free guidance on the bidirectional teacher: v_u + s·(v_c − v_u)."""
    v_c = teacher(x_t, t, cond, causal=False).flow
    v_u = teacher(x_t, t, uncond, causal=False).flow
    return v_u + cfg_scale * (v_c - v_u)


def chunk_distance(x0: torch.Tensor, x0_real: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """DSA's teacher distance d per chunk: mean squared gap to the teacher's x0, `[B, chunks]`."""
    return (x0 - x0_real).pow(2).unflatten(2, (-1, chunk_frames)).mean(dim=(1, 3, 4, 5))


def teacher_distance(video: torch.Tensor, teacher: CausalWanModel, cond: TextContext,
                     uncond: TextContext, cfg_scale: float,
                     scheduler: FlowMatchScheduler, raw_levels: Sequence[float], chunk_frames: int,
                     generator: torch.Generator) -> torch.Tensor:
    """d per chunk `[B, chunks]` at fixed noise levels, averaged: the video re-noised to each
    level (`raw_levels`, warped onto the shifted grid) and compared with the teacher's guided x0.
    Fixed levels, not one random σ per sample as DMD draws: d grows ~100× from σ 0.05 to 0.9,
    which would bury the gap between a chunk denoised once and four times under σ's noise."""
    total = 0
    for raw in raw_levels:
        sigma = float(scheduler.shift_sigma(raw / scheduler.num_train_timesteps))
        noise = torch.randn(video.shape, generator=generator, device=generator.device).to(video.device)
        x_t = scheduler.add_noise(video, noise, sigma)
        t = video.new_full(video.shape[:1] + video.shape[2:3], sigma * scheduler.num_train_timesteps)
        x0_real = scheduler.to_x0(x_t, guided_flow(teacher, x_t, t, cond, uncond, cfg_scale), sigma)
        total = total + chunk_distance(video, x0_real, chunk_frames)
    return total / len(raw_levels)


def grid_sigmas(scheduler: FlowMatchScheduler, steps: int) -> list[float]:
    """The σ of `teacher_sample`'s grid: `steps` uniform raw steps, shifted, then 0."""
    n = scheduler.num_train_timesteps
    return [scheduler.shift_sigma(n * (1 - i / steps) / n) for i in range(steps + 1)]


def grid_start(scheduler: FlowMatchScheduler, steps: int, start_sigma: float) -> float:
    """The σ a sample started at `start_sigma` really starts from: the grid's first at or below it."""
    return next(s for s in grid_sigmas(scheduler, steps) if s <= start_sigma + 1e-9)


@torch.no_grad()
def teacher_sample(
    teacher: CausalWanModel,
    cond: TextContext,
    uncond: TextContext,
    noise: torch.Tensor,
    scheduler: FlowMatchScheduler,
    steps: int,
    cfg_scale: float,
    keep_raw: tuple[float, ...] = (),
    x0: torch.Tensor | None = None,
    start_sigma: float = 1.0,
) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    """Euler ODE sampling with classifier-free guidance on `steps` uniform raw steps.

    Returns the final x0 and the states x_t at the raw timesteps in `keep_raw` (which must
    lie on the grid), the inputs a causal student is regressed from (CausVid's ODE init).
    With `x0` and `start_sigma` < 1 it starts instead from `x0` noised to the grid's first σ
    at or below `start_sigma` (as SDEdit does): how much of a real clip the teacher keeps
    from that noise level on tells where it loses what it cannot draw from pure noise.
    """
    n = scheduler.num_train_timesteps
    raw = [n * (1 - i / steps) for i in range(steps + 1)]
    missing = [r for r in keep_raw if not any(abs(r - q) < 1e-6 for q in raw)]
    if missing:
        raise ValueError(f"raw timesteps {missing} are not on a {steps}-step grid")
    if not 0 < start_sigma <= 1:
        raise ValueError(f"start_sigma={start_sigma} must be in (0, 1]")
    if start_sigma < 1 and x0 is None:
        raise ValueError("start_sigma < 1 starts from a noised clip: pass its latents as x0")
    sigmas = grid_sigmas(scheduler, steps)
    b, _, frames = noise.shape[:3]
    start = next(i for i, s in enumerate(sigmas) if s <= start_sigma + 1e-9)
    x = noise if start == 0 else scheduler.add_noise(x0, noise, sigmas[start])
    kept = {}
    for i in range(start, steps):
        if any(abs(raw[i] - r) < 1e-6 for r in keep_raw):
            kept[round(raw[i], 6)] = x.clone()
        t = noise.new_full((b, frames), sigmas[i] * n)
        x = x + (sigmas[i + 1] - sigmas[i]) * guided_flow(teacher, x, t, cond, uncond, cfg_scale)
    return x, kept


# Noise levels of the object probe: where a sample commits to its objects (or loses them).
OBJECT_PROBE_SIGMAS = (0.5, 0.7, 0.85, 0.95)


def object_probe_clips(vae: AutoencoderKLWan, world: WorldConfig, clips: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Held-out clips as latents, the same clips rendered without their objects, and the mask
    `[B, 1, F, h, w]` of latent cells an object covers (`data.object_cells`, as the training
    caches mark them)."""
    specs = [sample_clip(heldout_seed(i), world) for i in range(clips)]
    empty = copy.deepcopy(specs)
    for spec in empty:
        for scene in spec.scenes:
            scene.objects = []
    x0 = encode(vae, to_video_tensor([render_spec(s) for s in specs]))
    x_empty = encode(vae, to_video_tensor([render_spec(s) for s in empty]))
    cells = [object_cells(s, vae.config.scale_factor_spatial, vae.config.scale_factor_temporal) for s in specs]
    mask = torch.from_numpy(np.stack(cells))[:, None].float().to(x0.device)
    return x0, x_empty, mask, [s.caption for s in specs]


@torch.no_grad()
def object_cell_errors(predict_x0: Callable[[torch.Tensor, float], torch.Tensor], x0: torch.Tensor,
                       x_empty: torch.Tensor, mask: torch.Tensor,
                       sigmas: tuple[float, ...] = OBJECT_PROBE_SIGMAS, seed: int = 0) -> dict:
    """Mean squared x0 error on the latent cells objects cover and on the rest, per σ.

    The flow loss cannot say whether a teacher learns objects: they cover about a tenth of
    the cells.  `no_objects` is the error of the clips rendered without their objects; an
    object-cell error near it at high σ means sampling from noise is pulled towards empty
    backgrounds (the third model's teacher: restores objects up to σ 0.5, loses them above 0.85).
    `predict_x0(x_t, sigma)` is the model under test."""
    def cells(err: torch.Tensor, m: torch.Tensor) -> float:
        return float((err.mean(1, keepdim=True) * m).sum() / m.sum().clamp_min(1.0))

    g = torch.Generator().manual_seed(seed)
    out = {"object_cell_share": float(mask.mean()), "no_objects": cells((x_empty - x0) ** 2, mask), "sigmas": {}}
    for sigma in sigmas:
        noise = torch.randn(x0.shape, generator=g).to(x0.device)
        err = (predict_x0(FlowMatchScheduler.add_noise(x0, noise, sigma), sigma) - x0) ** 2
        out["sigmas"][str(sigma)] = {"objects": cells(err, mask), "background": cells(err, 1 - mask)}
    return out


def vae_id(vae_dir: Path) -> str:
    """A short hash of the VAE's weights, naming the latent caches made with it."""
    return sha256(vae_dir / "diffusion_pytorch_model.safetensors")[:12]


def frozen_vae(folder: Path, preset: Preset, device: torch.device) -> AutoencoderKLWan:
    vae = load_vae(folder, preset, use_safetensors=True)
    return use_fast_cpu_kernels(vae).to(device).eval().requires_grad_(False)


def load_teacher(cfg: StageConfig, preset: Preset, device: torch.device | str) -> tuple[CausalWanModel, TextEncoder]:
    """The exported teacher and its text encoder, frozen."""
    folder = Stage.final_dir(cfg, "teacher")
    if not (folder / "teacher.safetensors").is_file():
        raise FileNotFoundError(f"{folder} has no teacher: run `python -m dsa_core.train teacher` first")
    return load_teacher_folder(folder, preset, device)


def teacher_folder_problem(folder: Path) -> str | None:
    """Why `folder` is not a teacher `load_teacher_folder` can load, or None."""
    missing = [n for n in ("teacher.safetensors", "text_encoder") if not (folder / n).exists()]
    if missing:
        return f"{folder}: has no {' or '.join(missing)} (expected a teacher stage's final/ folder)"
    return None


def load_teacher_folder(folder: Path, preset: Preset, device: torch.device | str) -> tuple[CausalWanModel, TextEncoder]:
    """A teacher and its text encoder from `folder` (`teacher.safetensors`, `text_encoder/`), frozen.
    A committed folder (one with a MANIFEST, as a candidate teacher is kept) is hash-checked first."""
    if (folder / MANIFEST).is_file():
        verify_manifest(folder)
    teacher = CausalWanModel(preset.model)
    teacher.load_state_dict(load_file(str(folder / "teacher.safetensors")))
    text = TextEncoder.from_pretrained(folder / "text_encoder", preset.model.text_len, dtype=torch.float32,
                                       local_files_only=True)
    for m in (teacher, text):
        m.to(device).eval().requires_grad_(False)
    return teacher, text


class TeacherStage(Stage):
    name = "teacher"
    Config = TeacherConfig

    def __init__(self, cfg: TeacherConfig, run: Run) -> None:
        super().__init__(cfg, run)
        vae_dir, text_dir = Stage.final_dir(cfg, "vae"), Stage.final_dir(cfg, "text")
        for stage, folder in (("vae", vae_dir), ("text", text_dir)):
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} is missing: run `python -m dsa_core.train {stage}` first")
        torch.manual_seed(cfg.seed)
        p = self.preset
        self.text = TextEncoder.from_pretrained(text_dir, p.model.text_len, dtype=torch.float32, local_files_only=True)
        self.text.to(run.device).train()
        self.teacher = CausalWanModel(p.model).to(run.device).train()
        self.ema = copy.deepcopy(self.teacher).requires_grad_(False)
        # The compiled wrapper shares the teacher's parameters; checkpoints save the teacher
        # itself, so their keys do not depend on this switch.  One graph per clip length.
        self.teacher_forward = torch.compile(self.teacher, dynamic=False) if cfg.compile else self.teacher
        self.text_ema = copy.deepcopy(self.text).requires_grad_(False)
        self.readout = (AttributeReadout(p.model.dim, p.model.patch_size).to(run.device)
                        if cfg.attribute_weight > 0 else None)
        # The readout trains at the teacher's rate, in its group.
        teacher_params = [*self.teacher.parameters(), *(self.readout.parameters() if self.readout else ())]
        self.opt = torch.optim.AdamW(
            [
                {"params": teacher_params, "lr": cfg.lr},
                {"params": self.text.parameters(), "lr": cfg.text_lr},
            ],
            weight_decay=cfg.weight_decay,
        )
        self.scheduler = FlowMatchScheduler(p.sampling.shift)
        phases = {"long": (cfg.dataset_clips, world_config(cfg.height, cfg.width, cfg.num_frames))}
        if cfg.long_from_step > 0:
            phases["short"] = (cfg.short_dataset_clips, world_config(
                cfg.height, cfg.width, video_frames(cfg.short_latent_frames), cfg.short_speed_frames or None))
        paths = {k: latent_cache_path(cfg.out_dir, vae_id(vae_dir), n, w) for k, (n, w) in phases.items()}
        missing = [k for k, path in paths.items() if not path.is_file()]
        if run.main and missing:
            vae = frozen_vae(vae_dir, self.preset, run.device)
            for key in missing:
                LatentCache.build(paths[key], vae, *phases[key])
        run.barrier()
        self.data = {key: LatentCache.load(path).to(run.device) for key, path in paths.items()}

    def modules(self) -> dict[str, nn.Module]:
        readout = {"readout": self.readout} if self.readout is not None else {}
        return {"teacher": self.teacher, "text": self.text, "teacher_ema": self.ema, "text_ema": self.text_ema,
                **readout}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.opt}

    def train_step(self, step: int, g: torch.Generator) -> dict[str, float]:
        cfg, rates = self.cfg, [self.cfg.lr, self.cfg.text_lr]
        if step < cfg.long_from_step:
            set_lr(self.opt, rates, step, cfg.long_from_step, cfg.short_decay_fraction, cfg.warmup_steps)
            data, object_weight = self.data["short"], cfg.short_object_weight
        else:
            set_lr(self.opt, rates, step - cfg.long_from_step, cfg.steps - cfg.long_from_step, cfg.decay_fraction,
                   0 if cfg.long_from_step else cfg.warmup_steps)
            data, object_weight = self.data["long"], cfg.object_weight
        x0, captions, objects, attributes = data.batch(g, cfg.batch_size)
        drop = torch.rand(len(captions), generator=g) < cfg.caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        text = self.teacher.prepare_text(self.text.encode(captions))
        err, out = flow_errors(self.teacher_forward, text, x0, g, self.scheduler, return_taps=self.readout is not None)
        loss = weighted_mean(err, 1 + (object_weight - 1) * objects.float())
        # "flow" stays the plain loss, comparable across object weights and with other runs.
        row = {"flow": err.mean().item()}
        if object_weight != 1:
            row["weighted_flow"] = loss.item()
        if self.readout is not None:
            readout_loss = attribute_loss(self.readout, out.taps[0], attributes)
            loss = loss + cfg.attribute_weight * readout_loss
            row["attributes"] = readout_loss.item()
        optimizer_step(loss, self.opt, self.run)
        ema_update(self.ema, self.teacher, self.cfg.ema_decay)
        ema_update(self.text_ema, self.text, self.cfg.ema_decay)
        return row

    def export(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.ema.state_dict().items()}, str(folder / "teacher.safetensors"))
        self.text_ema.save_pretrained(folder / "text_encoder")
        vae = frozen_vae(Stage.final_dir(self.cfg, "vae"), self.preset, self.run.device)
        self.preview(vae, self.folder / "samples.png")
        self.object_probe(vae, self.folder / "object_errors.json")
        self.caption_probe(vae, self.folder / "caption_probe.json")

    @torch.no_grad()
    def preview(self, vae: AutoencoderKLWan, path: Path, clips: int = 4) -> None:
        """A contact sheet: per held-out clip, a row of its frames, then a row of the teacher's
        sample of its caption (every 8th frame), sampled as the ODE stage will sample it.

        The loss curve does not say whether the teacher follows the prompt (one whose loss was
        still falling sampled the data's average colours), and the ODE and DMD stages can only
        teach the student what the teacher samples."""
        from .ode import OdeConfig  # not at the top: the ODE stage imports this module

        ode, device = OdeConfig(), self.run.device
        world = world_config(self.cfg.height, self.cfg.width, self.cfg.num_frames)
        g = torch.Generator().manual_seed(self.cfg.seed)
        uncond = self.ema.prepare_text(self.text_ema.encode([""]).to(device))
        shape = (1, self.preset.model.in_dim, self.cfg.latent_frames, *self.preset.latent_size())
        rows = []
        for i in range(clips):
            clip = render_clip(heldout_seed(i), world)
            cond = self.ema.prepare_text(self.text_ema.encode([clip.caption]).to(device))
            noise = torch.randn(shape, generator=g).to(device)
            x0, _ = teacher_sample(self.ema, cond, uncond, noise, self.scheduler, ode.teacher_steps, ode.cfg_scale)
            video = vae.decode(latents_to_vae(vae, x0)).sample.clamp(-1.0, 1.0)
            rows += [clip.frames[::8], to_uint8_frames(video.cpu())[::8]]
        Image.fromarray(contact_sheet(rows, scale=2)).save(path)

    @torch.no_grad()
    def object_probe(self, vae: AutoencoderKLWan, path: Path, clips: int = 8) -> None:
        """`object_cell_errors` of the EMA teacher on held-out clips, as JSON."""
        device, cfg = self.run.device, self.cfg
        world = world_config(cfg.height, cfg.width, cfg.num_frames)
        x0, x_empty, mask, captions = object_probe_clips(vae, world, clips)
        text = self.ema.prepare_text(self.text_ema.encode(captions).to(device))

        def predict_x0(x_t: torch.Tensor, sigma: float) -> torch.Tensor:
            t = x_t.new_full(x_t.shape[:1] + x_t.shape[2:3], sigma * self.scheduler.num_train_timesteps)
            return self.scheduler.to_x0(x_t, self.ema(x_t, t, text, causal=False).flow, sigma)

        path.write_text(json.dumps(object_cell_errors(predict_x0, x0, x_empty, mask), indent=2))

    @torch.no_grad()
    def caption_probe(self, vae: AutoencoderKLWan, path: Path, clips: int = 16) -> None:
        """`dsa_core.probe.caption_shares` of the EMA teacher on held-out one-object clips, as JSON:
        whether it reads the caption's motion, shape and colour words at each σ."""
        from ..probe import caption_shares, probe_clips, teacher_predictor  # the probe imports this module

        cfg = self.cfg
        x0, captions = probe_clips(vae, clips, cfg.height, cfg.width, cfg.num_frames)
        predict = teacher_predictor(self.ema, self.text_ema, self.scheduler)
        path.write_text(json.dumps(caption_shares(predict, x0.to(self.run.device), captions), indent=2))
