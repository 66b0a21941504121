"""The world's vocabulary: colours with their RGB values, shapes, motions, backgrounds, and the
synonym tables that captions draw their words from.

Every table is keyed by the canonical name that `attributes` uses; the first synonym of each
entry is the canonical word itself.  Synonym lists are disjoint across entries and no synonym
of one table occurs as a whole word in another table's phrases, so a caption can be parsed
back with word-boundary regular expressions (the tests do exactly that).
"""

from __future__ import annotations

from types import MappingProxyType

# Saturated, clearly distinct colours; objects and backgrounds share the palette, and the
# sampler only puts an object on a background it contrasts with (see `MIN_OBJECT_CONTRAST`).
COLORS: MappingProxyType[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (220, 38, 38),
        "orange": (249, 140, 22),
        "yellow": (250, 215, 35),
        "green": (34, 168, 74),
        "cyan": (34, 205, 222),
        "blue": (37, 84, 220),
        "purple": (135, 58, 200),
        "pink": (245, 125, 185),
        "white": (245, 245, 245),
        "black": (18, 18, 18),
    }
)
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "diamond")
SIZES: tuple[str, ...] = ("small", "large")
MOTIONS: tuple[str, ...] = (
    "left",
    "right",
    "up",
    "down",
    "bounce",
    "circle",
    "grow",
    "shrink",
    "spin",
    "still",
)
LINEAR_MOTIONS: tuple[str, ...] = ("left", "right", "up", "down")
BACKGROUNDS: tuple[str, ...] = ("solid", "gradient", "stripes", "checker")
SIDES: tuple[str, ...] = ("left", "right", "top", "bottom")
PAN_DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")

# Unit screen-space direction (x right, y down) of each linear motion, and the side an object
# entering with that motion comes from.
DIRECTION_VECTORS: MappingProxyType[str, tuple[int, int]] = MappingProxyType(
    {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
)
ENTER_MOTION: MappingProxyType[str, str] = MappingProxyType(
    {"left": "right", "right": "left", "top": "down", "bottom": "up"}
)
OPPOSITE: MappingProxyType[str, str] = MappingProxyType({"left": "right", "right": "left", "up": "down", "down": "up"})

COLOR_SYNONYMS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "red": ("red", "crimson", "scarlet"),
        "orange": ("orange", "tangerine", "amber"),
        "yellow": ("yellow", "golden", "lemon"),
        "green": ("green", "emerald", "jade"),
        "cyan": ("cyan", "turquoise", "aqua"),
        "blue": ("blue", "azure", "cobalt"),
        "purple": ("purple", "violet", "plum"),
        "pink": ("pink", "rose", "rosy"),
        "white": ("white", "ivory", "snowy"),
        "black": ("black", "ebony", "inky"),
    }
)
SHAPE_SYNONYMS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "circle": ("circle", "ball", "disc", "sphere"),
        "square": ("square", "box", "block"),
        "triangle": ("triangle", "wedge"),
        "star": ("star", "five-pointed star"),
        "hexagon": ("hexagon", "hex"),
        "diamond": ("diamond", "rhombus", "lozenge"),
    }
)
SIZE_SYNONYMS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {"small": ("small", "little", "tiny"), "large": ("large", "big")}
)
# Third-person verb phrases.  "circle" avoids the bare word "circle" so that shape nouns stay
# countable ("circles around" and "circular" are different words).
MOTION_SYNONYMS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "left": ("moves left", "slides to the left", "drifts left", "travels leftward"),
        "right": ("moves right", "slides to the right", "drifts right", "travels rightward"),
        "up": ("moves up", "rises", "floats upward", "drifts up"),
        "down": ("moves down", "sinks", "falls slowly", "drifts down"),
        "bounce": ("bounces", "bounces up and down", "hops"),
        "circle": ("moves in a loop", "circles around", "travels in a circular path"),
        "grow": ("grows", "gets bigger", "expands"),
        "shrink": ("shrinks", "gets smaller", "contracts"),
        "spin": ("spins", "rotates", "twirls"),
        "still": ("stays still", "sits still", "rests in place", "does not move"),
    }
)
# Entering objects are described by where they come from, not by their (implied) motion.
ENTER_SYNONYMS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {side: (f"enters from the {side}", f"slides in from the {side}", f"appears from the {side} edge") for side in SIDES}
)
TURN_SYNONYMS: tuple[str, ...] = ("then suddenly turns and", "then abruptly changes direction and")
REVERSE_SYNONYMS: tuple[str, ...] = ("then suddenly turns around and", "then abruptly reverses and")
CUT_SYNONYMS: tuple[str, ...] = ("then the scene cuts to", "then the video cuts to", "and then it cuts to")
# Background templates: {c} / {c1} {c2} are colour words, {o} the stripe orientation.
BACKGROUND_SYNONYMS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "solid": ("a {c} background", "a plain {c} background", "a solid {c} backdrop"),
        "gradient": (
            "a {c1} to {c2} gradient",
            "a gradient from {c1} at the top to {c2} at the bottom",
            "a background fading from {c1} to {c2}",
        ),
        "stripes": (
            "{c1} and {c2} {o} stripes",
            "a background of {o} {c1} and {c2} stripes",
            "a {o} striped {c1} and {c2} backdrop",
        ),
        "checker": (
            "a {c1} and {c2} checkerboard",
            "a {c1} and {c2} checkered background",
            "a chessboard of {c1} and {c2} tiles",
        ),
    }
)
PAN_SYNONYMS: tuple[str, ...] = (
    "as the camera pans {d}",
    "while the camera slowly pans {d}",
    "with the camera panning {d}",
)
NUMBER_WORDS: MappingProxyType[int, str] = MappingProxyType({2: "two", 3: "three", 4: "four", 5: "five"})

SYNONYMS: MappingProxyType[str, MappingProxyType] = MappingProxyType(
    {
        "color": COLOR_SYNONYMS,
        "shape": SHAPE_SYNONYMS,
        "size": SIZE_SYNONYMS,
        "motion": MOTION_SYNONYMS,
        "enter": ENTER_SYNONYMS,
        "background": BACKGROUND_SYNONYMS,
    }
)
