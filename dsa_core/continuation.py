"""The continuation probe: does a student carry on a motion it is shown?

The bench asks a student to draw its caption from noise, which mixes what it cannot choose (a
motion, from noise) with what it cannot keep (a motion under way).  This asks the second
question alone: the first chunks of held-out one-object clips are given to `generate` as the
video to continue (its `context`: they enter the KV cache as the context pass leaves a
generated chunk), the student generates the rest under the clip's caption, and the generated
frames are scored beside the same frames of the real clip, of its VAE round trip (the most the
student can keep) and of the student's own video from noise on the same noise (what the shown
frames add).  One-object clips without events: a cut or a turn after the shown frames could
not be continued from them.

Beside it, without sampling, the context error: how well one forward predicts the next chunk
from heavy noise with the clip's own chunks in the cache, with another clip's, and against
copying the last shown frame, a floor that only a student reading the motion beats.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .eval import Evaluator, continuation
from .evalnet import ATTRIBUTES, AttributeNet
from .pipeline import Rollout, StreamingPipeline, chunk_start_frame
from .schedules import SCHEDULES, make_schedule
from .vae import StreamingDecoder, encode, to_uint8_frames, to_video_tensor
from .world import WORLDS, Clip, heldout_seed, render_clip

ROWS = ("real clip", "VAE round trip", "student, continuing the clip", "student, from noise")
MAX_CLIPS = 64
# Noise levels at which the context error is read: where a few-step student decides a chunk.
CONTEXT_SIGMAS = (0.5, 0.8, 0.95)
CONTEXTS = ("own clip", "another clip", "copy the last shown frame")


@torch.no_grad()
def clip_latent(pipe: StreamingPipeline, clip: Clip) -> torch.Tensor:
    """A clip's latent video, encoded once and shared by the videos and the context error."""
    return encode(pipe.vae, to_video_tensor([clip.frames])).to(pipe.device, pipe.dtype)


