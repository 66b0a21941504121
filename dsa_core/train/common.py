"""What every training stage shares: configs, distributed ranks, checkpoints, loss logs, the loop.

A stage is a small class (`Stage`) that builds its modules and optimizers and knows how to
take one step.  `run_stage` does the rest the same way for every stage: resume from the last
checkpoint, draw each step's randomness from (seed, step, rank) so a resumed run takes
exactly the steps an uninterrupted one would, average gradients across ranks, write
checkpoints atomically, log losses (JSONL + PNG) and export the final weights.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import inspect
import json
import math
import os
import shutil
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from diffusers import AutoencoderKLWan
from torch import nn
from tqdm import tqdm

from ..config import TINY, ModelConfig, Preset
from ..cpu import fit_threads


@dataclass
class StageConfig:
    """Fields every stage has; stages add their own.  Defaults are the shipped recipe."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    seed: int = 0
    ckpt_every: int = 100
    log_every: int = 10
    out_dir: str = "runs/tiny"
    height: int = 64
    width: int = 64
    latent_frames: int = 21
    # Overrides of the tiny preset's ModelConfig fields (toy configs in the tests use this).
    model: dict = field(default_factory=dict)
    # Overrides of the tiny preset's VAE (`AutoencoderKLWan` keyword arguments): another
    # architecture to train the whole chain with (configs/tiny-vae4x.json).  Every stage of
    # one chain must be given the same, as the same `model`.
    vae: dict = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("steps", "batch_size", "ckpt_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr} must be a positive number")
        if self.height < 32 or self.width < 32:
            raise ValueError(
                f"height={self.height}, width={self.width}: each must be at least 32 (the smallest world frame)"
            )
        self.check_latent_frames("latent_frames")
        self.preset().validate()  # the frame must also be whole latent patches

    def check_latent_frames(self, name: str) -> None:
        """A clip length in latent frames must be whole chunks."""
        n, cf = getattr(self, name), self.preset().model.chunk_frames
        if n < cf or n % cf:
            raise ValueError(f"{name}={n} must be a positive multiple of chunk_frames={cf}")

    def preset(self) -> Preset:
        """The tiny preset with this config's resolution, model and VAE overrides."""
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = sorted(set(self.model) - known)
        if unknown:
            raise ValueError(f"model.{unknown[0]} is not a ModelConfig field; allowed: {', '.join(sorted(known))}")
        vae_known = set(inspect.signature(AutoencoderKLWan.__init__).parameters) - {"self"}
        unknown = sorted(set(self.vae) - vae_known)
        if unknown:
            raise ValueError(
                f"vae.{unknown[0]} is not an AutoencoderKLWan argument; allowed: {', '.join(sorted(vae_known))}"
            )
        # JSON and TOML have no tuples: a list overriding a tuple field (patch_size) becomes one.
        model = dataclasses.replace(TINY.model, **{
            k: tuple(v) if isinstance(getattr(TINY.model, k), tuple) and isinstance(v, list) else v
            for k, v in self.model.items()})
        sampling = dataclasses.replace(TINY.sampling, height=self.height, width=self.width)
        return dataclasses.replace(TINY, model=model, sampling=sampling, vae={**TINY.vae, **self.vae})

    @property
    def num_frames(self) -> int:
        return video_frames(self.latent_frames)


def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks for reuse instead of handing them back to the system.

    glibc serves every block above 32 MB from a mapping of its own and unmaps it when freed, so
    a training step whose activations are that large (the `vae-decoder` stage's 32 clips a
    step) takes fresh pages for each of them, and a page fault for each page, at every step:
    such a step took 1.8× as long (README, "Time on this CPU"), for the same numbers.  Peak
    memory grows by about a fifth.  Neither torch nor any library sets this (jemalloc would,
    but only preloaded before the process starts), hence `mallopt` by hand.  Returns whether
    it applied: not on other C libraries or systems.
    """
    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "gnu_get_libc_version"):
        return False  # musl and others: no such knobs
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def video_frames(latent_frames: int) -> int:
    """Pixel frames of a clip of `latent_frames`: the Wan VAE keeps the first frame, then packs 4."""
    return 1 + 4 * (latent_frames - 1)


def load_config(cls: type[StageConfig], path: str | Path | None) -> StageConfig:
    """Defaults overridden by a JSON or TOML file; unknown keys and wrong types are refused."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        text = path.read_text()
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as err:
            kind = "TOML" if path.suffix == ".toml" else "JSON"
            raise ValueError(f"config file {path} is not valid {kind}: {err}") from None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"config key {key!r} is unknown for this stage; allowed: {', '.join(sorted(fields))}")
        expected = type(getattr(cls(), key))
        ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok, data[key] = True, float(value)
        if not ok:
            raise ValueError(f"config key {key!r} must be of type {expected.__name__}, got {value!r}")
    cfg = cls(**data)
    cfg.validate()
    return cfg


