"""The Gradio app against a real server: streaming updates, chart data, MP4, Stop, bad input."""

import dataclasses
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import handle_file

from dsa_core.media import read_video, write_mp4
from dsa_core.world import WORLDS, heldout_seed, render_clip

ARGS = ["a red ball", "adaptive", 4, "4,3,2", 0.02, 0.01, 1]  # prompt, schedule, steps, counts, margin, tol, min


@pytest.mark.slow
def test_stream_charts_and_mp4(client, tiny_pipe):
    job = client.submit(*ARGS, 3, 5, False, "tiny", api_name="/generate")
    updates = list(job)
    *streaming, final = updates
    assert len(streaming) >= 2
    events = list(tiny_pipe.generate("a red ball", "adaptive", seconds=3, seed=5))
    assert len(streaming) == len(events)
    conf = streaming[-1][1]["data"]
    expected = [[str(e.index), c, f"step {j + 1}"] for e in events for j, c in enumerate(e.confidence)]
    assert [[k, round(c, 6), s] for k, c, s in conf] == [[k, round(c, 6), s] for k, c, s in expected]
    assert streaming[-1][2]["data"] == [[str(e.index), e.steps] for e in events]
    mp4 = final[4]["video"] if isinstance(final[4], dict) else final[4]
    probe = subprocess.run(
        [shutil.which("ffprobe"), "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", mp4],
        capture_output=True, text=True, check=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264"
    assert int(stream["nb_read_frames"]) == sum(len(e.frames) for e in events)
    record = json.loads(Path(final[6]).read_text())
    assert record["nfe"] == events[-1].nfe
    # The table shows each chunk's JSON record but for its step lists, which the charts show.
    table = final[5]
    assert set(table["headers"]) == set(record["chunks"][0]) - {"timesteps", "head_confidence"}
    assert len(table["data"]) == len(record["chunks"])
    for row, chunk in zip(table["data"], record["chunks"]):
        shown = dict(zip(table["headers"], row))
        assert shown["index"] == chunk["index"] and shown["steps"] == chunk["steps"]
        assert shown["prompt"] == chunk["prompt"] and shown["decode_ms"] == chunk["decode_ms"]


@pytest.mark.slow
def test_stop_ends_the_stream_within_a_chunk(client):
    job = client.submit(*ARGS, 30, 1, False, "tiny", api_name="/generate")
    for _ in job:
        job.cancel()
        break
    time.sleep(3)
    assert len(job.outputs()) <= 2  # 30 s would be 40 chunks
    follow = client.submit(*ARGS, 1, 2, False, "tiny", api_name="/generate")
    assert len(list(follow)) >= 2  # the server serves the next request normally


@pytest.mark.slow
def test_next_prompt_takes_effect_mid_stream(client):
    job = client.submit("a red ball", "fixed", 1, "4,3,2", 0.02, 0.01, 1, 4, 1, False, "tiny", api_name="/generate")
    for i, _ in enumerate(job):
        if i == 0:
            assert "next chunk" in client.predict("a blue square", False, api_name="/next_prompt")
    prompts = [row[-1] for row in job.result()[5]["data"]]
    assert prompts[0] == "a red ball" and prompts[-1] == "a blue square"


@pytest.mark.slow
def test_compare_streams_schedules_side_by_side(client, tiny_pipe):
    t0 = time.perf_counter()
    job = client.submit("a red ball", ["adaptive", "fixed", "diagonal"], 2, 1, api_name="/compare")
    updates = list(job)
    wall = time.perf_counter() - t0
    events = list(tiny_pipe.generate("a red ball", "fixed", seconds=2, seed=1))
    fps = tiny_pipe.preset.sampling.fps
    for column in (0, 4, 8):
        # Each player gets each chunk once: its playlist runs as long as the video.
        playlists = [u[column] for u in updates if isinstance(u[column], str)]
        assert len(playlists) == len(events)
        lines = Path(playlists[-1]).read_text().splitlines()
        played = sum(float(line.split(":")[1].rstrip(",")) for line in lines if line.startswith("#EXTINF"))
        assert played == pytest.approx(sum(len(e.frames) for e in events) / fps, abs=0.01)
    rows = {r[0]: r for r in job.result()[12]["data"]}
    assert rows["fixed"][2] == 3 * 5 and rows["diagonal"][2] == 4 + 3 + 2  # NFE: 2 s = 3 chunks
    assert rows["fixed"][1] == "dmd"  # the student each schedule ran on
    # Speeds are each schedule's own: the three ran in turns, so their times add up within the wall.
    assert sum(r[3] / r[4] for r in rows.values()) < wall
    assert all(str(r[-1]).startswith("— (not a world caption)") for r in rows.values())


@pytest.mark.slow
def test_compare_scores_world_captions(client):
    caption = "A small crimson triangle drifts down on an azure background."  # held-out clip 23, an example
    rows = client.predict(caption, ["fixed", "ffe"], 5, 0, api_name="/compare")[12]["data"]
    assert all(isinstance(r[-1], float) and 0 <= r[-1] <= 100 for r in rows)


@pytest.mark.slow
def test_compare_continues_an_uploaded_video_in_every_column(client, tiny_pipe, tmp_path):
    world = dataclasses.replace(WORLDS["simple"], height=96, width=128)
    given = tmp_path / "given.mp4"
    write_mp4(given, [render_clip(heldout_seed(0), world).frames[:40]], 16)
    updates = list(client.submit("a red ball", ["fixed", "diagonal"], 1, 3, handle_file(str(given)),
                                 api_name="/compare"))
    for column in (0, 4):
        # Each player opens with the given video's last whole chunks, then the two generated ones.
        assert "last 33 frames" in updates[0][column + 3]
        playlists = [u[column] for u in updates if isinstance(u[column], str)]
        lines = Path(playlists[-1]).read_text().splitlines()
        durations = [float(line.split(":")[1].rstrip(",")) for line in lines if line.startswith("#EXTINF")]
        assert durations == pytest.approx([33 / 16, 12 / 16, 12 / 16], abs=0.01)
    rows = {r[0]: r for r in updates[-1][12]["data"]}
    # 3 given chunks (a context pass each) before chunks 3 and 4: fixed adds its steps and a
    # context pass for each, diagonal (forcing, no context pass) its counts' last entry.
    d = tiny_pipe.preset.schedules
    assert rows["fixed"][2] == 3 + 2 * (d.fixed_steps + 1) and rows["diagonal"][2] == 3 + 2 * d.diagonal_counts[-1]
    assert rows["fixed"][3] == rows["diagonal"][3] == 33 + 24


@pytest.mark.slow
def test_each_tabs_continue_example_is_served_and_continued(client, tmp_path):
    """The example under each "Continue a video" accordion is a served file the app continues:
    the shipped model's first sample, 81 frames, all of them whole chunks (9 + 6 × 12)."""
    examples = [sample[0] for c in client.config["components"] if c.get("type") == "dataset"
                for sample in c["props"]["samples"] if isinstance(sample[0], dict)]
    assert [e["orig_name"] for e in examples] == ["sample_0.mp4", "sample_0.mp4"]  # Generate, Compare
    example = tmp_path / "example.mp4"  # as a browser gets it, then uploads it back
    example.write_bytes(httpx.get(examples[1]["url"]).raise_for_status().content)
    updates = list(client.submit("a red ball", ["fixed", "diagonal"], 1, 3, handle_file(str(example)),
                                 api_name="/compare"))
    assert "last 81 frames" in updates[0][3] and "last 81 frames" in updates[0][7]
    assert [r[3] for r in updates[-1][12]["data"]] == [81 + 24, 81 + 24]


@pytest.mark.slow
def test_one_generation_at_a_time_others_see_their_queue_position(client):
    first = client.submit(*ARGS, 30, 1, False, "tiny", api_name="/generate")
    next(iter(first))  # running
    waiting = client.submit("a red ball", ["fixed", "ffe"], 1, 1, api_name="/compare")
    seen = set()
    for _ in range(30):  # the first generation runs for seconds: the second must be waiting
        status = waiting.status()
        seen.add((status.code.name, status.rank))
        time.sleep(0.1)
    assert ("IN_QUEUE", 0) in seen and not any(code in ("PROCESSING", "ITERATING") for code, _ in seen)
    first.cancel()
    assert waiting.result(timeout=120)[12]["data"]


@pytest.mark.slow
def test_an_uploaded_video_is_continued(client, tmp_path):
    world = dataclasses.replace(WORLDS["simple"], height=96, width=128)
    given = tmp_path / "given.mp4"
    write_mp4(given, [render_clip(heldout_seed(0), world).frames[:40]], 16)
    job = client.submit("a red ball", "fixed", 1, "4,3,2", 0.02, 0.01, 1, 1, 3, False, "tiny",
                        handle_file(str(given)), api_name="/generate")
    first, *generated, final = list(job)
    # The live player opens with the given video's last whole chunks (33 of its 40 frames).
    assert "last 33 frames" in first[3]
    playlist = Path(first[0]["video"] if isinstance(first[0], dict) else first[0]).read_text()
    durations = [float(line.split(":")[1].rstrip(",")) for line in playlist.splitlines() if line.startswith("#EXTINF")]
    assert durations == [pytest.approx(33 / 16, abs=0.01)]
    summary = json.loads(Path(final[6]).read_text())
    assert summary["context_frames"] == 33 and [c["index"] for c in summary["chunks"]] == [3, 4]
    assert len(generated) == 2  # one update a generated chunk
    # The MP4 opens with them too, scaled and cropped to 64×64 (H.264 is lossy twice).
    written = read_video(final[4]["video"] if isinstance(final[4], dict) else final[4], 64, 64, 16, 100)
    assert len(written) == summary["num_frames"] == 33 + 24
    shown = read_video(given, 64, 64, 16, 100)[-33:]
    assert np.abs(written[:33].astype(int) - shown.astype(int)).mean() < 4