@torch.no_grad()
def continuation_videos(pipe: StreamingPipeline, clip: Clip, real: torch.Tensor, context_chunks: int,
                        schedule: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Each row of `ROWS` for one clip (`real`: its `clip_latent`): uint8 frames from the first
    generated frame on.  The student's rows are what `generate` streams, with and without the
    clip's first frames as its `context`."""
    first = chunk_start_frame(context_chunks, pipe.preset.model.chunk_frames)
    fps = pipe.preset.sampling.fps
    videos = {"real clip": clip.frames[first:],
              "VAE round trip": to_uint8_frames(StreamingDecoder(pipe.vae).decode(real.float()))[first:]}
    continuing = pipe.generate(clip.caption, schedule, seconds=(len(clip.frames) - first) / fps, seed=seed,
                               context=clip.frames[:first])
    from_noise = pipe.generate(clip.caption, schedule, seconds=(len(clip.frames) - 1) / fps, seed=seed)
    videos["student, continuing the clip"] = np.concatenate([event.frames for event in continuing])
    videos["student, from noise"] = np.concatenate([event.frames for event in from_noise])[first:]
    return {row: videos[row] for row in ROWS}


@torch.no_grad()
def context_errors(pipe: StreamingPipeline, clips: list[Clip], latents: list[torch.Tensor], context_chunks: int,
                   sigmas: tuple[float, ...] = CONTEXT_SIGMAS, seed: int = 0) -> dict[str, list[float]]:
    """How much the student reads its context: the x0 error (MSE per latent number) of the first
    chunk after the shown ones, predicted in one forward from its real latent noised to each σ,
    with the clip's own first chunks in the cache, with another clip's (the next in `clips`),
    and, as the floor a reader of motion should beat, of the last shown latent frame repeated.
    `latents`: the clips' `clip_latent`s."""
    p, cf = pipe.preset, pipe.preset.model.chunk_frames
    check_context_chunks(context_chunks, clips[0], cf)
    if len(clips) < 2:
        raise ValueError("context_errors needs at least 2 clips (one's context is shown to another)")
    if len(latents) != len(clips):
        raise ValueError(f"context_errors got {len(latents)} latents for {len(clips)} clips: one clip_latent a clip")
    start = context_chunks * cf
    noise_gen = torch.Generator().manual_seed(seed)
    sums = {c: [0.0] * len(sigmas) for c in CONTEXTS}
    for i, clip in enumerate(clips):
        x0 = latents[i][:, :, start:start + cf]
        noise = torch.randn(x0.shape, generator=noise_gen).to(x0)
        text = pipe.encode_prompt(clip.caption)
        for context, shown in (("own clip", latents[i]), ("another clip", latents[(i + 1) % len(clips)])):
            rollout = Rollout(pipe.model, pipe.scheduler, make_schedule("fixed", p), p, seed, device=pipe.device,
                              dtype=pipe.dtype)
            for k in range(context_chunks):
                rollout.feed(shown[:, :, k * cf:(k + 1) * cf], text)
            for j, sigma in enumerate(sigmas):
                x_t = pipe.scheduler.add_noise(x0, noise, sigma)
                t = x0.new_full((1, cf), sigma * pipe.scheduler.num_train_timesteps)
                # An uncommitted forward only fills the chunk's own slots: each σ sees the same cache.
                flow = pipe.model(x_t, t, text, cache=rollout.cache, start_frame=start).flow
                sums[context][j] += (pipe.scheduler.to_x0(x_t, flow, sigma) - x0).pow(2).mean().item()
        copy = latents[i][:, :, start - 1:start].expand_as(x0)
        for j in range(len(sigmas)):
            sums["copy the last shown frame"][j] += (copy - x0).pow(2).mean().item()
    return {c: [v / len(clips) for v in values] for c, values in sums.items()}


def check_context_chunks(context_chunks: int, clip: Clip, chunk_frames: int, name: str = "context_chunks") -> None:
    """At least one chunk shown and one generated."""
    chunks = (len(clip.frames) + 3) // 4 // chunk_frames
    if not 1 <= context_chunks < chunks:
        raise ValueError(f"{name}={context_chunks} is outside the allowed range 1..{chunks - 1} "
                         f"({chunks} chunks a clip, at least one generated)")


def score_continuations(pipe: StreamingPipeline, evaluator: Evaluator, clips: list[Clip], context_chunks: int,
                        schedule: str = "fixed", seed: int = 0) -> dict[str, dict]:
    """Per row of `ROWS`: total score, adherence per attribute and its blind level, over `clips`."""
    check_context_chunks(context_chunks, clips[0], pipe.preset.model.chunk_frames)
    student = pipe.for_schedule(schedule)
    latents = [clip_latent(student, clip) for clip in clips]
    videos = {row: [] for row in ROWS}
    attributes = []
    for clip, real in zip(clips, latents):
        for row, frames in continuation_videos(student, clip, real, context_chunks, schedule, seed).items():
            videos[row].append(frames)
        attributes.append(continuation(clip.attributes, len(videos["real clip"][-1])))
    report = {}
    for row in ROWS:
        s = evaluator.score(videos[row], attributes)
        report[row] = {"total_score": s["total_score"], "adherence": s["adherence_by_attribute"],
                       "blind": s["blind_by_attribute"]}
    errors = context_errors(student, clips, latents, context_chunks, seed=seed) if len(clips) > 1 else None
    return {"student": student.student, "schedule": schedule, "context_chunks": context_chunks,
            "first_generated_frame": chunk_start_frame(context_chunks, pipe.preset.model.chunk_frames),
            "clips": len(clips), "rows": report,
            "context_error": None if errors is None else {"sigmas": list(CONTEXT_SIGMAS), "contexts": errors}}


def markdown(report: dict) -> str:
    lines = [f"{report['clips']} held-out one-object clips, the first {report['context_chunks']} chunks shown "
             f"(frames 0..{report['first_generated_frame'] - 1}); the {report['student']} student, "
             f"{report['schedule']} schedule; adherence [blind]",
             "", "| frames from " + str(report["first_generated_frame"]) + " on | total | "
             + " | ".join(ATTRIBUTES) + " |", "|---|---:|" + "---:|" * len(ATTRIBUTES)]
    for row, r in report["rows"].items():
        cells = " | ".join(f"{r['adherence'][k]:.0%} [{r['blind'][k]:.0%}]" for k in ATTRIBUTES)
        lines.append(f"| {row} | {r['total_score']:.1f} | {cells} |")
    errors = report["context_error"]
    if errors:
        lines += ["", f"x0 error of chunk {report['context_chunks']} predicted in one forward from σ, by what the "
                  "cache holds (lower: the context read better)", "",
                  "| context | " + " | ".join(f"σ {s}" for s in errors["sigmas"]) + " |",
                  "|---|" + "---:|" * len(errors["sigmas"])]
        lines += [f"| {c} | " + " | ".join(f"{e:.3f}" for e in v) + " |" for c, v in errors["contexts"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsa_core.continuation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=48, help=f"held-out one-object clips (1..{MAX_CLIPS})")
    ap.add_argument("--context-chunks", type=int, default=3,
                    help="chunks of each clip shown before the student goes on (default 3: 2 s of a 5 s clip)")
    ap.add_argument("--schedule", choices=list(SCHEDULES), default="fixed",
                    help="the schedule generating the rest, with its shipped student (default: fixed 4 steps)")
    ap.add_argument("--weights", type=Path, metavar="DIR", help="weights folder (default: weights/tiny)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device")
    ap.add_argument("--json", type=Path, help="write the report here")
    args = ap.parse_args(argv)
    if not 1 <= args.prompts <= MAX_CLIPS:
        ap.error(f"--prompts={args.prompts} is outside the allowed range 1..{MAX_CLIPS}")
    pipe = StreamingPipeline.from_preset("tiny", weights_dir=args.weights, device=args.device)
    clips = [render_clip(heldout_seed(i), WORLDS["simple"]) for i in range(args.prompts)]
    try:
        check_context_chunks(args.context_chunks, clips[0], pipe.preset.model.chunk_frames, "--context-chunks")
        seed = pipe.check_seed(args.seed)
    except ValueError as e:
        ap.error(str(e))
    evaluator = Evaluator(AttributeNet.shipped())
    report = score_continuations(pipe, evaluator, clips, args.context_chunks, args.schedule, seed)
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