@dataclass
class Run:
    """Where this process sits in a (possibly distributed) run."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Run:
        """Join the process group torchrun describes (gloo on CPU, nccl on CUDA), if any."""
        if torch.cuda.is_available():
            # TF32 matmuls (fp32 accumulation), as GPU training of DiTs runs; the CPU is unaffected.
            torch.set_float32_matmul_precision("high")
        fit_threads()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        cuda = torch.cuda.is_available()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        rank = dist.get_rank()
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        return cls(rank, dist.get_world_size(), device)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """All randomness of one step on one rank, independent of how the run got there."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


def device_generator(g: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on `device` seeded from `g`, so that big noise tensors are drawn where they
    are used: on a GPU, drawing a batch's noise on the CPU and copying it costs more than the step."""
    return torch.Generator(device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))


def average_gradients(params: list[nn.Parameter], run: Run) -> None:
    """All-reduce gradients to their mean across ranks.

    By hand instead of DistributedDataParallel: DDP's reducer expects one forward per
    backward, while a Self-Forcing rollout calls the generator once per chunk with grad.
    Parameters without a gradient this step count as zeros, so every rank reduces the same
    buffers in the same order.
    """
    if run.world_size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= run.world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def set_lr(opt: torch.optim.Optimizer, base: list[float], step: int, steps: int, decay_fraction: float,
           warmup: int = 0) -> None:
    """"Stable then decay": the base rates, then a cosine to zero over the last
    `decay_fraction` of the run (1.0 = cosine from the start); over the first `warmup` steps
    the rates rise linearly to the base (AdamW's first updates from scratch, before its
    second moments settle, are what a large batch at a large rate cannot afford).

    A stable phase lets a run be extended (more `steps`) without restarting it; only the
    tail, where the loss drops as the noise of the updates settles, depends on the end.
    """
    start = steps * (1 - decay_fraction)
    scale = 1.0 if step < start else 0.5 * (1 + math.cos(math.pi * (step - start) / max(steps - start, 1)))
    scale *= min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    for group, lr in zip(opt.param_groups, base):
        group["lr"] = float(lr * scale)  # a float: checkpoints hold no numpy


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, run: Run, max_norm: float | None = 1.0) -> None:
    """Backward, average across ranks, clip, step: the same four moves for every stage."""
    params = [p for group in opt.param_groups for p in group["params"]]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(params, run)
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()


