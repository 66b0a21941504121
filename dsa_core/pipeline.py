"""The streaming chunk loop (DESIGN §3): one event per generated chunk.

`denoise_chunk` is the loop over one chunk's steps, written once and shared by inference
(`Generation`) and the training rollout.  `Generation` adds the text, the streaming VAE
decode, prompt changes, cancellation and timings around it; `StreamingPipeline` validates a
request and starts a `Generation`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import unicodedata
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import Preset
from .media import read_video
from .model import CausalWanModel, KVCache, TextContext
from .scheduler import FlowMatchScheduler
from .schedules import Schedule, make_schedule
from .text import TextEncoder
from .vae import StreamingDecoder, encode, to_uint8_frames, to_video_tensor


@dataclass
class ChunkResult:
    x0: torch.Tensor
    timesteps: list[float]
    confidence: list[float]  # what the schedule acted on, after every step
    head_confidence: list[float]  # the confidence head's sigmoid, after every step
    nfe: int  # transformer forwards, context pass included
    conf_logits: torch.Tensor  # the head's logits at the last step, `[B, 1]` (with grad in training)


def denoise_chunk(
    model: CausalWanModel,
    scheduler: FlowMatchScheduler,
    schedule: Schedule,
    text: TextContext,
    cache: KVCache,
    noise: torch.Tensor,
    chunk: int,
    start_frame: int,
    generator: torch.Generator,
    grad: bool = False,
) -> ChunkResult:
    """Denoise one chunk from `noise`, then leave its K/V in `cache` for the next chunks.

    With `grad` (the Self-Forcing training rollout) the last step of the schedule runs with
    autograd and every other forward without, so the gradient reaches the exit step only.
    """
    b, _, frames = noise.shape[:3]
    timesteps = schedule.timesteps(chunk)
    x, x0, prev_x0 = noise, noise, None
    visited: list[float] = []
    conf: list[float] = []
    head_conf: list[float] = []
    for j, t in enumerate(timesteps):
        with torch.set_grad_enabled(grad and j + 1 == len(timesteps)):
            out = model(x, noise.new_full((b, frames), t), text, cache=cache, start_frame=start_frame)
        sigma = scheduler.sigma(t)
        x0 = scheduler.to_x0(x, out.flow, sigma)
        head = float(torch.sigmoid(out.conf_logits.detach().float()).mean())
        visited.append(t)
        head_conf.append(head)
        conf.append(schedule.confidence(head, x0, prev_x0))
        if j + 1 == len(timesteps) or schedule.should_stop(conf):
            break
        x = renoise(scheduler, x0, scheduler.sigma(timesteps[j + 1]), generator)
        prev_x0 = x0
    schedule.end_chunk(conf)
    nfe = len(visited)
    if schedule.context_pass:
        context_pass(model, scheduler, x0.detach(), schedule.context_t, text, cache, start_frame, generator)
        nfe += 1
    # Without a context pass the slots keep the K/V of the last, still noisy, forward:
    # diagonal forcing.
    cache.commit()
    return ChunkResult(x0, visited, conf, head_conf, nfe, out.conf_logits)


@torch.no_grad()
def context_pass(model: CausalWanModel, scheduler: FlowMatchScheduler, x0: torch.Tensor, t: float, text: TextContext,
                 cache: KVCache, start_frame: int, generator: torch.Generator) -> None:
    """Write the K/V of clean chunk `x0`, re-noised to `t` (0: as it is), into the cache's current slot."""
    x = renoise(scheduler, x0, scheduler.sigma(t), generator) if t > 0 else x0
    model(x, x0.new_full((x0.shape[0], x0.shape[2]), t), text, cache=cache, start_frame=start_frame)


