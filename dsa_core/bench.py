"""`python -m dsa_core.bench`: DSA's Table 2 on our model — every schedule side by side in one
run, on the same prompts and initial noise.

Reports per schedule: NFE per video, transformer ms per forward, decode ms per chunk,
end-to-end generated frames per second, first-chunk latency, the quality scores of
`dsa_core.eval` (prompts are held-out world captions, so what each video should show is
known), and the ratios against fixed 4 steps measured in the same run.  Also the confidence
head's share of a forward, in FLOPs (exact, from torch's FLOP counter) and in time.
`--plot` draws quality against NFE (the Pareto view); with `--seconds` above 5 the quality
of every 5 s segment is reported too (drift along a long video).  `--row` scores other
schedules or parameters instead of the Table 2 rows (a stopping rule's variants, say).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .calibration import load_teacher
from .config import WAN_1_3B, Preset
from .eval import ATTRIBUTES, REFERENCE_SEED0, Evaluator
from .evalnet import AttributeNet
from .model import CausalWanModel
from .pipeline import ChunkEvent, Generation, StreamingPipeline
from .schedules import make_schedule
from .text import TextEncoder
from .train.ode import OdeConfig
from .train.teacher import grid_start, load_teacher_folder, teacher_folder_problem, teacher_sample
from .vae import StreamingDecoder, encode, to_uint8_frames, to_video_tensor
from .world import WORLDS, Clip, heldout_seed, render_clip

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
# Held-out world clips whose captions are the prompts (never trained on); their attributes
# are what the videos are scored against.  The default run uses the first DEFAULT_PROMPTS;
# more of them narrow the noise of a comparison (16 videos leave rows a point or two apart
# by chance, and the Fréchet distance behind fidelity is biased upward on few samples).
# `--first-prompt` moves the set, so that a rule tuned on clips 0–31 can be checked on
# prompts it was not tuned on; it stays below the fidelity's reference clips.  64 prompts,
# as many as the fidelity's reference clips, take about 6 minutes a world for three rows here.
MAX_PROMPTS = 64
DEFAULT_PROMPTS = 8
DEFAULT_SEEDS = 2


@dataclass
class Row:
    schedule: str
    nfe: float
    steps_per_chunk: float
    transformer_ms_per_forward: float
    decode_ms_per_chunk: float
    fps: float
    latency_s: float
    total_score: float = float("nan")
    adherence: float = float("nan")
    temporal: float = float("nan")
    sharpness: float = float("nan")
    fidelity: float = float("nan")
    speedup_vs_fixed4: float = 0.0
    nfe_vs_fixed4: float = 0.0
    segment_scores: list[float] = field(default_factory=list)
    adherence_by_attribute: dict[str, float] = field(default_factory=dict)
    # What the same outputs score against shuffled prompts (`eval.blind_adherence`).
    blind_by_attribute: dict[str, float] = field(default_factory=dict)
    student: str = "dmd"  # the trained student the row ran on


class Tally:
    """One schedule's measurements and videos, accumulated over prompts and seeds."""

    def __init__(self) -> None:
        self.nfe, self.steps, self.fwd_ms, self.dec_ms, self.fps, self.latency = [], [], [], [], [], []
        self.videos: list[np.ndarray] = []
        self.attributes: list[dict] = []

    def add(self, gen: Generation, events: list[ChunkEvent], latency: float, total: float, attributes: dict) -> None:
        self.nfe.append(gen.nfe)
        self.steps.append(statistics.mean(e.steps for e in events))
        self.fwd_ms.append(sum(e.transformer_ms for e in events) / gen.nfe)
        self.dec_ms.append(statistics.mean(e.decode_ms for e in events))
        self.fps.append(sum(len(e.frames) for e in events) / total)
        self.latency.append(latency)
        self.videos.append(np.concatenate([e.frames for e in events]))
        self.attributes.append(attributes)

    def row(self, label: str, evaluator: Evaluator | None) -> Row:
        m = statistics.mean
        row = Row(label, m(self.nfe), m(self.steps), m(self.fwd_ms), m(self.dec_ms), m(self.fps), m(self.latency))
        if evaluator is not None:
            seg = evaluator.cfg.segment_frames
            score = evaluator.score([v[:seg] for v in self.videos], self.attributes)
            row.total_score, row.adherence = score["total_score"], score["adherence"]
            row.temporal, row.sharpness, row.fidelity = score["temporal"], score["sharpness"], score["fidelity"]
            row.adherence_by_attribute = score["adherence_by_attribute"]
            row.blind_by_attribute = score["blind_by_attribute"]
            segments = min(len(v) for v in self.videos) // seg
            # Segment 1 is judged against the whole caption, later ones against its last scene.
            row.segment_scores = [row.total_score] + [
                evaluator.score_continuation([v[k * seg : (k + 1) * seg] for v in self.videos],
                                             self.attributes)["total_score"]
                for k in range(1, segments)
            ]
        return row


