"""A procedural video world: coloured shapes moving over simple backgrounds, rendered with numpy.

It is the training data of the tiny text-to-video model and the ground truth of the attribute
classifier.  Every clip is a deterministic function of (seed, `WorldConfig`): the scene is drawn
from `np.random.default_rng(seed)` and then rendered; the same seed gives byte-identical frames,
caption and attributes.

Public API
----------
- `WorldConfig(height=64, width=64, fps=16, num_frames=81, p_enter=.25, p_turn=.25, p_cut=.25,
  p_pan=.35, object_count_probs=(.45, .35, .2), background_probs=(.25,)*4)`: frozen, validated.
- `render_clip(seed, cfg) -> Clip(frames: uint8 T×H×W×3, caption: str, attributes: dict, seed)`.
- `sample_clip(seed, cfg) -> ClipSpec`: the same caption and attributes without rendering
  (≈0.5 ms); `render_spec(spec)` renders it.  `caption_corpus(n, seed0=0)`: n training captions.
- `caption_variants(spec, wording_seed)`: the caption reworded, and with the first object's
  motion, shape or colour swapped (the caption probe's inputs).
- `train_seed(i) = i` for i in [0, 10**9); `heldout_seed(i) = 10**9 + i`: disjoint ranges.
- `scene_at(attributes, frame)`: the scene (entry of `attributes["scenes"]`) a frame belongs to.
- `object_centres(seed, cfg)`: per scene, per object, the centre at each frame (n×2 pixels).
- `object_map(spec, frame, cell)`: which object each cell (cell×cell pixels) of a frame shows.
- Vocabulary: `COLORS` (name -> RGB), `SHAPES`, `SIZES`, `MOTIONS`, `BACKGROUNDS`, and
  `SYNONYMS` = {"color", "shape", "size", "motion", "enter", "background"} -> {canonical:
  (words...)}; the first word of each entry is the canonical name.

Content
-------
Ten colours (red orange yellow green cyan blue purple pink white black) shared by objects and
backgrounds; an object's colour is at least 120 (RGB distance) from every colour its background
shows (for a gradient, from the whole segment between its two colours), and objects in a scene
have distinct colours.  Six shapes (circle square triangle star hexagon diamond), two sizes
(radius 8.5 / 13 px at 64×64), 1–3 objects per scene.  Backgrounds: solid, vertical gradient
(color at the top to color2 at the bottom), stripes (vertical or horizontal, 20–32 px per
colour pair), checker (24–40 px per two cells); stripes and checkers may scroll as a camera
pan ("as the camera pans left": the pattern moves right;
objects move in screen coordinates, as if the camera followed them).  Motions per object:
left right up down (straight, 22–34 px over 81 frames), bounce (vertical hops of 10–18 px,
period 18–30 frames), circle (a loop of radius 7–11 px, period 36–60 frames), grow / shrink
(radius 0.6× -> 1.4× of nominal over the scene, or back), spin (a turn per 24–60 frames; never
for circles), still.  Non-spinning shapes keep their canonical orientation (triangles and
stars point up).  Objects stay in frame, except entering ones before they enter.

Events (each at most once per clip, with its probability from the config; none when
num_frames < 33): "enter" — an object comes in from off-screen across one border, its
leading edge reaching the border at `frame` (it is visible from the next frame) and fully in by
the end of its scene; "turn" — an object on a straight path changes direction (reverses or
turns 90°) at `frame`; "cut" — from `frame` on a new scene with a new background (main colour
at least 100 away from the old one) and new objects.  With a cut, enter and turn each happen in
a randomly chosen scene.

Attribute schema (JSON-serialisable; canonical names only, never synonyms)
-------------------------------------------------------------------------
    {
      "objects": [object, ...],        # the FIRST scene's objects (= scenes[0]["objects"])
      "num_objects": int,              # len(objects), counting an object that enters later
      "background": background,        # the first scene's background
      "events": [event, ...],          # sorted by frame
      "scenes": [scene, ...],          # one per shot: 1, or 2 with a cut
      "num_scenes": int,
      "split": "train" | "heldout",
      "num_frames": T, "height": H, "width": W, "fps": int,
    }
    scene = {"start": int, "end": int,  # frames [start, end) of the clip
             "background": background, "objects": [object, ...], "num_objects": int}
    background = {"kind": "solid" | "gradient" | "stripes" | "checker",
                  "color": colour, "color2": colour | None,   # None for solid
                  "orientation": "vertical" | "horizontal" | None,   # stripes only
                  "pan": bool, "pan_direction": "left" | "right" | "up" | "down" | None}
    object = {"color": colour, "shape": shape, "size": "small" | "large",
              "motion": one of MOTIONS,   # for an entering object: its direction of travel
                                          # (from the left -> "right"); for a turning one: the
                                          # direction before the turn
              "direction": "cw" | "ccw" | None,     # spin and circle only
              "radius": float,                      # nominal radius in pixels
              "start": [x, y], "end": [x, y],       # centre at the scene's first / last frame
                                                    # (x right, y down, pixels; may be off-screen
                                                    # for an entering object)
              "enter": {"frame": int, "side": "left"|"right"|"top"|"bottom"} | None,
              "turn": {"frame": int, "to": "left"|"right"|"up"|"down"} | None}
    event = {"type": "enter", "frame": int, "scene": int, "object": int, "side": str}
          | {"type": "turn", "frame": int, "scene": int, "object": int, "from": str, "to": str}
          | {"type": "cut", "frame": int, "scene": int}   # frame = first frame of the new scene
    ("object" indexes that scene's object list; all frames are clip frame indices.)

Large objects are drawn first, small ones over them; objects of one size in list order.
Objects may cross paths (positions are drawn to keep them apart, up to 24 tries per object).

Captions name every object with a size, colour and shape word and its motion (or "enters from
the <side>", or "<motion>, then suddenly turns and <motion>"), every background colour and
kind, the pan, and a cut as "...; then the scene cuts to <background> where ...".  Words are
drawn from `SYNONYMS` by the same seeded generator.
"""

from .config import (
    DEFAULT_CONFIG,
    HELDOUT_OFFSET,
    SIMPLE_CONFIG,
    WORLDS,
    WorldConfig,
    heldout_seed,
    is_heldout,
    train_seed,
)
from .render import Clip, object_centres, object_map, render_clip, render_spec, shape_sdf
from .scene import ClipSpec, caption_corpus, caption_variants, sample_clip, scene_at
from .vocab import (
    BACKGROUNDS,
    COLOR_SYNONYMS,
    COLORS,
    MOTION_SYNONYMS,
    MOTIONS,
    SHAPE_SYNONYMS,
    SHAPES,
    SIZES,
    SYNONYMS,
)

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "COLOR_SYNONYMS",
    "Clip",
    "DEFAULT_CONFIG",
    "ClipSpec",
    "HELDOUT_OFFSET",
    "MOTIONS",
    "MOTION_SYNONYMS",
    "SHAPES",
    "SHAPE_SYNONYMS",
    "SIMPLE_CONFIG",
    "SIZES",
    "SYNONYMS",
    "WORLDS",
    "WorldConfig",
    "caption_corpus",
    "caption_variants",
    "heldout_seed",
    "is_heldout",
    "object_centres",
    "object_map",
    "render_clip",
    "render_spec",
    "sample_clip",
    "scene_at",
    "shape_sdf",
    "train_seed",
]