def renoise(scheduler: FlowMatchScheduler, x0: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Re-noise x0 to σ with fresh noise drawn on the CPU, so every device sees the same noise."""
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
    return scheduler.add_noise(x0, noise, sigma)


def chunk_start_frame(chunk: int, chunk_frames: int) -> int:
    """Index of chunk `chunk`'s first pixel frame: latent frame 0 decodes to 1 frame, every later
    one to 4, so chunk k > 0 starts at 1 + 4·(k·cf − 1); it is also the frame count of k chunks."""
    return 0 if chunk == 0 else 1 + 4 * (chunk * chunk_frames - 1)


def check_seconds(seconds: object, limit: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise ValueError(f"seconds={seconds!r} must be a number in (0, {limit}]")
    if not 0 < seconds <= limit:
        raise ValueError(f"seconds={seconds!r} is outside the allowed range (0, {limit}]")
    return float(seconds)


def read_context(path: str | Path, preset: Preset, seconds: object) -> np.ndarray:
    """A video file to continue for `seconds` more, at the model's size and frame rate: its last
    frames that leave room for them within the longest video allowed (earlier ones skipped with a
    warning).  Needs no weights, so a bad file or length fails before they load."""
    s = preset.sampling
    seconds = check_seconds(seconds, s.max_seconds)
    room = math.floor((s.max_seconds - seconds) * s.fps)
    first = chunk_start_frame(1, preset.model.chunk_frames)
    if room < first:
        raise ValueError(f"seconds={seconds:g} leaves no room for a video to continue (one chunk, {first} frames, "
                         f"at least): with one, seconds may be at most {(s.max_seconds * s.fps - first) / s.fps:g}")
    return read_video(path, s.height, s.width, s.fps, room)


class Rollout:
    """The autoregressive loop over chunks, at the latent level; shared by inference and training.

    Holds the KV cache and two random streams: one for each chunk's initial noise (so every
    schedule starts each chunk from the same noise) and one for re-noising between steps.
    """

    def __init__(
        self,
        model: CausalWanModel,
        scheduler: FlowMatchScheduler,
        schedule: Schedule,
        preset: Preset,
        seed: int | torch.Generator,
        batch: int = 1,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        grad: bool = False,
    ) -> None:
        s, cf = preset.sampling, preset.model.chunk_frames
        self.model, self.scheduler, self.schedule, self.grad = model, scheduler, schedule, grad
        h, w = preset.latent_size()
        self.shape = (batch, preset.model.in_dim, cf, h, w)
        self.device, self.dtype = torch.device(device), dtype
        if isinstance(seed, torch.Generator):  # training: derive both streams from the step's generator
            seed = int(torch.randint(0, 2**62, (1,), generator=seed))
        self.noise_gen = torch.Generator().manual_seed(seed)
        self.renoise_gen = torch.Generator().manual_seed((seed * 2654435761 + 1) % 2**63)
        self.cache = model.new_cache(h, w, s.window_frames, s.sink_frames)
        self.chunk = 0
        schedule.reset()

    def next_chunk(self, text: TextContext) -> ChunkResult:
        noise = torch.randn(self.shape, generator=self.noise_gen).to(self.device, self.dtype)
        k, cf = self.chunk, self.shape[2]
        result = denoise_chunk(
            self.model, self.scheduler, self.schedule, text, self.cache, noise, k, k * cf, self.renoise_gen, self.grad
        )
        self.chunk += 1
        return result

    @torch.no_grad()
    def feed(self, x0: torch.Tensor, text: TextContext) -> None:
        """Take a given clean chunk as the next one: its K/V enter the cache as the context pass
        leaves a generated chunk's (at the schedule's `context_t`, diagonal forcing's included),
        so the chunks after it continue that video (real frames, say).  Its initial noise is
        still drawn: the chunks after it start from the same noise as in a rollout that
        generated it."""
        torch.randn(self.shape, generator=self.noise_gen)
        context_pass(self.model, self.scheduler, x0.to(self.device, self.dtype), self.schedule.context_t, text,
                     self.cache, self.chunk * self.shape[2], self.renoise_gen)
        self.cache.commit()
        self.chunk += 1


@dataclass
class ChunkEvent:
    index: int
    num_chunks: int
    frames: np.ndarray  # uint8, T×H×W×3
    latents: torch.Tensor  # the chunk's x0, on the CPU
    steps: int
    timesteps: list[float]
    confidence: list[float]
    head_confidence: list[float]
    nfe: int  # so far, this chunk included
    transformer_ms: float
    decode_ms: float
    prompt: str
    first_frame: int  # index of this chunk's first pixel frame in the video
    elapsed_s: float  # since the generation started

    def stats(self) -> dict:
        """The per-chunk record written to JSON and shown in the app."""
        return {
            "index": self.index,
            "steps": self.steps,
            "timesteps": [round(t, 3) for t in self.timesteps],
            "confidence": [round(c, 5) for c in self.confidence],
            "head_confidence": [round(c, 5) for c in self.head_confidence],
            "nfe": self.nfe,
            "num_frames": int(self.frames.shape[0]),
            "transformer_ms": round(self.transformer_ms, 2),
            "decode_ms": round(self.decode_ms, 2),
            "prompt": self.prompt,
        }


@dataclass
class _CachedChunk:
    """What re-caching under a new prompt needs to rebuild one chunk's K/V."""

    x0: torch.Tensor
    start_frame: int
    context_pass: bool
    context_t: float
    last_t: float


