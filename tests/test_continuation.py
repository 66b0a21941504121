"""Continuing a given video: `Rollout.feed` and the continuation probe."""

import json

import numpy as np
import pytest
import torch

from dsa_core import continuation
from dsa_core.pipeline import Rollout
from dsa_core.schedules import make_schedule
from dsa_core.world import WORLDS, heldout_seed, render_clip


def second_chunk(pipe, first: torch.Tensor | None) -> torch.Tensor:
    """Chunk 1 of seed 0 at one step, after generating chunk 0 (`first` None) or feeding `first`."""
    p = pipe.preset
    rollout = Rollout(pipe.model, pipe.scheduler, make_schedule("fixed", p, steps=1), p, 0)
    text = pipe.encode_prompt("a red ball moves left")
    with torch.no_grad():
        if first is None:
            rollout.next_chunk(text)
        else:
            rollout.feed(first, text)
        return rollout.next_chunk(text).x0


def test_fed_chunk_continues_as_the_generated_one(random_pipe):
    p = random_pipe.preset
    rollout = Rollout(random_pipe.model, random_pipe.scheduler, make_schedule("fixed", p, steps=1), p, 0)
    with torch.no_grad():
        generated = rollout.next_chunk(random_pipe.encode_prompt("a red ball moves left")).x0
    # One step and a clean context pass draw no re-noising: feeding chunk 0 leaves the cache and
    # both random streams as generating it did, so chunk 1 comes out the same.
    assert torch.allclose(second_chunk(random_pipe, generated), second_chunk(random_pipe, None), atol=1e-5)
    # and the fed chunk is what chunk 1 attends to.
    assert not torch.allclose(second_chunk(random_pipe, torch.zeros_like(generated)),
                              second_chunk(random_pipe, None), atol=1e-3)


def test_continuation_videos_keep_the_shown_frames_out(random_pipe):
    clip = render_clip(heldout_seed(0), WORLDS["simple"])
    videos = continuation.continuation_videos(random_pipe, clip, 3, "fixed")
    first = continuation.first_generated_frame(3, random_pipe.preset.model.chunk_frames)
    assert first == 33
    assert list(videos) == list(continuation.ROWS)
    assert all(v.shape == (81 - first, 64, 64, 3) and v.dtype == np.uint8 for v in videos.values())
    assert np.array_equal(videos["real clip"], clip.frames[first:])
    # From the first generated frame on, the shown chunks change what the student draws.
    assert not np.array_equal(videos["student, continuing the clip"], videos["student, from noise"])


@pytest.mark.slow
def test_probe_cli_scores_the_real_clip_at_the_top(tmp_path, capsys):
    out = tmp_path / "continuation.json"
    assert continuation.main(["--prompts", "4", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["student"] == "dmd" and report["first_generated_frame"] == 33 and report["clips"] == 4
    rows = report["rows"]
    assert list(rows) == list(continuation.ROWS)
    real = rows["real clip"]["adherence"]
    assert np.mean(list(real.values())) >= 0.9, real
    assert all(0 <= r["total_score"] <= 100 for r in rows.values())
    assert rows["real clip"]["total_score"] > rows["student, from noise"]["total_score"]
    printed = capsys.readouterr().out
    assert "| student, continuing the clip |" in printed and "frames from 33 on" in printed