def parse_row(spec: str) -> tuple[str, str, dict]:
    """`NAME` or `NAME:key=value,...` (a `--row`) → (label, schedule name, parameters).  A spec
    that is one of ROWS keeps that row's label; others are labelled by their parameters."""
    name, _, rest = spec.partition(":")
    params: dict = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise ValueError(f"{item!r} is not key=value (e.g. adaptive:min_steps=2,margin=0.05)")
        try:
            params[key] = int(value)
        except ValueError:
            try:
                params[key] = float(value)
            except ValueError:
                raise ValueError(f"{key}={value!r} is not a number") from None
    for label, known, known_params in ROWS:
        if (known, known_params) == (name, params):
            return label, name, params
    return " ".join([name, *(f"{k}={v}" for k, v in params.items())]), name, params


def runs(pipe: StreamingPipeline, rows: list[tuple[str, str, dict]] = ROWS, student: str | None = None
         ) -> list[tuple[str, str, dict, StreamingPipeline]]:
    """Every row with the pipeline (student) it runs on: each schedule on its own student
    (`ScheduleDefaults.students`), and, where that is not the DMD student, the same schedule
    on the DMD student beside it — the comparison the FFE and diagonal recipes are judged by.
    `student` runs every row on that one student instead (schedules compared on equal weights)."""
    if student is not None:
        return [(label, name, params, pipe.with_student(student)) for label, name, params in rows]
    plan = []
    for label, name, params in rows:
        own = pipe.for_schedule(name)
        plan.append((label, name, params, own))
        if own.student != "dmd":
            plan.append((f"{label} · dmd student", name, params, pipe.with_student("dmd")))
    return plan


def run_once(pipe: StreamingPipeline, name: str, params: dict, clip: Clip, seed: int, seconds: float,
             tally: Tally) -> None:
    gen = pipe.generate(clip.caption, name, seconds=seconds, seed=seed, **params)
    start = time.perf_counter()
    events, latency = [], 0.0
    for event in gen:
        if not events:
            latency = time.perf_counter() - start
        events.append(event)
    tally.add(gen, events, latency, time.perf_counter() - start, clip.attributes)


def reference_scores(pipe: StreamingPipeline, clips: list[Clip], evaluator: Evaluator,
                     teachers: tuple[Path, ...] = (), renoise: tuple[float, ...] = (),
                     shipped_teacher: bool = True) -> dict[str, dict]:
    """Scores of what bounds the students, on the same prompts: their own clips as rendered;
    after a round trip through the model's VAE (encode → decode), above which nothing this VAE
    decodes can score; and, where the weights ship it, the teacher's samples as the ODE stage
    draws them, which is what distillation can at best pass on.  Each line tells how much of
    a gap is the VAE's, the teacher's or the distillation's.  `teachers`: more teacher folders
    (a `teacher` stage's `final/`), each sampled with its own text encoder on the same noise.
    `renoise`: σ levels from which each teacher also samples the clips themselves, noised
    (`teacher_sample`'s `start_sigma`): where it loses what it cannot draw from noise.
    `shipped_teacher=False` leaves the shipped teacher out (scoring candidates against numbers
    already measured, without sampling it again)."""
    videos = {"real clips": [c.frames for c in clips], "real clips through the VAE": []}
    latents = [encode(pipe.vae, to_video_tensor([c.frames]).to(pipe.device)) for c in clips]
    for x0 in latents:
        videos["real clips through the VAE"].append(to_uint8_frames(StreamingDecoder(pipe.vae).decode(x0)))
    ode = OdeConfig()
    sampling = f"{ode.teacher_steps} steps, CFG {ode.cfg_scale:g}"
    candidates = []
    if shipped_teacher and pipe.weights_dir is not None and (pipe.weights_dir / "teacher.safetensors").is_file():
        candidates.append(("teacher", load_teacher(pipe.weights_dir, pipe), pipe.text_encoder))
    for folder in teachers:
        candidates.append((f"teacher {folder}", *load_teacher_folder(folder, pipe.preset, pipe.device)))
    for name, teacher, text in candidates:
        videos[f"{name} ({sampling})"] = teacher_videos(pipe, teacher, text, clips, ode.teacher_steps, ode.cfg_scale)
        for sigma in renoise:
            start = grid_start(pipe.scheduler, ode.teacher_steps, sigma)
            videos[f"{name} ({sampling}) from the clips at σ {start:.2f}"] = teacher_videos(
                pipe, teacher, text, clips, ode.teacher_steps, ode.cfg_scale, latents, sigma)
    out = {}
    for name, vids in videos.items():
        score = evaluator.score(vids, [c.attributes for c in clips])
        out[name] = {k: score[k] for k in ("total_score", "adherence", "adherence_by_attribute", "blind_by_attribute")}
    return out


