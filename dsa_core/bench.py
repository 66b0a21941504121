"""`python -m dsa_core.bench`: every schedule side by side in one run, on the same prompts and noise.

Reports per schedule: NFE per video, transformer ms per forward, decode ms per chunk,
end-to-end generated frames per second, first-chunk latency, and the speed ratios against
fixed 4 steps measured in the same run.  Also the confidence head's share of a forward, in
FLOPs (exact, from torch's FLOP counter) and in time (head alone vs whole forward).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import WAN_1_3B, Preset
from .model import CausalWanModel
from .pipeline import StreamingPipeline
from .weights import default_weights_dir

# (label, schedule name, parameters): the rows of DSA's Table 2 plus FFE and diagonal.
ROWS: list[tuple[str, str, dict]] = [
    ("fixed 1", "fixed", {"steps": 1}),
    ("fixed 2", "fixed", {"steps": 2}),
    ("fixed 3", "fixed", {"steps": 3}),
    ("fixed 4", "fixed", {"steps": 4}),
    ("ffe 1*", "ffe", {"steps": 1}),
    ("ffe 2*", "ffe", {"steps": 2}),
    ("diagonal", "diagonal", {}),
    ("adaptive", "adaptive", {}),
    ("proxy", "proxy", {}),
]
PROMPTS = [
    "a red ball bounces on a striped background",
    "a blue square moves left over a green gradient",
    "two yellow stars spin on a checkerboard",
    "a small purple triangle moves up, then the scene cuts to a white circle",
]


@dataclass
class Row:
    schedule: str
    nfe: float
    steps_per_chunk: float
    transformer_ms_per_forward: float
    decode_ms_per_chunk: float
    fps: float
    latency_s: float
    speedup_vs_fixed4: float = 0.0
    nfe_vs_fixed4: float = 0.0


class Tally:
    """One schedule's measurements, accumulated over prompts and seeds."""

    def __init__(self) -> None:
        self.nfe, self.steps, self.fwd_ms, self.dec_ms, self.fps, self.latency = [], [], [], [], [], []

    def add(self, gen, events, latency: float, total: float) -> None:
        self.nfe.append(gen.nfe)
        self.steps.append(statistics.mean(e.steps for e in events))
        self.fwd_ms.append(sum(e.transformer_ms for e in events) / gen.nfe)
        self.dec_ms.append(statistics.mean(e.decode_ms for e in events))
        self.fps.append(sum(len(e.frames) for e in events) / total)
        self.latency.append(latency)

    def row(self, label: str) -> Row:
        m = statistics.mean
        return Row(label, m(self.nfe), m(self.steps), m(self.fwd_ms), m(self.dec_ms), m(self.fps), m(self.latency))


def run_once(pipe: StreamingPipeline, name: str, params: dict, prompt: str, seed: int, seconds: float, tally: Tally):
    gen = pipe.generate(prompt, name, seconds=seconds, seed=seed, **params)
    start = time.perf_counter()
    events, latency = [], 0.0
    for event in gen:
        if not events:
            latency = time.perf_counter() - start
        events.append(event)
    tally.add(gen, events, latency, time.perf_counter() - start)


def head_flops_share(preset: Preset) -> float:
    """FLOPs of the confidence head / FLOPs of a streaming forward of the first chunk.

    Counted on the meta device, so it costs nothing even for the 1.3B model.
    """
    p = preset
    h, w, cf = p.sampling.height // 8, p.sampling.width // 8, p.model.chunk_frames
    with torch.device("meta"):
        model = CausalWanModel(p.model)
        tokens = cf * model.frame_tokens(h, w)
        text = model.prepare_text(torch.zeros(1, p.model.text_len, p.model.text_dim))
        with FlopCounterMode(display=False) as whole:
            model(torch.zeros(1, p.model.in_dim, cf, h, w), torch.zeros(1, cf), text,
                  cache=model.new_cache(h, w, p.sampling.window_frames, p.sampling.sink_frames))
        with FlopCounterMode(display=False) as head:
            model.confidence_head([torch.zeros(1, tokens, p.model.dim) for _ in p.model.taps], tokens)
    return head.get_total_flops() / whole.get_total_flops()


