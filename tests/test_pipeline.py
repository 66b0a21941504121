"""The streaming pipeline on the tiny preset with random weights: events, determinism, control, bad input."""

import dataclasses
import json
import math
import shutil
import subprocess
import threading

import numpy as np
import pytest
import torch

from dsa_core import generate as cli
from dsa_core.vae import StreamingDecoder, encode, to_uint8_frames


def frames_of(gen):
    return np.concatenate([e.frames for e in gen])


def test_events_carry_what_the_issue_lists(random_pipe):
    gen = random_pipe.generate("a red ball moves left", "fixed", seconds=5, seed=0, steps=4)
    events = list(gen)
    assert len(events) == gen.num_chunks == 7
    assert [e.frames.shape[0] for e in events] == [9] + [12] * 6
    assert sum(e.frames.shape[0] for e in events) == gen.num_frames == 81
    first = events[0]
    assert first.frames.dtype == np.uint8 and first.frames.shape[1:] == (64, 64, 3)
    assert first.latents.shape == (1, 16, 3, 8, 8)
    # Raw 1000/750/500/250 warped onto the shifted grid: 1000·sσ/(1 + (s−1)σ), σ = raw/1000.
    s = random_pipe.preset.sampling.shift
    warped = [1000 * s * r / (1 + (s - 1) * r) for r in (1.0, 0.75, 0.5, 0.25)]
    assert first.steps == 4 and first.timesteps == pytest.approx(warped, abs=1e-3)
    assert len(first.confidence) == 4 and all(0 < c < 1 for c in first.confidence)
    assert [e.nfe for e in events] == [5 * (k + 1) for k in range(7)]  # 4 steps + context pass
    assert all(e.transformer_ms > 0 and e.decode_ms > 0 for e in events)
    assert [e.first_frame for e in events] == [0, 9, 21, 33, 45, 57, 69]
    summary = gen.summary()
    assert summary["nfe"] == 35 and summary["num_frames"] == 81 and len(summary["chunks"]) == 7


def test_streamed_frames_equal_one_full_decode(random_pipe):
    gen = random_pipe.generate("a blue square", "ffe", seconds=2, seed=3)
    events = list(gen)
    latents = torch.cat([e.latents for e in events], dim=2)
    decoder = StreamingDecoder(random_pipe.vae)
    whole = to_uint8_frames(decoder.decode(latents))
    assert np.array_equal(np.concatenate([e.frames for e in events]), whole)


