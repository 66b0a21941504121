"""Rendering a `ClipSpec` to frames with numpy.

Shapes are signed-distance fields in pixel units (negative inside), turned into coverage with
a one-pixel linear edge, `clip(0.5 - sdf, 0, 1)`, and alpha-blended over the background, so
edges are anti-aliased.  Background stripes and checkers are anti-aliased the same way.  Each
object is evaluated only in a fixed-size window around it, for all frames of its scene at once
(one batch of numpy operations per object, no per-frame Python loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import DEFAULT_CONFIG, WorldConfig
from .scene import BackgroundSpec, ClipSpec, ObjectSpec, SceneSpec, sample_clip
from .vocab import COLORS

_SQRT3 = np.float32(np.sqrt(3.0))


@dataclass
class Clip:
    frames: np.ndarray  # uint8, T×H×W×3
    caption: str
    attributes: dict[str, Any]
    seed: int


# ----------------------------------------------------------------------------------------------
# Signed distance fields (after Inigo Quilez's 2D SDFs).  p = (x, y) with y pointing up, pixels.


def _len(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(x * x + y * y)


def sd_circle(x: np.ndarray, y: np.ndarray, r: float | np.ndarray) -> np.ndarray:
    return _len(x, y) - r


def sd_box(x: np.ndarray, y: np.ndarray, b: float | np.ndarray) -> np.ndarray:
    dx = np.abs(x) - b
    dy = np.abs(y) - b
    return _len(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)


def sd_triangle(x: np.ndarray, y: np.ndarray, r: float | np.ndarray) -> np.ndarray:
    """Equilateral triangle pointing up, side 2r, centroid at the origin."""
    k = _SQRT3
    x = np.abs(x) - r
    y = y + r / k
    c = x + k * y > 0
    x, y = np.where(c, (x - k * y) * 0.5, x), np.where(c, (-k * x - y) * 0.5, y)
    x = x - np.clip(x, -2 * r, 0)
    return -_len(x, y) * np.sign(y)


def sd_hexagon(x: np.ndarray, y: np.ndarray, r: float | np.ndarray) -> np.ndarray:
    """Regular hexagon with apothem r and flat top and bottom."""
    kx, ky, kz = np.float32(-0.866025404), np.float32(0.5), np.float32(0.577350269)
    x, y = np.abs(x), np.abs(y)
    d = 2 * np.minimum(kx * x + ky * y, 0)
    x, y = x - d * kx, y - d * ky
    x = x - np.clip(x, -kz * r, kz * r)
    y = y - r
    return _len(x, y) * np.sign(y)


def sd_star5(x: np.ndarray, y: np.ndarray, r: float | np.ndarray, rf: float = 0.5) -> np.ndarray:
    """Five-pointed star, outer radius r, inner radius ≈ rf·r·0.77, one point up."""
    k1x, k1y = np.float32(0.809016994375), np.float32(-0.587785252292)
    k2x, k2y = -k1x, k1y
    x = np.abs(x)
    d = 2 * np.maximum(k1x * x + k1y * y, 0)
    x, y = x - d * k1x, y - d * k1y
    d = 2 * np.maximum(k2x * x + k2y * y, 0)
    x, y = x - d * k2x, y - d * k2y
    x = np.abs(x)
    y = y - r
    bax, bay = np.float32(rf * -k1y), np.float32(rf * k1x - 1)
    h = np.clip((x * bax + y * bay) / (bax * bax + bay * bay), 0, r)
    return _len(x - bax * h, y - bay * h) * np.sign(y * bax - x * bay)


def sd_rhombus(x: np.ndarray, y: np.ndarray, bx: float | np.ndarray, by: float | np.ndarray) -> np.ndarray:
    x, y = np.abs(x), np.abs(y)
    h = np.clip(((bx - 2 * x) * bx - (by - 2 * y) * by) / (bx * bx + by * by), -1, 1)
    d = _len(x - 0.5 * bx * (1 - h), y - 0.5 * by * (1 + h))
    return d * np.sign(x * by + y * bx - bx * by)


def shape_sdf(shape: str, x: np.ndarray, y: np.ndarray, radius: float | np.ndarray) -> np.ndarray:
    """Signed distance (pixels) to `shape` of nominal `radius`, centred at the origin, y up.

    Sizes relative to the radius are chosen so that the shapes look about equally large;
    `scene.SHAPE_EXTENT` holds each one's largest extent.
    """
    if shape == "circle":
        return sd_circle(x, y, 0.9 * radius)
    if shape == "square":
        return sd_box(x, y, 0.78 * radius)
    if shape == "triangle":
        return sd_triangle(x, y, 0.95 * radius)  # centred on its centroid
    if shape == "star":
        return sd_star5(x, y, 1.1 * radius)
    if shape == "hexagon":
        return sd_hexagon(x, y, 0.85 * radius)
    if shape == "diamond":
        return sd_rhombus(x, y, 0.72 * radius, 1.05 * radius)
    raise ValueError(f"unknown shape {shape!r}")


def coverage(sdf: np.ndarray) -> np.ndarray:
    """Fraction of a pixel covered, for a signed distance in pixels: a one-pixel linear edge."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Backgrounds and objects


