"""Scene sampling: everything about a clip except its pixels.

`sample_clip(seed, cfg)` draws the scenes, objects, trajectories, events and the caption from
`np.random.default_rng(seed)` and returns a `ClipSpec`; `render.render_spec` turns it into
frames.  Sampling costs well under a millisecond, so captions (`caption_corpus`) and
attributes can be had without rendering.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import DEFAULT_CONFIG, WorldConfig, is_heldout, train_seed
from .vocab import (
    BACKGROUND_SYNONYMS,
    BACKGROUNDS,
    COLOR_NAMES,
    COLOR_SYNONYMS,
    COLORS,
    CUT_SYNONYMS,
    DIRECTION_VECTORS,
    ENTER_MOTION,
    ENTER_SYNONYMS,
    LINEAR_MOTIONS,
    MOTION_SYNONYMS,
    MOTIONS,
    NUMBER_WORDS,
    OPPOSITE,
    PAN_DIRECTIONS,
    PAN_SYNONYMS,
    REVERSE_SYNONYMS,
    SHAPE_SYNONYMS,
    SHAPES,
    SIDES,
    SIZE_SYNONYMS,
    SIZES,
    TURN_SYNONYMS,
)

# Largest distance from the centre to the shape's outline, in units of the object's radius
# (the shapes' sizes are set in `render.shape_sdf` so that their areas look alike).
SHAPE_EXTENT: dict[str, float] = {
    "circle": 0.9,
    "square": 0.78 * math.sqrt(2.0),
    "triangle": 0.95 * 2.0 / math.sqrt(3.0),
    "star": 1.1,
    "hexagon": 0.85 * 2.0 / math.sqrt(3.0),
    "diamond": 1.05,
}
# Extent of each shape (canonical orientation) from its centre towards each screen direction,
# in units of its radius: where the leading edge of an entering object is.
_S3 = math.sqrt(3.0)
SHAPE_SUPPORT: dict[str, dict[str, float]] = {
    "circle": dict.fromkeys(("left", "right", "up", "down"), 0.9),
    "square": dict.fromkeys(("left", "right", "up", "down"), 0.78),
    "triangle": {"left": 0.95, "right": 0.95, "up": 0.95 * 2 / _S3, "down": 0.95 / _S3},
    "star": {
        "left": 1.1 * math.cos(math.radians(18)),
        "right": 1.1 * math.cos(math.radians(18)),
        "up": 1.1,
        "down": 1.1 * math.cos(math.radians(36)),
    },
    "hexagon": {"left": 0.85 * 2 / _S3, "right": 0.85 * 2 / _S3, "up": 0.85, "down": 0.85},
    "diamond": {"left": 0.72, "right": 0.72, "up": 1.05, "down": 1.05},
}
# Pixels at 64×64.  An object spans at least two 16-px DiT tokens, or its shape does not survive.
SIZE_RADIUS = {"small": 8.5, "large": 13.0}
GROW_SCALES = (0.6, 1.4)  # grow: 0.6 -> 1.4 of the nominal radius over the scene; shrink: reverse
MIN_OBJECT_CONTRAST = 120.0  # RGB distance between an object colour and any colour of its background
MIN_PATTERN_CONTRAST = 90.0  # between the two colours of a patterned background
MIN_CUT_CONTRAST = 100.0  # between the main background colours before and after a cut
MARGIN = 1.0  # pixels kept between an object and the frame border


@dataclass
class BackgroundSpec:
    kind: str  # solid | gradient | stripes | checker
    color: str
    color2: str | None = None
    orientation: str | None = None  # stripes: "vertical" | "horizontal"
    period: float = 0.0  # stripes: pixels per colour pair; checker: pixels per two cells
    phase: float = 0.0  # pattern offset in pixels
    pan: str | None = None  # camera pan direction, or None
    pan_speed: float = 0.0  # pixels per frame

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "color": self.color,
            "color2": self.color2,
            "orientation": self.orientation,
            "pan": self.pan is not None,
            "pan_direction": self.pan,
        }


@dataclass
class ObjectSpec:
    """One object and its trajectory, in the scene's local frames t = 0 .. n-1.

    Position (screen pixels, x right, y down) is `pos + t·vel` (straight paths, entering
    objects), switching to `vel2` after `turn_at`; a bounce adds `-amp·|sin(π t/period + phase)|`
    to y; a loop moves on a circle of radius `amp` around `pos` at angular speed `omega`.
    Scale is `scale0 + t·dscale`; angle (counter-clockwise, radians) is `angle0 + t·spin`.
    """

    color: str
    shape: str
    size: str
    motion: str
    radius: float
    pos: tuple[float, float] = (0.0, 0.0)
    vel: tuple[float, float] = (0.0, 0.0)
    vel2: tuple[float, float] = (0.0, 0.0)
    turn_at: float | None = None
    turn_to: str | None = None
    enter_at: int | None = None  # local frame at which the leading edge reaches the border
    enter_side: str | None = None
    amp: float = 0.0
    period: float = 1.0
    phase: float = 0.0
    omega: float = 0.0
    scale0: float = 1.0
    dscale: float = 0.0
    angle0: float = 0.0
    spin: float = 0.0

    @property
    def max_scale(self) -> float:
        return max(GROW_SCALES) if self.motion in ("grow", "shrink") else 1.0

    @property
    def extent(self) -> float:
        """Largest distance from the centre to the outline over the scene, in pixels."""
        return SHAPE_EXTENT[self.shape] * self.radius * self.max_scale

    @property
    def direction(self) -> str | None:
        if self.motion == "spin":
            return "ccw" if self.spin > 0 else "cw"
        if self.motion == "circle":
            return "ccw" if self.omega > 0 else "cw"
        return None

    def track(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Centre x, centre y, scale and angle at local frames `t` (float array)."""
        t = np.asarray(t, dtype=np.float64)
        x0, y0 = self.pos
        if self.turn_at is not None:
            t1 = np.minimum(t, self.turn_at)
            t2 = np.maximum(t - self.turn_at, 0.0)
            cx = x0 + t1 * self.vel[0] + t2 * self.vel2[0]
            cy = y0 + t1 * self.vel[1] + t2 * self.vel2[1]
        else:
            cx = x0 + t * self.vel[0]
            cy = y0 + t * self.vel[1]
        if self.motion == "bounce":
            cy = cy - self.amp * np.abs(np.sin(np.pi * t / self.period + self.phase))
        elif self.motion == "circle":
            a = self.phase + self.omega * t
            cx = cx + self.amp * np.cos(a)
            cy = cy - self.amp * np.sin(a)  # y points down: positive omega is counter-clockwise
        return cx, cy, self.scale0 + self.dscale * t, self.angle0 + self.spin * t  # all shaped like t