@torch.no_grad()
def teacher_videos(pipe: StreamingPipeline, teacher: CausalWanModel, text_encoder: TextEncoder, clips: list,
                   steps: int, cfg_scale: float, latents: list[torch.Tensor] | None = None,
                   start_sigma: float = 1.0) -> list[np.ndarray]:
    """The bidirectional teacher's sample of each clip's caption over its whole training
    length (21 latent frames), seeded per clip, decoded; with `latents` and `start_sigma` < 1,
    from each clip's latents noised to that level instead of from pure noise."""
    m = pipe.preset.model
    uncond = teacher.prepare_text(text_encoder.encode([""]).to(pipe.device))
    shape = (1, m.in_dim, pipe.latent_frames(5.0), *pipe.preset.latent_size())
    out = []
    for i, c in enumerate(clips):
        cond = teacher.prepare_text(text_encoder.encode([c.caption]).to(pipe.device))
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(i)).to(pipe.device)
        x0, _ = teacher_sample(teacher, cond, uncond, noise, pipe.scheduler, steps, cfg_scale,
                               x0=None if latents is None else latents[i], start_sigma=start_sigma)
        out.append(to_uint8_frames(StreamingDecoder(pipe.vae).decode(x0)))
    return out


def head_flops_share(preset: Preset) -> float:
    """FLOPs of the confidence head / FLOPs of a streaming forward of the first chunk.

    Counted on the meta device, so it costs nothing even for the 1.3B model.
    """
    p = preset
    (h, w), cf = p.latent_size(), p.model.chunk_frames
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
    (h, w), cf = p.latent_size(), p.model.chunk_frames
    x = torch.randn(1, p.model.in_dim, cf, h, w, device=pipe.device)
    t = torch.full((1, cf), 500.0, device=pipe.device)
    text = pipe.encode_prompt(render_clip(heldout_seed(0)).caption)
    tokens = cf * model.frame_tokens(h, w)
    taps = [torch.randn(1, tokens, p.model.dim, device=pipe.device) for _ in p.model.taps]

    def forward() -> None:
        model(x, t, text, cache=model.new_cache(h, w, p.sampling.window_frames, p.sampling.sink_frames))

    def timed(fn: Callable[[], object]) -> float:
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
        f"| schedule | student | NFE / {seconds:g} s video | steps / chunk | transformer ms / forward "
        "| decode ms / chunk | generated FPS | first-chunk latency s | total score | adherence | temporal "
        "| sharpness | fidelity | speed vs fixed 4 | NFE vs fixed 4 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.schedule} | {r.student} | {r.nfe:.1f} | {r.steps_per_chunk:.2f} "
            f"| {r.transformer_ms_per_forward:.2f} | {r.decode_ms_per_chunk:.1f} | {r.fps:.1f} | {r.latency_s:.3f} "
            f"| {r.total_score:.1f} "
            f"| {r.adherence:.1%} | {r.temporal:.3f} | {r.sharpness:.3f} | {r.fidelity:.3f} "
            f"| {r.speedup_vs_fixed4:.2f}× | {r.nfe_vs_fixed4:.2f}× |"
        )
    return "\n".join(lines)


