"""The calibration report runs end to end and counts what it should (random weights)."""

import pytest
import torch

from dsa_core.calibration import calibration, spearman_within_and_between
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
    assert -1.0 <= report["spearman_within_video"] <= 1.0 and -1.0 <= report["spearman_between_videos"] <= 1.0
    assert set(report["mean_distance_by_step"]) == {1, 2, 3, 4}
    assert all(d > 0 for d in report["mean_distance_by_step"].values())


def test_within_video_correlation_is_told_apart_from_between_videos():
    # Two videos: inside each, confidence falls as d rises (what DSA's rule needs); across
    # them, the busier video has both the larger d and the larger confidence.
    d = torch.tensor([[[9.0, 1.0, 2.0, 3.0], [9.0, 11.0, 12.0, 13.0]]])  # [exit steps, videos, chunks]
    conf = torch.tensor([[[0.0, 0.3, 0.2, 0.1], [0.0, 0.9, 0.8, 0.7]]])
    within, between = spearman_within_and_between(conf, d)
    assert within == pytest.approx(-1.0)  # the first chunk (never judged by the rule) is left out
    assert between == pytest.approx(1.0)
    # A video whose chunks all tie has no ranking: it is skipped, not counted as 0.
    within, _ = spearman_within_and_between(torch.cat([conf, conf.flip(-1)], 1)[:, :3],
                                            torch.cat([d, torch.ones(1, 2, 4)], 1)[:, :3])
    assert within == pytest.approx(-1.0)
