"""Reading and writing videos through imageio-ffmpeg's bundled ffmpeg: H.264 MP4 out, any format in."""

from __future__ import annotations

import logging
import warnings
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import numpy as np


class Mp4Writer:
    """Append uint8 T×H×W×3 frame batches as they stream in; `close()` finishes the file.

    H.264 in the container the file's suffix names: `.mp4` for files, `.ts` (MPEG-TS) for
    the segments a browser's streaming player appends one after another.
    """

    def __init__(self, path: str | Path, fps: int) -> None:
        self.path = Path(path)
        self.fps = fps
        self._gen = None
        self.frames = 0

    def write(self, frames: np.ndarray) -> None:
        if not len(frames):  # nothing to write, and no frame size to open the file with
            return
        if self._gen is None:
            # Imported here, not at the top: a training host (which only writes PNG sheets
            # through this module) needs no ffmpeg binary.
            import imageio_ffmpeg

            h, w = frames.shape[1:3]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._gen = imageio_ffmpeg.write_frames(
                str(self.path),
                (w, h),
                fps=self.fps,
                codec="libx264",
                pix_fmt_out="yuv420p",
                # Small frames are not padded to 16; yuv420p only needs even sizes.
                macro_block_size=2,
                output_params=["-crf", "18", "-preset", "veryfast"]
                + (["-movflags", "+faststart"] if self.path.suffix == ".mp4" else []),
                ffmpeg_log_level="error",
            )
            self._gen.send(None)
        for frame in frames:
            self._gen.send(np.ascontiguousarray(frame))
        self.frames += len(frames)

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
            self._gen = None


def write_mp4(path: str | Path, chunks: Iterable[np.ndarray], fps: int) -> int:
    """Write frame batches to `path`; returns the number of frames."""
    writer = Mp4Writer(path, fps)
    try:
        for frames in chunks:
            writer.write(frames)
    finally:
        writer.close()
    return writer.frames


def read_video(path: str | Path, height: int, width: int, fps: int, max_frames: int) -> np.ndarray:
    """A video file's last `max_frames` frames (or all, if fewer) as uint8 [T, height, width, 3]
    at `fps`: scaled to cover the frame and centre-cropped, by ffmpeg's own filters.  Earlier
    frames are skipped with a warning; a file that is not a video is refused with a
    `ValueError` naming it."""
    import imageio_ffmpeg

    # It warns whenever the frames it returns differ in size from the file's, here on purpose.
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    scale = f"fps={fps},scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height}"
    frames: deque[np.ndarray] = deque(maxlen=max_frames)  # a long file's memory stays bounded
    total = 0
    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-vf", scale])
    try:
        next(reader)  # the metadata; the frames follow at the filtered size
        for raw in reader:
            frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
            total += 1
    except (OSError, RuntimeError) as err:
        raise ValueError(f"{path} could not be read as a video: {str(err).strip().splitlines()[0]}") from None
    finally:
        reader.close()
    if not frames:
        raise ValueError(f"{path} holds no video frames")
    if total > max_frames:
        warnings.warn(f"{path} has {total} frames at {fps} fps; its first {total - max_frames} were skipped "
                      f"and its last {max_frames} are used", UserWarning, stacklevel=2)
    return np.stack(frames)


def contact_sheet(frames_per_row: list[np.ndarray], scale: int = 3, gap: int = 2) -> np.ndarray:
    """Rows of frames (each k×H×W×3 uint8), upscaled by `scale` (nearest), on a grey canvas."""
    rows = [np.repeat(np.repeat(f, scale, axis=1), scale, axis=2) for f in frames_per_row]
    h, w = rows[0].shape[1:3]
    k = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (h + gap) + gap, k * (w + gap) + gap, 3), 96, dtype=np.uint8)
    for i, r in enumerate(rows):
        for j, f in enumerate(r):
            y, x = gap + i * (h + gap), gap + j * (w + gap)
            sheet[y : y + h, x : x + w] = f
    return sheet