def attribute_markdown(rows: list[Row], references: dict[str, dict], key: str = "adherence_by_attribute") -> str:
    """Adherence per attribute (or, with `key="blind_by_attribute"`, its blind level): the
    references first, then every schedule, so that where an attribute is lost (VAE, teacher or
    distillation) reads down a column."""
    lines = ["| video | " + " | ".join(ATTRIBUTES) + " | mean |", "|---|" + "---:|" * (len(ATTRIBUTES) + 1)]
    named = [(name, ref[key]) for name, ref in references.items()]
    named += [(f"{r.schedule} ({r.student})", getattr(r, key)) for r in rows]
    for name, by in named:
        lines.append(f"| {name} | " + " | ".join(f"{by[k]:.0%}" for k in ATTRIBUTES)
                     + f" | {statistics.mean(by[k] for k in ATTRIBUTES):.1%} |")
    return "\n".join(lines)


def references_text(rows: list[Row], references: dict[str, dict]) -> str:
    lines = [f"{name} (the same prompts and scenes): total score {ref['total_score']:.1f}, "
             f"adherence {ref['adherence']:.1%}" for name, ref in references.items()]
    head = "\n".join(lines) + "\n\n" if lines else ""  # no reference lines under --no-references
    return (head + "adherence per attribute:\n\n" + attribute_markdown(rows, references)
            + "\n\nthe same outputs against shuffled prompts (blind adherence: an attribute's adherence is "
            "evidence of following the prompt only above it):\n\n"
            + attribute_markdown(rows, references, "blind_by_attribute"))


def drift_markdown(rows: list[Row], segment_s: float) -> str:
    n = len(rows[0].segment_scores)
    lines = [
        "| schedule | " + " | ".join(f"{k * segment_s:.0f}–{(k + 1) * segment_s:.0f} s" for k in range(n)) + " |",
        "|---|" + "---:|" * n,
    ]
    lines += [f"| {r.schedule} | " + " | ".join(f"{x:.1f}" for x in r.segment_scores) + " |" for r in rows]
    return "\n".join(lines)