@dataclass
class SceneSpec:
    start: int  # first frame (global)
    end: int  # one past the last frame
    background: BackgroundSpec
    objects: list[ObjectSpec] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.end - self.start


@dataclass
class ClipSpec:
    seed: int
    cfg: WorldConfig
    scenes: list[SceneSpec]
    events: list[dict[str, Any]]
    caption: str
    attributes: dict[str, Any]


# ----------------------------------------------------------------------------------------------
# Sampling


def _pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * rng.random())


def _categorical(rng: np.random.Generator, probs: tuple[float, ...]) -> int:
    c = np.cumsum(probs)
    return int(min(np.searchsorted(c, rng.random() * c[-1], side="right"), len(probs) - 1))


def _rgb(name: str) -> np.ndarray:
    return np.asarray(COLORS[name], dtype=np.float64)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    h = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(p - a - h * ab))


@functools.cache
def _contrast(color: str, bg_color: str, bg_color2: str | None) -> float:
    """Smallest RGB distance between `color` and any colour the background shows."""
    p, a = _rgb(color), _rgb(bg_color)
    if bg_color2 is None:
        return float(np.linalg.norm(p - a))
    return _segment_distance(p, a, _rgb(bg_color2))  # a gradient shows the whole segment


@functools.cache
def _far_colors(color: str, min_dist: float) -> tuple[str, ...]:
    """The palette colours at least `min_dist` (RGB) from `color`."""
    return tuple(c for c in COLOR_NAMES if np.linalg.norm(_rgb(c) - _rgb(color)) >= min_dist)