def _band(u: np.ndarray, period: float) -> np.ndarray:
    """Anti-aliased square wave: 1 on the first half of each period of u, 0 on the second."""
    q = period / 4
    d = np.abs(np.mod(u - q, period) - 2 * q) - q  # signed distance to the band [0, period/2)
    return coverage(d)


def _rgb32(name: str) -> np.ndarray:
    return np.asarray(COLORS[name], dtype=np.float32)


def render_background(bg: BackgroundSpec, n: int, h: int, w: int, out: np.ndarray) -> None:
    """Fill `out` (n×h×w×3 float32) with the background's n frames."""
    c1 = _rgb32(bg.color)
    if bg.kind == "solid":
        out[...] = c1
        return
    c2 = _rgb32(bg.color2)
    t = np.arange(n, dtype=np.float32)[:, None, None]
    ox = oy = np.float32(0.0)
    if bg.pan is not None:  # the camera pans one way, so the pattern moves the other way
        s = bg.pan_speed * t
        ox = {"left": -s, "right": s}.get(bg.pan, ox)
        oy = {"up": -s, "down": s}.get(bg.pan, oy)
    xs = np.arange(w, dtype=np.float32)[None, None, :] + 0.5
    ys = np.arange(h, dtype=np.float32)[None, :, None] + 0.5
    if bg.kind == "gradient":
        a = ys / h
    elif bg.kind == "stripes":
        if bg.orientation == "vertical":
            a = _band(xs + ox + bg.phase, bg.period)
        else:
            a = _band(ys + oy + bg.phase, bg.period)
    elif bg.kind == "checker":
        ax = _band(xs + ox + bg.phase, bg.period)
        ay = _band(ys + oy + bg.phase, bg.period)
        a = ax + ay - 2 * ax * ay  # soft XOR
    else:
        raise ValueError(f"unknown background kind {bg.kind!r}")
    np.add(c1, a[..., None] * (c2 - c1), out=out, casting="unsafe")


