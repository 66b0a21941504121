"""The DSA confidence head (DESIGN §5): one logit per chunk from the denoiser's own forward."""

from __future__ import annotations

import torch
from torch import nn


class ConfidenceHead(nn.Module):
    """At each tapped block a learnable query token attends to the chunk's tokens.

    The tap outputs are concatenated, LayerNorm-ed and projected (Linear → SiLU → Linear)
    to a single logit.  Attending with one query over a chunk costs O(tokens · dim) per tap,
    negligible beside a transformer block's O(tokens² · dim).
    """

    def __init__(self, dim: int, num_heads: int, num_taps: int, hidden: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_taps, 1, dim) / dim**0.5)
        self.attn = nn.ModuleList(nn.MultiheadAttention(dim, num_heads, batch_first=True) for _ in range(num_taps))
        self.norm = nn.LayerNorm(num_taps * dim)
        self.proj = nn.Sequential(nn.Linear(num_taps * dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, taps: list[torch.Tensor], chunk_tokens: int) -> torch.Tensor:
        """`taps[i]`: `[B, S, dim]` block outputs; returns logits `[B, S // chunk_tokens]`."""
        b, s, d = taps[0].shape
        n_chunks = s // chunk_tokens
        pooled = []
        for query, attn, x in zip(self.queries, self.attn, taps):
            x = x.reshape(b * n_chunks, chunk_tokens, d)
            q = query.expand(b * n_chunks, 1, d)
            out, _ = attn(q, x, x, need_weights=False)
            pooled.append(out[:, 0])
        logits = self.proj(self.norm(torch.cat(pooled, dim=-1)))
        return logits.reshape(b, n_chunks)
