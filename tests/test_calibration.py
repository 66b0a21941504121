"""The calibration report runs end to end and counts what it should (random weights)."""

import pytest
import torch

from dsa_core.calibration import calibration
from dsa_core.model import CausalWanModel


@pytest.mark.slow
def test_calibration_report_on_random_weights(random_pipe):
    torch.manual_seed(1)
    teacher = CausalWanModel(random_pipe.preset.model).eval()
    report = calibration(random_pipe, teacher, clips=2, batch=2)
    chunks = random_pipe.latent_frames(5.0) // 3
    assert report["pairs"] == 2 * chunks * 4  # clips × chunks × exit steps
    assert -1.0 <= report["spearman"] <= 1.0
    assert set(report["spearman_within_step"]) == {1, 2, 3, 4}
    assert set(report["mean_distance_by_step"]) == {1, 2, 3, 4}
    assert all(d > 0 for d in report["mean_distance_by_step"].values())
