"""The DSA confidence head (DESIGN §5): one logit per chunk from the denoiser's own forward."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class ConfidenceHead(nn.Module):
    """At each tapped block one learnable query token cross-attends to the chunk's tokens.

    The tap outputs are concatenated, LayerNorm-ed and projected (Linear → SiLU → Linear)
    to a single logit.

    The cross-attention is written by hand rather than with `nn.MultiheadAttention`, which
    projects every token to keys and values (tokens × dim² work, 5% of the tiny model's
    forward).  With a single query the key projection folds into the query
    (q·W_k x = (W_kᵀq)·x) and the value projection commutes with the attention average
    (Σ a_i W_v x_i = W_v Σ a_i x_i): the same function for tokens × dim work per head.  All
    taps run as one batched einsum so the head adds a handful of kernels, not dozens.
    """

    def __init__(self, dim: int, num_heads: int, num_taps: int, hidden: int, outputs: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.outputs = outputs  # ASD's discriminator uses the same head with one logit per step count
        bound = 1 / math.sqrt(dim)  # nn.Linear's default init range
        self.query = nn.Parameter(torch.randn(num_taps, num_heads, dim) * bound)  # W_kᵀq per head
        self.value = nn.Parameter(torch.empty(num_taps, dim, dim).uniform_(-bound, bound))
        self.value_bias = nn.Parameter(torch.zeros(num_taps, dim))
        self.out = nn.Parameter(torch.empty(num_taps, dim, dim).uniform_(-bound, bound))
        self.out_bias = nn.Parameter(torch.zeros(num_taps, dim))
        self.norm = nn.LayerNorm(num_taps * dim)
        self.proj = nn.Sequential(nn.Linear(num_taps * dim, hidden), nn.SiLU(), nn.Linear(hidden, outputs))

    def forward(self, taps: list[torch.Tensor], chunk_tokens: int) -> torch.Tensor:
        """`taps[i]`: `[B, S, dim]` block outputs; returns logits `[B, S // chunk_tokens]`
        (`[B, S // chunk_tokens, outputs]` when there are several outputs)."""
        b, s, d = taps[0].shape
        k, h = len(taps), self.num_heads
        n = b * (s // chunk_tokens)
        x = F.layer_norm(torch.stack(taps).reshape(k, n, chunk_tokens, d), (d,))
        weights = torch.einsum("khd,kntd->knht", self.query.to(x.dtype), x).softmax(dim=-1)
        pooled = torch.einsum("knht,kntd->knhd", weights, x)  # one pooled token per head
        # Head h applies only its own rows of W_v to its own pooled token.
        values = torch.einsum("knhd,khed->knhe", pooled, self.value.view(k, h, d // h, d)).reshape(k, n, d)
        values = values + self.value_bias[:, None]
        out = torch.einsum("knd,ked->kne", values, self.out) + self.out_bias[:, None]
        logits = self.proj(self.norm(out.permute(1, 0, 2).reshape(n, k * d)))
        if self.outputs > 1:
            return logits.reshape(b, s // chunk_tokens, self.outputs)
        return logits.reshape(b, s // chunk_tokens)