def _sample_background(
    rng: np.random.Generator, cfg: WorldConfig, ts: float, sp: float, avoid: BackgroundSpec | None
) -> BackgroundSpec:
    kind = BACKGROUNDS[_categorical(rng, cfg.background_probs)]
    color = _pick(rng, COLOR_NAMES if avoid is None else _far_colors(avoid.color, MIN_CUT_CONTRAST))
    bg = BackgroundSpec(kind=kind, color=color)
    if kind == "solid":
        return bg
    bg.color2 = _pick(rng, _far_colors(color, MIN_PATTERN_CONTRAST))
    if kind == "gradient":
        return bg
    if kind == "stripes":
        bg.orientation = _pick(rng, ("vertical", "horizontal"))
        # Wide patterns: the VAE compresses 8× spatially, and stripes a few pixels wide would
        # take most of its small capacity away from the objects.
        bg.period = _uniform(rng, 20.0, 32.0) * sp
        pans = ("left", "right") if bg.orientation == "vertical" else ("up", "down")
    else:
        bg.period = _uniform(rng, 24.0, 40.0) * sp
        pans = PAN_DIRECTIONS
    bg.phase = _uniform(rng, 0.0, bg.period)
    if rng.random() < cfg.p_pan:
        bg.pan = _pick(rng, pans)
        bg.pan_speed = _uniform(rng, 0.25, 0.5) * sp / ts
    return bg


def _place(rng: np.random.Generator, offsets: np.ndarray, extent: float, cfg: WorldConfig) -> tuple[float, float]:
    """An anchor such that anchor + every offset (k×2, x/y) keeps the object inside the frame."""
    lo = extent + MARGIN - offsets.min(axis=0)
    hi = np.array([cfg.width, cfg.height], dtype=np.float64) - extent - MARGIN - offsets.max(axis=0)
    mid = (lo + hi) / 2
    lo, hi = np.minimum(lo, mid), np.maximum(hi, mid)  # a path too long for the frame is centred
    return _uniform(rng, lo[0], hi[0]), _uniform(rng, lo[1], hi[1])


def _separate(o: ObjectSpec, candidate: Callable[[], tuple[float, float]], placed: list[ObjectSpec], n: int,
              cfg: WorldConfig, tries: int = 24) -> None:
    """Set `o.pos` to the first of up to `tries` candidate positions that keeps `o` clear of the
    placed objects, or else to the one that keeps it furthest from them.

    Clearance is the smallest centre distance over the scene (21 sampled frames, while both are
    in frame) relative to the sum of the two extents; 0.9 counts as clear.
    """
    if not placed:
        o.pos = candidate()
        return
    t = np.linspace(0.0, max(n - 1, 0), min(n, 21))
    size = np.array([cfg.width, cfg.height], dtype=np.float64)
    o.pos = (0.0, 0.0)
    base = np.stack(o.track(t)[:2], axis=-1)  # positions are linear in o.pos
    others = []
    for q in placed:
        cq = np.stack(q.track(t)[:2], axis=-1)
        others.append((cq, np.all((cq > 0) & (cq < size), axis=-1), o.extent + q.extent))
    best, best_pos = -1.0, None
    for _ in range(tries):
        pos = candidate()
        c = base + pos
        inside = np.all((c > 0) & (c < size), axis=-1)
        sep = math.inf
        for cq, inside_q, ext in others:
            both = inside & inside_q
            if both.any():
                sep = min(sep, float(np.sqrt(((c[both] - cq[both]) ** 2).sum(-1).min())) / ext)
        if sep > best:
            best, best_pos = sep, pos
        if sep >= 0.9:
            break
    o.pos = best_pos


