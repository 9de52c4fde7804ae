"""Flip matching on constructed detections and depth maps, where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from forge.perception.flip import flip_views, mirror


def test_mirror_is_an_involution():
    box = (0.1, 0.2, 0.35, 0.6)
    assert mirror(mirror(box)) == pytest.approx(box)
    assert mirror(box) == pytest.approx((0.65, 0.2, 0.9, 0.6))


def test_each_detection_is_matched_to_its_mirror_and_measured_there():
    depth = np.ones((100, 200), np.float32) * 10
    depth[20:60, 20:70] = 3.0  # cup, left
    depth[30:80, 120:180] = 6.0  # bowl, right
    mirrored_depth = depth[:, ::-1].copy()
    cup, bowl = (0.1, 0.2, 0.35, 0.6), (0.6, 0.3, 0.9, 0.8)
    boxes = [("cup", cup), ("bowl", bowl), ("lamp", (0.4, 0.0, 0.5, 0.1))]
    flipped = [("bowl", mirror(bowl)), ("cup", mirror((0.11, 0.2, 0.36, 0.6))), ("lamp", (0.0, 0.9, 0.05, 1.0))]
    views = flip_views(boxes, flipped, mirrored_depth, percentile=10)
    assert views[0][0] == 3.0 and views[1][0] == 6.0  # same depth in the mirrored picture
    assert views[0][1] > views[1][1]  # the cup, left in the original, is right of the bowl when mirrored
    assert views[2] == (None, None)  # the lamp is not found again where it should be


def test_a_mirror_detection_of_another_label_does_not_match():
    views = flip_views([("cup", (0.1, 0.1, 0.3, 0.3))], [("bowl", mirror((0.1, 0.1, 0.3, 0.3)))],
                       np.ones((10, 10), np.float32), percentile=10)
    assert views == [(None, None)]