def broadcast_parameters(modules: list[nn.Module], run: Run) -> None:
    """Start every rank from rank 0's weights."""
    if run.world_size == 1:
        return
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            dist.broadcast(t.data, src=0)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← ema + (1 − decay)·(model − ema), parameter by parameter."""
    # One fused call, as torch's optimizers update: the same values as a lerp_ per parameter,
    # without a kernel launch per parameter (about 240 per model here).
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write-then-rename: a crash leaves the previous checkpoint intact, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


class LossLog:
    """Loss values per step in JSONL, and a PNG of their curves."""

    def __init__(self, folder: Path, resume_step: int) -> None:
        self.path = folder / "losses.jsonl"
        self.png = folder / "losses.png"
        self.rows: list[dict] = []
        if self.path.is_file():
            rows = [self._parse(line) for line in self.path.read_text().splitlines()]
            # Drop steps the checkpoint lost, and a line torn by a kill mid-write.
            self.rows = [r for r in rows if r is not None and r["step"] < resume_step]
        folder.mkdir(parents=True, exist_ok=True)
        self._rewrite()

    @staticmethod
    def _parse(line: str) -> dict | None:
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return None

    def _rewrite(self) -> None:
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def add(self, step: int, losses: dict[str, float]) -> None:
        row = {"step": step, **{k: float(v) for k, v in losses.items()}}
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def plot(self, title: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = sorted({k for r in self.rows for k in r if k != "step"})
        if not keys:
            return
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            pts = [(r["step"], r[key]) for r in self.rows if key in r]
            steps, values = zip(*pts)
            ax.plot(steps, values, lw=0.6, alpha=0.4, color="tab:blue")
            window = max(1, len(values) // 50)
            smooth = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
                      for i in range(len(values))]
            ax.plot(steps, smooth, lw=1.4, color="tab:blue")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("step")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(self.png, dpi=90)
        plt.close(fig)


class Stage:
    """One training stage.  Subclasses set `name` and `Config` and fill in the hooks."""

    name: ClassVar[str]
    Config: ClassVar[type[StageConfig]]

    def __init__(self, cfg: StageConfig, run: Run) -> None:
        self.cfg = cfg
        self.run = run
        self.preset = cfg.preset()

    @property
    def folder(self) -> Path:
        return Path(self.cfg.out_dir) / self.name

    @staticmethod
    def final_dir(cfg: StageConfig, stage: str) -> Path:
        return Path(cfg.out_dir) / stage / "final"

    def modules(self) -> dict[str, nn.Module]:
        """Everything a checkpoint must hold (trained modules and their EMAs)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, step: int, g: torch.Generator) -> dict[str, float]:
        raise NotImplementedError

    def export(self, folder: Path) -> None:
        """Write the stage's result in the format later stages and the app load."""
        raise NotImplementedError


def run_stage(stage: Stage, resume: bool = False) -> list[dict]:
    """Train `stage` to its configured number of steps; returns the loss rows of this call."""
    cfg, run = stage.cfg, stage.run
    ckpt = stage.folder / "checkpoint.pt"
    start = 0
    if ckpt.is_file() and not resume:
        raise ValueError(f"{ckpt} exists: pass --resume to continue it, or choose another out_dir")
    final = Stage.final_dir(cfg, stage.name)
    if resume and not ckpt.is_file() and final.is_dir():
        # A final folder with no checkpoint was put there by hand (say, the shipped weights copied
        # in to retrain only later stages): resuming must keep it, not train it again from scratch.
        if run.main:
            print(f"{stage.name}: {final} exists with no checkpoint; kept as the stage's result")
        return []
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        # A run may be extended (more steps), logged differently or switch compiling on or off;
        # anything else would mix recipes.  A key the checkpoint lacks was added to the stage
        # after it was written, with a default that keeps the old behaviour: it must be that.
        free = {"steps", "ckpt_every", "log_every", "compile"}
        saved = {**dataclasses.asdict(type(cfg)()), **state["config"]}
        changed = sorted(k for k, v in dataclasses.asdict(cfg).items() if k not in free and saved.get(k) != v)
        if changed:
            raise ValueError(f"{ckpt} was written with another config (differs in: {', '.join(changed)}); "
                             "use the same config, or another out_dir")
        for name, module in stage.modules().items():
            module.load_state_dict(state["modules"][name])
        for name, opt in stage.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        start = state["step"]
    else:
        broadcast_parameters(list(stage.modules().values()), run)
    log = LossLog(stage.folder, start) if run.main else None
    rows = []
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=stage.name, disable=not run.main)
    for step in bar:
        losses = stage.train_step(step, step_generator(cfg.seed, step, run.rank))
        rows.append({"step": step, **losses})
        if log is not None:
            if step % cfg.log_every == 0 or step + 1 == cfg.steps:
                log.add(step, losses)
            bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()})
        done = step + 1
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            if run.main:
                save_checkpoint(ckpt, {
                    "step": done,
                    "config": dataclasses.asdict(cfg),
                    "modules": {k: m.state_dict() for k, m in stage.modules().items()},
                    "optimizers": {k: o.state_dict() for k, o in stage.optimizers().items()},
                })
                log.plot(f"{stage.name} ({done}/{cfg.steps} steps)")
            run.barrier()
    if run.main and (rows or not final.is_dir()):
        # Export beside the final folder, then swap it in: a kill mid-export leaves no
        # half-written weights, and the resumed run (no steps left, no final folder) exports again.
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        stage.export(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.replace(final)
    run.barrier()
    return rows