def _sample_object(
    rng: np.random.Generator,
    cfg: WorldConfig,
    n: int,
    ts: float,
    sp: float,
    color: str,
    motion: str | None,
    turn: bool,
    enter: bool,
    placed: list[ObjectSpec],
) -> ObjectSpec:
    """One object for a scene of `n` frames.  `motion=None` draws any motion."""
    shape = _pick(rng, SHAPES)
    size = _pick(rng, SIZES)
    if motion is None:
        motions = MOTIONS if shape != "circle" else tuple(m for m in MOTIONS if m != "spin")
        motion = _pick(rng, motions)
    o = ObjectSpec(color=color, shape=shape, size=size, motion=motion, radius=SIZE_RADIUS[size] * sp)
    dur = max(n - 1, 0)

    if enter:
        side = _pick(rng, SIDES)
        o.motion = ENTER_MOTION[side]
        o.enter_side = side
        e = o.extent
        # Extent of the shape ahead of its centre (towards its motion) and behind it.
        lead = SHAPE_SUPPORT[shape][o.motion] * o.radius
        trail = SHAPE_SUPPORT[shape][OPPOSITE[o.motion]] * o.radius
        horizontal = side in ("left", "right")
        length, across = (cfg.width, cfg.height) if horizontal else (cfg.height, cfg.width)
        vmin, vmax = 0.5 * sp / ts, 1.6 * sp / ts
        fe_lo = min(max(1, round(0.08 * dur)), dur)
        fe_hi = max(fe_lo, dur - math.ceil((lead + trail + MARGIN) / vmax))
        fe = int(rng.integers(fe_lo, fe_hi + 1))
        rest = max(dur - fe, 1)
        # Distance d of the centre from the entry border (inwards) at the last frame: fully
        # inside, not past the far border, and reached at a speed in [vmin, vmax].
        d_lo = max(trail + MARGIN, -lead + vmin * rest)
        d_hi = min(length - lead - MARGIN, -lead + vmax * rest)
        d_end = _uniform(rng, d_lo, d_hi) if d_lo <= d_hi else min(d_lo, d_hi)
        v = (d_end + lead) / rest
        d0 = -lead - v * fe  # at t = 0; the leading edge reaches the border at frame fe
        ux, uy = DIRECTION_VECTORS[o.motion]
        o.vel = (ux * v, uy * v)
        o.enter_at = fe

        def candidate() -> tuple[float, float]:
            a = _uniform(rng, e + MARGIN, across - e - MARGIN)
            if horizontal:
                return (d0 if side == "left" else cfg.width - d0, a)
            return (a, d0 if side == "top" else cfg.height - d0)

        _separate(o, candidate, placed, n, cfg)
        return o

    offsets = np.zeros((1, 2))
    if motion in LINEAR_MOTIONS:
        v = _uniform(rng, 0.28, 0.42) * sp / ts
        u = np.asarray(DIRECTION_VECTORS[motion], dtype=np.float64)
        o.vel = tuple(float(x) for x in u * v)
        if turn:
            tf = int(rng.integers(round(0.25 * dur), round(0.75 * dur) + 1))
            o.turn_to = _pick(rng, [m for m in LINEAR_MOTIONS if m != motion])
            u2 = np.asarray(DIRECTION_VECTORS[o.turn_to], dtype=np.float64)
            o.turn_at = float(tf)
            o.vel2 = tuple(float(x) for x in u2 * v)
            p1 = u * v * tf
            offsets = np.stack([np.zeros(2), p1, p1 + u2 * v * (dur - tf)])
        else:
            offsets = np.stack([np.zeros(2), u * v * dur])
    elif motion == "bounce":
        o.amp = _uniform(rng, 10.0, 18.0) * sp
        o.period = _uniform(rng, 18.0, 30.0) * ts
        o.phase = _uniform(rng, 0.0, math.pi)
        offsets = np.array([[0.0, 0.0], [0.0, -o.amp]])
    elif motion == "circle":
        o.amp = _uniform(rng, 7.0, 11.0) * sp
        o.omega = (1 if rng.random() < 0.5 else -1) * 2 * math.pi / (_uniform(rng, 36.0, 60.0) * ts)
        o.phase = _uniform(rng, 0.0, 2 * math.pi)
        offsets = np.array([[-o.amp, -o.amp], [o.amp, o.amp]])
    elif motion in ("grow", "shrink"):
        s0, s1 = GROW_SCALES if motion == "grow" else GROW_SCALES[::-1]
        o.scale0 = s0
        o.dscale = (s1 - s0) / max(dur, 1)
    elif motion == "spin":
        o.spin = (1 if rng.random() < 0.5 else -1) * 2 * math.pi / (_uniform(rng, 24.0, 60.0) * ts)
        o.angle0 = _uniform(rng, 0.0, 2 * math.pi)

    _separate(o, lambda: _place(rng, offsets, o.extent, cfg), placed, n, cfg)
    return o