class GivenVideo:
    """Frames of a video to continue (`StreamingPipeline.given`), with their latents and a decoder
    primed on them: computed once, by the first generation that needs them, and shared by every
    generation that continues them on the same VAE (Compare's schedules: each student feeds the
    same latents; decoding the given frames is most of a continuation's start-up)."""

    def __init__(self, pipe: StreamingPipeline, frames: np.ndarray) -> None:
        self.frames = frames  # checked by the pipeline (`check_context`)
        self.vae, self.device, self.dtype = pipe.vae, pipe.device, pipe.dtype
        self._lock = threading.Lock()
        self._primed: tuple[torch.Tensor, StreamingDecoder] | None = None

    def primed(self) -> tuple[torch.Tensor, StreamingDecoder]:
        """The latents [1, C, f, h, w] and a decoder of its own that has decoded them."""
        with self._lock, torch.inference_mode():
            if self._primed is None:
                latents = encode(self.vae, to_video_tensor([self.frames])).to(self.device, self.dtype)
                # Decoded and dropped: the decoder's causal cache must hold the given frames for
                # the first generated chunk to decode as their continuation.
                decoder = StreamingDecoder(self.vae)
                decoder.decode(latents.float())
                self._primed = latents, decoder
            latents, decoder = self._primed
            return latents, decoder.fork()


