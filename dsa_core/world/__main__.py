"""Contact sheets of world clips, for eyeballing.

python -m dsa_core.world --seed 3 --out /tmp/x.png          # every 8th frame, caption to stdout
python -m dsa_core.world --seed 3 5 7 --out /tmp/x.png --attrs
python -m dsa_core.world --bench 200                        # render speed, ms per clip
"""

from __future__ import annotations

import argparse
import json
import time

from ..media import contact_sheet
from .config import WorldConfig, heldout_seed
from .render import render_clip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m dsa_core.world", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seed", type=int, nargs="+", default=[0], help="clip seed(s), one sheet row each")
    ap.add_argument("--heldout", action="store_true", help="treat --seed values as held-out indices")
    ap.add_argument("--out", default=None, help="PNG path for the contact sheet")
    ap.add_argument("--every", type=int, default=8, help="show every n-th frame (default 8)")
    ap.add_argument("--scale", type=int, default=3, help="nearest-neighbour upscale (default 3)")
    ap.add_argument("--attrs", action="store_true", help="also print the attributes as JSON")
    ap.add_argument("--bench", type=int, default=0, metavar="N", help="time rendering N clips and exit")
    args = ap.parse_args(argv)

    cfg = WorldConfig()
    if args.bench:
        render_clip(0, cfg)
        t0 = time.perf_counter()
        for i in range(args.bench):
            render_clip(i, cfg)
        dt = (time.perf_counter() - t0) / args.bench
        print(f"{dt * 1e3:.1f} ms per clip ({cfg.num_frames}x{cfg.height}x{cfg.width}), {args.bench} clips")
        return

    rows = []
    for s in args.seed:
        seed = heldout_seed(s) if args.heldout else s
        clip = render_clip(seed, cfg)
        print(f"seed {seed}: {clip.caption}")
        if args.attrs:
            print(json.dumps(clip.attributes, indent=1))
        rows.append(clip.frames[:: args.every])
    if args.out:
        from PIL import Image

        Image.fromarray(contact_sheet(rows, args.scale)).save(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