def _sample_scene(
    rng: np.random.Generator,
    cfg: WorldConfig,
    start: int,
    end: int,
    ts: float,
    sp: float,
    turn: bool,
    enter: bool,
    avoid: BackgroundSpec | None,
) -> SceneSpec:
    n = end - start
    count = 1 + _categorical(rng, cfg.object_count_probs)
    if turn and enter:
        count = max(count, 2)
    while True:  # a background with enough contrasting colours for the objects
        bg = _sample_background(rng, cfg, ts, sp, avoid)
        eligible = [c for c in COLOR_NAMES if _contrast(c, bg.color, bg.color2) >= MIN_OBJECT_CONTRAST]
        if len(eligible) >= count:
            break
    colors = [eligible[i] for i in rng.permutation(len(eligible))[:count]]
    enter_idx = count - 1 if enter else None
    turn_idx = (count - 2 if enter else count - 1) if turn else None
    scene = SceneSpec(start=start, end=end, background=bg)
    for i, color in enumerate(colors):
        motion = _pick(rng, LINEAR_MOTIONS) if i == turn_idx else None
        o = _sample_object(rng, cfg, n, ts, sp, color, motion, i == turn_idx, i == enter_idx, scene.objects)
        scene.objects.append(o)
    return scene


def sample_clip(seed: int, cfg: WorldConfig = DEFAULT_CONFIG) -> ClipSpec:
    """Draw the whole clip (scenes, objects, events, caption, attributes) without rendering it."""
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    T = cfg.num_frames
    ts = max((cfg.speed_frames or T) - 1, 1) / 80.0
    sp = min(cfg.height, cfg.width) / 64.0

    # Events first (so their rates are exactly the configured ones), then the scenes.
    u = rng.random(3)
    on = cfg.events_enabled
    has_enter, has_turn, has_cut = on and u[0] < cfg.p_enter, on and u[1] < cfg.p_turn, on and u[2] < cfg.p_cut
    bounds = [0, T]
    if has_cut:
        bounds = [0, int(rng.integers(round(0.3 * (T - 1)), round(0.7 * (T - 1)) + 1)), T]
    nsc = len(bounds) - 1
    enter_scene = int(rng.integers(nsc)) if has_enter else -1
    turn_scene = int(rng.integers(nsc)) if has_turn else -1

    scenes: list[SceneSpec] = []
    for s in range(nsc):
        scenes.append(
            _sample_scene(
                rng,
                cfg,
                bounds[s],
                bounds[s + 1],
                ts,
                sp,
                s == turn_scene,
                s == enter_scene,
                scenes[-1].background if scenes else None,
            )
        )

    events: list[dict[str, Any]] = []
    for s, sc in enumerate(scenes):
        for i, o in enumerate(sc.objects):
            if o.enter_at is not None:
                events.append(
                    {"type": "enter", "frame": sc.start + o.enter_at, "scene": s, "object": i, "side": o.enter_side}
                )
            if o.turn_at is not None:
                events.append(
                    {
                        "type": "turn",
                        "frame": sc.start + int(o.turn_at),
                        "scene": s,
                        "object": i,
                        "from": o.motion,
                        "to": o.turn_to,
                    }
                )
        if s > 0:
            events.append({"type": "cut", "frame": sc.start, "scene": s})
    events.sort(key=lambda e: (e["frame"], e["type"]))

    caption = _caption(rng, scenes)
    attributes = _attributes(seed, cfg, scenes, events)
    return ClipSpec(seed=seed, cfg=cfg, scenes=scenes, events=events, caption=caption, attributes=attributes)