def test_same_seed_same_frames_other_seed_other_frames(random_pipe):
    a = frames_of(random_pipe.generate("a green triangle spins", "adaptive", seconds=2, seed=7))
    b = frames_of(random_pipe.generate("a green triangle spins", "adaptive", seconds=2, seed=7))
    c = frames_of(random_pipe.generate("a green triangle spins", "adaptive", seconds=2, seed=8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_every_schedule_sees_the_same_initial_noise(random_pipe):
    """The first step of chunk 0 is the same forward for every schedule (compare tab)."""
    heads = {
        name: next(iter(random_pipe.generate("a cyan star", name, seconds=1, seed=5))).head_confidence[0]
        for name in ("adaptive", "ffe", "diagonal", "fixed", "proxy")
    }
    assert len({round(v, 6) for v in heads.values()}) == 1


def test_prompt_change_between_chunks(random_pipe):
    gen = random_pipe.generate("a red ball", "fixed", seconds=5, seed=1, steps=1)
    events = []
    for e in gen:
        events.append(e)
        if e.index == 1:
            gen.change_prompt("a yellow star", recache=True)
    assert [e.prompt for e in events] == ["a red ball"] * 2 + ["a yellow star"] * 5
    # Re-caching re-runs the two cached chunks once each.
    assert gen.nfe == 7 * 2 + 2

    plain = random_pipe.generate("a red ball", "fixed", seconds=5, seed=1, steps=1)
    for e in plain:
        if e.index == 1:
            plain.change_prompt("a yellow star", recache=False)
    assert plain.nfe == 14
    assert not np.array_equal(plain.events[2].frames, events[2].frames)
    assert np.array_equal(plain.events[1].frames, events[1].frames)


def test_cancel_stops_between_chunks(random_pipe):
    gen = random_pipe.generate("a purple circle", "fixed", seconds=5, seed=2, steps=1)
    seen = []
    for e in gen:
        seen.append(e.index)
        if e.index == 1:
            threading.Thread(target=gen.cancel).start()
            threading.Event().wait(0.05)
    assert seen == [0, 1] and gen.cancelled
    assert gen.summary()["cancelled"] is True


def test_longer_than_trained_runs_through_the_rolling_window(random_pipe):
    seconds = 9.0  # 37 latent frames → 39 (13 chunks) > the 21-frame window
    gen = random_pipe.generate("an orange hexagon moves right", "fixed", seconds=seconds, seed=4, steps=1)
    assert gen.latent_frames > random_pipe.preset.sampling.window_frames
    frames = frames_of(gen)
    assert frames.shape[0] == gen.num_frames >= seconds * 16
    assert frames[-12:].std() > 0  # still a picture at the end, not a constant


def test_long_prompt_is_truncated_with_a_warning(random_pipe):
    prompt = " ".join(["a red ball bounces over a striped background"] * 30)
    with pytest.warns(UserWarning, match="truncat"):
        events = list(random_pipe.generate(prompt, "fixed", seconds=1, seed=0, steps=1))
    assert len(events) == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"prompt": ""}, r"prompt must be a non-empty string"),
        ({"prompt": "  \n\t "}, r"prompt must be a non-empty string"),
        ({"prompt": 42}, r"prompt must be a non-empty string"),
        ({"prompt": "x" * 5000}, r"prompt has 5000 characters; the allowed range is 1\.\.2000"),
        ({"schedule": "turbo"}, r"schedule='turbo' is unknown; allowed:"),
        ({"schedule": "fixed", "steps": 0}, r"steps=0 is outside the allowed range 1\.\.4"),
        ({"schedule": "fixed", "steps": 5}, r"steps=5 is outside the allowed range 1\.\.4"),
        ({"seconds": 0}, r"seconds=0 is outside the allowed range \(0, 60\.0\]"),
        ({"seconds": -2.5}, r"seconds=-2\.5 is outside the allowed range \(0, 60\.0\]"),
        ({"seconds": 61}, r"seconds=61 is outside the allowed range \(0, 60\.0\]"),
        ({"seconds": math.nan}, r"seconds=nan must be a number in \(0, 60\.0\]"),
        ({"seconds": "5"}, r"seconds='5' must be a number in \(0, 60\.0\]"),
        ({"seed": 1.5}, r"seed=1\.5 must be an integer in 0\.\."),
        ({"seed": "7"}, r"seed='7' must be an integer in 0\.\."),
        ({"seed": -1}, r"seed=-1 must be an integer in 0\.\."),
        ({"seed": True}, r"seed=True must be an integer in 0\.\."),
        ({"schedule": "diagonal", "counts": "4,0,2"}, r"diagonal counts entry=0 is outside the allowed range 1\.\.4"),
        ({"schedule": "diagonal", "counts": [4, -2]}, r"diagonal counts entry=-2 is outside the allowed range 1\.\.4"),
    ],
)
def test_bad_input_names_the_parameter_and_range(random_pipe, kwargs, match):
    args = {"prompt": "a red ball", "schedule": "adaptive", "seconds": 1.0, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        random_pipe.generate(**args)


def test_change_prompt_validates(random_pipe):
    gen = random_pipe.generate("a red ball", "fixed", seconds=1, seed=0, steps=1)
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        gen.change_prompt("   ")


@pytest.mark.slow
def test_cli_writes_h264_mp4_and_json(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    rc = cli.main(["--prompt", "a red ball", "--schedule", "diagonal", "--counts", "4,3,2", "--seconds", "2",
                   "--seed", "3", "--random-init", "--out", str(out)])
    assert rc == 0
    assert "RANDOM weights" in capsys.readouterr().err
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["schedule"] == "diagonal" and summary["num_frames"] == 33
    assert summary["nfe"] == 4 + 3 + 2  # diagonal forcing: no context passes
    chunk = summary["chunks"][0]
    assert {"steps", "timesteps", "confidence", "transformer_ms", "decode_ms"} <= chunk.keys()
    probe = subprocess.run(
        [shutil.which("ffprobe"), "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=codec_name,nb_read_frames,width,height", "-of", "json", str(out)],
        capture_output=True, text=True, check=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264"
    assert int(stream["nb_read_frames"]) == 33
    assert (stream["width"], stream["height"]) == (64, 64)


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(["--prompt", "a red ball", "--schedule", "fixed", "--steps", "7", "--random-init",
                   "--out", str(tmp_path / "x.mp4")])
    assert rc == 2
    assert "steps=7 is outside the allowed range 1..4" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_cli_without_weights_says_how_to_get_them(tmp_path, capsys):
    rc = cli.main(["--prompt", "a red ball", "--weights", str(tmp_path / "none"), "--out", str(tmp_path / "x.mp4")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "MANIFEST is missing" in err and "--random-init" in err


def test_consumer_code_between_chunks_runs_outside_inference_mode(random_pipe):
    for _ in random_pipe.generate("a red ball", "fixed", seconds=1, seed=0, steps=1):
        assert not torch.is_inference_mode_enabled()


@pytest.mark.slow
def test_compiled_transformer_gives_the_same_video():
    """`compile=True` (torch.compile, dynamic shapes) changes speed, not the video."""
    from dsa_core.pipeline import StreamingPipeline

    plain = StreamingPipeline.from_preset("tiny", random_init=True, device="cpu")
    compiled = StreamingPipeline.from_preset("tiny", random_init=True, device="cpu", compile=True)
    a = frames_of(plain.generate("a red ball", "fixed", seconds=2, seed=0, steps=2))
    b = frames_of(compiled.generate("a red ball", "fixed", seconds=2, seed=0, steps=2))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def one_object_clip(index: int = 0):
    from dsa_core.world import WORLDS, heldout_seed, render_clip

    return render_clip(heldout_seed(index), WORLDS["simple"])


def test_a_given_video_is_continued_as_the_rollout_feeds_it(random_pipe):
    """`context`: the given frames' chunks enter the cache (`Rollout.feed`), the rest is generated."""
    from dsa_core.pipeline import Rollout
    from dsa_core.schedules import make_schedule
    from dsa_core.vae import encode, to_video_tensor

    clip = one_object_clip()
    with pytest.warns(UserWarning, match="first 7 frames were dropped"):
        gen = random_pipe.generate(clip.caption, "fixed", seconds=2, seed=2, steps=2, context=clip.frames[:40])
    events = list(gen)
    assert gen.context_chunks == 3 and len(gen.context_frames) == 33
    assert np.array_equal(gen.context_frames, clip.frames[7:40])  # its last frames that fill whole chunks
    assert [e.index for e in events] == [3, 4, 5] and gen.num_chunks == 6
    assert events[0].first_frame == 33
    assert [e.nfe for e in events] == [3 + 3 * k for k in (1, 2, 3)]  # 3 fed chunks, then 2 steps + context pass
    summary = gen.summary()
    assert summary["context_frames"] == 33 and summary["num_frames"] == summary["planned_frames"] == 33 + 36

    # By hand: the same chunks fed to a rollout, the same noise, the same steps.
    cf, p = random_pipe.preset.model.chunk_frames, random_pipe.preset
    z = encode(random_pipe.vae, to_video_tensor([clip.frames[7:40]]))
    text = random_pipe.encode_prompt(clip.caption)
    rollout = Rollout(random_pipe.model, random_pipe.scheduler, make_schedule("fixed", p, steps=2), p, 2)
    with torch.inference_mode():
        for k in range(3):
            rollout.feed(z[:, :, k * cf:(k + 1) * cf], text)
        by_hand = [rollout.next_chunk(text).x0 for _ in range(3)]
    assert all(torch.equal(e.latents, x) for e, x in zip(events, by_hand))
    # The generated frames decode as the given video's continuation, not as a video of their own.
    whole = to_uint8_frames(StreamingDecoder(random_pipe.vae).decode(torch.cat([z, *by_hand], 2)))
    assert np.array_equal(frames_of(events), whole[33:])
    alone = to_uint8_frames(StreamingDecoder(random_pipe.vae).decode(torch.cat(by_hand, 2)))
    assert not np.array_equal(frames_of(events)[-12:], alone[-12:])


def test_one_given_video_is_encoded_once_for_several_generations(random_pipe, monkeypatch):
    from dsa_core import pipeline

    clip = one_object_clip()
    alone = [frames_of(random_pipe.generate(clip.caption, s, seconds=1, seed=0, context=clip.frames[:21]))
             for s in ("fixed", "diagonal")]
    calls = []
    monkeypatch.setattr(pipeline, "encode", lambda *a: calls.append(1) or encode(*a))
    given = random_pipe.given(clip.frames[:21])
    shared = [random_pipe.generate(clip.caption, s, seconds=1, seed=0, context=given) for s in ("fixed", "diagonal")]
    # In turns, chunk by chunk, as Compare runs them: each has a decoder of its own.
    turns = [iter(g) for g in shared]
    events = [[], []]
    for _ in range(shared[0].num_chunks - shared[0].context_chunks):
        for i, it in enumerate(turns):
            events[i].append(next(it))
    assert calls == [1]
    assert all(np.array_equal(np.concatenate([e.frames for e in ev]), a) for ev, a in zip(events, alone))
    other = dataclasses.replace(random_pipe, dtype=torch.float64)
    with pytest.raises(ValueError, match="another VAE, device or dtype"):
        other.generate(clip.caption, "fixed", seconds=1, context=given)


def test_the_given_video_changes_what_follows(random_pipe):
    a, b = one_object_clip(0), one_object_clip(1)
    after = [frames_of(random_pipe.generate(a.caption, "fixed", seconds=1, seed=0, steps=1, context=c.frames[:21]))
             for c in (a, b)]
    assert not np.array_equal(*after)


def test_a_continued_video_takes_a_new_prompt_and_recaches_the_given_chunks(random_pipe):
    clip = one_object_clip()
    gen = random_pipe.generate(clip.caption, "fixed", seconds=2, seed=0, steps=1, context=clip.frames[:21])
    nfe = []
    for event in gen:
        nfe.append(event.nfe)
        if event.index == 2:
            gen.change_prompt("a blue square", recache=True)
    # 2 fed chunks; chunk 2: 1 step + context pass; chunk 3: 3 re-cached chunks, then 2 more.
    assert nfe == [2 + 2, 4 + 3 + 2, 9 + 2] and gen.events[-1].prompt == "a blue square"


@pytest.mark.slow
def test_cli_continues_a_video_file_of_another_size(tmp_path, capsys):
    from dsa_core.media import read_video, write_mp4
    from dsa_core.world import WORLDS, heldout_seed, render_clip

    world = dataclasses.replace(WORLDS["simple"], height=96, width=128)
    given = tmp_path / "given.mp4"
    write_mp4(given, [render_clip(heldout_seed(0), world).frames[:33]], 16)
    out = tmp_path / "more.mp4"
    rc = cli.main(["--prompt", "a red ball", "--schedule", "fixed", "--steps", "1", "--seconds", "1",
                   "--random-init", "--continue", str(given), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["context_frames"] == 33 and summary["num_frames"] == 33 + 24
    assert [c["index"] for c in summary["chunks"]] == [3, 4]
    written = read_video(out, 64, 64, 16, 100)
    assert written.shape == (57, 64, 64, 3)
    # The output opens with the given video, scaled and cropped to 64×64 (H.264 is lossy twice).
    shown = read_video(given, 64, 64, 16, 100)
    assert np.abs(written[:33].astype(int) - shown.astype(int)).mean() < 4
    # A longer file than there is room for gives its last frames.
    with pytest.warns(UserWarning, match="has 33 frames at 16 fps; its first 13 were skipped"):
        assert np.array_equal(read_video(given, 64, 64, 16, 20), shown[-20:])

