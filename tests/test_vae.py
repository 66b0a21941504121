import copy

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

from dsa_core.config import TINY
from dsa_core.vae import (
    StreamingDecoder,
    encode,
    latents_to_vae,
    make_vae,
    to_uint8_frames,
    use_fast_cpu_kernels,
    vae_to_latents,
)

# The TINY VAE, and a Wan2.2-style variant (patchified residual decoder) to cover unpatchify.
VAE_CONFIGS = {
    "tiny": TINY.vae,
    "patchified": dict(
        TINY.vae, is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16
    ),
}
LATENT_FRAMES = 7


def _vae(name: str):
    torch.manual_seed(0)
    return make_vae(VAE_CONFIGS[name])


def _latents(vae, seed: int) -> torch.Tensor:
    # 32×32 pixels whatever the spatial compression.
    side = 32 // vae.config.scale_factor_spatial
    return torch.randn(1, vae.config.z_dim, LATENT_FRAMES, side, side, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _reference(vae, latents: torch.Tensor) -> torch.Tensor:
    return vae.decode(latents_to_vae(vae, latents)).sample


def _stream(decoder: StreamingDecoder, latents: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return torch.cat([decoder.decode(c) for c in latents.split(sizes, dim=2)], dim=2)


@pytest.mark.parametrize("name", list(VAE_CONFIGS))
@pytest.mark.parametrize("sizes", [[3, 3, 1], [1, 2, 4], [7]])
def test_streamed_decode_matches_full_decode(name: str, sizes: list[int]) -> None:
    vae = _vae(name)
    latents = _latents(vae, seed=1)
    reference = _reference(vae, latents)

    decoder = StreamingDecoder(vae)
    chunks = [decoder.decode(c) for c in latents.split(sizes, dim=2)]

    assert [c.shape[2] for c in chunks] == [4 * s - 3 * (i == 0) for i, s in enumerate(sizes)]
    out = torch.cat(chunks, dim=2)
    assert out.shape == (1, 3, 1 + 4 * (LATENT_FRAMES - 1), 32, 32)
    assert (out - reference).abs().max() <= 1e-5
    # Not a vacuous match: the random VAE's output is not saturated by the clamp.
    assert (out.abs() < 1).float().mean() > 0.5


def test_fast_cpu_kernels_train_the_same() -> None:
    """The overrides change kernels, not values: same reconstruction, same gradients."""
    plain = _vae("tiny").train()
    fast = use_fast_cpu_kernels(copy.deepcopy(plain))
    norms = [m for m in fast.modules() if isinstance(m, WanRMS_norm)]
    assert norms and all("forward" in vars(m) for m in norms)
    x = torch.rand(2, 3, 9, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    losses = []
    for vae in (plain, fast):
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        loss = (rec - x).abs().mean()
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        assert p.grad is not None and p.grad.abs().max() > 0, name
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_reset_starts_a_new_video() -> None:
    vae = _vae("tiny")
    latents = _latents(vae, seed=1)
    decoder = StreamingDecoder(vae)
    first = _stream(decoder, latents, [3, 3, 1])
    decoder.reset()
    assert torch.equal(_stream(decoder, latents, [3, 3, 1]), first)


def test_interleaved_decoders_share_one_vae() -> None:
    vae = _vae("tiny")
    a, b = _latents(vae, seed=1), _latents(vae, seed=2)
    ref_a, ref_b = _reference(vae, a), _reference(vae, b)

    dec_a, dec_b = StreamingDecoder(vae), StreamingDecoder(vae)
    out_a, out_b = [], []
    for ca, cb in zip(a.split(3, dim=2), b.split(3, dim=2)):
        out_a.append(dec_a.decode(ca))
        out_b.append(dec_b.decode(cb))
        # The VAE's own decode clears the VAE's cache; the streaming decoders must not care.
        _reference(vae, b[:, :, :1])

    assert (torch.cat(out_a, dim=2) - ref_a).abs().max() <= 1e-5
    assert (torch.cat(out_b, dim=2) - ref_b).abs().max() <= 1e-5


def test_encode_shape_and_latent_normalisation() -> None:
    vae = _vae("tiny")
    video = torch.rand(2, 3, 1 + 4 * 2, 32, 32) * 2 - 1
    assert encode(vae, video).shape == (2, 16, 3, 4, 4)

    torch.manual_seed(0)
    mean, std = torch.linspace(-1, 1, 16), torch.linspace(0.5, 2, 16)
    vae = make_vae(dict(TINY.vae, latents_mean=mean.tolist(), latents_std=std.tolist()))
    z = torch.randn(1, 16, 2, 4, 4)
    latents = vae_to_latents(vae, z)
    torch.testing.assert_close(latents, (z - mean.view(1, 16, 1, 1, 1)) / std.view(1, 16, 1, 1, 1))
    torch.testing.assert_close(latents_to_vae(vae, latents), z)


def test_to_uint8_frames() -> None:
    video = torch.stack([torch.full((3, 5, 4, 6), -1.0), torch.full((3, 5, 4, 6), 1.0)])
    video[1, 0] = 0.0
    frames = to_uint8_frames(video, index=1)
    assert frames.shape == (5, 4, 6, 3) and frames.dtype == np.uint8
    assert (frames[..., 0] == 128).all() and (frames[..., 1:] == 255).all()
    assert (to_uint8_frames(video) == 0).all()


def test_latent_grid_follows_the_vae_architecture() -> None:
    """A VAE that downsamples 4× (one stage fewer) streams the same 64×64 video from a 16×16
    latent grid: every latent shape comes from the preset's VAE, none assumes 8×; a VAE whose
    grid is not the preset's is refused by name."""
    from dataclasses import replace

    from dsa_core.model import CausalWanModel
    from dsa_core.pipeline import StreamingPipeline
    from dsa_core.text import make_tiny_text_encoder
    from dsa_core.vae import check_latent_grid

    fine = replace(TINY, vae=dict(TINY.vae, dim_mult=[1, 2, 2], temperal_downsample=[True, True]))
    assert (TINY.vae_scale, fine.vae_scale) == (8, 4) and fine.latent_size() == (16, 16)
    torch.manual_seed(0)
    vae = make_vae(fine.vae)
    assert vae.config.scale_factor_spatial == 4
    pipe = StreamingPipeline(fine, CausalWanModel(fine.model).eval(), vae,
                             make_tiny_text_encoder(fine.text_encoder, fine.model.text_len))
    events = list(pipe.generate("a red ball moves left", "fixed", seconds=1, seed=0, steps=1))
    assert events[0].latents.shape == (1, 16, 3, 16, 16)
    assert np.concatenate([e.frames for e in events]).shape[1:] == (64, 64, 3)
    with pytest.raises(ValueError, match=r"downsamples frames 8× .* but preset 'tiny' computes its latents at 4×"):
        check_latent_grid(make_vae(TINY.vae), fine, "weights/x")
    with pytest.raises(ValueError, match=r"height=68, width=64 must be multiples of 8 \(the VAE downsamples 4×"):
        replace(fine, sampling=replace(fine.sampling, height=68)).validate()
