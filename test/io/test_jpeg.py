"""JPEG size from the frame header, without decoding."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception_nodes.io.jpeg import is_jpeg, jpeg_size


@pytest.mark.parametrize('progressive', [0, 1])
def test_encoded_sizes(progressive):
    for h, w in ((1, 1), (37, 65), (968, 1296)):
        image = np.zeros((h, w, 3), np.uint8)
        ok, data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])
        assert ok and jpeg_size(data.tobytes()) == (w, h)


def test_real_files(nuscenes_keyframe_dir, scannet_scene_dir):
    files = sorted(nuscenes_keyframe_dir.glob('*.jpg'))
    files += sorted((scannet_scene_dir / 'posed_images').glob('*.jpg'))
    assert len(files) == 9
    for path in files:
        data = path.read_bytes()
        h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        assert jpeg_size(data) == (w, h) in ((1600, 900), (1296, 968))


def test_not_a_jpeg():
    ok, png = cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))
    assert not is_jpeg(png.tobytes())
    with pytest.raises(ValueError, match='not a JPEG'):
        jpeg_size(png.tobytes())
    ok, data = cv2.imencode('.jpg', np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match='no start-of-frame header'):
        jpeg_size(data.tobytes()[:20])
