"""Is the confidence head calibrated?  Spearman correlation of confidence and teacher distance.

For held-out world captions the student generates whole videos exiting every chunk after
s = 1…4 steps (as the DSA training rollout does).  For every chunk, the teacher distance
`d` is the mean squared gap between the chunk's x0 and the teacher's guided x0 of the same
video re-noised (`SamplingConfig.distance_raw_t`, fixed noise) — the quantity the confidence loss
teaches the head to track.  A calibrated head gives high confidence where `d` is small:
a strongly negative rank correlation.

DSA's stopping rule compares a chunk with the chunk before it, so what it needs is the
correlation *within* a video; the overall one also counts how videos differ from each other
(a busy pattern against a plain colour), which a head can read without ranking one video's
chunks at all.  The report gives both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from scipy.stats import spearmanr

from .model import CausalWanModel
from .pipeline import Rollout, StreamingPipeline
from .schedules import Timesteps
from .train.teacher import teacher_distance
from .weights import default_weights_dir
from .world import heldout_seed, render_clip


def load_teacher(folder: str | Path, pipe: StreamingPipeline) -> CausalWanModel:
    teacher = CausalWanModel(pipe.preset.model)
    teacher.load_state_dict({k: v.float() for k, v in load_file(str(Path(folder) / "teacher.safetensors")).items()})
    return teacher.to(pipe.device).eval().requires_grad_(False)


def spearman_within_and_between(conf: torch.Tensor, dist: torch.Tensor) -> tuple[float, float]:
    """For `conf` and `dist` [exit steps, videos, chunks]: the mean rank correlation across the
    chunks of one video after its first (those the stopping rule judges against the chunk
    before), and the rank correlation of the videos' mean confidence and mean distance."""
    within = [spearmanr(c[1:], d[1:]).statistic for cs, ds in zip(conf.tolist(), dist.tolist())
              for c, d in zip(cs, ds)]
    within = [r for r in within if r == r]  # a video whose chunks all tie has no ranking (nan)
    between = spearmanr(conf.mean(-1).flatten(), dist.mean(-1).flatten()).statistic
    return float(sum(within) / len(within)) if within else float("nan"), float(between)


@torch.inference_mode()
def calibration(pipe: StreamingPipeline, teacher: CausalWanModel, clips: int = 64, batch: int = 16,
                cfg_scale: float = 3.0) -> dict:
    p, sched = pipe.preset, pipe.scheduler
    cf = p.model.chunk_frames
    chunks = pipe.latent_frames(5.0) // cf
    full = sched.warp(p.sampling.raw_steps)
    exits = range(1, len(full) + 1)
    conf: dict[int, list[torch.Tensor]] = {s: [] for s in exits}  # per exit step: [videos, chunks] per batch
    dist: dict[int, list[torch.Tensor]] = {s: [] for s in exits}
    for start in range(0, clips, batch):
        captions = [render_clip(heldout_seed(i)).caption for i in range(start, min(clips, start + batch))]
        b = len(captions)
        states = pipe.text_encoder.encode(captions).to(pipe.device)
        uncond = teacher.prepare_text(pipe.text_encoder.encode([""] * b).to(pipe.device))
        cond_t, cond_s = teacher.prepare_text(states), pipe.model.prepare_text(states)
        for s in exits:
            rollout = Rollout(pipe.model, sched, Timesteps(full[:s]), p, seed=start, batch=b, device=pipe.device)
            results = [rollout.next_chunk(cond_s) for _ in range(chunks)]
            video = torch.cat([r.x0 for r in results], 2)
            dist[s].append(teacher_distance(video, teacher, cond_t, uncond, cfg_scale, sched,
                                            p.sampling.distance_raw_t, cf, torch.Generator().manual_seed(99)).cpu())
            conf[s].append(torch.sigmoid(torch.cat([r.conf_logits for r in results], 1).float()).cpu())
    c = torch.stack([torch.cat(conf[s]) for s in exits])  # [exit steps, videos, chunks]
    d = torch.stack([torch.cat(dist[s]) for s in exits])
    within, between = spearman_within_and_between(c, d)
    return {
        "spearman": float(spearmanr(c.flatten(), d.flatten()).statistic),
        "spearman_within_step": {s: float(spearmanr(c[i].flatten(), d[i].flatten()).statistic)
                                 for i, s in enumerate(exits)},
        "spearman_within_video": within,
        "spearman_between_videos": between,
        "pairs": c.numel(),
        "clips": clips,
        "mean_confidence_by_step": {s: float(c[i].mean()) for i, s in enumerate(exits)},
        # The head's target: if d does not fall with the step, no head can make confidence rise.
        "mean_distance_by_step": {s: float(d[i].mean()) for i, s in enumerate(exits)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsa_core.calibration", description=__doc__)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--weights", type=Path, default=default_weights_dir("tiny"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    pipe = StreamingPipeline.from_preset("tiny", weights_dir=str(args.weights))
    report = calibration(pipe, load_teacher(args.weights, pipe), clips=args.clips)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
