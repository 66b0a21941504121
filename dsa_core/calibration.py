"""Is the confidence head calibrated?  Spearman correlation of confidence and teacher distance.

For held-out world captions the student generates whole videos exiting every chunk after
s = 1…4 steps (as the DSA training rollout does).  For every chunk, the teacher distance
`d` is the mean squared gap between the chunk's x0 and the teacher's guided x0 of the same
video re-noised (`SamplingConfig.distance_raw_t`, fixed noise) — the quantity the confidence loss
teaches the head to track.  A calibrated head gives high confidence where `d` is small:
a strongly negative rank correlation.
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


def mean_by_step(values: list[float], step_of: list[int]) -> dict[int, float]:
    return {s: sum(v for v, x in zip(values, step_of) if x == s) / step_of.count(s) for s in sorted(set(step_of))}


@torch.inference_mode()
def calibration(pipe: StreamingPipeline, teacher: CausalWanModel, clips: int = 64, batch: int = 16,
                cfg_scale: float = 3.0) -> dict:
    p, sched = pipe.preset, pipe.scheduler
    cf = p.model.chunk_frames
    chunks = pipe.latent_frames(5.0) // cf
    full = sched.warp(p.sampling.raw_steps)
    conf, dist, step_of = [], [], []
    for start in range(0, clips, batch):
        captions = [render_clip(heldout_seed(i)).caption for i in range(start, min(clips, start + batch))]
        b = len(captions)
        states = pipe.text_encoder.encode(captions).to(pipe.device)
        uncond = teacher.prepare_text(pipe.text_encoder.encode([""] * b).to(pipe.device))
        cond_t, cond_s = teacher.prepare_text(states), pipe.model.prepare_text(states)
        for s in range(1, len(full) + 1):
            rollout = Rollout(pipe.model, sched, Timesteps(full[:s]), p, seed=start, batch=b, device=pipe.device)
            results = [rollout.next_chunk(cond_s) for _ in range(chunks)]
            video = torch.cat([r.x0 for r in results], 2)
            d = teacher_distance(video, teacher, cond_t, uncond, cfg_scale, sched, p.sampling.distance_raw_t, cf,
                                 torch.Generator().manual_seed(99)).cpu()
            c = torch.sigmoid(torch.cat([r.conf_logits for r in results], 1).float()).cpu()
            conf += c.flatten().tolist()
            dist += d.flatten().tolist()
            step_of += [s] * c.numel()
    per_step = {}
    for s in sorted(set(step_of)):
        sel = [i for i, x in enumerate(step_of) if x == s]
        per_step[s] = float(spearmanr([conf[i] for i in sel], [dist[i] for i in sel]).statistic)
    return {
        "spearman": float(spearmanr(conf, dist).statistic),
        "spearman_within_step": per_step,
        "pairs": len(conf),
        "clips": clips,
        "mean_confidence_by_step": mean_by_step(conf, step_of),
        # The head's target: if d does not fall with the step, no head can make confidence rise.
        "mean_distance_by_step": mean_by_step(dist, step_of),
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
