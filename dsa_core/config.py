"""Every number that matters, in one place: model presets and sampling defaults.

A preset names a transformer size (`ModelConfig`), the sampling conventions it was trained
with (`SamplingConfig`), the defaults of each step schedule (`ScheduleDefaults`) and the
configs of its VAE and text encoder.  `app.py`, the CLI, the benchmark and the trainer all
read from here; nothing else hard-codes a shift, a step list or a tap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Block indices of the confidence taps in the 30-block model of the DSA paper (§3.2).
PAPER_TAPS: tuple[int, ...] = (13, 21, 29)
PAPER_DEPTH = 30


@dataclass(frozen=True)
class ModelConfig:
    """The causal Wan2.1 DiT.  Field names follow Wan2.1's `WanModel.__init__`."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    in_dim: int = 16
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    text_dim: int = 4096
    out_dim: int = 16
    num_heads: int = 12
    num_layers: int = 30
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    # Latent frames that share one denoising schedule and one confidence logit.
    chunk_frames: int = 3
    # Confidence head (DSA §3.2); `None` = the paper's relative depths.
    conf_taps: tuple[int, ...] | None = None
    conf_hidden: int = 256

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def taps(self) -> tuple[int, ...]:
        """Blocks whose outputs feed the confidence head."""
        if self.conf_taps is not None:
            return tuple(self.conf_taps)
        scale = (self.num_layers - 1) / (PAPER_DEPTH - 1)
        return tuple(sorted({round(i * scale) for i in PAPER_TAPS}))

    def validate(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim={self.head_dim} must be even and at least 6 (3-D RoPE)")
        bad = [t for t in self.taps if not 0 <= t < self.num_layers]
        if bad:
            raise ValueError(f"conf_taps {bad} outside the allowed range 0..{self.num_layers - 1}")


@dataclass(frozen=True)
class SamplingConfig:
    """Flow-matching conventions and the streaming geometry (DESIGN §2–3)."""

    shift: float = 5.0
    num_train_timesteps: int = 1000
    # The trained step list in raw units; `warp` maps it onto the shifted grid.
    raw_steps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)
    # Raw step list used when a chunk runs n < len(raw_steps) steps (fixed(n), FFE, diagonal).
    raw_steps_by_count: dict[int, tuple[float, ...]] = field(
        default_factory=lambda: {
            1: (1000.0,),
            2: (1000.0, 500.0),
            3: (1000.0, 750.0, 500.0),
            4: (1000.0, 750.0, 500.0, 250.0),
        }
    )
    # Latent frame geometry.  One latent frame = 4 pixel frames (the first one: 1).
    fps: int = 16
    height: int = 480
    width: int = 832
    # Rolling KV window (latent frames, sinks included) and the sink frames kept at its front.
    window_frames: int = 21
    sink_frames: int = 3
    max_seconds: float = 60.0
    # Prompts longer than text_len tokens are truncated with a warning; this many characters is refused.
    max_prompt_chars: int = 2000
    # Timestep (warped units) of the context pass; 0 = clean context as in Self-Forcing.
    context_t: float = 0.0
    # Noise levels (raw units, warped like the steps) at which the teacher judges a chunk for
    # the confidence head: its distance d there, averaged, is what the head learns (stage
    # `confidence-head`) and what `dsa_core.calibration` ranks the head against.
    distance_raw_t: tuple[float, ...] = (250.0, 500.0, 750.0)

    @property
    def max_steps(self) -> int:
        return len(self.raw_steps)

    def steps_for(self, n: int) -> tuple[float, ...]:
        """Raw step list for a chunk that runs n steps."""
        if n not in self.raw_steps_by_count:
            raise ValueError(f"steps={n} is outside the allowed range 1..{self.max_steps}")
        return self.raw_steps_by_count[n]

    def validate(self, chunk_frames: int) -> None:
        if self.window_frames % chunk_frames or self.sink_frames % chunk_frames:
            raise ValueError(
                f"window_frames={self.window_frames} and sink_frames={self.sink_frames} must be "
                f"multiples of chunk_frames={chunk_frames}"
            )
        if not 0 <= self.sink_frames < self.window_frames:
            raise ValueError(f"sink_frames={self.sink_frames} must be in 0..{self.window_frames - 1}")


@dataclass(frozen=True)
class ScheduleDefaults:
    """Defaults of each step schedule (DESIGN §4)."""

    fixed_steps: int = 4
    # FFE: first chunk runs the full list; later chunks this raw sub-list.
    ffe_later_steps: int = 1
    # Diagonal: per-chunk step counts, the last one repeated (public DiaDistill code: 4,3,2,2,…).
    diagonal_counts: tuple[int, ...] = (4, 3, 2)
    # Diagonal forcing: no context pass, the next chunk attends to the last noisy forward.
    diagonal_context_pass: bool = False
    # Context timestep (raw units) when the diagonal schedule does run a context pass.
    diagonal_context_raw_t: float = 100.0
    # Adaptive (DSA) rule.
    adaptive_min_steps: int = 1
    adaptive_first_chunk_steps: int | None = None  # None = all of them
    adaptive_margin: float = 0.02
    adaptive_tol: float = 0.01
    # Proxy confidence needs two x0 predictions before it says anything.
    proxy_min_steps: int = 2
    proxy_first_chunk_steps: int | None = None
    proxy_margin: float = 0.02
    proxy_tol: float = 0.005
    # The trained student each schedule runs on where the weights folder ships it (issue 7:
    # FFE's ASD student, diagonal's diagonal-forcing student); every other schedule, and any
    # schedule whose student is not shipped, runs on the DMD student.
    students: tuple[tuple[str, str], ...] = (("ffe", "asd"), ("diagonal", "diagonal"))

    def student_for(self, schedule: str) -> str:
        return dict(self.students).get(schedule, "dmd")


