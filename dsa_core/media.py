"""Reading and writing videos through PyAV (FFmpeg's libraries, in process): H.264 out, any format in."""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: a training host needs no video library
    import av


class Mp4Writer:
    """Append uint8 T×H×W×3 frame batches as they stream in; `close()` finishes the file.

    H.264 in the container the file's suffix names: `.mp4` for files, `.ts` (MPEG-TS) for
    the segments a browser's streaming player appends one after another.  In process, not
    through an ffmpeg subprocess: the app writes a segment a chunk, and starting a process for
    each took longer than encoding it (38 ms against 7 for a 12-frame 64×64 segment here).
    """

    def __init__(self, path: str | Path, fps: int) -> None:
        self.path = Path(path)
        self.fps = fps
        self._container = None
        self._stream = None
        self.frames = 0

    def write(self, frames: np.ndarray) -> None:
        if not len(frames):  # nothing to write, and no frame size to open the file with
            return
        # Imported here, not at the top: a training host (which only writes PNG sheets through
        # this module) needs no video library.
        import av

        if self._container is None:
            h, w = frames.shape[1:3]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            segment = self.path.suffix == ".ts"
            self._container = av.open(str(self.path), "w", format="mpegts" if segment else "mp4",
                                      options={} if segment else {"movflags": "+faststart"})
            self._stream = self._container.add_stream("libx264", rate=self.fps,
                                                      options={"crf": "18", "preset": "veryfast"})
            self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = self.frames
            self._container.mux(self._stream.encode(picture))
            self.frames += 1

    def close(self) -> None:
        if self._container is not None:
            self._container.mux(self._stream.encode())  # the frames the encoder still holds
            self._container.close()
            self._container = self._stream = None


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
    at `fps`: scaled to cover the frame and centre-cropped, by FFmpeg's own filters.  Earlier
    frames are skipped with a warning; a file that is not a video is refused with a
    `ValueError` naming it."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    frames: deque[np.ndarray] = deque(maxlen=max_frames)  # a long file's memory stays bounded
    total = 0

    def pull(graph: av.filter.Graph) -> None:
        nonlocal total
        while True:
            try:
                frames.append(graph.vpull().to_ndarray())
            except (av.BlockingIOError, av.EOFError):  # wants more input, or has none left
                return
            total += 1

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} holds no video frames")
            stream = container.streams.video[0]
            graph = None
            for frame in container.decode(stream):
                if graph is None:  # built on the first frame, which carries the display rotation
                    graph = _filters(stream, frame.rotation, height, width, fps)
                graph.vpush(frame)
                pull(graph)
            if graph is not None:
                graph.vpush(None)  # the fps filter holds its last frames until the input ends
                pull(graph)
    except av.FFmpegError as err:
        raise ValueError(f"{path} could not be read as a video: {err.strerror}") from None
    if not frames:
        raise ValueError(f"{path} holds no video frames")
    if total > max_frames:
        warnings.warn(f"{path} has {total} frames at {fps} fps; its first {total - max_frames} were skipped "
                      f"and its last {max_frames} are used", UserWarning, stacklevel=2)
    return np.stack(frames)


# A phone stores a portrait video as landscape frames and a display rotation (degrees
# counterclockwise), which the ffmpeg command line applies by itself and a filter graph does not.
_UPRIGHT = {90: [("transpose", "cclock")], 180: [("hflip", None), ("vflip", None)], 270: [("transpose", "clock")]}


def _filters(stream: av.VideoStream, rotation: float, height: int, width: int, fps: int) -> av.filter.Graph:
    """Upright, at `fps`, scaled to cover height × width and centre-cropped, as RGB."""
    import av

    graph = av.filter.Graph()
    graph.link_nodes(
        graph.add_buffer(template=stream),
        *(graph.add(name, args) for name, args in _UPRIGHT.get(round(rotation) % 360, [])),
        graph.add("fps", str(fps)),
        graph.add("scale", f"{width}:{height}:force_original_aspect_ratio=increase"),
        graph.add("crop", f"{width}:{height}"),
        graph.add("format", "rgb24"),
        graph.add("buffersink"),
    ).configure()
    return graph


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