# ----------------------------------------------------------------------------------------------
# Captions


def _noun_phrase(rng: np.random.Generator, o: ObjectSpec) -> str:
    size, color = _pick(rng, SIZE_SYNONYMS[o.size]), _pick(rng, COLOR_SYNONYMS[o.color])
    return f"a {size} {color} {_pick(rng, SHAPE_SYNONYMS[o.shape])}"  # articles are fixed in _caption


def _clause(rng: np.random.Generator, o: ObjectSpec) -> str:
    np_ = _noun_phrase(rng, o)
    if o.enter_side is not None:
        return f"{np_} {_pick(rng, ENTER_SYNONYMS[o.enter_side])}"
    text = f"{np_} {_pick(rng, MOTION_SYNONYMS[o.motion])}"
    if o.turn_to is not None:
        conn = REVERSE_SYNONYMS if o.turn_to == OPPOSITE[o.motion] else TURN_SYNONYMS
        text += f", {_pick(rng, conn)} {_pick(rng, MOTION_SYNONYMS[o.turn_to])}"
    return text


def _join(items: list[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _background_phrase(rng: np.random.Generator, bg: BackgroundSpec) -> tuple[str, str]:
    """(background noun phrase, pan clause or "")."""
    c1 = _pick(rng, COLOR_SYNONYMS[bg.color])
    c2 = _pick(rng, COLOR_SYNONYMS[bg.color2]) if bg.color2 else ""
    phrase = _pick(rng, BACKGROUND_SYNONYMS[bg.kind]).format(c=c1, c1=c1, c2=c2, o=bg.orientation)
    pan = _pick(rng, PAN_SYNONYMS).format(d=bg.pan) if bg.pan else ""
    return phrase, pan


def _scene_text(rng: np.random.Generator, sc: SceneSpec, after_cut: bool) -> str:
    """The scene as a clause: as a whole sentence (first scene) or after "cuts to" (later ones)."""
    main = [_clause(rng, o) for o in sc.objects if o.enter_side is None]
    entering = [_clause(rng, o) for o in sc.objects if o.enter_side is not None]
    bg, pan = _background_phrase(rng, sc.background)
    pan_ = f" {pan}" if pan else ""
    turns = any(o.turn_to is not None for o in sc.objects)
    if not main:
        text = f"{bg}{pan_}, empty until" if after_cut else f"at first only {bg}{pan_}, until"
        return f"{text} {entering[0]}"
    clauses = _join(main)
    if after_cut:
        form = "where"
    else:
        forms = ["on", "where"] + (["count"] if len(main) >= 2 and not entering else [])
        if not turns:
            forms.append("after")  # "{clauses} on {bg}" reads badly after a turn clause
        form = _pick(rng, forms)
    if form == "after":
        text = f"{clauses} on {bg}{pan_}"
    elif form == "on":
        text = f"on {bg}{pan_}, {clauses}"
    elif form == "where":
        text = f"{bg} where {clauses}" + (f", {pan}" if pan else "")
    else:
        text = f"{NUMBER_WORDS[len(main)]} shapes on {bg}{pan_}: {clauses}"
    if entering:
        text += f", {_pick(rng, ('and later', 'then', 'until at some point'))} {entering[0]}"
    return text


def _caption(rng: np.random.Generator, scenes: list[SceneSpec]) -> str:
    text = _scene_text(rng, scenes[0], after_cut=False)
    for sc in scenes[1:]:
        text += f"; {_pick(rng, CUT_SYNONYMS)} {_scene_text(rng, sc, after_cut=True)}"
    text = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)  # "a emerald" -> "an emerald"
    return text[0].upper() + text[1:] + "."


# ----------------------------------------------------------------------------------------------
# Attributes


def _r(x: float) -> float:
    return round(float(x), 2)


def _object_dict(o: ObjectSpec, sc: SceneSpec) -> dict[str, Any]:
    cx, cy, _, _ = o.track(np.array([0.0, float(sc.num_frames - 1)]))
    return {
        "color": o.color,
        "shape": o.shape,
        "size": o.size,
        "motion": o.motion,
        "direction": o.direction,
        "radius": _r(o.radius),
        "start": [_r(cx[0]), _r(cy[0])],
        "end": [_r(cx[1]), _r(cy[1])],
        "enter": None if o.enter_at is None else {"frame": sc.start + o.enter_at, "side": o.enter_side},
        "turn": None if o.turn_at is None else {"frame": sc.start + int(o.turn_at), "to": o.turn_to},
    }


def _attributes(seed: int, cfg: WorldConfig, scenes: list[SceneSpec], events: list[dict]) -> dict[str, Any]:
    sc_dicts = [
        {
            "start": sc.start,
            "end": sc.end,
            "background": sc.background.to_dict(),
            "objects": [_object_dict(o, sc) for o in sc.objects],
            "num_objects": len(sc.objects),
        }
        for sc in scenes
    ]
    return {
        "objects": sc_dicts[0]["objects"],
        "num_objects": sc_dicts[0]["num_objects"],
        "background": sc_dicts[0]["background"],
        "events": events,
        "scenes": sc_dicts,
        "num_scenes": len(sc_dicts),
        "split": "heldout" if is_heldout(seed) else "train",
        "num_frames": cfg.num_frames,
        "height": cfg.height,
        "width": cfg.width,
        "fps": cfg.fps,
    }


def scene_at(attributes: dict[str, Any], frame: int) -> dict[str, Any]:
    """The entry of `attributes["scenes"]` that frame `frame` belongs to."""
    for sc in attributes["scenes"]:
        if sc["start"] <= frame < sc["end"]:
            return sc
    raise IndexError(f"frame {frame} outside the clip's {attributes['num_frames']} frames")


# One swap per attribute for `caption_variants`: each a change a video shows plainly (a still
# object swaps to a straight path, not to a spin a circle would not show).
MOTION_SWAP = {"left": "right", "right": "left", "up": "down", "down": "up", "grow": "shrink", "shrink": "grow",
               "spin": "still", "bounce": "still", "circle": "still", "still": "right"}


def caption_variants(spec: ClipSpec, wording_seed: int) -> dict[str, str]:
    """The clip's caption reworded from `wording_seed` ("paraphrase"), and the same wording with
    the first object's motion, shape or colour swapped ("motion", "shape", "colour").

    The probe of whether a model reads each word (`dsa_core.probe`): a swap that moves its
    prediction no more than the paraphrase does is a word it ignores."""
    obj = spec.scenes[0].objects[0] if spec.scenes[0].objects else None
    if obj is None or obj.enter_side is not None or obj.turn_to is not None:
        raise ValueError(f"clip {spec.seed}: caption_variants needs a first object that is there from the start "
                         "and does not turn (a one-object clip of the 'simple' world is one)")
    bg = spec.scenes[0].background
    taken = {obj.color, bg.color, bg.color2}
    later_colors = COLOR_NAMES[COLOR_NAMES.index(obj.color):] + COLOR_NAMES
    swaps = {  # variant -> (ObjectSpec field, new value)
        "motion": ("motion", MOTION_SWAP[obj.motion]),
        "shape": ("shape", SHAPES[(SHAPES.index(obj.shape) + 1) % len(SHAPES)]),
        "colour": ("color", next(c for c in later_colors if c not in taken)),
    }
    out = {"paraphrase": _caption(np.random.default_rng(wording_seed), spec.scenes)}
    for name, (key, value) in swaps.items():
        scenes = copy.deepcopy(spec.scenes)
        setattr(scenes[0].objects[0], key, value)
        out[name] = _caption(np.random.default_rng(wording_seed), scenes)
    return out


def caption_corpus(n: int, seed0: int = 0, cfg: WorldConfig = DEFAULT_CONFIG) -> list[str]:
    """Captions of the training clips `train_seed(seed0) .. train_seed(seed0 + n - 1)`, unrendered."""
    return [sample_clip(train_seed(seed0 + i), cfg).caption for i in range(n)]