def pareto_figure(rows: list[Row], title: str, references: dict[str, dict[str, float]]) -> Figure:
    """Total score against NFE, one labelled point per schedule, the Pareto front drawn, and
    the reference scores (`reference_scores`) as horizontal lines; returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in rows:
        ax.scatter(r.nfe, r.total_score, color="tab:red" if r.schedule == "adaptive" else "tab:blue", zorder=3)
    front, best = [], float("-inf")
    for r in sorted(rows, key=lambda r: (r.nfe, -r.total_score)):
        if r.total_score > best:
            front.append(r)
            best = r.total_score
    ax.plot([r.nfe for r in front], [r.total_score for r in front], "--", color="grey", lw=1, zorder=2)
    styles = dict(zip(references, itertools.cycle((":", "-.", "--"))))
    for name, ref in references.items():
        ax.axhline(ref["total_score"], ls=styles[name], color="tab:green", lw=1)
    # Room under the lowest point for labels moved beneath it.
    ax.set_ylim(bottom=max(0.0, min(r.total_score for r in rows) - 10))
    ax.set_xlabel("NFE per video")
    ax.set_ylabel("total score (0–100)")
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)  # the run's description outgrows the width
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # Schedules often share an NFE and lie within a point of each other (FFE 1*, diagonal and
    # a recipe's two students at 17).  A label's place must stay inside the axes, and its box
    # meet no marker, label or leader line already drawn.  First every label that can sits
    # beside its point; the rest move onto rings around their points, the nearest ring first,
    # with a leader line that runs through no label and no other marker (two leaders may
    # cross); where no such place is left, a leader may run through a label; where none at
    # all, the label sits beside its point.  A reference line's label sits at the line's left
    # end, or at its right where schedules crowd the left.  A dozen labels need no
    # label-repelling library (adjustText).
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    points = ax.transData.transform([(r.nfe, r.total_score) for r in rows])
    markers = [Bbox.from_bounds(x - 5, y - 5, 10, 10) for x, y in points]
    labels: list[Bbox] = []
    leaders: list[tuple[float, float]] = []  # points along the leader lines drawn so far

    def fits(text: str, where: dict, leaders_may_cross: bool = False, **style) -> bool:
        """Draws the label at `where` and keeps it if the place is free."""
        label = ax.annotate(text, textcoords="offset points", **where, **style)
        label.update_positions(renderer)
        box = Text.get_window_extent(label, renderer)  # the text alone, not its leader line
        line = []
        if label.arrow_patch is not None:
            line = label.arrow_patch.get_path().interpolated(20).vertices  # display coordinates
        tip = ax.transData.transform(label.xy)
        # Near its point a leader may pass over the markers of the point's own cluster.
        far = [(x, y) for x, y in line if np.hypot(x - tip[0], y - tip[1]) > 12]
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        crosses = not leaders_may_cross and (any(b.contains(x, y) for x, y in line for b in labels)
                                             or any(m.contains(x, y) for x, y in far for m in markers))
        on_a_leader = any(box.contains(x, y) for x, y in leaders)
        if inside and not crosses and not on_a_leader and not any(box.overlaps(b) for b in markers + labels):
            labels.append(box)
            leaders.extend(far)
            return True
        label.remove()
        return False

    def place(text: str, candidates: list[dict], **style) -> None:
        for leaders_may_cross in (False, True):
            if any(fits(text, where, leaders_may_cross, **style) for where in candidates):
                return
        ax.annotate(text, textcoords="offset points", **candidates[0], **style)

    for name, ref in references.items():
        ends = [dict(xy=(x, ref["total_score"]), xytext=(dx, dy), ha=ha)
                for x, dx, ha in ((0, 4, "left"), (1, -4, "right")) for dy in (-10, 3)]
        place(name, ends, xycoords=("axes fraction", "data"), fontsize=7, color="tab:green")
    lead = dict(arrowstyle="-", color="grey", lw=0.5, shrinkA=0, shrinkB=4)
    beside = [dict(xytext=(6, -3)), dict(xytext=(-6, -3), ha="right")]
    moved = [dict(xytext=(r * np.cos(a), r * np.sin(a)), arrowprops=lead,  # the label faces away from its point
                  ha="left" if np.cos(a) > 0.1 else "right" if np.cos(a) < -0.1 else "center",
                  va="bottom" if np.sin(a) > 0.1 else "top" if np.sin(a) < -0.1 else "center")
             for r in (16, 26, 38, 52, 68, 86)
             for a in np.radians([30, -30, 150, -150, 60, -60, 120, -120, 0, 180, 90, -90])]
    by_score = sorted(rows, key=lambda r: -r.total_score)
    unplaced = [r for r in by_score if not any(fits(r.schedule, dict(xy=(r.nfe, r.total_score), **where), fontsize=8)
                                               for where in beside)]
    for r in unplaced:  # its places beside the point are taken, and stay taken
        place(r.schedule, [dict(xy=(r.nfe, r.total_score), **where) for where in beside + moved], fontsize=8)
    return fig


def pareto_plot(rows: list[Row], path: Path, title: str, references: dict[str, dict[str, float]]) -> None:
    """`pareto_figure` saved as a PNG."""
    import matplotlib.pyplot as plt

    fig = pareto_figure(rows, title, references)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsa_core.bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="2 prompts × 1 seed (about two minutes on 2 CPU cores)")
    ap.add_argument("--seconds", type=float, default=5.0, help="video length; above 5 s, drift per 5 s segment")
    ap.add_argument("--prompts", type=int, default=DEFAULT_PROMPTS,
                    help=f"held-out world captions to use (1..{MAX_PROMPTS})")
    ap.add_argument("--first-prompt", type=int, default=0, metavar="N",
                    help="the prompts are held-out clips N, N+1, ... (default 0; another N gives a fresh prompt set)")
    ap.add_argument("--world", choices=list(WORLDS), default="full",
                    help="draw the prompts from the whole world or from one-object, solid-background clips")
    ap.add_argument("--seeds", type=int,
                    help=f"noise seeds per prompt (default {DEFAULT_SEEDS}; the references use one)")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--weights", type=Path, metavar="DIR",
                    help="weights folder (default: weights/<model>), e.g. what `python -m dsa_core.train export "
                         "--dest DIR` wrote")
    ap.add_argument("--random-init", action="store_true", help="random weights: times the machinery")
    ap.add_argument("--device")
    ap.add_argument("--json", type=Path, help="write the rows here (with --references-only, the references)")
    ap.add_argument("--plot", type=Path, help="write the quality-vs-NFE plot (PNG) here")
    ap.add_argument("--teacher", type=Path, action="append", default=[], metavar="DIR",
                    help="also score the teacher in DIR (teacher.safetensors and text_encoder/, as a teacher "
                         "stage's final/ folder, or a committed one with a MANIFEST) beside the shipped one; "
                         "repeatable")
    ap.add_argument("--no-shipped-teacher", action="store_true",
                    help="leave the shipped teacher out of the references (it takes a few minutes to sample; "
                         "its numbers do not change between runs)")
    ap.add_argument("--references-only", action="store_true",
                    help="score the references (real clips, VAE round trip, teachers) without the schedules")
    ap.add_argument("--no-references", action="store_true",
                    help="score the schedules only, without the reference lines (real clips, their VAE round trip, "
                         "teachers): they repeat to the digit for the same prompts and take several minutes at "
                         "64 prompts; for comparing candidate weights")
    ap.add_argument("--renoise", type=float, action="append", default=[], metavar="SIGMA",
                    help="also let each teacher sample the prompts' own clips noised to SIGMA in (0, 1) (the "
                         "24-step grid's first sigma at or below it): what it keeps of a real clip from that "
                         "noise level on; repeatable")
    ap.add_argument("--row", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                    help="score these schedules instead of DSA's Table 2 rows, e.g. adaptive:min_steps=2 or "
                         "adaptive:margin=0.05 (a schedule's constructor parameters); fixed 4, the ratios' "
                         "reference, is always run; repeatable")
    ap.add_argument("--student", metavar="NAME",
                    help="run every row on this shipped student (e.g. dmd) instead of each schedule on its own "
                         "with the DMD student beside it")
    args = ap.parse_args(argv)
    table = ROWS
    if args.row:
        table = []
        for spec in args.row:
            try:
                row = parse_row(spec)
            except ValueError as e:
                ap.error(f"--row {spec}: {e}")
            if any(row[0] == label for label, *_ in table):
                ap.error(f"--row {spec}: given twice (as {row[0]!r})")
            table.append(row)
        if not any(label == "fixed 4" for label, *_ in table):
            table.insert(0, next(row for row in ROWS if row[0] == "fixed 4"))
    if args.row and args.references_only:
        ap.error("--row chooses schedules, which --references-only skips")
    if args.student and args.references_only:
        ap.error("--student chooses the schedules' student, which --references-only skips")
    # The references are sampled once per prompt (each teacher on the shipped teacher's noise),
    # so a seed count would silently change nothing.
    if args.seeds is not None and args.references_only:
        ap.error("--seeds sets the schedules' seeds; --references-only samples each prompt once")
    args.seeds = DEFAULT_SEEDS if args.seeds is None else args.seeds
    if args.seeds < 1:
        ap.error(f"--seeds={args.seeds} is outside the allowed range: at least 1")
    for sigma in args.renoise:
        if not 0 < sigma < 1:
            ap.error(f"--renoise={sigma} is outside the allowed range (0, 1): 1 is pure noise, the plain teacher line")
    if not 1 <= args.prompts <= MAX_PROMPTS:
        ap.error(f"--prompts={args.prompts} is outside the allowed range 1..{MAX_PROMPTS}")
    last_first = REFERENCE_SEED0 - MAX_PROMPTS
    if not 0 <= args.first_prompt <= last_first:
        ap.error(f"--first-prompt={args.first_prompt} is outside the allowed range 0..{last_first} "
                 f"(clips from {REFERENCE_SEED0} on are the fidelity's reference clips)")
    for folder in args.teacher:
        problem = teacher_folder_problem(folder)
        if problem:
            ap.error(f"--teacher {problem}")
    if args.no_references and (args.references_only or args.teacher or args.renoise):
        ap.error("--no-references skips the reference lines, which --references-only, --teacher and --renoise ask for")
    if args.references_only and args.plot:
        ap.error("--plot draws the schedules, which --references-only skips")
    if args.weights and args.random_init:
        ap.error("--weights and --random-init exclude each other: random weights load no folder")

    source = " (RANDOM weights)" if args.random_init else f" ({args.weights})" if args.weights else ""
    pipe = StreamingPipeline.from_preset(args.model, weights_dir=args.weights, random_init=args.random_init,
                                         device=args.device)
    if args.student is not None and args.student not in pipe.students():
        ap.error(f"--student {args.student!r} is not shipped with these weights; allowed: {', '.join(pipe.students())}")
    for label, name, params in table if args.row else []:
        try:
            make_schedule(name, pipe.preset, **params)
        except ValueError as e:
            ap.error(f"--row {label}: {e}")
    s = pipe.preset.sampling
    # The world's classifier sees 64×64 videos; a model at another resolution gets no quality columns.
    evaluator = None
    if (s.height, s.width) == (64, 64):
        evaluator = Evaluator(AttributeNet.shipped())
    elif args.plot or args.teacher or args.renoise or args.references_only:
        ap.error(f"--plot, --teacher, --renoise and --references-only need quality scores, which are measured on 64×64 "
                 f"videos only ({args.model} makes {s.width}×{s.height})")
    count, seeds = (2, [0]) if args.quick else (args.prompts, list(range(args.seeds)))
    indices = range(args.first_prompt, args.first_prompt + count)
    prompt_range = f" (held-out clips {indices[0]}–{indices[-1]})" if args.first_prompt else ""
    clips = [render_clip(heldout_seed(i), WORLDS[args.world]) for i in indices]
    teacher_options = (tuple(args.teacher), tuple(args.renoise), not args.no_shipped_teacher)
    if args.references_only:
        print(f"model {args.model}{source}, {len(clips)} {args.world}-world prompts{prompt_range}, one seed each\n")
        references = reference_scores(pipe, clips, evaluator, *teacher_options)
        print(references_text([], references))
        if args.json:
            args.json.write_text(json.dumps(references, indent=2))
        return 0
    # Warm-up: first calls pay for allocations and kernel selection.
    list(pipe.generate(clips[0].caption, "fixed", seconds=1, seed=0, steps=1))

    # Schedules take turns on each (prompt, seed), so drift in machine speed hits all alike.
    plan = runs(pipe, table, args.student)
    tallies = {label: Tally() for label, *_ in plan}
    for index, clip in zip(indices, clips):
        for seed in seeds:
            for label, name, params, runner in plan:
                run_once(runner, name, params, clip, seed, args.seconds, tallies[label])
            print(f"  done: held-out clip {index}, seed {seed}", file=sys.stderr)
    rows = [tallies[label].row(label, evaluator) for label, *_ in plan]
    for row, (_, _, _, runner) in zip(rows, plan):
        row.student = runner.student
    ref = next(r for r in rows if r.schedule == "fixed 4")
    for r in rows:
        r.speedup_vs_fixed4 = r.fps / ref.fps
        r.nfe_vs_fixed4 = r.nfe / ref.nfe
    head_ms, forward_ms = head_time_share(pipe)
    references = {}
    if evaluator is not None and not args.no_references:
        references = reference_scores(pipe, clips, evaluator, *teacher_options)

    device = f"{pipe.device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    header = (f"model {args.model}{source}, {device}, "
              f"{len(clips)} {args.world}-world prompts{prompt_range} × {len(seeds)} seeds, "
              f"{args.seconds:g} s videos at {s.width}×{s.height}, "
              f"{s.fps} fps")
    print(header + "\n")
    print(markdown(rows, args.seconds))
    if evaluator is None:
        print(f"\nquality: not measured (the world classifier judges 64×64 videos, this model makes "
              f"{s.width}×{s.height})")
    else:
        print("\n" + references_text(rows, references))
        if len(rows[0].segment_scores) > 1:
            print("\ntotal score per segment (drift along the video):\n")
            print(drift_markdown(rows, evaluator.cfg.segment_frames / s.fps))
    print(
        f"\nconfidence head, {args.model}: {head_flops_share(pipe.preset):.3%} of a forward's FLOPs, "
        f"{head_ms / forward_ms:.2%} of its measured time ({head_ms:.3f} ms of {forward_ms:.2f} ms); "
        f"wan-1.3b at {WAN_1_3B.sampling.width}×{WAN_1_3B.sampling.height}: "
        f"{head_flops_share(WAN_1_3B):.4%} of a forward's FLOPs"
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    if args.plot and evaluator is not None:
        pareto_plot(rows, args.plot, header, references)
    return 0


if __name__ == "__main__":
    sys.exit(main())
