"""Transform messages -> matrices; the static extrinsics cache."""
from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.io.messages import default_message_types
from perception_nodes.runtime.extrinsics import ExtrinsicsCache, TransformUnavailable, transform_to_matrix


def _transform(q_xyzw, t):
    msgs = default_message_types()
    x, y, z, w = q_xyzw
    return msgs.new('geometry_msgs/msg/TransformStamped', child_frame_id='velodyne', transform=msgs.new(
        'geometry_msgs/msg/Transform',
        translation=msgs.new('geometry_msgs/msg/Vector3', x=t[0], y=t[1], z=t[2]),
        rotation=msgs.new('geometry_msgs/msg/Quaternion', x=x, y=y, z=z, w=w)))


def test_quarter_turn_about_z():
    s = np.sqrt(0.5)
    m = transform_to_matrix(_transform((0, 0, s, s), (1.0, 2.0, 3.0)))
    # x axis -> y axis, then translate
    assert np.allclose(m @ [1, 0, 0, 1], [1, 3, 3, 1])
    assert np.allclose(m[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]])


def test_unnormalised_quaternion_is_normalised_and_zero_rejected():
    assert np.allclose(transform_to_matrix(_transform((0, 0, 0, 2.0), (0, 0, 0))), np.eye(4))
    with pytest.raises(ValueError, match='quaternion'):
        transform_to_matrix(_transform((0, 0, 0, 0), (0, 0, 0)))


def test_static_cache_looks_up_once_dynamic_every_time(make_lookup):
    T = np.eye(4)
    T[0, 3] = 5.0
    calls = []
    lookup = make_lookup({('camera', 'lidar'): T}, calls)
    static = ExtrinsicsCache(lookup, static=True)
    for stamp in (1, 2, 3):
        assert np.allclose(static.get('camera', 'lidar', stamp), T)
    assert len(calls) == 1
    dynamic = ExtrinsicsCache(lookup, static=False)
    for stamp in (1, 2, 3):
        dynamic.get('camera', 'lidar', stamp)
    assert [c[2] for c in calls[1:]] == [1, 2, 3]       # looked up at each cloud stamp
    assert np.allclose(static.get('lidar', 'lidar', 0), np.eye(4))


def test_missing_transform_is_reported_not_raised_raw(make_lookup):
    cache = ExtrinsicsCache(make_lookup({}), static=True)
    with pytest.raises(TransformUnavailable, match="'lidar' -> 'camera'.*does not exist"):
        cache.get('camera', 'lidar', 7)
    bad = ExtrinsicsCache(lambda *a: np.full((4, 4), np.nan))
    with pytest.raises(TransformUnavailable, match='finite'):
        bad.get('camera', 'lidar', 7)