def _rotated(o: ObjectSpec, px: np.ndarray, py: np.ndarray, angle: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample points rotated by -angle, so the shape's SDF draws it turned by +angle."""
    if o.spin == 0.0 and o.angle0 == 0.0:
        return px, py
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return c * px + s * py, c * py - s * px


def render_object(o: ObjectSpec, canvas: np.ndarray) -> None:
    """Blend object `o` into `canvas` (the n×H×W×3 float32 frames of its scene)."""
    n, h, w, _ = canvas.shape
    t = np.arange(n, dtype=np.float64)
    cx, cy, scale, angle = o.track(t)
    ext = o.extent
    vis = (cx + ext > 0) & (cx - ext < w) & (cy + ext > 0) & (cy - ext < h)
    if not vis.any():
        return
    fi = np.flatnonzero(vis)
    cx, cy, scale, angle = cx[fi], cy[fi], scale[fi], angle[fi]
    # A fixed window around the centre, kept inside the frame; it still covers every visible
    # pixel of an object that is partly outside, and windows never overlap within a frame.
    size = min(2 * int(np.ceil(ext)) + 4, h, w)
    x0 = np.clip(np.floor(cx).astype(np.int64) - size // 2, 0, w - size)
    y0 = np.clip(np.floor(cy).astype(np.int64) - size // 2, 0, h - size)
    ar = np.arange(size)
    xi = x0[:, None] + ar  # m×S
    yi = y0[:, None] + ar
    px = (xi + 0.5 - cx[:, None]).astype(np.float32)[:, None, :]
    py = (cy[:, None] - (yi + 0.5)).astype(np.float32)[:, :, None]  # y up
    r = (o.radius * scale).astype(np.float32)[:, None, None]
    px, py = _rotated(o, px, py, angle[:, None, None])
    a = coverage(shape_sdf(o.shape, px, py, r)).astype(np.float32, copy=False)
    ti, yy, xx = fi[:, None, None], yi[:, :, None], xi[:, None, :]
    block = canvas[ti, yy, xx]
    block += a[..., None] * (_rgb32(o.color) - block)
    canvas[ti, yy, xx] = block


def draw_order(sc: SceneSpec) -> list[int]:
    """Large objects first, so that small ones are drawn over them; equal sizes in list order."""
    return sorted(range(len(sc.objects)), key=lambda i: -sc.objects[i].radius)


def render_scene(sc: SceneSpec, canvas: np.ndarray) -> None:
    n, h, w, _ = canvas.shape
    render_background(sc.background, n, h, w, canvas)
    for i in draw_order(sc):
        render_object(sc.objects[i], canvas)


def render_spec(spec: ClipSpec) -> np.ndarray:
    cfg = spec.cfg
    canvas = np.empty((cfg.num_frames, cfg.height, cfg.width, 3), dtype=np.float32)
    for sc in spec.scenes:
        render_scene(sc, canvas[sc.start : sc.end])
    canvas += 0.5  # round half up; values stay within [0.5, 255.5]
    return canvas.astype(np.uint8)


def render_clip(seed: int, cfg: WorldConfig = DEFAULT_CONFIG) -> Clip:
    """The clip of `seed`: frames (uint8 T×H×W×3), caption, attributes.  Deterministic."""
    spec = sample_clip(seed, cfg)
    return Clip(frames=render_spec(spec), caption=spec.caption, attributes=spec.attributes, seed=spec.seed)


def object_centres(seed: int, cfg: WorldConfig = DEFAULT_CONFIG) -> list[list[np.ndarray]]:
    """Per scene, per object: the centre (x, y) at each frame of the scene, shape n×2 (pixels)."""
    spec = sample_clip(seed, cfg)
    out = []
    for sc in spec.scenes:
        t = np.arange(sc.num_frames, dtype=np.float64)
        out.append([np.stack(o.track(t)[:2], axis=-1) for o in sc.objects])
    return out


def object_map(spec: ClipSpec, frame: int, cell: int, min_cover: float = 0.25) -> np.ndarray:
    """Which object of its scene each cell×cell-pixel cell of `frame` shows: the
    index into the scene's `objects` (as in the attributes) of the object covering most of
    the cell, as drawn (later objects hide earlier ones), or -1 where none covers `min_cover`.
    The dense ground truth the attribute classifier learns to localise objects with."""
    cfg = spec.cfg
    h, w = cfg.height, cfg.width
    if h % cell or w % cell:
        raise ValueError(f"cell={cell} must divide the frame size {w}×{h}")
    sc = next(s for s in spec.scenes if s.start <= frame < s.end)
    if not sc.objects:
        return np.full((h // cell, w // cell), -1, dtype=np.int64)
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    visible = np.zeros((len(sc.objects), h, w), dtype=np.float32)
    for i in draw_order(sc):
        o = sc.objects[i]
        cx, cy, scale, angle = (float(v[0]) for v in o.track(np.array([frame - sc.start], dtype=np.float64)))
        px, py = _rotated(o, xs - np.float32(cx), np.float32(cy) - ys, angle)
        a = coverage(shape_sdf(o.shape, px, py, np.float32(o.radius * scale)))
        visible *= 1 - a
        visible[i] = a
    cells = visible.reshape(len(sc.objects), h // cell, cell, w // cell, cell).mean(axis=(2, 4))
    return np.where(cells.max(0) >= min_cover, cells.argmax(0), -1).astype(np.int64)