@dataclass(frozen=True)
class EvalConfig:
    """How `dsa_core.eval` looks at a video and weighs what it sees into a 0–100 score."""

    # A window is `window_frames` consecutive frames inside one scene (the shortest scene
    # after a cut is 24 frames), seen by the attribute classifier as `window_samples`
    # evenly spaced frames; windows start every `window_stride` frames.
    window_frames: int = 24
    window_samples: int = 12
    window_stride: int = 12
    # Total score = 100 × Σ weight · sub-score, every sub-score in [0, 1] (see `dsa_core.eval`).
    weights: tuple[tuple[str, float], ...] = (
        ("adherence", 0.5), ("temporal", 0.15), ("sharpness", 0.15), ("fidelity", 0.2),
    )
    # Fréchet distance at which the fidelity sub-score falls to 1/e.  Set on the current
    # classifier's features so that the range in use spreads out: on the bench's 8 prompts
    # real clips sit at FD ≈ 37 (fidelity .69; a small set's own bias), their VAE round trip
    # at ≈ 60 (.55), the third model's teacher and students at ≈ 240–350 (.03–.09).
    fd_scale: float = 100.0
    # Frames per segment when a long video's drift is reported (5 s at 16 fps).
    segment_frames: int = 81


EVAL = EvalConfig()


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    sampling: SamplingConfig
    schedules: ScheduleDefaults
    # Keyword arguments of diffusers' `AutoencoderKLWan` and transformers' `UMT5Config`.
    vae: dict[str, Any]
    text_encoder: dict[str, Any]

    @property
    def vae_scale(self) -> int:
        """Pixels per latent cell along each side, from the VAE's architecture."""
        return vae_spatial_scale(self.vae)

    def latent_size(self) -> tuple[int, int]:
        """(height, width) of a latent frame at the sampling resolution."""
        s = self.vae_scale
        return self.sampling.height // s, self.sampling.width // s

    def validate(self) -> None:
        self.model.validate()
        self.sampling.validate(self.model.chunk_frames)
        cell = self.vae_scale * self.model.patch_size[1]
        if self.sampling.height % cell or self.sampling.width % cell:
            raise ValueError(
                f"height={self.sampling.height}, width={self.sampling.width} must be multiples of {cell} "
                f"(the VAE downsamples {self.vae_scale}×, the DiT patches {self.model.patch_size[1]}×)"
            )


def vae_spatial_scale(vae: dict[str, Any]) -> int:
    """How many pixels one latent cell spans along each side for `AutoencoderKLWan` keyword
    arguments: each stage after the first halves the frame, and a `patch_size` (Wan2.2's VAE)
    folds pixels before the first.  The defaults are diffusers', Wan2.1's VAE (8×)."""
    return 2 ** (len(vae.get("dim_mult", (1, 2, 4, 4))) - 1) * (vae.get("patch_size") or 1)


WAN_1_3B = Preset(
    name="wan-1.3b",
    model=ModelConfig(),
    sampling=SamplingConfig(),
    schedules=ScheduleDefaults(),
    vae={},  # Wan2.1's VAE: the diffusers defaults
    text_encoder={},  # umT5-XXL: read from the checkpoint's own config
)

TINY = Preset(
    name="tiny",
    model=ModelConfig(
        text_len=96,  # the longest world captions are about 86 tokens
        in_dim=16,
        dim=192,
        ffn_dim=768,
        freq_dim=128,
        text_dim=128,
        out_dim=16,
        num_heads=6,
        num_layers=8,
        conf_hidden=128,
    ),
    # Shift 2, not Wan's 5: the shift that keeps denoising hard enough grows with the token
    # count (SD3's resolution rule), and tiny has ~100x fewer tokens per frame than 480p Wan.
    # At 5 the 4-step list (σ = 1, .94, .83, .63) never visits the range where tiny's teacher
    # resolves objects (σ ≲ .6); at 2 it is σ = 1, .86, .67, .40.  Weights record their own
    # shift in config.json (`weights.shipped_preset`), so older folders keep theirs.
    sampling=SamplingConfig(height=64, width=64, max_seconds=60.0, shift=2.0),
    schedules=ScheduleDefaults(),
    vae=dict(
        base_dim=16,
        z_dim=16,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        attn_scales=[],
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 16,
        latents_std=[1.0] * 16,
    ),
    text_encoder=dict(
        vocab_size=512,
        d_model=128,
        d_kv=32,
        d_ff=256,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=16,
        relative_attention_max_distance=64,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (TINY, WAN_1_3B)}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"model={name!r} is unknown; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]
