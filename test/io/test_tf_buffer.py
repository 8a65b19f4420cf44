"""TransformBuffer: chaining, interpolation (slerp against the textbook sine formula), errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from transforms3d import axangles, quaternions

from perception_nodes.io.messages import default_message_types
from perception_nodes.io.tf_buffer import (TransformBuffer, TransformError, slerp, tf_message,
                                           transform_stamped_msg)

MSGS = default_message_types()
S = 1_000_000_000


def rt(axis, angle, t):
    out = np.eye(4)
    out[:3, :3] = axangles.axangle2mat(axis, angle)
    out[:3, 3] = t
    return out


def textbook_slerp(q0, q1, t):
    """Shoemake: (sin((1-t)θ) q0 + sin(tθ) q1) / sin θ, on the shorter arc."""
    if np.dot(q0, q1) < 0:
        q1 = -q1
    theta = math.acos(min(1.0, float(np.dot(q0, q1))))
    if theta < 1e-9:
        return q0
    return (math.sin((1 - t) * theta) * q0 + math.sin(t * theta) * q1) / math.sin(theta)


def test_slerp_matches_textbook_formula():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q0, q1 = (q / np.linalg.norm(q) for q in rng.normal(size=(2, 4)))
        t = rng.uniform()
        got, want = slerp(q0, q1, t), textbook_slerp(q0, q1, t)
        assert quaternions.nearly_equivalent(got, want, atol=1e-9)


def robot() -> TransformBuffer:
    buf = TransformBuffer()
    buf.set_transform('map', 'odom', rt([0, 0, 1], 0.0, [0, 0, 0]), 0, static=False)
    buf.set_transform('map', 'odom', rt([0, 0, 1], math.pi / 2, [2, 0, 0]), S, static=False)
    buf.set_transform('odom', 'base', np.eye(4), 0, static=True)
    buf.set_transform('base', 'lidar', rt([1, 0, 0], 0.1, [0.5, 0, 1.8]), 0, static=True)
    buf.set_transform('base', 'camera', rt([0, 1, 0], -0.2, [1.0, 0.1, 1.5]), 0, static=True)
    return buf


def test_chain_through_the_tree_both_directions():
    buf = robot()
    T_base_lidar = rt([1, 0, 0], 0.1, [0.5, 0, 1.8])
    T_base_cam = rt([0, 1, 0], -0.2, [1.0, 0.1, 1.5])
    T_cam_lidar = buf.lookup('camera', 'lidar', S // 2)
    np.testing.assert_allclose(T_cam_lidar, np.linalg.inv(T_base_cam) @ T_base_lidar, atol=1e-12)
    np.testing.assert_allclose(buf.lookup('lidar', 'camera', 123), np.linalg.inv(T_cam_lidar), atol=1e-12)
    np.testing.assert_allclose(buf.lookup('lidar', 'lidar', 5), np.eye(4))
    assert set(buf.frames) == {'map', 'odom', 'base', 'lidar', 'camera'}


def test_interpolation_known_answer():
    buf = robot()
    # a quarter of the way: 22.5 degrees about z, 0.5 m along x
    T = buf.lookup('map', 'odom', S // 4)
    np.testing.assert_allclose(T, rt([0, 0, 1], math.pi / 8, [0.5, 0, 0]), atol=1e-12)
    # a lidar point 1 m ahead, through the whole chain, at the end sample
    p_map = buf.lookup('map', 'lidar', S) @ np.array([1.0, 0, 0, 1])
    expected = rt([0, 0, 1], math.pi / 2, [2, 0, 0]) @ rt([1, 0, 0], 0.1, [0.5, 0, 1.8]) @ [1.0, 0, 0, 1]
    np.testing.assert_allclose(p_map, expected, atol=1e-12)
    np.testing.assert_allclose(buf.lookup('map', 'odom'), rt([0, 0, 1], math.pi / 2, [2, 0, 0]), atol=1e-12)


def test_tf_messages_use_ros_quaternion_order():
    half = math.sqrt(0.5)
    msg = tf_message([transform_stamped_msg('base', 'cam', ([1, 2, 3], [0, 0, half, half]), 7 * S)])
    msg = MSGS.deserialize(MSGS.serialize(msg), 'tf2_msgs/msg/TFMessage')
    assert msg.transforms[0].transform.rotation.w == pytest.approx(half)
    buf = TransformBuffer()
    assert buf.add_tf_message(msg, static=True) == 1
    T = buf.lookup('base', 'cam', 0)                  # static: any time
    np.testing.assert_allclose(T @ [1, 0, 0, 1], [1, 3, 3, 1], atol=1e-12)   # x axis -> y axis, then +t


def test_errors_are_clear():
    buf = robot()
    with pytest.raises(TransformError, match="frame 'nowhere' does not exist"):
        buf.lookup('nowhere', 'lidar', 0)
    with pytest.raises(TransformError, match='after the newest'):
        buf.lookup('map', 'lidar', 2 * S)
    with pytest.raises(TransformError, match='before the oldest'):
        buf.lookup('map', 'lidar', -S)
    np.testing.assert_allclose(buf.lookup('map', 'odom', S + 10, tolerance_ns=100),
                               buf.lookup('map', 'odom', S))
    buf.set_transform('world', 'other', np.eye(4), 0, static=True)
    with pytest.raises(TransformError, match='not connected'):
        buf.lookup('other', 'lidar', 0)
    assert issubclass(TransformError, LookupError) and not buf.can_transform('other', 'lidar', 0)
    with pytest.raises(ValueError, match='loop'):
        buf.set_transform('lidar', 'map', np.eye(4), 0, static=True)
    with pytest.raises(ValueError, match='quaternion'):
        buf.set_transform('a', 'b', ([0, 0, 0], [0, 0, 0, 0]), 0)
    with pytest.raises(ValueError, match='rotation'):
        buf.set_transform('a', 'b', np.diag([1.0, 1.0, -1.0, 1.0]), 0)


def test_cache_drops_old_samples():
    buf = TransformBuffer(cache_ns=2 * S)
    for i in range(6):
        buf.set_transform('odom', 'base', rt([0, 0, 1], 0.0, [i, 0, 0]), i * S)
    np.testing.assert_allclose(buf.lookup('odom', 'base', int(4.5 * S))[0, 3], 4.5)
    with pytest.raises(TransformError, match='too old'):
        buf.lookup('odom', 'base', 2 * S)


def test_one_bad_transform_does_not_discard_the_others():
    """Issue 15 item 4: a /tf_static message whose FIRST transform has a NaN quaternion lost the camera."""
    nan_q = transform_stamped_msg('base', 'broken', np.eye(4), 0)
    nan_q.transform.rotation.x = float('nan')
    zero_q = transform_stamped_msg('base', 'zero', np.eye(4), 0)
    zero_q.transform.rotation.w = 0.0
    inf_t = transform_stamped_msg('base', 'far', np.eye(4), 0)
    inf_t.transform.translation.y = float('inf')
    self_loop = transform_stamped_msg('cam', 'cam', np.eye(4), 0)
    good_cam = transform_stamped_msg('base', 'cam', rt([0, 1, 0], -0.2, [1.0, 0.1, 1.5]), 0)
    good_lidar = transform_stamped_msg('base', 'lidar', rt([1, 0, 0], 0.1, [0.5, 0, 1.8]), 0)
    loop = transform_stamped_msg('lidar', 'base', np.eye(4), 0)        # after lidar: would close a loop
    msg = tf_message([nan_q, good_cam, zero_q, inf_t, self_loop, good_lidar, loop])
    msg = MSGS.deserialize(MSGS.serialize(msg), 'tf2_msgs/msg/TFMessage')      # NaN survives CDR
    msg.transforms.append('not a transform')
    buf = TransformBuffer()
    result = buf.add_tf_message(msg, static=True)
    assert result.accepted == 2 and result == 2 and int(result) == 2
    assert [i for i, _ in result.rejected] == [0, 2, 3, 4, 6, 7]
    reasons = dict(result.rejected)
    assert 'quaternion' in reasons[0] and 'quaternion' in reasons[2]
    assert 'non-finite translation' in reasons[3] and 'to itself' in reasons[4]
    assert 'loop' in reasons[6] and 'not a TransformStamped' in reasons[7]
    np.testing.assert_allclose(buf.lookup('cam', 'lidar', 0),
                               np.linalg.inv(rt([0, 1, 0], -0.2, [1.0, 0.1, 1.5]))
                               @ rt([1, 0, 0], 0.1, [0.5, 0, 1.8]), atol=1e-12)
    assert set(buf.frames) == {'base', 'cam', 'lidar'}
    with pytest.raises(ValueError, match='not a TFMessage'):
        buf.add_tf_message(MSGS.new('std_msgs/msg/String', data='x'), static=True)
