"""Attention kernels, 3-D RoPE and the streaming KV cache.

Tensors are laid out `[batch, tokens, heads, head_dim]` as in Wan2.1.  Tokens of one latent
frame are contiguous (frame-major, then row, then column), so a frame range is a token range.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # flash-attn only builds against CUDA; SDPA is the portable path.
    from flash_attn import flash_attn_func
except ImportError:  # pragma: no cover - depends on the host
    flash_attn_func = None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention; `mask` is a boolean `[q_tokens, k_tokens]`, True = may attend."""
    if (
        flash_attn_func is not None
        and mask is None
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
    ):
        return flash_attn_func(q, k, v)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def block_causal_mask(num_frames: int, frame_tokens: int, chunk_frames: int, device: torch.device) -> torch.Tensor:
    """A token attends to every token before the end of its own chunk."""
    chunk = torch.arange(num_frames, device=device) // chunk_frames
    chunk = chunk.repeat_interleave(frame_tokens)
    return chunk[None, :] <= chunk[:, None]


def rope_angles(head_dim: int, frames: torch.Tensor, height: int, width: int, theta: float = 10000.0) -> torch.Tensor:
    """RoPE angles `[tokens, head_dim/2]` for the given absolute frame indices.

    Wan2.1 splits each head's complex pairs into (frame, row, col) parts of sizes
    c - 2(c//3), c//3, c//3 with c = head_dim/2, each with its own frequency ladder.
    Computed in float64 as Wan does, from positions rather than a table, so a rolling
    window can run past any precomputed length.
    """
    c = head_dim // 2
    sizes = (c - 2 * (c // 3), c // 3, c // 3)

    def ladder(n: int) -> torch.Tensor:
        return 1.0 / theta ** (torch.arange(0, 2 * n, 2, dtype=torch.float64, device=frames.device) / (2 * n))

    rows = torch.arange(height, dtype=torch.float64, device=frames.device)
    cols = torch.arange(width, dtype=torch.float64, device=frames.device)
    f = torch.outer(frames.to(torch.float64), ladder(sizes[0]))
    h = torch.outer(rows, ladder(sizes[1]))
    w = torch.outer(cols, ladder(sizes[2]))
    n_f = frames.numel()
    return torch.cat(
        [
            f[:, None, None, :].expand(n_f, height, width, -1),
            h[None, :, None, :].expand(n_f, height, width, -1),
            w[None, None, :, :].expand(n_f, height, width, -1),
        ],
        dim=-1,
    ).reshape(n_f * height * width, c)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved (real, imag) pairs of `x [B, S, H, D]` by `angles [S, D/2]`."""
    cos = angles.cos().to(torch.float32)[None, :, None, :]
    sin = angles.sin().to(torch.float32)[None, :, None, :]
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.type_as(x)


class KVCache:
    """Self-attention keys/values of earlier chunks, one buffer per block.

    The frames in the buffer are `committed` finished frames followed by the slots of the
    chunk being denoised.  Every forward of that chunk overwrites its slots; `commit()`
    makes them part of the context.  When the window is full the oldest frames after the
    `sink_frames` at the front are dropped.  Keys are stored after RoPE at their absolute
    positions, so dropping frames never changes what the kept frames mean.
    """

    def __init__(self, num_blocks: int, frame_tokens: int, window_frames: int, sink_frames: int) -> None:
        if not 0 <= sink_frames < window_frames:
            raise ValueError(f"sink_frames={sink_frames} must be in 0..{window_frames - 1}")
        self.frame_tokens = frame_tokens
        self.window_frames = window_frames
        self.sink_frames = sink_frames
        self.k: list[torch.Tensor | None] = [None] * num_blocks
        self.v: list[torch.Tensor | None] = [None] * num_blocks
        self.committed = 0  # finished frames in the buffer
        self.pending = 0  # frames of the current chunk written by the last forward
        self.dropped = 0  # frames evicted so far (for bookkeeping and tests)

    def make_room(self, frames: int) -> None:
        """Evict old non-sink frames so that a chunk of `frames` fits after the committed ones."""
        if frames > self.window_frames - self.sink_frames:
            raise ValueError(f"a chunk of {frames} frames does not fit a window of {self.window_frames}")
        excess = self.committed + frames - self.window_frames
        if excess <= 0:
            return
        t = self.frame_tokens
        keep_from, sink_end, end = (self.sink_frames + excess) * t, self.sink_frames * t, self.committed * t
        for buf in (self.k, self.v):
            for i, b in enumerate(buf):
                if b is not None:
                    buf[i][:, sink_end : sink_end + end - keep_from] = b[:, keep_from:end].clone()
        self.committed -= excess
        self.dropped += excess

    def write_and_read(self, block: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this chunk's K/V in its slots; return all K/V it may attend to."""
        start = self.committed * self.frame_tokens
        end = start + k.shape[1]
        if self.k[block] is None or self.k[block].shape[0] != k.shape[0]:
            shape = (k.shape[0], self.window_frames * self.frame_tokens, *k.shape[2:])
            self.k[block] = k.new_zeros(shape)
            self.v[block] = v.new_zeros(shape)
        if end > self.k[block].shape[1]:
            raise RuntimeError("KVCache.make_room was not called before writing a chunk")
        # The buffer holds values only: a later in-place write must not touch a saved graph.
        self.k[block][:, start:end] = k.detach()
        self.v[block][:, start:end] = v.detach()
        self.pending = k.shape[1] // self.frame_tokens
        if k.requires_grad or v.requires_grad:  # a training rollout's exit step
            return (torch.cat([self.k[block][:, :start], k], 1), torch.cat([self.v[block][:, :start], v], 1))
        return self.k[block][:, :end], self.v[block][:, :end]

    def commit(self) -> None:
        """The chunk's slots now hold its final K/V: later chunks attend to them."""
        self.committed += self.pending
        self.pending = 0

    def reset(self) -> None:
        self.committed = self.pending = self.dropped = 0
