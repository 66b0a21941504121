"""dsa_core.media: H.264 files and streaming segments written in process, and read back at the
model's size and frame rate."""

import dataclasses

import av
import numpy as np
import pytest

from dsa_core.media import Mp4Writer, read_video, write_mp4
from dsa_core.world import WORLDS, heldout_seed, render_clip


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    world = dataclasses.replace(WORLDS["simple"], height=96, width=128)
    return render_clip(heldout_seed(0), world).frames[:33]


@pytest.mark.parametrize("suffix, container", [(".mp4", "mp4"), (".ts", "mpegts")])
def test_written_video_is_h264_in_the_container_its_suffix_names(tmp_path, clip, suffix, container):
    path = tmp_path / f"v{suffix}"
    writer = Mp4Writer(path, 16)
    writer.write(clip[:12])
    writer.write(clip[12:0])  # an empty batch writes nothing
    writer.write(clip[12:])
    writer.close()
    assert writer.frames == 33
    with av.open(str(path)) as c:
        assert container in c.format.name.split(",")
        (stream,) = c.streams.video
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert stream.average_rate == 16
        assert sum(1 for _ in c.decode(stream)) == 33
    back = read_video(path, 96, 128, 16, 100)
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip.astype(int)).mean() < 4  # crf 18: close, not exact


def test_mp4_starts_with_its_index_so_a_browser_plays_it_while_downloading(tmp_path, clip):
    write_mp4(tmp_path / "v.mp4", [clip], 16)
    data = (tmp_path / "v.mp4").read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")


def test_read_video_covers_the_frame_centre_crops_and_resamples(tmp_path, clip):
    path = tmp_path / "v.mp4"
    write_mp4(path, [clip], 16)
    square = read_video(path, 64, 64, 16, 100)
    assert square.shape == (33, 64, 64, 3)
    # 128×96 scaled to cover 64×64 is 85×64; the crop keeps its middle 64 columns.
    assert np.array_equal(square, read_video(path, 64, 85, 16, 100)[:, :, 10:74])
    assert read_video(path, 64, 64, 8, 100).shape[0] == 17  # 33 frames at 16 fps span 2.06 s
    with pytest.warns(UserWarning, match="has 33 frames at 16 fps; its first 13 were skipped"):
        assert np.array_equal(read_video(path, 64, 64, 16, 20), square[-20:])


def test_read_video_refuses_what_is_not_a_video(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(ValueError, match=r"notes.txt could not be read as a video: Invalid data"):
        read_video(text, 64, 64, 16, 10)
    with pytest.raises(FileNotFoundError, match="missing.mp4 does not exist"):
        read_video(tmp_path / "missing.mp4", 64, 64, 16, 10)


def write_rotated(path, frames: np.ndarray, rotation: int) -> None:
    """An MP4 as a phone writes one: frames as captured, and a display rotation to apply."""
    with av.open(str(path), "w", format="mp4") as c:
        stream = c.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.set_display_rotation(rotation)
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = i
            c.mux(stream.encode(picture))
        c.mux(stream.encode())


@pytest.mark.parametrize("rotation, quarter_turns", [(0, 0), (90, 1), (180, 2), (270, 3)])
def test_read_video_turns_a_rotated_video_upright(tmp_path, clip, rotation, quarter_turns):
    write_rotated(tmp_path / "stored.mp4", clip[:9], 0)
    write_rotated(tmp_path / "shown.mp4", clip[:9], rotation)  # the same stream, flagged
    stored = read_video(tmp_path / "stored.mp4", 96, 128, 16, 100)
    h, w = (96, 128) if quarter_turns % 2 == 0 else (128, 96)
    # Counterclockwise, as FFmpeg's display matrix (and the ffmpeg command line) turns it.
    upright = read_video(tmp_path / "shown.mp4", h, w, 16, 100)
    assert np.array_equal(upright, np.rot90(stored, quarter_turns, axes=(1, 2)))
