"""Step schedules: how many denoising steps each chunk gets, and at which timesteps (DESIGN §4).

A schedule is a small object with explicit state that the chunk loop asks three questions:
`timesteps(k)` — the timesteps chunk k may visit, in order; `should_stop(conf)` — after each
step, given the confidences of this chunk so far, is the chunk done; and whether a context
pass follows the chunk (`context_pass`, at `context_t`).  `reset()` starts a new video.
Adding a schedule means adding a class here and a line in `SCHEDULES`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .config import Preset
from .scheduler import FlowMatchScheduler


class Schedule:
    name = "base"
    # Run one extra forward on the finished chunk so the cache describes it (Self-Forcing).
    context_pass = True
    context_t = 0.0  # warped units; 0 = clean

    def reset(self) -> None:
        """Forget everything seen in an earlier video."""

    def timesteps(self, chunk: int) -> list[float]:
        raise NotImplementedError

    def confidence(self, head_conf: float, x0: torch.Tensor, prev_x0: torch.Tensor | None) -> float:
        """The confidence this schedule acts on; the head's unless overridden."""
        return head_conf

    def should_stop(self, conf: Sequence[float]) -> bool:
        """Called after each step with this chunk's confidences so far."""
        return False

    def end_chunk(self, conf: Sequence[float]) -> None:
        """Called once the chunk is finished."""

    def describe(self) -> dict:
        return {
            "name": self.name,
            "context_pass": self.context_pass,
            "context_t": self.context_t if self.context_pass else None,
        }


def _check_steps(name: str, n: object, max_steps: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_steps:
        raise ValueError(f"{name}={n!r} is outside the allowed range 1..{max_steps} (integer)")
    return n


class Fixed(Schedule):
    """n steps for every chunk (the Self-Forcing baseline)."""

    name = "fixed"

    def __init__(self, preset: Preset, steps: int | None = None) -> None:
        s = preset.sampling
        self.steps = _check_steps("steps", preset.schedules.fixed_steps if steps is None else steps, s.max_steps)
        self._t = FlowMatchScheduler(s.shift).warp(s.steps_for(self.steps))

    def timesteps(self, chunk: int) -> list[float]:
        return list(self._t)

    def describe(self) -> dict:
        return {**super().describe(), "steps": self.steps}


class Timesteps(Schedule):
    """An explicit timestep list for every chunk: the exit schedule of training rollouts."""

    name = "timesteps"

    def __init__(self, timesteps: Sequence[float]) -> None:
        self._t = list(timesteps)

    def timesteps(self, chunk: int) -> list[float]:
        return list(self._t)


class RandomExits(Schedule):
    """A step list drawn for each chunk from `exits`: training rollouts whose chunks end at
    different depths, as an adaptive schedule's do at inference."""

    name = "random_exits"

    def __init__(self, exits: Sequence[Sequence[float]], generator: torch.Generator) -> None:
        self._exits = [list(e) for e in exits]
        self._g = generator
        self.reset()

    def reset(self) -> None:
        self._drawn: dict[int, list[float]] = {}

    def timesteps(self, chunk: int) -> list[float]:
        if chunk not in self._drawn:
            self._drawn[chunk] = self._exits[int(torch.randint(0, len(self._exits), (1,), generator=self._g))]
        return list(self._drawn[chunk])


class FFE(Schedule):
    """First-frame enhancement (SAD): the full list for chunk 0, a short sub-list afterwards."""

    name = "ffe"

    def __init__(self, preset: Preset, steps: int | None = None) -> None:
        s = preset.sampling
        warp = FlowMatchScheduler(s.shift).warp
        self.later_steps = _check_steps(
            "steps", preset.schedules.ffe_later_steps if steps is None else steps, s.max_steps
        )
        self._first = warp(s.raw_steps)
        self._later = warp(s.steps_for(self.later_steps))

    def timesteps(self, chunk: int) -> list[float]:
        return list(self._first if chunk == 0 else self._later)

    def describe(self) -> dict:
        return {**super().describe(), "first_steps": len(self._first), "later_steps": self.later_steps}


class Diagonal(Schedule):
    """Diagonal denoising: decreasing per-chunk step counts, the last repeated.

    With diagonal forcing (`context_pass=False`) the next chunk attends to the K/V of this
    chunk's last, still noisy, denoising forward; otherwise a context pass at `context_t`.
    """

    name = "diagonal"

    def __init__(
        self,
        preset: Preset,
        counts: Sequence[int] | str | int | None = None,
        context_pass: bool | None = None,
        context_raw_t: float | None = None,
    ) -> None:
        s, d = preset.sampling, preset.schedules
        counts = d.diagonal_counts if counts is None else counts
        if isinstance(counts, int) and not isinstance(counts, bool):
            counts = str(counts)  # `bench --row diagonal:counts=432` reads the digits as a number
        if isinstance(counts, str):
            counts = _parse_counts(counts, s.max_steps)
        if len(counts) == 0:
            raise ValueError(f"diagonal counts must list at least one step count in 1..{s.max_steps}")
        self.counts = tuple(_check_steps("diagonal counts entry", n, s.max_steps) for n in counts)
        self.context_pass = d.diagonal_context_pass if context_pass is None else bool(context_pass)
        raw = d.diagonal_context_raw_t if context_raw_t is None else context_raw_t
        scheduler = FlowMatchScheduler(s.shift)
        self.context_t = scheduler.warp([raw])[0]
        self._t = {n: scheduler.warp(s.steps_for(n)) for n in set(self.counts)}

    def timesteps(self, chunk: int) -> list[float]:
        return list(self._t[self.counts[min(chunk, len(self.counts) - 1)]])

    def describe(self) -> dict:
        return {**super().describe(), "counts": list(self.counts)}


def _parse_counts(text: str, max_steps: int) -> tuple[int, ...]:
    """'4,3,2' or '4 3 2' or '432' → (4, 3, 2)."""
    parts = text.replace(",", " ").split()
    if len(parts) == 1 and parts[0].isdigit() and len(parts[0]) > 1:
        parts = list(parts[0])
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"diagonal counts {text!r} must be integers in 1..{max_steps} separated by commas, e.g. '4,3,2'"
        ) from None


