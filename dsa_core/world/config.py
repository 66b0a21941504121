"""`WorldConfig` and the train / held-out seed split."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .vocab import BACKGROUNDS

# Train seeds are [0, HELDOUT_OFFSET); held-out seeds are [HELDOUT_OFFSET, 2 * HELDOUT_OFFSET).
HELDOUT_OFFSET = 10**9
# Events need room to happen in: shorter clips get none (see `WorldConfig.events_enabled`).
MIN_FRAMES_FOR_EVENTS = 33


@dataclass(frozen=True)
class WorldConfig:
    """Frame geometry and the probabilities the scene sampler draws from.

    Motion speeds and durations are defined for the default 64×64, 81-frame clip and rescale
    with `min(height, width) / 64` in space and `(num_frames - 1) / 80` in time (or
    `speed_frames`), so a clip of another size or length shows the same motions.
    """

    height: int = 64
    width: int = 64
    fps: int = 16
    num_frames: int = 81  # 1 + 4k: one first frame, then 4 frames per latent frame
    # The clip length whose motion speeds a clip keeps: None rescales them to `num_frames`, so
    # a 9-frame clip runs a whole 81-frame path (an object crosses up to half the frame in one
    # latent frame); 81 keeps the 81-frame speeds, so a short clip is a slow piece of motion.
    speed_frames: int | None = None

    # Per-clip probability of each event (each happens at most once per clip).
    p_enter: float = 0.25  # an object enters from off-screen at a random frame
    p_turn: float = 0.25  # an object on a straight path suddenly changes direction
    p_cut: float = 0.25  # a cut to a new scene (new background and objects)
    # Probability that a striped or checkered background scrolls (a camera pan).
    p_pan: float = 0.35
    # P(number of objects in a scene = 1, 2, 3, ...); normalised by the sampler.
    object_count_probs: tuple[float, ...] = (0.45, 0.35, 0.2)
    # P(background kind), in the order of `vocab.BACKGROUNDS` (solid, gradient, stripes, checker).
    background_probs: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 32 or v % 16:
                raise ValueError(f"WorldConfig.{name} must be a multiple of 16 and >= 32, got {v!r}")
        n = self.num_frames
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or (n - 1) % 4:
            raise ValueError(f"WorldConfig.num_frames must be 1 + 4k >= 1 (1, 5, 9, ..., 81, ...), got {n!r}")
        sf = self.speed_frames
        if sf is not None and (not isinstance(sf, int) or isinstance(sf, bool) or sf < 2):
            raise ValueError(f"WorldConfig.speed_frames must be None or an integer >= 2, got {sf!r}")
        if not isinstance(self.fps, int) or isinstance(self.fps, bool) or self.fps < 1:
            raise ValueError(f"WorldConfig.fps must be an integer >= 1, got {self.fps!r}")
        for name in ("p_enter", "p_turn", "p_cut", "p_pan"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0 or math.isnan(p):
                raise ValueError(f"WorldConfig.{name} must be a probability in [0, 1], got {p!r}")
        _check_probs("object_count_probs", self.object_count_probs, None)
        _check_probs("background_probs", self.background_probs, len(BACKGROUNDS))
        if len(self.object_count_probs) > 5:
            raise ValueError(
                f"WorldConfig.object_count_probs allows 1 to 5 objects (length 1..5), got length "
                f"{len(self.object_count_probs)}"
            )

    @property
    def events_enabled(self) -> bool:
        """Events are only sampled for clips of at least `MIN_FRAMES_FOR_EVENTS` frames."""
        return self.num_frames >= MIN_FRAMES_FOR_EVENTS


def _check_probs(name: str, probs: tuple[float, ...], length: int | None) -> None:
    if not isinstance(probs, tuple) or not probs:
        raise ValueError(f"WorldConfig.{name} must be a non-empty tuple of probabilities, got {probs!r}")
    if length is not None and len(probs) != length:
        raise ValueError(f"WorldConfig.{name} must have {length} entries, got {len(probs)}")
    if any(not isinstance(p, (int, float)) or not p >= 0 for p in probs) or sum(probs) <= 0:
        raise ValueError(f"WorldConfig.{name} must be non-negative with a positive sum, got {probs!r}")


def train_seed(i: int) -> int:
    """Seed of the i-th training clip: seeds [0, 10**9)."""
    _check_index(i)
    return int(i)


def heldout_seed(i: int) -> int:
    """Seed of the i-th held-out clip: seeds [10**9, 2·10**9), disjoint from `train_seed`."""
    _check_index(i)
    return HELDOUT_OFFSET + int(i)


def is_heldout(seed: int) -> bool:
    return seed >= HELDOUT_OFFSET


def _check_index(i: int) -> None:
    if not isinstance(i, (int,)) and not hasattr(i, "__index__"):
        raise TypeError(f"seed index must be an integer, got {type(i).__name__}")
    if not 0 <= i < HELDOUT_OFFSET:
        raise ValueError(f"seed index must be in [0, {HELDOUT_OFFSET}), got {i}")


DEFAULT_CONFIG = WorldConfig()
# One object on a solid background, no events: the world's easiest clips.  Prompts drawn from
# it tell what a model follows at all apart from what the full world's clutter (patterns,
# several objects, cuts) costs it.  Its held-out seeds are as unseen as the default's.
SIMPLE_CONFIG = WorldConfig(p_enter=0.0, p_turn=0.0, p_cut=0.0, p_pan=0.0, object_count_probs=(1.0,),
                            background_probs=(1.0, 0.0, 0.0, 0.0))
# The worlds the command lines draw held-out prompts from (`--world`).
WORLDS = {"full": DEFAULT_CONFIG, "simple": SIMPLE_CONFIG}
