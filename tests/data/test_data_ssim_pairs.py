from pathlib import Path

import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from mimicbrush_cli.data.camera_motion import camera_motion_frames, encode_video
from mimicbrush_cli.data.pairs import candidate_pairs, select_pairs
from mimicbrush_cli.data.ssim import ssim_pairs_opencv, ssim_pairs_skimage, ssim_pairs_torch, to_ssim_gray
from mimicbrush_cli.data.video import decode_candidates

OPENCV_DOC_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")  # Debian's opencv-doc, if installed


@pytest.fixture(scope="module")
def gray_frames(photo_frames):
    return np.stack([to_ssim_gray(frame, 64) for frame in photo_frames["astronaut"][:12]])


@pytest.mark.parametrize("vectorised", [ssim_pairs_torch, ssim_pairs_opencv], ids=["torch", "opencv"])
def test_vectorised_ssim_agrees_with_scikit_image(gray_frames, vectorised):
    pairs = np.array([(0, 1), (0, 5), (2, 11), (7, 3), (4, 4)])
    expected = [structural_similarity(gray_frames[i], gray_frames[j], data_range=255) for i, j in pairs]
    np.testing.assert_allclose(vectorised(gray_frames, pairs), expected, atol=1e-5)
    np.testing.assert_allclose(ssim_pairs_skimage(gray_frames, pairs), expected, atol=1e-12)


def test_vectorised_ssim_agrees_with_scikit_image_on_different_photos():
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    gray = np.stack([to_ssim_gray(photo[:300, :400], 96) for photo in photos])
    pairs = np.array([(i, j) for i in range(4) for j in range(4)])
    np.testing.assert_allclose(ssim_pairs_opencv(gray, pairs), ssim_pairs_skimage(gray, pairs), atol=1e-5)


@pytest.fixture(scope="module", params=["camera-motion", "opencv-doc"])
def decoded_video(request, tmp_path_factory):
    """A real video decoded as `prepare` decodes it: H.264 of a camera over a real photo, or an opencv-doc clip."""
    if request.param == "opencv-doc":
        if not OPENCV_DOC_VIDEO.is_file():
            pytest.skip("Debian's opencv-doc videos are not installed")
        return decode_candidates(OPENCV_DOC_VIDEO, sample_fps=2.0, max_frames=20, ssim_side=96)
    path = tmp_path_factory.mktemp("camera") / "coffee.mp4"
    encode_video(camera_motion_frames(data.coffee(), num_frames=36, size=(320, 240), seed=0), path)
    return decode_candidates(path, sample_fps=6.0, max_frames=18, ssim_side=96)


def test_fast_ssim_agrees_with_scikit_image_on_decoded_video_frames_and_picks_the_same_pairs(decoded_video):
    gray = np.stack([to_ssim_gray(frame, 96) for frame in decoded_video.frames])
    pairs = np.array([(i, j) for i in range(len(gray)) for j in range(len(gray)) if i != j])
    expected = [structural_similarity(gray[i], gray[j], data_range=255) for i, j in pairs]
    assert np.ptp(expected) > 0.3  # pairs from near-copies to different views, not one kind
    np.testing.assert_allclose(ssim_pairs_opencv(gray, pairs), expected, rtol=0, atol=1e-5)
    window = dict(ssim_min=0.3, ssim_max=0.7, min_gap_s=0.4, max_gap_s=0, max_pairs=6, ssim_side=96)
    fast = select_pairs(decoded_video.frames, decoded_video.times, backend="opencv", **window)
    reference = select_pairs(decoded_video.frames, decoded_video.times, backend="skimage", **window)
    assert len(reference.pairs) > 0
    np.testing.assert_array_equal(fast.pairs, reference.pairs)


def test_candidate_pairs_respect_min_and_max_gap():
    times = np.arange(10) * 0.5
    pairs = candidate_pairs(times, min_gap_s=1.0, max_gap_s=2.0)
    gaps = times[pairs[:, 1]] - times[pairs[:, 0]]
    assert len(pairs) == 8 + 7 + 6
    assert gaps.min() == 1.0 and gaps.max() == 2.0


def test_pair_selection_honours_ssim_window_gap_and_cap(photo_frames):
    frames = np.stack(photo_frames["astronaut"])
    times = np.arange(len(frames)) / 10
    selection = select_pairs(frames, times, ssim_min=0.3, ssim_max=0.6, min_gap_s=0.2, max_gap_s=1.0,
                             max_pairs=4, ssim_side=64)
    assert len(selection.pairs) == 4
    gaps = times[selection.pairs[:, 1]] - times[selection.pairs[:, 0]]
    assert (gaps >= 0.2 - 1e-9).all() and (gaps <= 1.0 + 1e-9).all()
    assert ((selection.scores >= 0.3) & (selection.scores <= 0.6)).all()
    assert len(np.unique(selection.pairs)) == 8  # every frame in at most one pair
    gray = np.stack([to_ssim_gray(frame, 64) for frame in frames])
    np.testing.assert_allclose(selection.scores, ssim_pairs_skimage(gray, selection.pairs), atol=1e-5)
    assert selection.rejected_too_similar > 0 and selection.rejected_too_different > 0


def test_pair_selection_finds_nothing_outside_window(photo_frames):
    frames = np.stack(photo_frames["astronaut"][:10])
    selection = select_pairs(frames, np.arange(10) / 10, ssim_min=0.99, ssim_max=1.0, min_gap_s=0.5, max_gap_s=0,
                             max_pairs=4, ssim_side=64)
    assert len(selection.pairs) == 0 and len(selection.all_scores) > 0


def test_candidates_scored_from_the_decoders_gray_pick_the_pairs_of_their_rgb_frames(decoded_video, tmp_path):
    """`prepare` scores FFmpeg's small gray copies and converts only chosen frames to RGB; the scores
    must be those of the RGB frames' gray, up to the luma rounding of two conversions."""
    assert decoded_video.gray is not None
    from_rgb = np.stack([to_ssim_gray(frame, 96) for frame in decoded_video.frames])
    assert decoded_video.gray.shape == from_rgb.shape and decoded_video.gray.dtype == np.float32
    assert np.abs(decoded_video.gray - from_rgb).mean() < 3
    window = dict(ssim_min=0.3, ssim_max=0.7, min_gap_s=0.4, max_gap_s=0, max_pairs=6, ssim_side=96)
    gray = select_pairs(decoded_video.gray, decoded_video.times, **window)
    rgb = select_pairs(decoded_video.frames, decoded_video.times, **window)
    np.testing.assert_allclose(gray.all_scores, rgb.all_scores, atol=0.03)
    assert len(gray.pairs) > 0


def test_candidates_past_the_memory_budget_are_converted_at_once_to_the_same_frames(tmp_path, monkeypatch):
    from mimicbrush_cli.data import video

    path = tmp_path / "coffee.mp4"
    encode_video(camera_motion_frames(data.coffee(), num_frames=12, size=(160, 120), seed=0), path)
    lazy = decode_candidates(path, sample_fps=12.0, max_frames=12, max_side=100)
    assert not any(isinstance(item, np.ndarray) for item in lazy.held)  # nothing converted before it is asked for
    monkeypatch.setattr(video, "HOLD_BYTES", 4 * sum(plane.buffer_size for plane in lazy.held[0].planes))
    eager = decode_candidates(path, sample_fps=12.0, max_frames=12, max_side=100)
    assert [isinstance(item, np.ndarray) for item in eager.held] == [False] * 4 + [True] * 8
    assert eager.frames.shape == (12, 75, 100, 3)
    np.testing.assert_array_equal(eager.frames, lazy.frames)
