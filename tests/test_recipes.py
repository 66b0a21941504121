"""The losses of the FFE and diagonal training recipes behave as they should on toy inputs."""

import torch

from dsa_core.config import TINY
from dsa_core.model import CausalWanModel
from dsa_core.train.asd import Discriminator, r1r2, relativistic_d_loss
from dsa_core.train.diagonal import MotionFeatures, motion_loss

TOY = TINY.model.__class__(dim=32, num_heads=2, ffn_dim=64, num_layers=2, freq_dim=32, conf_hidden=16,
                           text_dim=16, text_len=8)


def toy_inputs(batch: int, shift: float, g: torch.Generator):
    x = torch.randn(batch, 16, 3, 4, 4, generator=g) * 0.3 + shift
    return x, torch.full((batch, 3), 500.0)


def test_discriminator_learns_to_separate_two_distributions():
    torch.manual_seed(0)
    critic = CausalWanModel(TOY).requires_grad_(False)
    disc = Discriminator(critic, steps=3)
    text = critic.prepare_text(torch.zeros(4, 8, 16))
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        (real, t), (fake, _) = toy_inputs(4, 1.0, g), toy_inputs(4, -1.0, g)
        loss = relativistic_d_loss(disc(real, t, text, 2), disc(fake, t, text, 2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.3  # near chance: softplus(0) = log 2
    assert sum(losses[-5:]) / 5 < 0.1 * losses[0]


def test_r1r2_is_zero_for_a_constant_discriminator_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    x_a, x_b = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    assert r1r2(lambda x: torch.full((x.shape[0],), 3.0), x_a, x_b, 0.05, g) == 0
    assert r1r2(lambda x: x.sum(1), x_a, x_b, 0.05, g) > 0


def test_motion_loss_sees_motion_not_content():
    torch.manual_seed(0)
    f = MotionFeatures(16)
    still_a = torch.randn(1, 16, 1, 4, 4).expand(1, 16, 6, 4, 4)
    still_b = torch.randn(1, 16, 1, 4, 4).expand(1, 16, 6, 4, 4)
    moving = torch.stack([torch.roll(still_a[:, :, 0], k, dims=-1) for k in range(6)], 2)
    assert motion_loss(f, moving, moving) == 0
    assert motion_loss(f, still_b, still_a) == 0  # neither moves: other content, no motion error
    assert motion_loss(f, still_a, moving) > 0.5  # the motion is missing altogether: about 1