def head_time_share(pipe: StreamingPipeline, repeats: int = 20) -> tuple[float, float]:
    """Measured time of the head alone and of a whole streaming forward of a chunk (ms)."""
    model, p = pipe.model, pipe.preset
    h, w, cf = p.sampling.height // 8, p.sampling.width // 8, p.model.chunk_frames
    x = torch.randn(1, p.model.in_dim, cf, h, w, device=pipe.device)
    t = torch.full((1, cf), 500.0, device=pipe.device)
    text = pipe.encode_prompt(PROMPTS[0])
    tokens = cf * model.frame_tokens(h, w)
    taps = [torch.randn(1, tokens, p.model.dim, device=pipe.device) for _ in p.model.taps]

    def forward():
        model(x, t, text, cache=model.new_cache(h, w, p.sampling.window_frames, p.sampling.sink_frames))

    def timed(fn) -> float:
        fn()
        samples = []
        for _ in range(repeats):
            start = pipe.synchronize()
            fn()
            samples.append(pipe.synchronize() - start)
        return statistics.median(samples) * 1e3

    with torch.inference_mode():
        return timed(lambda: model.confidence_head(taps, tokens)), timed(forward)


def markdown(rows: list[Row], seconds: float) -> str:
    lines = [
        f"| schedule | NFE / {seconds:g} s video | steps / chunk | transformer ms / forward | decode ms / chunk "
        "| generated FPS | first-chunk latency s | speed vs fixed 4 | NFE vs fixed 4 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.schedule} | {r.nfe:.1f} | {r.steps_per_chunk:.2f} | {r.transformer_ms_per_forward:.2f} "
            f"| {r.decode_ms_per_chunk:.1f} | {r.fps:.1f} | {r.latency_s:.3f} | {r.speedup_vs_fixed4:.2f}× "
            f"| {r.nfe_vs_fixed4:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsa_core.bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="2 prompts × 1 seed (about a minute on 2 CPU cores)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--random-init", action="store_true", help="random weights (the default when none are shipped)")
    ap.add_argument("--device")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)

    random_init = args.random_init or not (default_weights_dir(args.model) / "MANIFEST").is_file()
    pipe = StreamingPipeline.from_preset(args.model, random_init=random_init, device=args.device)
    prompts, seeds = (PROMPTS[:2], [0]) if args.quick else (PROMPTS, list(range(args.seeds)))
    # Warm-up: first calls pay for allocations and kernel selection.
    list(pipe.generate(PROMPTS[0], "fixed", seconds=args.seconds, seed=0, steps=1))

    # Schedules take turns on each (prompt, seed), so drift in machine speed hits all alike.
    tallies = {label: Tally() for label, _, _ in ROWS}
    for prompt in prompts:
        for seed in seeds:
            for label, name, params in ROWS:
                run_once(pipe, name, params, prompt, seed, args.seconds, tallies[label])
            print(f"  done: {prompt!r}, seed {seed}", file=sys.stderr)
    rows = [tallies[label].row(label) for label, _, _ in ROWS]
    ref = next(r for r in rows if r.schedule == "fixed 4")
    for r in rows:
        r.speedup_vs_fixed4 = r.fps / ref.fps
        r.nfe_vs_fixed4 = r.nfe / ref.nfe
    head_ms, forward_ms = head_time_share(pipe)

    device = f"{pipe.device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"model {args.model}{' (RANDOM weights)' if random_init else ''}, {device}, "
          f"{len(prompts)} prompts × {len(seeds)} seeds, {args.seconds:g} s videos at "
          f"{pipe.preset.sampling.width}×{pipe.preset.sampling.height}, {pipe.preset.sampling.fps} fps\n")
    print(markdown(rows, args.seconds))
    print(
        f"\nconfidence head, {args.model}: {head_flops_share(pipe.preset):.3%} of a forward's FLOPs, "
        f"{head_ms / forward_ms:.2%} of its measured time ({head_ms:.3f} ms of {forward_ms:.2f} ms); "
        f"wan-1.3b at {WAN_1_3B.sampling.width}×{WAN_1_3B.sampling.height}: "
        f"{head_flops_share(WAN_1_3B):.4%} of a forward's FLOPs"
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
