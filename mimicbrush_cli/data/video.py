"""Video decoding for pair mining: find videos, decode candidate frames upright as RGB.

Frames are decoded forward in presentation order with FFmpeg's frame threading. A candidate frame
is only scaled by FFmpeg to the small gray copy SSIM scores (a fraction of a millisecond); it is
converted to RGB at the stored size when a chosen pair asks for it, so the candidates that end in
no pair (most of them) never pay for the conversion. Decoded frames are held up to a memory budget
(`HOLD_BYTES`, 150 MB for 48 candidates of 1080p); candidates past it are converted on the spot.
When the next candidate lies more than `seek_gap_s` ahead, the decoder seeks to the keyframe before
it and decodes forward from there, instead of decoding every frame in between; a seek per
candidate frame would decode the same GOP again and again.

Every way an input can be unusable raises `SkippedInput` with a short, countable reason, so one bad
file never stops a run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import first_line
from .ssim import ssim_size

if TYPE_CHECKING:  # PyAV loads on first decode: training reads shards and never needs it
    from av.video.reformatter import VideoReformatter

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
_THREAD_STATE = threading.local()


class SkippedInput(Exception):
    """An input that cannot give samples; `reason` is a short slug counted in the summary."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


HOLD_BYTES = 256 << 20  # decoded candidates held per video before the rest are converted on the spot


@dataclass(frozen=True)
class CandidateFrames:
    """Candidate frames of one video, upright. times: seconds (N,); gray: float32 (N, h, w) luma whose
    longer side is the `ssim_side` asked for (None when 0 was asked); `rgb(i)`: uint8 (H, W, 3) RGB of
    candidate i at the stored size, converted on first use; `frames`: all of them stacked."""

    times: np.ndarray
    gray: np.ndarray | None
    decoded_frames: int  # every frame the decoder produced, candidates or not
    rotation: int        # display rotation applied, degrees counter-clockwise
    pixel_format: str    # the stream's native format (gray, yuv420p10le, ...)
    held: list           # per candidate: a decoded frame not converted yet, or its RGB array
    max_side: int = 0

    def rgb(self, index: int) -> np.ndarray:
        item = self.held[index]
        if not isinstance(item, np.ndarray):
            item = self.held[index] = upright(_to_rgb(_reformatter(), item, self.max_side), self.rotation)
        return item

    @property
    def frames(self) -> np.ndarray:
        return np.stack([self.rgb(index) for index in range(len(self.held))])


def find_videos(root: Path) -> list[Path]:
    """Every video under `root` (recursively), sorted, so runs and array jobs agree on the order."""
    return sorted(path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES)


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, multiple of 90) to (H, W, C)."""
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(frame, quarter_turns)) if quarter_turns else frame


def decode_candidates(path: Path, sample_fps: float, max_frames: int, max_side: int = 0,
                      seek_gap_s: float = 4.0, ssim_side: int = 0) -> CandidateFrames:
    """Decode up to `max_frames` frames, `1/sample_fps` s apart or spread over the whole video if longer.

    `max_side` > 0 downscales frames (during the RGB conversion, so it costs nothing extra) so their
    longer side is at most `max_side`; `ssim_side` > 0 also makes each candidate's gray copy for SSIM
    at that size. Raises `SkippedInput` on any unusable input.
    """
    import av

    if path.stat().st_size == 0:
        raise SkippedInput("empty-file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise SkippedInput("unreadable-container", first_line(error)) from None
    try:
        return _decode(container, sample_fps, max_frames, max_side, seek_gap_s, ssim_side)
    except av.error.FFmpegError as error:
        raise SkippedInput("decode-error", first_line(error)) from None
    finally:
        container.close()


def _decode(container, sample_fps: float, max_frames: int, max_side: int, seek_gap_s: float,
            ssim_side: int) -> CandidateFrames:
    import av

    if not container.streams.video:
        raise SkippedInput("no-video-stream", "audio-only or data-only file" if container.streams else "no streams")
    stream = container.streams.video[0]
    codec = stream.codec_context
    if codec is None or not stream.codec_context.name:
        raise SkippedInput("unsupported-codec", "no decoder for the video stream")
    stream.thread_type = "AUTO"
    duration = _duration_s(container, stream)
    step = 1.0 / sample_fps
    if duration and max_frames > 1 and duration / step > max_frames:
        step = duration / max_frames  # spread the candidates over the whole video
    held: list = []
    gray: list[np.ndarray] = []
    times: list[float] = []
    decoded, rotation, pixel_format, held_bytes = 0, 0, "", 0
    next_time = 0.0
    previous_time = -1.0
    frame_iter = container.decode(stream)
    reformatter = _reformatter()
    while len(held) < max_frames:
        try:
            frame = next(frame_iter)
        except StopIteration:
            break
        except av.error.InvalidDataError:
            if held:  # truncated tail: keep what decoded cleanly
                break
            raise
        decoded += 1
        time = float(frame.time) if frame.time is not None else decoded / float(stream.average_rate or 25)
        if time <= previous_time:
            continue  # after a seek the decoder may replay frames already passed
        previous_time = time
        if time + 1e-6 < next_time:
            continue
        rotation = int(getattr(frame, "rotation", 0) or 0)
        pixel_format = frame.format.name
        if ssim_side:
            gray.append(upright(_to_gray(reformatter, frame, ssim_side), rotation))
        size = sum(plane.buffer_size for plane in frame.planes)
        if held_bytes + size <= HOLD_BYTES:
            held.append(frame)
            held_bytes += size
        else:
            held.append(upright(_to_rgb(reformatter, frame, max_side), rotation))
        times.append(time)
        next_time = time + step
        if next_time - time > seek_gap_s and stream.time_base:
            container.seek(int(next_time / stream.time_base), stream=stream, backward=True, any_frame=False)
            frame_iter = container.decode(stream)
    if not held:
        raise SkippedInput("no-frames", "the video stream decoded to nothing")
    return CandidateFrames(np.asarray(times), np.stack(gray) if ssim_side else None, decoded, rotation, pixel_format,
                           held, max_side)


def _reformatter() -> VideoReformatter:
    """One per thread: FFmpeg keeps a scaler set up between frames of the same size and format."""
    from av.video.reformatter import VideoReformatter

    if not hasattr(_THREAD_STATE, "reformatter"):
        _THREAD_STATE.reformatter = VideoReformatter()
    return _THREAD_STATE.reformatter


def _to_gray(reformatter: VideoReformatter, frame, side: int) -> np.ndarray:
    """float32 (h, w) luma at `to_ssim_gray`'s size (area-averaged by FFmpeg)."""
    width, height = ssim_size(frame.width, frame.height, side)
    gray = reformatter.reformat(frame, width=width, height=height, format="gray", interpolation="AREA")
    return gray.to_ndarray().astype(np.float32)


def _to_rgb(reformatter: VideoReformatter, frame, max_side: int) -> np.ndarray:
    # reformat handles gray, 10-bit and every other native format by converting to 8-bit RGB.
    width, height = frame.width, frame.height
    scale = max_side / max(width, height) if max_side else 1.0
    if scale < 1:
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
        return reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                    interpolation="AREA").to_ndarray()
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


def _duration_s(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def decode_throughput(path: Path) -> tuple[int, float]:
    """(frames, seconds) to decode every frame of `path` with the same threading, no conversion.

    The baseline `prepare` is measured against: what PyAV alone costs on the same file."""
    import time

    import av

    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = sum(1 for _ in container.decode(stream))
    return count, time.perf_counter() - start
