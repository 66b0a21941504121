"""Stage `confidence-head`: train only the DSA confidence head of a frozen generator.

The generator rolls out exactly as at inference, exiting each chunk after a random step list,
and the head learns the DSA confidence loss against the teacher's guided x0, measured at fixed
noise levels — no DMD, no critic, the generator's weights untouched.  In the `tiny` recipe it
follows `dmd` and refines the head DMD trained (whose target, at one random noise level a
sample, taught a confidence that falls with the step); export ships the refined head on the
DMD student.  For checkpoints distilled without DSA (the public Self-Forcing one) it trains a
head from scratch: `--model wan-1.3b` loads the Self-Forcing generator and the
Wan2.1-T2V-1.3B teacher from the Hub (a GPU job)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..config import WAN_1_3B
from ..model import CausalWanModel, TextContext
from ..pipeline import Rollout
from ..scheduler import FlowMatchScheduler
from ..schedules import Timesteps
from ..text import TextEncoder
from ..weights import load_self_forcing, load_transformer, resolve_wan
from ..world import caption_corpus
from .common import Run, Stage, StageConfig, device_generator, optimizer_step
from .dmd import RunningMean, confidence_loss, exit_lists
from .teacher import add_random_noise, chunk_distance, guided_flow, load_teacher, teacher_distance

WAN_TEACHER_REPO, WAN_TEACHER_FILE = "Wan-AI/Wan2.1-T2V-1.3B", "diffusion_pytorch_model.safetensors"


@dataclass
class HeadConfig(StageConfig):
    steps: int = 800
    batch_size: int = 4
    lr: float = 1e-4
    base: str = "tiny"  # or "wan-1.3b"
    hub_dir: str = ""  # wan-1.3b: a local mirror of the Hub repos (empty: the Hub cache)
    cfg_scale: float = 3.0
    conf_lambda: float = 0.5
    captions: int = 20000
    # The teacher distance d at the preset's fixed levels (`SamplingConfig.distance_raw_t`, as
    # calibration measures it), or at one random level per sample (DMD's): the head does not see
    # σ, and at a random one it learnt a confidence that falls with the step while d falls.
    fixed_distance: bool = True

    def __post_init__(self) -> None:
        # A wan-1.3b head must not land in (or resume from) the tiny recipe's run folder.
        if self.base != "tiny" and self.out_dir == StageConfig.out_dir:
            self.out_dir = f"runs/{self.base}"

    def validate(self) -> None:
        super().validate()
        if self.base not in ("tiny", "wan-1.3b"):
            raise ValueError(f"base={self.base!r} must be 'tiny' or 'wan-1.3b'")


class HeadStage(Stage):
    name = "confidence-head"
    Config = HeadConfig

    def __init__(self, cfg: HeadConfig, run: Run) -> None:
        super().__init__(cfg, run)
        if cfg.base == "wan-1.3b":
            self.preset = WAN_1_3B
            source = resolve_wan(cfg.hub_dir or None)
            self.generator, _ = load_self_forcing(self.preset, source.transformer)
            self.teacher = self._wan_teacher(cfg)
            self.text = TextEncoder.from_pretrained(source.diffusers, self.preset.model.text_len,
                                                    dtype=torch.float32, local_files_only=True)
            self.captions = caption_corpus(cfg.captions)  # any prompts do: the loss needs no video data
        else:
            student = Stage.final_dir(cfg, "dmd") / "student.safetensors"
            if not student.is_file():
                raise FileNotFoundError(f"{student} is missing: run `python -m dsa_core.train dmd` first")
            self.generator = load_transformer(self.preset, student)
            self.teacher, self.text = load_teacher(cfg, self.preset, run.device)
            self.captions = caption_corpus(cfg.captions, seed0=3 * 10**7)
        torch.manual_seed(cfg.seed)
        for m in (self.teacher, self.text):
            m.to(run.device).eval().requires_grad_(False)
        self.generator.to(run.device).eval().requires_grad_(False)
        self.generator.confidence_head.requires_grad_(True)
        self.opt = torch.optim.AdamW(self.generator.confidence_head.parameters(), lr=cfg.lr, weight_decay=0.01)
        self.scheduler = FlowMatchScheduler(self.preset.sampling.shift)
        self.exits = exit_lists(self.preset)
        self.stats = RunningMean()

    @staticmethod
    def _wan_teacher(cfg: HeadConfig) -> CausalWanModel:
        if cfg.hub_dir:
            path = Path(cfg.hub_dir) / WAN_TEACHER_REPO / WAN_TEACHER_FILE
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(WAN_TEACHER_REPO, WAN_TEACHER_FILE))
        return load_transformer(WAN_1_3B, path, head_optional=True)

    def modules(self) -> dict[str, nn.Module]:
        return {"head": self.generator.confidence_head, "stats": self.stats}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"head": self.opt}

    def train_step(self, step: int, g: torch.Generator) -> dict[str, float]:
        cfg, p = self.cfg, self.preset
        idx = torch.randint(0, len(self.captions), (cfg.batch_size,), generator=g).tolist()
        with torch.no_grad():
            states = self.text.encode([self.captions[i] for i in idx]).to(self.run.device)
            uncond = self.teacher.prepare_text(self.text.encode([""] * cfg.batch_size).to(self.run.device))
            cond = self.teacher.prepare_text(states)
            text = self.generator.prepare_text(states)
        exit_list = self.exits[int(torch.randint(0, len(self.exits), (1,), generator=g))]
        rollout = Rollout(self.generator, self.scheduler, Timesteps(exit_list), p, g, batch=cfg.batch_size,
                          device=self.run.device, grad=True)
        chunks = cfg.latent_frames // p.model.chunk_frames
        results = [rollout.next_chunk(text) for _ in range(chunks)]
        video = torch.cat([r.x0 for r in results], 2).detach()
        logits = torch.cat([r.conf_logits for r in results], 1)
        with torch.no_grad():
            d = self.distance(video, cond, uncond, g)
        loss = confidence_loss(logits, d, cfg.conf_lambda * self.stats.update(float(d.mean())))
        optimizer_step(loss, self.opt, self.run)
        return {"conf": loss.item(), "d": float(d.mean()), "c": float(torch.sigmoid(logits.detach()).mean())}

    def distance(self, video: torch.Tensor, cond: TextContext, uncond: TextContext, g: torch.Generator) -> torch.Tensor:
        """DSA's teacher distance d per chunk `[B, chunks]` (see `fixed_distance`)."""
        cf, scale = self.preset.model.chunk_frames, self.cfg.cfg_scale
        if self.cfg.fixed_distance:
            return teacher_distance(video, self.teacher, cond, uncond, scale, self.scheduler,
                                    self.preset.sampling.distance_raw_t, cf, device_generator(g, video.device))
        x_t, t, sigma, _ = add_random_noise(video, g, self.scheduler, 0.02, 0.98)
        x0_real = self.scheduler.to_x0(x_t, guided_flow(self.teacher, x_t, t, cond, uncond, scale), sigma)
        return chunk_distance(video, x0_real, cf)

    def export(self, folder: Path) -> None:
        """The head alone: `confidence_head.safetensors`, loaded on top of the generator."""
        folder.mkdir(parents=True, exist_ok=True)
        head = {f"confidence_head.{k}": v.contiguous() for k, v in self.generator.confidence_head.state_dict().items()}
        save_file(head, str(folder / "confidence_head.safetensors"))
