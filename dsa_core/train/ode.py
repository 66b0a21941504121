"""Stage `ode`: regress the causal student onto the teacher's ODE trajectories (CausVid init).

The teacher samples videos with guidance; each trajectory keeps its states at the raw
timesteps of the student's step list.  The student, initialised from the teacher, sees
every chunk at one of those states (block-causal, so chunks attend to earlier chunks at
their own noise levels) and predicts the trajectory's end.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ..config import Preset
from ..model import CausalWanModel, TextContext
from ..scheduler import FlowMatchScheduler
from ..weights import sha256
from ..world import caption_corpus
from .common import Run, Stage, StageConfig, load_checkpoint, optimizer_step, save_checkpoint
from .teacher import load_teacher, teacher_sample


@dataclass
class OdeConfig(StageConfig):
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    trajectories: int = 512
    teacher_steps: int = 24
    cfg_scale: float = 3.0

    def validate(self) -> None:
        super().validate()
        if self.teacher_steps % 4:
            raise ValueError(f"teacher_steps={self.teacher_steps} must be a multiple of 4 (to hit the raw step list)")


def student_from_teacher(cfg: StageConfig, preset: Preset, device: torch.device | str) -> CausalWanModel:
    """A causal student starting from the teacher's weights (its confidence head fresh)."""
    student = CausalWanModel(preset.model)
    teacher_state = load_file(str(Stage.final_dir(cfg, "teacher") / "teacher.safetensors"))
    head = {k: v for k, v in student.state_dict().items() if k.startswith("confidence_head.")}
    student.load_state_dict({**teacher_state, **head})
    return student.to(device)


class OdeStage(Stage):
    name = "ode"
    Config = OdeConfig

    def __init__(self, cfg: OdeConfig, run: Run) -> None:
        super().__init__(cfg, run)
        p = self.preset
        self.scheduler = FlowMatchScheduler(p.sampling.shift)
        self.raw_steps = tuple(p.sampling.raw_steps)
        _, self.text = load_teacher(cfg, p, run.device)  # first: it names a missing teacher clearly
        # Keyed by the teacher's hash: a retrained teacher gets fresh trajectories.
        teacher_id = sha256(Stage.final_dir(cfg, "teacher") / "teacher.safetensors")[:12]
        name = f"{teacher_id}_{cfg.trajectories}_{cfg.teacher_steps}_{cfg.cfg_scale}.pt"
        path = Path(cfg.out_dir) / "ode_pairs" / name
        if run.main and not path.is_file():
            self._make_pairs(path)
        run.barrier()
        pairs = torch.load(path, map_location="cpu", weights_only=True)
        self.states, self.targets, self.captions = pairs["states"], pairs["x0"], pairs["captions"]
        torch.manual_seed(cfg.seed)
        self.student = student_from_teacher(cfg, p, run.device).train()
        self.opt = torch.optim.AdamW(self.student.parameters(), lr=cfg.lr, weight_decay=0.0)

    @torch.no_grad()
    def _make_pairs(self, path: Path) -> None:
        """The teacher's trajectories, each batch saved in `<path>.partial/` as it is drawn:
        drawing them takes most of an hour on a CPU, and a killed run continues from its last batch."""
        cfg, p = self.cfg, self.preset
        teacher, text = load_teacher(cfg, p, self.run.device)
        captions = caption_corpus(cfg.trajectories, seed0=10**7)  # unseen by the teacher's cache
        g = torch.Generator().manual_seed(cfg.seed + 777)
        uncond = teacher.prepare_text(text.encode([""]))
        partial = path.with_name(path.name + ".partial")
        shape = (p.model.in_dim, cfg.latent_frames, *p.latent_size())
        batch = 8
        starts = range(0, cfg.trajectories, batch)
        for n, i in enumerate(tqdm(starts, desc="teacher ODE trajectories")):
            caps = captions[i : i + batch]
            # Drawn for finished batches too: a resumed run gives each batch the noise it had.
            noise = torch.randn((len(caps), *shape), generator=g)
            if (partial / f"{n}.pt").is_file():
                continue
            cond = teacher.prepare_text(text.encode(caps))
            un = TextContext([(k.expand(len(caps), -1, -1, -1), v.expand(len(caps), -1, -1, -1)) for k, v in uncond.kv])
            x0, kept = teacher_sample(teacher, cond, un, noise.to(self.run.device), self.scheduler, cfg.teacher_steps,
                                      cfg.cfg_scale, self.raw_steps)
            save_checkpoint(partial / f"{n}.pt", {
                "states": torch.stack([kept[round(r, 6)] for r in self.raw_steps], 1).half().cpu(),
                "x0": x0.half().cpu(),
            })
        batches = [load_checkpoint(partial / f"{n}.pt") for n in range(len(starts))]
        save_checkpoint(path, {"states": torch.cat([b["states"] for b in batches]),
                               "x0": torch.cat([b["x0"] for b in batches]), "captions": captions})
        shutil.rmtree(partial)

    def modules(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.opt}

    def train_step(self, step: int, g: torch.Generator) -> dict[str, float]:
        cfg, p = self.cfg, self.preset
        b, cf = cfg.batch_size, p.model.chunk_frames
        idx = torch.randint(0, len(self.captions), (b,), generator=g)
        chunks = cfg.latent_frames // cf
        which = torch.randint(0, len(self.raw_steps), (b, chunks), generator=g)  # a step per chunk
        states = self.states[idx].float()  # [B, S, C, F, h, w]
        frame_step = which.repeat_interleave(cf, dim=1)  # [B, F]
        x_t = torch.stack([states[i, frame_step[i], :, torch.arange(cfg.latent_frames)] for i in range(b)])
        x_t = x_t.permute(0, 2, 1, 3, 4).to(self.run.device)  # [B, C, F, h, w]
        warped = torch.tensor(self.scheduler.warp(self.raw_steps))
        t = warped[frame_step].to(self.run.device)
        with torch.no_grad():
            text = self.text.encode([self.captions[i] for i in idx.tolist()])
        out = self.student(x_t, t, self.student.prepare_text(text))
        sigma = (t / self.scheduler.num_train_timesteps)[:, None, :, None, None]
        x0 = self.scheduler.to_x0(x_t, out.flow, sigma)
        loss = F.mse_loss(x0, self.targets[idx].float().to(self.run.device))
        optimizer_step(loss, self.opt, self.run)
        return {"x0_mse": loss.item()}

    def export(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.student.state_dict().items()},
                  str(folder / "student.safetensors"))
