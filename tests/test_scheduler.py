"""σ grid, shift and warp against DESIGN §2 and diffusers' FlowMatchEulerDiscreteScheduler."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from dsa_core.scheduler import FlowMatchScheduler


def test_warp_of_the_trained_list():
    warped = FlowMatchScheduler(shift=5.0).warp([1000, 750, 500, 250])
    assert warped == pytest.approx([1000.0, 937.5, 833.3333, 625.0], abs=1e-3)


def test_grid_matches_diffusers():
    ours = FlowMatchScheduler(shift=5.0)
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    assert torch.allclose(ours.sigmas.float(), ref.sigmas[:1000].float(), atol=1e-6)
    raw = [1.0, 0.75, 0.5, 0.25]
    ref.set_timesteps(sigmas=raw)
    warped = torch.tensor(ours.warp([1000 * s for s in raw]), dtype=torch.float64)
    assert torch.allclose(warped, ref.timesteps.double(), atol=1e-3)


def test_x0_flow_round_trip():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)
    s = FlowMatchScheduler()
    for sigma in (1.0, 0.625, 0.1):
        x_t = s.add_noise(x0, noise, sigma)
        assert torch.allclose(s.to_x0(x_t, s.flow_target(x0, noise), sigma), x0, atol=1e-6)


def test_bad_shift_and_raw_steps():
    with pytest.raises(ValueError, match="shift"):
        FlowMatchScheduler(shift=0)
    with pytest.raises(ValueError, match="0..1000"):
        FlowMatchScheduler().warp([1200])
