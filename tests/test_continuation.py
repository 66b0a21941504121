"""Continuing a given video: `Rollout.feed` and the continuation probe."""

import json

import numpy as np
import pytest
import torch

from dsa_core import continuation
from dsa_core.pipeline import Rollout, chunk_start_frame
from dsa_core.schedules import make_schedule
from dsa_core.train.forcing import forcing_loss
from dsa_core.train.teacher import add_random_noise
from dsa_core.vae import encode, to_video_tensor
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


def test_forcing_loss_sees_its_context_as_feed_leaves_it(random_pipe):
    """The training stage's teacher-forced loss and inference's `Rollout.feed` share one cache path."""
    p, model, sched = random_pipe.preset, random_pipe.model, random_pipe.scheduler
    cf, s = p.model.chunk_frames, p.sampling
    latents = torch.randn(2, p.model.in_dim, 21, *p.latent_size(), generator=torch.Generator().manual_seed(1))
    states = random_pipe.text_encoder.encode(["a red ball moves left", "a blue star spins"])
    # A seed whose drawn chunk k has at least two chunks of context before it.
    seed = next(n for n in range(100)
                if int(torch.randint(0, 7, (1,), generator=torch.Generator().manual_seed(n))) >= 2)
    with torch.no_grad():
        loss = forcing_loss(model, sched, latents, states, cf, (s.window_frames, s.sink_frames),
                            torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        k = int(torch.randint(0, 7, (1,), generator=g))
        text = model.prepare_text(states)
        rollout = Rollout(model, sched, make_schedule("fixed", p), p, 0, batch=2)
        for j in range(k):
            rollout.feed(latents[:, :, j * cf:(j + 1) * cf], text)
        x0 = latents[:, :, k * cf:(k + 1) * cf]
        x_t, t, _, noise = add_random_noise(x0, g, sched)
        flow = model(x_t, t, text, cache=rollout.cache, start_frame=k * cf).flow
        by_hand = (flow - sched.flow_target(x0, noise)).pow(2).mean()
        # The other clip's chunks before k, the same chunk k: another loss, so the context is read.
        swapped = latents.clone()
        swapped[:, :, :k * cf] = latents.flip(0)[:, :, :k * cf]
        other = forcing_loss(model, sched, swapped, states, cf, (s.window_frames, s.sink_frames),
                             torch.Generator().manual_seed(seed))
    assert torch.allclose(loss, by_hand, rtol=1e-5)
    assert not torch.allclose(loss, other, rtol=1e-5)


def test_continuation_videos_keep_the_shown_frames_out(random_pipe):
    clip = render_clip(heldout_seed(0), WORLDS["simple"])
    real = continuation.clip_latent(random_pipe, clip)
    videos = continuation.continuation_videos(random_pipe, clip, real, 3, "fixed")
    first = chunk_start_frame(3, random_pipe.preset.model.chunk_frames)
    assert first == 33
    assert list(videos) == list(continuation.ROWS)
    assert all(v.shape == (81 - first, 64, 64, 3) and v.dtype == np.uint8 for v in videos.values())
    assert np.array_equal(videos["real clip"], clip.frames[first:])
    # From the first generated frame on, the shown chunks change what the student draws.
    assert not np.array_equal(videos["student, continuing the clip"], videos["student, from noise"])


def test_context_errors_compare_contexts_with_the_copy_floor(random_pipe):
    clips = [render_clip(heldout_seed(i), WORLDS["simple"]) for i in range(2)]
    latents = [continuation.clip_latent(random_pipe, clip) for clip in clips]
    errors = continuation.context_errors(random_pipe, clips, latents, 2, sigmas=(0.5, 0.95))
    assert list(errors) == list(continuation.CONTEXTS)
    cf = random_pipe.preset.model.chunk_frames
    floor = []
    for clip in clips:  # chunk 2 against its clip's last latent frame before it, by hand
        z = encode(random_pipe.vae, to_video_tensor([clip.frames]))
        floor.append((z[:, :, 2 * cf:3 * cf] - z[:, :, 2 * cf - 1:2 * cf]).pow(2).mean().item())
    assert errors["copy the last shown frame"] == pytest.approx([np.mean(floor)] * 2, rel=1e-4)
    own, other = errors["own clip"], errors["another clip"]
    assert all(np.isfinite(own + other)) and min(own + other) > 0
    # What the cache holds reaches the prediction (random weights read it only faintly; the
    # slow CLI test asks the trained student for more).
    assert own != other
    with pytest.raises(ValueError, match="at least 2 clips"):
        continuation.context_errors(random_pipe, clips[:1], latents[:1], 2)
    with pytest.raises(ValueError, match=r"allowed range 1\.\.6"):
        continuation.context_errors(random_pipe, clips, latents, 7)
    with pytest.raises(ValueError, match="1 latents for 2 clips"):
        continuation.context_errors(random_pipe, clips, latents[:1], 2)


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
    # The shipped student reads its context: from heavy noise the clip's own first chunks
    # predict the next far better than another clip's.
    errors = report["context_error"]
    assert errors["sigmas"] == list(continuation.CONTEXT_SIGMAS)
    own, other = errors["contexts"]["own clip"][-1], errors["contexts"]["another clip"][-1]
    assert own < 0.7 * other, errors
    assert "| copy the last shown frame |" in printed
