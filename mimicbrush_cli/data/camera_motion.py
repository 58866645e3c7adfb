"""Videos from still photos: a smooth, random virtual camera moving over a real photo.

The offline demo set needs more videos than this machine has (four opencv-doc clips). A camera that
pans, zooms, rolls and tilts over a real photo, with a slow exposure drift, gives frame pairs with
the property training needs: two views of the same content that differ visibly in position, scale,
perspective and light. Which photos go to training and which are held out is decided per photo, so
held-out videos show content the model never saw.

    python -m mimicbrush_cli.data.camera_motion OUT_DIR PHOTO_DIR_OR_FILE... [--seed 0]
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import cv2
import numpy as np

from ..imaging import load_image
from ..outputs import write_bytes_atomically

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _smooth_path(rng: np.random.Generator, num_frames: int, low: float, high: float) -> np.ndarray:
    """A slow random walk between two keyframe values, cosine-eased."""
    start, end = rng.uniform(low, high, size=2)
    t = (1 - np.cos(np.linspace(0, np.pi, num_frames))) / 2
    return start + (end - start) * t


def camera_motion_frames(photo: np.ndarray, num_frames: int, size: tuple[int, int],
                         seed: int) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) uint8 of a virtual camera over `photo`; `size` is (width, height)."""
    rng = np.random.default_rng(seed)
    height, width = photo.shape[:2]
    out_width, out_height = size
    zoom = _smooth_path(rng, num_frames, 1.05, 1.45)         # >1: the view is inside the photo
    roll = np.deg2rad(_smooth_path(rng, num_frames, -8, 8))
    centre_x = _smooth_path(rng, num_frames, 0.35, 0.65) * width
    centre_y = _smooth_path(rng, num_frames, 0.35, 0.65) * height
    tilt = _smooth_path(rng, num_frames, -0.08, 0.08)        # perspective: one side nearer than the other
    gain = _smooth_path(rng, num_frames, 0.85, 1.15)
    base_scale = max(out_width / width, out_height / height)
    for index in range(num_frames):
        scale = base_scale * zoom[index]
        cos, sin = np.cos(roll[index]) * scale, np.sin(roll[index]) * scale
        # Photo point (centre) lands at the output centre, rotated and scaled.
        affine = np.array([[cos, -sin, out_width / 2 - (cos * centre_x[index] - sin * centre_y[index])],
                           [sin, cos, out_height / 2 - (sin * centre_x[index] + cos * centre_y[index])],
                           [0, 0, 1]])
        perspective = np.array([[1, 0, 0], [0, 1, 0], [tilt[index] / out_width, 0, 1]])
        shift_in, shift_out = np.eye(3), np.eye(3)
        shift_in[0, 2], shift_out[0, 2] = -out_width / 2, out_width / 2
        homography = shift_out @ perspective @ shift_in @ affine
        frame = cv2.warpPerspective(photo, homography, (out_width, out_height), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT)
        yield np.clip(frame.astype(np.float32) * gain[index], 0, 255).astype(np.uint8)


def encode_video(frames: Iterator[np.ndarray], path: Path, fps: int = 12) -> Path:
    """H.264 MP4 written to a temporary file, then renamed into place."""
    import io

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "18", "preset": "veryfast"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    write_bytes_atomically(path, buffer.getvalue())
    return path


def find_photos(inputs: Sequence[Path]) -> list[Path]:
    photos: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            photos.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES))
        elif item.suffix.lower() in PHOTO_SUFFIXES:
            photos.append(item)
    return photos


def write_camera_motion_videos(photos: Sequence[Path], output_dir: Path, seed: int = 0, num_frames: int = 48,
                               fps: int = 12, size: tuple[int, int] = (320, 240),
                               min_side: int = 200) -> list[Path]:
    """One video per photo (skipping photos smaller than `min_side`); existing videos are kept."""
    written = []
    for photo_path in photos:
        target = Path(output_dir) / f"{photo_path.stem}.mp4"
        if target.exists():
            written.append(target)
            continue
        photo = load_image(photo_path)
        if min(photo.shape[:2]) < min_side:
            continue
        video_seed = seed * 1_000_003 + zlib.crc32(photo_path.name.encode())
        written.append(encode_video(camera_motion_frames(photo, num_frames, size, video_seed), target, fps))
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("photos", type=Path, nargs="+", help="photo files or folders of photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=48)
    arguments = parser.parse_args(argv)
    videos = write_camera_motion_videos(find_photos(arguments.photos), arguments.output_dir, arguments.seed,
                                        arguments.frames)
    print(f"{len(videos)} videos in {arguments.output_dir}")


if __name__ == "__main__":
    main()
