"""Editors that learn nothing, to stand beside a model in `benchmark recon`.

- `mean_fill`: the mask filled with the reference's mean colour. It knows the reference's global colour
  and nothing else; a model that merely takes the reference's tones cannot beat it by much.
- `homography_fill`: classical imitation. SIFT features of the source *outside* the mask are matched to
  the reference's (Lowe's ratio test), a homography is fitted with RANSAC, and the reference is warped
  into the source's frame and pasted into the mask. On camera-motion pairs (a moving camera over a
  mostly planar or distant scene) this is close to the answer: the target a learned imitator should
  approach. Where too few features match, it falls back to the mean fill (the record says so).

Both paste their prediction through the same blurred mask as the pipeline (`imaging.paste_back`), so
every editor is scored on equal terms near the mask's edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..imaging import BLEND_BLUR_PASSES, paste_back

MIN_MATCHES = 8          # fewer matches than this: no homography is fitted
MIN_INLIERS = 6          # fewer RANSAC inliers than this: the fit is not trusted
RATIO_TEST = 0.75        # Lowe's ratio
RANSAC_THRESHOLD = 3.0   # reprojection error in source pixels


def reference_mean_colour(reference: np.ndarray) -> np.ndarray:
    return reference.reshape(-1, 3).mean(axis=0)


def _mean_colour_prediction(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """A prediction of the source's size, all of the reference's mean colour."""
    prediction = np.empty_like(source)
    prediction[:] = np.rint(reference_mean_colour(reference)).astype(np.uint8)
    return prediction


def mean_fill(source: np.ndarray, reference: np.ndarray, mask: np.ndarray, *, keep_shape: bool = False,
              seed: int = 0) -> np.ndarray:
    """The source with its mask painted the reference's mean colour (through the blend mask)."""
    return paste_back(source, _mean_colour_prediction(source, reference), mask)


@dataclass(frozen=True)
class HomographyFit:
    matrix: np.ndarray | None  # (3, 3) reference → source, or None when no trusted fit
    matches: int
    inliers: int


def fit_homography(source: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> HomographyFit:
    """Reference → source homography from SIFT matches of the source's unmasked pixels."""
    sift = cv2.SIFT_create()
    # Keypoints whose descriptor window reaches into the (unknown) masked area would match by chance.
    outside = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    source_points, source_features = sift.detectAndCompute(cv2.cvtColor(source, cv2.COLOR_RGB2GRAY),
                                                           outside.astype(np.uint8) * 255)
    reference_points, reference_features = sift.detectAndCompute(cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY), None)
    if source_features is None or reference_features is None or len(source_features) < 2 or len(reference_features) < 2:
        return HomographyFit(None, 0, 0)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(reference_features, source_features, k=2)
    good = [first for first, second in (pair for pair in pairs if len(pair) == 2)
            if first.distance < RATIO_TEST * second.distance]
    if len(good) < MIN_MATCHES:
        return HomographyFit(None, len(good), 0)
    from_points = np.float32([reference_points[match.queryIdx].pt for match in good])
    to_points = np.float32([source_points[match.trainIdx].pt for match in good])
    matrix, inlier_mask = cv2.findHomography(from_points, to_points, cv2.RANSAC, RANSAC_THRESHOLD)
    inliers = int(inlier_mask.sum()) if inlier_mask is not None else 0
    if matrix is None or inliers < MIN_INLIERS:
        return HomographyFit(None, len(good), inliers)
    return HomographyFit(matrix, len(good), inliers)


def homography_fill(source: np.ndarray, reference: np.ndarray, mask: np.ndarray, *, keep_shape: bool = False,
                    seed: int = 0) -> np.ndarray:
    """The reference warped into the source's frame fills the mask; mean colour where the warp has no pixels
    or no homography could be fitted."""
    fit = fit_homography(source, reference, mask)
    prediction = _mean_colour_prediction(source, reference)
    if fit.matrix is not None:
        height, width = source.shape[:2]
        warped = cv2.warpPerspective(reference, fit.matrix, (width, height), flags=cv2.INTER_LINEAR)
        covered = cv2.warpPerspective(np.ones(reference.shape[:2], np.uint8), fit.matrix, (width, height),
                                      flags=cv2.INTER_NEAREST) > 0
        prediction[covered] = warped[covered]
    return paste_back(source, prediction, mask)


# The blurred blend reaches this far inside the mask: structure there is partly the source's own.
BLEND_MARGIN = BLEND_BLUR_PASSES + 1