class Generation:
    """One streaming video: iterate it for `ChunkEvent`s.

    `change_prompt` and `cancel` may be called from another thread; both take effect
    between chunks.  With `context` (frames of whole chunks, `StreamingPipeline.check_context`)
    the video continues those frames: their chunks enter the KV cache first, then `latent_frames`
    more are generated, one event a chunk (`index` from `context_chunks` on).
    """

    def __init__(
        self,
        pipe: StreamingPipeline,
        prompt: str,
        schedule: Schedule,
        latent_frames: int,
        seed: int,
        context: GivenVideo | None = None,
    ) -> None:
        self.pipe = pipe
        self.schedule = schedule
        self.seed = seed
        cf = pipe.preset.model.chunk_frames
        self.given = context
        self.context_frames = context.frames if context is not None else np.zeros((0, 0, 0, 3), np.uint8)
        self.context_chunks = (len(self.context_frames) + 3) // (4 * cf)  # inverts chunk_start_frame
        self.latent_frames = self.context_chunks * cf + latent_frames
        self.num_chunks = self.latent_frames // cf
        self.num_frames = chunk_start_frame(self.num_chunks, cf)
        self.nfe = 0
        self.cancelled = False
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._prompt = prompt
        self._pending_prompt: tuple[str, bool] | None = None
        self.events: list[ChunkEvent] = []

    @property
    def prompt(self) -> str:
        return self._prompt

    def change_prompt(self, prompt: str, recache: bool = False) -> None:
        """Use `prompt` from the next chunk on; `recache` rebuilds the cached chunks' K/V under it."""
        prompt = self.pipe.check_prompt(prompt)
        with self._lock:
            self._pending_prompt = (prompt, recache)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        """Whether `cancel` was called (`cancelled` says whether the generation has stopped for it)."""
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[ChunkEvent]:
        pipe, p = self.pipe, self.pipe.preset
        cf = p.model.chunk_frames
        rollout = Rollout(pipe.model, pipe.scheduler, self.schedule, p, self.seed, device=pipe.device, dtype=pipe.dtype)
        window_chunks, sink_chunks = p.sampling.window_frames // cf, p.sampling.sink_frames // cf
        cached: list[_CachedChunk] = []

        def remember(chunk: _CachedChunk) -> None:
            cached.append(chunk)
            if len(cached) > window_chunks:  # mirror the cache's eviction
                del cached[sink_chunks]

        start = time.perf_counter()
        text = pipe.encode_prompt(self._prompt)
        if self.given is None:
            decoder = StreamingDecoder(pipe.vae)
        else:
            latents, decoder = self.given.primed()
            with torch.inference_mode():
                for k in range(self.context_chunks):
                    x0 = latents[:, :, k * cf : (k + 1) * cf]
                    rollout.feed(x0, text)
                    self.nfe += 1  # its context pass
                    t = self.schedule.context_t
                    remember(_CachedChunk(x0, k * cf, True, t, t))
        for k in range(self.context_chunks, self.num_chunks):
            if self._cancel.is_set():
                self.cancelled = True
                return
            # Inference mode per chunk, not around the loop: a `with` left open across `yield`
            # would leak into the consumer's code between chunks.
            with torch.inference_mode():
                t0 = time.perf_counter()
                with self._lock:
                    change, self._pending_prompt = self._pending_prompt, None
                if change is not None:
                    self._prompt = change[0]
                    text = pipe.encode_prompt(self._prompt)
                    if change[1]:
                        self.nfe += self._recache(rollout.cache, text, cached)
                result = rollout.next_chunk(text)
                self.nfe += result.nfe
                s = self.schedule
                remember(_CachedChunk(result.x0, k * cf, s.context_pass, s.context_t, result.timesteps[-1]))
                t1 = pipe.synchronize()
                frames = to_uint8_frames(decoder.decode(result.x0.float()))
                t2 = pipe.synchronize()
                event = ChunkEvent(
                    index=k,
                    num_chunks=self.num_chunks,
                    frames=frames,
                    latents=result.x0.float().cpu(),
                    steps=len(result.timesteps),
                    timesteps=result.timesteps,
                    confidence=result.confidence,
                    head_confidence=result.head_confidence,
                    nfe=self.nfe,
                    transformer_ms=(t1 - t0) * 1e3,
                    decode_ms=(t2 - t1) * 1e3,
                    prompt=self._prompt,
                    first_frame=chunk_start_frame(k, cf),
                    elapsed_s=t2 - start,
                )
            self.events.append(event)
            yield event

    def _recache(self, cache: KVCache, text: TextContext, cached: list[_CachedChunk]) -> int:
        """Rebuild the K/V of the chunks in the window under a new prompt (LongLive)."""
        pipe = self.pipe
        cache.reset()
        gen = torch.Generator().manual_seed(self.seed + len(cached))
        for c in cached:
            t = c.context_t if c.context_pass else c.last_t
            context_pass(pipe.model, pipe.scheduler, c.x0, t, text, cache, c.start_frame, gen)
            cache.commit()
        return len(cached)

    def summary(self) -> dict:
        """Everything `generate` writes beside the MP4."""
        return {
            "nfe": self.nfe,
            "num_frames": len(self.context_frames) + sum(int(e.frames.shape[0]) for e in self.events),
            "context_frames": len(self.context_frames),
            "planned_frames": self.num_frames,
            "fps": self.pipe.preset.sampling.fps,
            "schedule": self.schedule.name,
            "schedule_params": self.schedule.describe(),
            "seed": self.seed,
            "model": self.pipe.preset.name,
            "student": self.pipe.student,
            "random_init": self.pipe.random_init,
            "cancelled": self.cancelled,
            "chunks": [e.stats() for e in self.events],
        }


