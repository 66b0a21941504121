"""`python -m dsa_core.generate`: stream one video to an MP4 and its per-chunk statistics to JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from .config import get_preset
from .media import Mp4Writer
from .pipeline import StreamingPipeline, read_context
from .schedules import SCHEDULES


def schedule_params(args: argparse.Namespace) -> dict:
    """Map the CLI's flags onto the chosen schedule's constructor arguments."""
    params: dict = {}
    if args.steps is not None:
        key = {"fixed": "steps", "ffe": "steps", "adaptive": "max_steps", "proxy": "max_steps"}.get(args.schedule)
        if key is None:
            raise ValueError("--steps does not apply to the diagonal schedule; use --counts, e.g. --counts 4,3,2")
        params[key] = args.steps
    if args.counts is not None:
        if args.schedule != "diagonal":
            raise ValueError("--counts applies only to --schedule diagonal")
        params["counts"] = args.counts
    for flag in ("margin", "tol", "min_steps"):
        value = getattr(args, flag)
        if value is not None:
            if args.schedule not in ("adaptive", "proxy"):
                raise ValueError(f"--{flag.replace('_', '-')} applies only to the adaptive and proxy schedules")
            params[flag] = value
    return params


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dsa_core.generate", description=__doc__)
    p.add_argument("--prompt", required=True)
    p.add_argument(
        "--schedule",
        default="adaptive",
        choices=list(SCHEDULES),
        help="; ".join(f"{k}: {v.help}" for k, v in SCHEDULES.items()),
    )
    p.add_argument(
        "--steps", type=int, help="fixed: steps per chunk; ffe: steps after chunk 0; adaptive/proxy: max steps"
    )
    p.add_argument("--counts", help="diagonal: per-chunk step counts, the last repeated (e.g. 4,3,2)")
    p.add_argument("--margin", type=float, help="adaptive/proxy: stop when conf >= previous chunk's - margin")
    p.add_argument("--tol", type=float, help="adaptive/proxy: stop when conf changed less than tol")
    p.add_argument("--min-steps", dest="min_steps", type=int, help="adaptive/proxy: never stop before this step")
    p.add_argument("--seconds", type=float, default=5.0, help="video length (with --continue: after the given one)")
    p.add_argument(
        "--continue", dest="continue_from", metavar="VIDEO",
        help="a video file to continue: scaled and cropped to the model's frame, at its fps; the output starts with "
        "its last frames that fill whole chunks and leave room for --seconds within the length limit",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="tiny")
    p.add_argument("--weights", help="weights folder (default: weights/<model>)")
    p.add_argument("--random-init", action="store_true", help="random weights: tests the machinery, not the model")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--low-memory", action="store_true", help="wan-1.3b: keep the text encoder on the CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the transformer (slow first video)")
    p.add_argument("--hub-cache-dir", help="wan-1.3b: Hugging Face cache folder (default: HF_HUB_CACHE)")
    p.add_argument("--hub-revision", help="wan-1.3b: revision of the Self-Forcing checkpoint")
    p.add_argument("--out", default="out.mp4")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        params = schedule_params(args)
        context = None
        if args.continue_from is not None:  # read before the weights load: a bad file fails fast
            context = read_context(args.continue_from, get_preset(args.model), args.seconds)
        if args.random_init:
            print(
                f"NOTE: --random-init: the {args.model} model runs with RANDOM weights; "
                "the video shows noise-like patterns, not the prompt.",
                file=sys.stderr,
            )
        pipe = StreamingPipeline.from_preset(
            args.model, weights_dir=args.weights, random_init=args.random_init, device=args.device, seed=args.seed,
            low_memory=args.low_memory, compile=args.compile, hub_cache_dir=args.hub_cache_dir,
            hub_revision=args.hub_revision,
        )
        gen = pipe.generate(args.prompt, args.schedule, seconds=args.seconds, seed=args.seed, context=context, **params)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    writer = Mp4Writer(out, pipe.preset.sampling.fps)
    try:
        writer.write(gen.context_frames)
        with tqdm(total=gen.num_chunks - gen.context_chunks, unit="chunk", desc=f"{args.schedule}") as bar:
            for event in gen:
                writer.write(event.frames)
                bar.set_postfix(steps=event.steps, nfe=event.nfe, conf=f"{event.confidence[-1]:.3f}")
                bar.update()
    finally:
        writer.close()
    summary = gen.summary()
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out} ({summary['num_frames']} frames, NFE {summary['nfe']}) and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
