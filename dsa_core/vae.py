"""Wan2.1 VAE: latent normalisation, encode, and a decoder that streams latent frames.

diffusers' `AutoencoderKLWan.decode()` clears its causal feature cache at every call, so a
video decoded chunk by chunk would restart its temporal context at each chunk.
`StreamingDecoder` drives the same decoder, frame by frame as `AutoencoderKLWan._decode`
does, but keeps the cache on itself across calls: streamed output equals a whole-video
decode, and several decoders may share one VAE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm, unpatchify
from diffusers.video_processor import VideoProcessor

from .config import Preset, vae_spatial_scale


def make_vae(config: dict[str, Any]) -> AutoencoderKLWan:
    """A randomly initialised VAE from `AutoencoderKLWan` keyword arguments, in eval mode.

    Its config records the spatial scale its architecture has: diffusers records 8× whatever
    the stages, and the latent cells the teacher's readout marks are read from there."""
    return AutoencoderKLWan(**{**config, "scale_factor_spatial": vae_spatial_scale(config)}).eval()


def load_vae(folder: Path, preset: Preset, **kwargs: Any) -> AutoencoderKLWan:
    """`AutoencoderKLWan.from_pretrained(folder, **kwargs)`, refused unless its latent grid is
    the one `preset` computes its shapes with."""
    vae = AutoencoderKLWan.from_pretrained(folder, **kwargs)
    check_latent_grid(vae, preset, folder)
    return vae


def check_latent_grid(vae: AutoencoderKLWan, preset: Preset, source: object) -> None:
    """Refuse a VAE whose latent cells are not the ones `preset` computes its shapes with
    (`Preset.latent_size`): the transformer would be handed latents of the wrong size."""
    scale = vae_spatial_scale(dict(vae.config))
    if scale != preset.vae_scale:
        raise ValueError(
            f"{source}: this VAE downsamples frames {scale}× (dim_mult={list(vae.config.dim_mult)}), but preset "
            f"{preset.name!r} computes its latents at {preset.vae_scale}× (its `vae` settings in "
            "dsa_core/config.py, or a stage config's `vae` overrides)"
        )


def _mkldnn_conv3d(self: torch.nn.Conv3d, x: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None) -> torch.Tensor:
    if x.device.type == "cpu" and x.dtype == torch.float32 and self.padding_mode == "zeros":
        return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, self.groups)
    return torch.nn.Conv3d._conv_forward(self, x, weight, bias)


def _rms_norm_channel_first(self: WanRMS_norm, x: torch.Tensor) -> torch.Tensor:
    # `F.normalize(x, dim=1)`, as diffusers writes it, with the norm taken as a sum of squares.
    xf = x.float()
    norm = xf.square().sum(1, keepdim=True).sqrt().clamp_min(1e-12)
    return (xf / norm).to(x.dtype) * self.scale * self.gamma + self.bias


def use_fast_cpu_kernels(vae: AutoencoderKLWan) -> AutoencoderKLWan:
    """Route the VAE's 3-D convolutions and channel norms to the CPU's fast kernels.

    PyTorch's CPU convolution picks its slow native kernel when batch·channels·frames·height
    ≤ 20480 (a heuristic tuned for 2-D images), which is every conv of a small VAE decoding
    one video frame by frame; oneDNN computes the same result about 14× faster.  And
    `torch.linalg.vector_norm` over the channel dimension of a [B, C, T, H, W] tensor (each
    `WanRMS_norm`) is 5-20× slower on the CPU than the same norm as a sum of squares: it was
    half of a decoder's forward pass.  Nothing in torch or diffusers exposes either choice,
    hence the per-module overrides; both compute the same values.
    """
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv3d) and torch.backends.mkldnn.is_available():
            module._conv_forward = _mkldnn_conv3d.__get__(module)
        elif isinstance(module, WanRMS_norm) and module.channel_first:
            module.forward = _rms_norm_channel_first.__get__(module)
    return vae


def _mean_std(vae: AutoencoderKLWan, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=like.dtype).view(shape)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=like.dtype).view(shape)
    return mean, std


def vae_to_latents(vae: AutoencoderKLWan, z: torch.Tensor) -> torch.Tensor:
    """Raw VAE latents → model latents, `(z - mean) / std` as in diffusers' WanPipeline."""
    mean, std = _mean_std(vae, z)
    return (z - mean) / std


def latents_to_vae(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """Model latents → raw VAE latents, the inverse of `vae_to_latents`."""
    mean, std = _mean_std(vae, latents)
    return latents * std + mean


@torch.no_grad()
def encode(vae: AutoencoderKLWan, video: torch.Tensor) -> torch.Tensor:
    """Video [B, 3, 1+4k, H, W] in [-1, 1] → model latents [B, z_dim, 1+k, H/s, W/s] (s: `Preset.vae_scale`).

    Uses the posterior mode (no sampling), so encoding is deterministic.  On the fast CPU
    kernels, as `StreamingDecoder` decodes (81 frames at 64×64: 0.24 s against 0.9 s here).
    """
    z = use_fast_cpu_kernels(vae).encode(video.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
    return vae_to_latents(vae, z)


class StreamingDecoder:
    """Decodes one video's latent frames in successive calls, as one `vae.decode` would.

    The causal feature cache lives here, not on the VAE (whose own cache `decode`/`encode`
    clear), so two decoders can interleave on one VAE without disturbing each other.
    """

    def __init__(self, vae: AutoencoderKLWan) -> None:
        self.vae = use_fast_cpu_kernels(vae)
        self.reset()

    def reset(self) -> None:
        """Start a new video: the next latent frame decoded is its first."""
        # One slot per causal conv of the decoder, as `AutoencoderKLWan.clear_cache` allots.
        self._feat_cache: list[Any] = [None] * self.vae._cached_conv_counts["decoder"]
        self._first_frame = True

    def fork(self) -> StreamingDecoder:
        """A decoder on the same VAE that goes on from where this one is, independently."""
        other = StreamingDecoder(self.vae)
        other._feat_cache = [c.clone() if isinstance(c, torch.Tensor) else c for c in self._feat_cache]
        other._first_frame = self._first_frame
        return other

    # No autograd: the cache would otherwise keep every earlier chunk's graph alive.
    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Next f model-latent frames [B, C, f, h, w] → pixels [B, 3, T, H, W] in [-1, 1].

        T = 4f, or 4f - 3 when the chunk starts the video (its first latent frame gives 1 frame).
        """
        x = self.vae.post_quant_conv(latents_to_vae(self.vae, latents).to(self.vae.dtype))
        frames = []
        for i in range(x.shape[2]):
            frames.append(
                self.vae.decoder(
                    x[:, :, i : i + 1],
                    feat_cache=self._feat_cache,
                    feat_idx=[0],
                    first_chunk=self._first_frame,
                )
            )
            self._first_frame = False
        out = torch.cat(frames, dim=2)
        if self.vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=self.vae.config.patch_size)
        return out.clamp(-1.0, 1.0)


def to_video_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 clips [T, H, W, 3] → float video [B, 3, T, H, W] in [-1, 1]: the inverse of `to_uint8_frames`."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 4, 1, 2, 3).float()
    return x / 127.5 - 1.0


def to_uint8_frames(video: torch.Tensor, index: int = 0) -> np.ndarray:
    """Batch element `index` of a video [B, 3, T, H, W] in [-1, 1] → uint8 frames [T, H, W, 3]."""
    frames = VideoProcessor().postprocess_video(video[index : index + 1], output_type="np")[0]
    # The same rounding diffusers applies when it turns float frames into images.
    return (frames * 255).round().astype(np.uint8)