class Adaptive(Schedule):
    """DSA: the confidence head decides when a chunk is done (DESIGN §4).

    The first chunk runs `first_chunk_steps`.  For later chunks, after step j ≥ `min_steps`
    the chunk stops when its confidence reaches the previous chunk's final confidence minus
    `margin`, or when it has stopped improving (|c_j − c_{j−1}| < `tol`); never past
    `max_steps`.
    """

    name = "adaptive"
    defaults = "adaptive"  # prefix of this schedule's fields in ScheduleDefaults

    def __init__(
        self,
        preset: Preset,
        min_steps: int | None = None,
        max_steps: int | None = None,
        margin: float | None = None,
        tol: float | None = None,
        first_chunk_steps: int | None = None,
    ) -> None:
        s = preset.sampling

        def default(key: str, given: float | None) -> float:
            return getattr(preset.schedules, f"{self.defaults}_{key}") if given is None else given

        self.max_steps = _check_steps("max_steps", s.max_steps if max_steps is None else max_steps, s.max_steps)
        self.min_steps = _check_steps("min_steps", default("min_steps", min_steps), self.max_steps)
        first = default("first_chunk_steps", first_chunk_steps) or self.max_steps
        self.first_chunk_steps = _check_steps("first_chunk_steps", first, self.max_steps)
        self.margin = _check_fraction("margin", default("margin", margin))
        self.tol = _check_fraction("tol", default("tol", tol))
        self._t = FlowMatchScheduler(s.shift).warp(s.raw_steps)[: self.max_steps]
        self.reset()

    def reset(self) -> None:
        self.chunk = 0
        self.conf_ref: float | None = None

    def timesteps(self, chunk: int) -> list[float]:
        return list(self._t[: self.first_chunk_steps] if chunk == 0 else self._t)

    def should_stop(self, conf: Sequence[float]) -> bool:
        j = len(conf)
        if self.chunk == 0 or j < self.min_steps:
            return False
        if conf[-1] >= self.conf_ref - self.margin:
            return True
        return j >= 2 and abs(conf[-1] - conf[-2]) < self.tol

    def end_chunk(self, conf: Sequence[float]) -> None:
        self.conf_ref = conf[-1]
        self.chunk += 1

    def describe(self) -> dict:
        return {
            **super().describe(),
            "min_steps": self.min_steps,
            "max_steps": self.max_steps,
            "margin": self.margin,
            "tol": self.tol,
            "first_chunk_steps": self.first_chunk_steps,
        }


class Proxy(Adaptive):
    """The adaptive rule on a training-free confidence: agreement of successive x0 predictions.

    c_j = cosine similarity of x0_j and x0_{j−1}, clipped to [0, 1]; c_1 = 0 (nothing to
    compare yet), so `min_steps` defaults to 2.  Lets any checkpoint without a trained head
    still allocate steps (cf. the SAD paper's cosine-similarity analysis).
    """

    name = "proxy"
    defaults = "proxy"

    def confidence(self, head_conf: float, x0: torch.Tensor, prev_x0: torch.Tensor | None) -> float:
        if prev_x0 is None:
            return 0.0
        cos = torch.nn.functional.cosine_similarity(x0.flatten().double(), prev_x0.flatten().double(), dim=0)
        return float(cos.clamp(0.0, 1.0))


def _check_fraction(name: str, value: object) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"{name}={value!r} is outside the allowed range 0..1")
    return float(value)


@dataclass(frozen=True)
class ScheduleSpec:
    factory: Callable[..., Schedule]
    help: str


SCHEDULES: dict[str, ScheduleSpec] = {
    "adaptive": ScheduleSpec(Adaptive, "DSA: the confidence head stops each chunk when it is good enough"),
    "ffe": ScheduleSpec(FFE, "first-frame enhancement: full steps for chunk 0, --steps for the rest"),
    "diagonal": ScheduleSpec(Diagonal, "diagonal denoising: decreasing step counts, noisy context"),
    "fixed": ScheduleSpec(Fixed, "the same --steps for every chunk (Self-Forcing)"),
    "proxy": ScheduleSpec(Proxy, "the adaptive rule on a training-free confidence (x0 agreement)"),
}


def make_schedule(name: str, preset: Preset, **params) -> Schedule:
    """Build a schedule by name; `params` are its constructor's keyword arguments."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule={name!r} is unknown; allowed: {', '.join(SCHEDULES)}")
    factory = SCHEDULES[name].factory
    allowed = [p for p in inspect.signature(factory).parameters if p != "preset"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"schedule {name!r} takes no parameter {unknown[0]!r}; allowed: {', '.join(allowed) or 'none'}"
        )
    return factory(preset, **params)
