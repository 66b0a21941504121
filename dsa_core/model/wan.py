"""The causal Wan2.1 text-to-video DiT (DESIGN §1).

Parameter names are Wan2.1's own (`patch_embedding`, `blocks.N.self_attn.q`, `head.head`, …)
so the public Wan and Self-Forcing checkpoints load as they are.  Three attention modes share
one forward: bidirectional (the teacher, and the check against diffusers), block-causal over
a whole clip (training / reference) and streaming with a `KVCache` (inference).  They differ
only in which keys a query may see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from .attention import KVCache, apply_rope, attention, block_causal_mask, rope_angles
from .confidence import ConfidenceHead


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """Wan2.1's timestep embedding: [cos, sin] of t·10000^(-i/half), computed in float64."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = torch.outer(t.to(torch.float64), freqs)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class WanRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class WanLayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the model dtype, as in Wan2.1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type_as(x)


class WanSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1))

    def forward(
        self,
        x: torch.Tensor,
        angles: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        block: int,
    ) -> torch.Tensor:
        q = apply_rope(self._heads(self.norm_q(self.q(x))), angles)
        k = apply_rope(self._heads(self.norm_k(self.k(x))), angles)
        v = self._heads(self.v(x))
        if cache is not None:
            k, v = cache.write_and_read(block, k, v)
        return self.o(attention(q, k, v, mask).flatten(2))


class WanCrossAttention(WanSelfAttention):
    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of the text, computed once per prompt."""
        return self._heads(self.norm_k(self.k(context))), self._heads(self.v(context))

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        q = self._heads(self.norm_q(self.q(x)))
        return self.o(attention(q, kv[0], kv[1]).flatten(2))


class WanAttentionBlock(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = WanLayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = WanSelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm3 = WanLayerNorm(dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = WanCrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm2 = WanLayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        angles: torch.Tensor,
        mask: torch.Tensor | None,
        text_kv: tuple[torch.Tensor, torch.Tensor],
        cache: KVCache | None,
        block: int,
    ) -> torch.Tensor:
        """`x [B, S, dim]`; `e [B, F, 6, dim]` per-frame modulation (S = F · frame tokens)."""
        b, s, d = x.shape
        frames = e.shape[1]
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation.unsqueeze(1) + e.float()).chunk(6, dim=2)

        def per_frame(t: torch.Tensor) -> torch.Tensor:  # [B, S, d] viewed frame by frame
            return t.reshape(b, frames, s // frames, d)

        h = (per_frame(self.norm1(x).float()) * (1 + scale1) + shift1).reshape(b, s, d).type_as(x)
        y = self.self_attn(h, angles, mask, cache, block)
        x = (per_frame(x.float()) + per_frame(y.float()) * gate1).reshape(b, s, d).type_as(x)
        x = x + self.cross_attn(self.norm3(x), text_kv)
        h = (per_frame(self.norm2(x).float()) * (1 + scale2) + shift2).reshape(b, s, d).type_as(x)
        y = self.ffn(h)
        return (per_frame(x.float()) + per_frame(y.float()) * gate2).reshape(b, s, d).type_as(x)


class Head(nn.Module):
    def __init__(self, dim: int, out_dim: int, patch_size: tuple[int, int, int], eps: float) -> None:
        super().__init__()
        self.norm = WanLayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, math.prod(patch_size) * out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """`e [B, F, dim]`: the per-frame time embedding (before the 6-way projection)."""
        b, s, d = x.shape
        shift, scale = (self.modulation.unsqueeze(1) + e.float().unsqueeze(2)).chunk(2, dim=2)
        h = self.norm(x).float().reshape(b, e.shape[1], -1, d) * (1 + scale) + shift
        return self.head(h.reshape(b, s, d).type_as(x))


@dataclass
class TextContext:
    """Per-block cross-attention keys/values of one prompt batch."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ModelOutput:
    flow: torch.Tensor  # v = ε − x0, `[B, C, F, H, W]`
    conf_logits: torch.Tensor  # one logit per chunk, `[B, F // chunk_frames]`
    # The tapped blocks' outputs `[B, tokens, dim]`, when asked for (ASD's discriminator reads them).
    taps: list[torch.Tensor] | None = None


class CausalWanModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(WanAttentionBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(dim, cfg.out_dim, cfg.patch_size, cfg.eps)
        self.confidence_head = ConfidenceHead(dim, cfg.num_heads, len(cfg.taps), cfg.conf_hidden)

    def frame_tokens(self, height: int, width: int) -> int:
        """Tokens per latent frame of the given latent size."""
        _, ph, pw = self.cfg.patch_size
        return (height // ph) * (width // pw)

    def new_cache(self, height: int, width: int, window_frames: int, sink_frames: int) -> KVCache:
        return KVCache(self.cfg.num_layers, self.frame_tokens(height, width), window_frames, sink_frames)

    def prepare_text(self, context: torch.Tensor) -> TextContext:
        """`context [B, L ≤ text_len, text_dim]` encoder states, zero past each prompt."""
        if context.shape[1] < self.cfg.text_len:
            context = nn.functional.pad(context, (0, 0, 0, self.cfg.text_len - context.shape[1]))
        ctx = self.text_embedding(context.to(self.patch_embedding.weight.dtype))
        return TextContext([blk.cross_attn.project_context(ctx) for blk in self.blocks])

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: TextContext,
        *,
        cache: KVCache | None = None,
        start_frame: int = 0,
        causal: bool = True,
        return_taps: bool = False,
    ) -> ModelOutput:
        """Predict the flow of `x [B, C, F, H, W]` at per-frame timesteps `t [B, F]`.

        With `cache`, `x` is the current chunk at absolute frame `start_frame` and attends
        to the cached frames before it; without, `x` is a whole clip, block-causal when
        `causal`, bidirectional otherwise.
        """
        cfg = self.cfg
        b, _, frames, height, width = x.shape
        if frames % cfg.chunk_frames:
            raise ValueError(f"{frames} latent frames is not a multiple of chunk_frames={cfg.chunk_frames}")
        pt, ph, pw = cfg.patch_size
        gh, gw = height // ph, width // pw
        tokens = self.patch_embedding(x.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)

        e = self.time_embedding(sinusoidal_embedding(cfg.freq_dim, t.flatten()).to(tokens.dtype))
        e0 = self.time_projection(e).unflatten(1, (6, cfg.dim)).unflatten(0, (b, frames))
        e = e.unflatten(0, (b, frames))

        positions = torch.arange(start_frame, start_frame + frames, device=x.device)
        angles = rope_angles(cfg.head_dim, positions, gh, gw)
        mask = None
        if cache is not None:
            cache.make_room(frames)
        elif causal:
            mask = block_causal_mask(frames, gh * gw, cfg.chunk_frames, x.device)

        taps, tap_set = [], set(cfg.taps)
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, e0, angles, mask, text.kv[i], cache, i)
            if i in tap_set:
                taps.append(tokens)
        conf = self.confidence_head(taps, cfg.chunk_frames * gh * gw)
        out = self.head(tokens, e)
        # Unpatchify as Wan2.1: "fhwpqrc -> cfphqwr".
        out = out.reshape(b, frames // pt, gh, gw, pt, ph, pw, cfg.out_dim)
        flow = out.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, cfg.out_dim, frames, height, width)
        return ModelOutput(flow=flow, conf_logits=conf, taps=taps if return_taps else None)
