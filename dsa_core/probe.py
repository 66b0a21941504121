"""The caption probe: which words of its caption does a teacher read?

The flow loss cannot tell, and sampling and classifying (the bench) mixes what a teacher ignores
with everything else it cannot draw.  This asks the denoiser directly: a held-out one-object
clip is noised to σ and its x0 predicted under the clip's caption reworded ("paraphrase"), under
the same wording with one attribute of the object swapped (`world.caption_variants`: "motion",
"shape", "colour") and under the empty caption.  A swap's share is how far it moves the
prediction (mean squared difference to the reworded caption's), divided by how far the whole
caption moves it (original caption against empty): a share near the paraphrase's means the
denoiser ignores that word at that σ.  No guidance: this is the conditional branch itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan

from .calibration import load_teacher
from .model import CausalWanModel
from .pipeline import StreamingPipeline
from .scheduler import FlowMatchScheduler
from .text import TextEncoder
from .train.teacher import load_teacher_folder, teacher_folder_problem
from .vae import encode, to_video_tensor
from .world import SIMPLE_CONFIG, WorldConfig, caption_variants, heldout_seed, render_spec, sample_clip

# Noise levels probed: the bench's --renoise showed motion and shape decided between 0.5 and 0.85.
CAPTION_PROBE_SIGMAS = (0.5, 0.7, 0.85, 0.95, 1.0)
SWAPS = ("paraphrase", "motion", "shape", "colour")
WORDING_SEED = 7  # any fixed seed: the variants share one wording, unlike the clip's own caption
MAX_CLIPS = 64

# predict_x0(x_t, sigma, captions) -> the model's x0 prediction, one caption per clip.
Predictor = Callable[[torch.Tensor, float, list[str]], torch.Tensor]


def probe_clips(vae: AutoencoderKLWan, clips: int, height: int = 64, width: int = 64, num_frames: int = 81
                ) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """Latents of `clips` held-out one-object clips and their captions: "caption" (their own),
    "empty", and one list per entry of `SWAPS`."""
    if not 1 <= clips <= MAX_CLIPS:
        raise ValueError(f"clips={clips} is outside the allowed range 1..{MAX_CLIPS}")
    world: WorldConfig = dataclasses.replace(SIMPLE_CONFIG, height=height, width=width, num_frames=num_frames)
    specs = [sample_clip(heldout_seed(i), world) for i in range(clips)]
    x0 = torch.cat([encode(vae, to_video_tensor([render_spec(s)])) for s in specs])
    variants = [caption_variants(s, WORDING_SEED) for s in specs]
    captions = {"caption": [s.caption for s in specs], "empty": [""] * clips}
    captions |= {k: [v[k] for v in variants] for k in SWAPS}
    return x0, captions


@torch.no_grad()
def caption_shares(predict_x0: Predictor, x0: torch.Tensor, captions: dict[str, list[str]],
                   sigmas: tuple[float, ...] = CAPTION_PROBE_SIGMAS, seed: int = 0) -> dict:
    """Per σ: `caption_effect` (mean squared change of the x0 prediction from the empty caption
    to the clip's own) and each swap's share of it (see the module's docstring)."""
    g = torch.Generator().manual_seed(seed)
    out = {"clips": x0.shape[0], "sigmas": {}}
    for sigma in sigmas:
        x_t = FlowMatchScheduler.add_noise(x0, torch.randn(x0.shape, generator=g).to(x0.device), sigma)
        pred = {k: predict_x0(x_t, sigma, v) for k, v in captions.items()}
        effect = float((pred["caption"] - pred["empty"]).pow(2).mean())
        row = {"caption_effect": effect}
        for k in SWAPS:
            ref = pred["caption"] if k == "paraphrase" else pred["paraphrase"]
            # A model that ignores its caption entirely has no effect to share: every share is 0.
            row[k] = float((pred[k] - ref).pow(2).mean()) / effect if effect > 0 else 0.0
        out["sigmas"][str(sigma)] = row
    return out


def teacher_predictor(teacher: CausalWanModel, text: TextEncoder, scheduler: FlowMatchScheduler,
                      batch: int = 4) -> Predictor:
    """The bidirectional teacher's conditional x0 prediction, `batch` clips per forward."""
    def predict_x0(x_t: torch.Tensor, sigma: float, captions: list[str]) -> torch.Tensor:
        states = text.encode(captions).to(x_t.device)
        out = []
        for i in range(0, x_t.shape[0], batch):
            x = x_t[i:i + batch]
            t = x.new_full(x.shape[:1] + x.shape[2:3], sigma * scheduler.num_train_timesteps)
            out.append(scheduler.to_x0(x, teacher(x, t, teacher.prepare_text(states[i:i + batch]), causal=False).flow,
                                       sigma))
        return torch.cat(out)
    return predict_x0


def markdown(reports: dict[str, dict]) -> str:
    lines = ["| teacher | σ | caption effect | paraphrase | motion | shape | colour |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, report in reports.items():
        for sigma, row in report["sigmas"].items():
            shares = " | ".join(f"{row[k]:.3f}" for k in SWAPS)
            lines.append(f"| {name} | {float(sigma):.2f} | {row['caption_effect']:.4f} | {shares} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsa_core.probe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    # 32: with 8 the shares swing with which motions the clips happen to have (docs/experiments.md).
    ap.add_argument("--clips", type=int, default=32, help=f"held-out one-object clips (1..{MAX_CLIPS})")
    ap.add_argument("--teacher", type=Path, action="append", default=[], metavar="DIR",
                    help="also probe this teacher (teacher.safetensors and text_encoder/, as a teacher stage "
                         "exports them); repeatable")
    ap.add_argument("--device")
    ap.add_argument("--json", type=Path, help="write the reports here")
    args = ap.parse_args(argv)
    if not 1 <= args.clips <= MAX_CLIPS:
        ap.error(f"--clips={args.clips} is outside the allowed range 1..{MAX_CLIPS}")
    for folder in args.teacher:
        problem = teacher_folder_problem(folder)
        if problem:
            ap.error(f"--teacher {problem}")
    pipe = StreamingPipeline.from_preset("tiny", device=args.device)
    teachers = {"shipped": (load_teacher(pipe.weights_dir, pipe), pipe.text_encoder)}
    for folder in args.teacher:
        teachers[str(folder)] = load_teacher_folder(folder, pipe.preset, pipe.device)
    s = pipe.preset.sampling
    x0, captions = probe_clips(pipe.vae, args.clips, s.height, s.width)
    reports = {name: caption_shares(teacher_predictor(teacher, text, pipe.scheduler), x0, captions)
               for name, (teacher, text) in teachers.items()}
    print(markdown(reports))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
