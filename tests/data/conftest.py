"""Fixtures for the data tests: tiny videos encoded here with PyAV, SA-1B-style folders from real photos."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from mimicbrush_cli.data.sam import rle_encode
from mimicbrush_cli.data.prepare import PrepareConfig

WIDTH, HEIGHT, FPS = 64, 48, 10


def panning_frames(photo: np.ndarray, count: int, speed: float = 0.5) -> list[np.ndarray]:
    """A camera panning across a real photo at `speed` output pixels per frame: SSIM falls with the gap."""
    scale = 2 * HEIGHT / photo.shape[0]
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frames = []
    for index in range(count):
        shift = np.float32([[1, 0, -index * speed], [0, 1, -HEIGHT / 2]])
        frames.append(cv2.warpAffine(small, shift, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR))
    return frames


def encode_video(path: Path, frames: list[np.ndarray], codec: str = "libx264", pix_fmt: str = "yuv420p",
                 rotation: int = 0, fps: int = FPS) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def encode_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(10):
            samples = (np.sin(np.arange(1024) / 8.0 + index) * 0.3).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def photo_frames():
    return {"astronaut": panning_frames(data.astronaut(), 30), "coffee": panning_frames(data.coffee(), 24, 0.5)}


@pytest.fixture(scope="session")
def video_folder(tmp_path_factory, photo_frames):
    folder = tmp_path_factory.mktemp("videos")
    (folder / "nested").mkdir()
    encode_video(folder / "astronaut.mp4", photo_frames["astronaut"])
    encode_video(folder / "nested" / "coffee.mkv", photo_frames["coffee"], codec="libvpx-vp9")
    return folder


def fast_config(**overrides) -> PrepareConfig:
    """Settings for 3-second 64x48 test videos."""
    values = dict(sample_fps=5.0, max_candidate_frames=20, min_gap_s=0.4, max_gap_s=2.0, ssim_min=0.15,
                  ssim_max=0.6, max_pairs_per_video=3, ssim_side=48, frame_max_side=64, inputs_per_shard=2)
    return PrepareConfig(**(values | overrides))


def write_sa1b_item(folder: Path, name: str, image: np.ndarray, masks: list[np.ndarray],
                    uncompressed: bool = False, **annotation_fields) -> Path:
    """One `sa_<name>.jpg` + `.json` pair in SA-1B's layout."""
    from PIL import Image

    image_path = folder / f"sa_{name}.jpg"
    Image.fromarray(image).save(image_path, quality=95)
    annotations = []
    for index, mask in enumerate(masks):
        rle = rle_encode(mask)
        if uncompressed:
            flat = mask.flatten(order="F").astype(np.int8)
            changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
            rle = {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], changes])).tolist()}
        annotations.append({"id": index, "segmentation": rle, "area": int(mask.sum()),
                            "predicted_iou": 0.95, "stability_score": 0.97, **annotation_fields})
    record = {"image": {"image_id": 1, "width": image.shape[1], "height": image.shape[0],
                        "file_name": image_path.name}, "annotations": annotations}
    image_path.with_suffix(".json").write_text(json.dumps(record))
    return image_path


def ellipse_mask(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 < 1


@pytest.fixture(scope="session")
def sam_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam")
    for name, photo, centre in (("1", data.chelsea(), (110, 230)), ("2", data.coffee(), (200, 300))):
        photo = cv2.resize(photo, (photo.shape[1] // 3, photo.shape[0] // 3), interpolation=cv2.INTER_AREA)
        shape = photo.shape[:2]
        centre = (centre[0] / 3, centre[1] / 3)
        masks = [ellipse_mask(shape, centre, (30, 35)), ellipse_mask(shape, centre, (2, 2))]  # kept, too small
        write_sa1b_item(folder, name, photo, masks, uncompressed=name == "2")
    return folder


@pytest.fixture
def make_video():
    return encode_video


@pytest.fixture
def config_for_tiny_videos():
    return fast_config


@pytest.fixture
def write_sa1b():
    return write_sa1b_item


@pytest.fixture
def make_audio_only():
    return encode_audio_only


@pytest.fixture(scope="session")
def bad_video_folder(tmp_path_factory, photo_frames):
    """One good video and one of each kind of bad input."""
    folder = tmp_path_factory.mktemp("bad_videos")
    good = encode_video(folder / "good.mp4", photo_frames["astronaut"])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mov").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    data_bytes = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data_bytes[:len(data_bytes) // 2])
    encode_audio_only(folder / "audio_only.mp4")
    avi = encode_video(folder / "unsupported.avi", photo_frames["coffee"], codec="mpeg4")
    # An unknown FourCC: the container opens, no decoder exists for the stream.
    avi.write_bytes(avi.read_bytes().replace(b"FMP4", b"ZZZZ"))
    return folder


@pytest.fixture(scope="session")
def make_video_session():
    return encode_video


@pytest.fixture(scope="session")
def make_panning_frames():
    return panning_frames
