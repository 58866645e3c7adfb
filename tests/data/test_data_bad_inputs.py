"""Every kind of bad input is skipped, counted by reason and listed; the run goes on."""

import numpy as np
import pytest

from mimicbrush_cli.data.prepare import prepare
from mimicbrush_cli.data.ssim import to_ssim_gray
from mimicbrush_cli.data.video import decode_candidates


EXPECTED_SKIPS = {
    "empty.mp4": "empty-file",
    "garbage.mov": "unreadable-container",
    "truncated.mp4": "unreadable-container",
    "audio_only.mp4": "no-video-stream",
    "unsupported.avi": "unsupported-codec",
}


def test_bad_videos_are_skipped_counted_and_listed(tmp_path, bad_video_folder, config_for_tiny_videos):
    summary = prepare(tmp_path / "out", config_for_tiny_videos(), videos=bad_video_folder)
    listed = {entry["id"].removeprefix("video:"): entry["reason"] for entry in summary.skipped}
    assert listed == EXPECTED_SKIPS
    for reason in set(EXPECTED_SKIPS.values()):
        assert summary.rejects[f"input:{reason}"] == list(EXPECTED_SKIPS.values()).count(reason)
    assert summary.video_pairs == 3  # the good video still gives its pairs


def test_rotated_video_frames_come_out_upright(tmp_path, make_video, photo_frames):
    frames = photo_frames["astronaut"][:10]
    plain = decode_candidates(make_video(tmp_path / "plain.mp4", frames), 10, 10)
    rotated = decode_candidates(make_video(tmp_path / "rotated.mp4", frames, rotation=90), 10, 10, ssim_side=32)
    assert rotated.rotation == 90 and rotated.frames.shape[1:3] == (64, 48)
    # The gray copies SSIM scores come straight from the decoder: upright too.
    assert rotated.gray.shape == (10, 32, 24)
    assert np.abs(rotated.gray - np.stack([to_ssim_gray(frame, 32) for frame in rotated.frames])).mean() < 3
    # Display rotation 90 is counter-clockwise: the upright frame is the stored one turned left.
    upright = np.rot90(plain.frames, 1, axes=(1, 2)).astype(float)
    assert np.abs(rotated.frames - upright).mean() < 2
    assert np.abs(rotated.frames - np.rot90(plain.frames, -1, axes=(1, 2))).mean() > 20


@pytest.mark.parametrize("codec, pix_fmt", [("ffv1", "gray"), ("libx264", "yuv420p10le")], ids=["gray", "10-bit"])
def test_gray_and_10_bit_videos_decode_to_8_bit_rgb(tmp_path, make_video, photo_frames, codec, pix_fmt):
    frames = photo_frames["astronaut"][:10]
    candidates = decode_candidates(make_video(tmp_path / "video.mkv", frames, codec=codec, pix_fmt=pix_fmt), 10, 10)
    assert candidates.pixel_format == pix_fmt
    assert candidates.frames.dtype == np.uint8 and candidates.frames.shape == (10, 48, 64, 3)
    gray = np.asarray(frames).mean(axis=-1)
    assert np.abs(candidates.frames.mean(axis=-1) - gray).mean() < 12


def test_bad_sam_inputs_are_skipped_counted_and_listed(tmp_path, write_sa1b, config_for_tiny_videos):
    from skimage import data

    folder = tmp_path / "sam"
    folder.mkdir()
    image = data.coffee()[::4, ::4].copy()
    good = np.zeros(image.shape[:2], bool)
    good[20:70, 30:90] = True
    write_sa1b(folder, "good", image, [good])
    write_sa1b(folder, "broken_json", image, [good]).with_suffix(".json").write_text("{not json")
    write_sa1b(folder, "wrong_size", image, [np.zeros((10, 10), bool)])
    write_sa1b(folder, "no_json", image, [good]).with_suffix(".json").unlink()
    write_sa1b(folder, "zero", image, [good]).with_suffix(".jpg").write_bytes(b"")
    summary = prepare(tmp_path / "out", config_for_tiny_videos(), sam_images=folder)
    listed = {entry["id"]: entry["reason"] for entry in summary.skipped}
    assert listed == {"sam:sa_broken_json.jpg": "malformed-json", "sam:sa_no_json.jpg": "missing-json",
                      "sam:sa_wrong_size.jpg": "no-usable-masks", "sam:sa_zero.jpg": "unreadable-image"}
    assert "rle-size-mismatch=1" in {entry["id"]: entry["detail"] for entry in summary.skipped}["sam:sa_wrong_size.jpg"]
    assert summary.sam_samples == 1
