"""The causal Wan DiT: streaming == block-causal, bidirectional == diffusers, the rolling window."""

import dataclasses

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

from dsa_core.config import TINY, WAN_1_3B, ModelConfig
from dsa_core.model import CausalWanModel

H = W = 8  # latent size: 64×64 pixels


def inputs(frames: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, TINY.model.in_dim, frames, H, W, generator=g)
    # Each chunk at its own timestep, as in a rollout.
    t = (torch.rand(1, frames // 3, generator=g) * 1000).repeat_interleave(3, dim=1)
    ctx = torch.randn(1, 10, TINY.model.text_dim, generator=g)
    return x, t, ctx


@pytest.mark.parametrize("chunks", [1, 2, 4, 7])
def test_streaming_equals_block_causal(tiny_model, chunks):
    check_streaming_equals_block_causal(tiny_model, chunks)


def test_streaming_equals_block_causal_with_1x1_patches():
    """`patch_size` is a config knob (the finer-grid experiment in docs/experiments.md): the KV cache must
    follow its token count, 64 a frame here instead of 16."""
    torch.manual_seed(0)
    model = CausalWanModel(dataclasses.replace(TINY.model, patch_size=(1, 1, 1))).eval()
    check_streaming_equals_block_causal(model, 3)


def check_streaming_equals_block_causal(tiny_model: CausalWanModel, chunks: int) -> None:
    frames = 3 * chunks
    x, t, ctx = inputs(frames)
    with torch.no_grad():
        text = tiny_model.prepare_text(ctx)
        whole = tiny_model(x, t, text)
        cache = tiny_model.new_cache(H, W, window_frames=21, sink_frames=3)
        flows, confs = [], []
        for c in range(chunks):
            sl = slice(3 * c, 3 * c + 3)
            # A throw-away step first: repeated forwards of one chunk overwrite its slots.
            tiny_model(torch.randn_like(x[:, :, sl]), t[:, sl] * 0.5, text, cache=cache, start_frame=3 * c)
            out = tiny_model(x[:, :, sl], t[:, sl], text, cache=cache, start_frame=3 * c)
            cache.commit()
            flows.append(out.flow)
            confs.append(out.conf_logits)
    assert cache.dropped == 0
    assert (torch.cat(flows, 2) - whole.flow).abs().max() <= 1e-4
    assert (torch.cat(confs, 1) - whole.conf_logits).abs().max() <= 1e-4
    assert whole.conf_logits.shape == (1, chunks)


def test_block_causal_ignores_the_future(tiny_model):
    x, t, ctx = inputs(9)
    x2 = x.clone()
    x2[:, :, 6:] = torch.randn_like(x2[:, :, 6:])
    with torch.no_grad():
        text = tiny_model.prepare_text(ctx)
        a, b = tiny_model(x, t, text), tiny_model(x2, t, text)
        bidir = tiny_model(x2, t, text, causal=False)
    assert torch.equal(a.flow[:, :, :6], b.flow[:, :, :6])
    assert not torch.allclose(a.flow[:, :, :6], bidir.flow[:, :, :6])


def test_bidirectional_equals_diffusers_wan(tiny_model):
    """Public Wan checkpoints mean the same in our code as in diffusers' WanTransformer3DModel."""
    cfg = tiny_model.cfg
    wan_state = {k: v.clone() for k, v in tiny_model.state_dict().items() if not k.startswith("confidence_head.")}
    ref = WanTransformer3DModel(
        patch_size=cfg.patch_size,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim,
        out_channels=cfg.out_dim,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        cross_attn_norm=cfg.cross_attn_norm,
        qk_norm="rms_norm_across_heads",
        eps=cfg.eps,
    ).eval()
    ref.load_state_dict(convert_wan_transformer_to_diffusers(wan_state), strict=True)
    x, t, _ = inputs(6, seed=3)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim)
    with torch.no_grad():
        ours = tiny_model(x, t, tiny_model.prepare_text(ctx), causal=False).flow
        # diffusers takes per-token timesteps; ours are per frame.
        theirs = ref(x, t.repeat_interleave(H * W // 4, dim=1), ctx, return_dict=False)[0]
    assert (ours - theirs).abs().max() <= 1e-4


def test_rolling_window_keeps_sinks_and_stays_bounded(tiny_model):
    x, t, ctx = inputs(3 * 10)
    with torch.no_grad():
        text = tiny_model.prepare_text(ctx)
        cache = tiny_model.new_cache(H, W, window_frames=9, sink_frames=3)
        sink_keys = None
        for c in range(10):
            sl = slice(3 * c, 3 * c + 3)
            out = tiny_model(x[:, :, sl], t[:, sl], text, cache=cache, start_frame=3 * c)
            cache.commit()
            if c == 0:
                sink_keys = cache.k[0][:, : 3 * 16].clone()
            assert torch.isfinite(out.flow).all()
            assert cache.committed <= 9
        assert torch.equal(cache.k[0][:, : 3 * 16], sink_keys)
    assert cache.dropped == 10 * 3 - 9
    assert cache.k[0].shape[1] == 9 * 16


def test_confidence_taps_follow_the_paper_depths():
    assert WAN_1_3B.model.taps == (13, 21, 29)
    assert TINY.model.taps == (3, 5, 7)
    with pytest.raises(ValueError, match="conf_taps"):
        ModelConfig(num_layers=4, conf_taps=(1, 9)).validate()


def test_wan_1_3b_has_the_public_shapes():
    with torch.device("meta"):
        model = CausalWanModel(WAN_1_3B.model)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["patch_embedding.weight"] == (1536, 16, 1, 2, 2)
    assert shapes["blocks.29.ffn.0.weight"] == (8960, 1536)
    assert shapes["text_embedding.0.weight"] == (1536, 4096)
    assert shapes["head.head.weight"] == (64, 1536)
    assert shapes["blocks.0.modulation"] == (1, 6, 1536)
    wan = sum(v.numel() for k, v in model.state_dict().items() if not k.startswith("confidence_head."))
    assert 1.40e9 < wan < 1.45e9  # Wan2.1-T2V-1.3B: 1.42 B parameters


def test_confidence_head_is_single_query_cross_attention():
    """The folded head equals per-head attention with explicit value projections of every token."""
    from torch.nn import functional as F

    from dsa_core.model import ConfidenceHead

    torch.manual_seed(0)
    d, heads, n_taps, tokens = 24, 4, 3, 10
    head = ConfidenceHead(d, heads, n_taps, hidden=8)
    taps = [torch.randn(2, 2 * tokens, d) for _ in range(n_taps)]
    outs = []
    for i, x in enumerate(taps):
        x = F.layer_norm(x.reshape(4, tokens, d), (d,))
        values = x @ head.value[i].T + head.value_bias[i]  # every token projected
        hd = d // heads
        per_head = [
            ((x @ head.query[i, h]).softmax(-1)[..., None] * values[..., h * hd : (h + 1) * hd]).sum(1)
            for h in range(heads)
        ]
        outs.append(torch.cat(per_head, -1) @ head.out[i].T + head.out_bias[i])
    expected = head.proj(head.norm(torch.cat(outs, -1))).reshape(2, 2)
    assert torch.allclose(head(taps, tokens), expected, atol=1e-5)
