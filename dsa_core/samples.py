"""`python -m dsa_core.samples`: the sample videos and contact sheet in `assets/`, from the shipped weights.

Each prompt is a held-out world caption (never trained on); the sheet shows, per prompt, a
row of the generated video's frames above a row of the world's own rendering of that
caption's clip, so one can see whether colour, shape and motion follow the prompt.  By
default the captions come from the simple world (one object on a solid background), where
the shipped model follows the colours; `--world full` draws from the whole world.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .media import contact_sheet, write_mp4
from .pipeline import StreamingPipeline
from .world import WORLDS, heldout_seed, render_clip

# Simple-world held-out clips chosen by caption for variety, before any was generated: a small
# object sliding right, a big one expanding, a big one moving down.
HELDOUT = (2, 3, 10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsa_core.samples", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("assets"))
    ap.add_argument("--heldout", type=int, nargs="+", default=list(HELDOUT))
    ap.add_argument("--world", choices=list(WORLDS), default="simple")
    ap.add_argument("--schedule", default="adaptive")
    ap.add_argument("--every", type=int, default=8)
    args = ap.parse_args(argv)
    pipe = StreamingPipeline.from_preset("tiny")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, captions, summaries = [], [], []
    for n, index in enumerate(args.heldout):
        clip = render_clip(heldout_seed(index), WORLDS[args.world])
        gen = pipe.generate(clip.caption, args.schedule, seconds=5, seed=index)
        frames = np.concatenate([e.frames for e in gen])
        write_mp4(args.out / f"sample_{n}.mp4", [frames], pipe.preset.sampling.fps)
        rows += [frames[:: args.every], clip.frames[:: args.every]]
        captions.append(clip.caption)
        summaries.append({"file": f"sample_{n}.mp4", "prompt": clip.caption, "nfe": gen.nfe,
                          "steps": [e.steps for e in gen.events]})
    sheet = Image.fromarray(contact_sheet(rows, scale=2))
    label_h = 14
    canvas = Image.new("RGB", (sheet.width, sheet.height + label_h * len(captions)), (255, 255, 255))
    canvas.paste(sheet, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for n, caption in enumerate(captions):
        draw.text((4, sheet.height + n * label_h), f"rows {2 * n + 1}-{2 * n + 2} (generated, world): {caption}",
                  fill=(0, 0, 0))
    canvas.save(args.out / "samples_contact_sheet.png")
    (args.out / "samples.json").write_text(json.dumps(summaries, indent=2))
    print(json.dumps(summaries, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