@dataclass
class StreamingPipeline:
    """A loaded model family, ready to stream videos."""

    preset: Preset
    model: CausalWanModel
    vae: torch.nn.Module
    text_encoder: TextEncoder
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    random_init: bool = False
    # False for checkpoints without a DSA-trained head (the public Self-Forcing one).
    trained_head: bool = True
    # Keep the text encoder on the CPU: on a small GPU its weights outweigh the generator's.
    low_memory: bool = False
    # Where the weights came from, which of its trained students `model` is, and the file of
    # every student the folder ships (read once at load, not on every request).
    weights_dir: Path | None = None
    student: str = "dmd"
    student_files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scheduler = FlowMatchScheduler(self.preset.sampling.shift, self.preset.sampling.num_train_timesteps)
        self._text_cache: tuple[str, TextContext] | None = None
        self._siblings: dict[str, StreamingPipeline] = {self.student: self}

    def students(self) -> list[str]:
        """The trained students this pipeline's weights ship (just its own for random weights)."""
        return list(self.student_files) or [self.student]

    def with_student(self, student: str) -> StreamingPipeline:
        """This pipeline with another of the shipped students, sharing the VAE and text encoder."""
        from .weights import load_transformer

        if student not in self._siblings:
            if student not in self.student_files:
                raise ValueError(f"student={student!r} is not shipped; allowed: {', '.join(self.students())}")
            path = self.weights_dir / self.student_files[student]
            model = load_transformer(self.preset, path).to(self.device).eval().requires_grad_(False)
            sibling = dataclasses.replace(self, model=model, student=student)
            sibling._siblings = self._siblings
            self._siblings[student] = sibling
        return self._siblings[student]

    def for_schedule(self, schedule: str) -> StreamingPipeline:
        """The student that serves `schedule` best (config `ScheduleDefaults.students`), if shipped."""
        student = self.preset.schedules.student_for(schedule)
        return self.with_student(student if student in self.students() else "dmd")

    @classmethod
    def from_preset(
        cls,
        name: str = "tiny",
        *,
        weights_dir: str | Path | None = None,
        random_init: bool = False,
        device: str | torch.device | None = None,
        seed: int = 0,
        low_memory: bool = False,
        compile: bool = False,
        hub_cache_dir: str | None = None,
        hub_revision: str | None = None,
    ) -> StreamingPipeline:
        """`compile` wraps the transformer in `torch.compile` (dynamic shapes: the KV cache grows
        chunk by chunk); the first video pays for compilation."""
        from .weights import load_components

        pipe = load_components(name, weights_dir=weights_dir, random_init=random_init, device=device, seed=seed,
                               low_memory=low_memory, hub_cache_dir=hub_cache_dir, hub_revision=hub_revision)
        if compile:
            pipe.model = torch.compile(pipe.model, dynamic=True)
        return pipe

    def check_prompt(self, prompt: object) -> str:
        limit = self.preset.sampling.max_prompt_chars
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string of 1..{limit} characters")
        if len(prompt) > limit:
            raise ValueError(f"prompt has {len(prompt)} characters; the allowed range is 1..{limit}")
        # Control characters (NUL, escape sequences, …) mean nothing to the tokenizer and can
        # corrupt logs and terminals: they become spaces, and a prompt of nothing else is refused.
        cleaned = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in prompt).strip()
        if not cleaned:
            raise ValueError("prompt has no printable characters: write at least one visible character")
        if cleaned != prompt.strip():
            warnings.warn("control characters in the prompt were replaced by spaces", UserWarning, stacklevel=3)
        return " ".join(cleaned.split())

    def check_seconds(self, seconds: object) -> float:
        return check_seconds(seconds, self.preset.sampling.max_seconds)

    @staticmethod
    def check_seed(seed: object) -> int:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise ValueError(f"seed={seed!r} must be an integer in 0..{2**63 - 1}")
        return int(seed)

    def check_context(self, frames: object) -> np.ndarray:
        """Frames of a video to continue, uint8 [T, H, W, 3] at the model's size: the last of them
        that fill whole chunks (`chunk_start_frame(k, cf)` frames for k chunks), with a warning
        when any are cut."""
        s, cf = self.preset.sampling, self.preset.model.chunk_frames
        first = chunk_start_frame(1, cf)
        wanted = f"uint8 frames [T, {s.height}, {s.width}, 3] with T >= {first}"
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"context must be {wanted}; got {type(frames).__name__}")
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (s.height, s.width, 3):
            raise ValueError(f"context must be {wanted}; got {frames.dtype} {list(frames.shape)}")
        if len(frames) < first:
            raise ValueError(f"context has {len(frames)} frames; at least {first} (one chunk) are needed")
        kept = chunk_start_frame(1 + (len(frames) - first) // (4 * cf), cf)
        if kept < len(frames):
            warnings.warn(f"the context's first {len(frames) - kept} frames were dropped: the video continues "
                          f"its last {kept}, which fill whole chunks", UserWarning, stacklevel=3)
        return frames[len(frames) - kept :]

    def given(self, frames: np.ndarray) -> GivenVideo:
        """`frames` (`check_context`) to continue in one or more generations, encoded once."""
        return GivenVideo(self, self.check_context(frames))

    def latent_frames(self, seconds: float, continued: bool = False) -> int:
        """Whole chunks of latent frames covering `seconds` (first latent = 1 frame, then 4 each;
        `continued`: after a given video, where every latent frame is 4)."""
        cf = self.preset.model.chunk_frames
        pixel = max(1, round(seconds * self.preset.sampling.fps))
        latent = math.ceil(pixel / 4) if continued else 1 + math.ceil((pixel - 1) / 4)
        return cf * math.ceil(latent / cf)

    def encode_prompt(self, prompt: str) -> TextContext:
        """Text K/V for every block, cached for the last prompt (the app repeats prompts)."""
        if self._text_cache is not None and self._text_cache[0] == prompt:
            return self._text_cache[1]
        with torch.inference_mode():
            states = self.text_encoder.encode([prompt]).to(self.device)
            text = self.model.prepare_text(states)
        self._text_cache = (prompt, text)
        return text

    def generate(
        self,
        prompt: str,
        schedule: str | Schedule = "adaptive",
        seconds: float = 5.0,
        seed: int = 0,
        context: np.ndarray | GivenVideo | None = None,
        **schedule_params,
    ) -> Generation:
        """Validate a request and return its (lazy) `Generation`; nothing runs until iterated.

        `context`: frames of a video to continue (`check_context`), or `given(frames)` to continue
        them in several generations for one encoding; `seconds` more are generated after them,
        and the two together may not exceed the longest video allowed."""
        prompt = self.check_prompt(prompt)
        seconds = self.check_seconds(seconds)
        seed = self.check_seed(seed)
        if context is not None:
            context = context if isinstance(context, GivenVideo) else GivenVideo(self, self.check_context(context))
            if (context.vae, context.device, context.dtype) != (self.vae, self.device, self.dtype):
                raise ValueError("context was prepared by a pipeline with another VAE, device or dtype: "
                                 "prepare it with this pipeline's given()")
            given, limit = len(context.frames) / self.preset.sampling.fps, self.preset.sampling.max_seconds
            if given + seconds > limit:
                raise ValueError(f"the context's {given:.2f} s and seconds={seconds!r} make {given + seconds:.2f} s; "
                                 f"a video may be at most {limit} s")
        if schedule == "adaptive" and not self.trained_head:
            warnings.warn(
                f"{self.preset.name} has no trained confidence head: 'adaptive' runs as 'proxy' "
                "(the same rule on the agreement of successive x0 predictions)",
                stacklevel=2,
            )
            schedule = "proxy"
        if isinstance(schedule, str):
            schedule = make_schedule(schedule, self.preset, **schedule_params)
        elif schedule_params:
            raise ValueError("schedule parameters go to make_schedule when schedule is given by name")
        latent_frames = self.latent_frames(seconds, continued=context is not None)
        return Generation(self, prompt, schedule, latent_frames, seed, context)

    def synchronize(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()
