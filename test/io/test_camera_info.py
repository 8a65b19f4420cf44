"""CameraInfo <-> CameraModel round trips, ROS 1 field names, and clear errors for bad sizes."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from perception_nodes.frame import CameraModel
from perception_nodes.io.camera_info import camera_info_msg, camera_model_from_msg
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.stamps import stamp_to_ns

MSGS = default_message_types()
K = np.array([[721.5, 0, 609.5], [0, 721.5, 172.8], [0, 0, 1]])


@pytest.mark.parametrize('model, d', [('plumb_bob', [0.1, -0.2, 0.001, 0.002, 0.05]),
                                      ('rational_polynomial', np.arange(8) * 0.01),
                                      ('equidistant', [0.1, 0.01, -0.001, 0.0001]),
                                      ('none', [])])
def test_round_trip_through_cdr(model, d):
    P = np.hstack([K, [[44.857], [0.216], [0.0027]]])
    cam = CameraModel('camera_2', 1242, 375, K, d, model, R=np.eye(3), P=P)
    msg = camera_info_msg(cam, 1_500_000_000)
    back = camera_model_from_msg(MSGS.deserialize(MSGS.serialize(msg), 'sensor_msgs/msg/CameraInfo'))
    assert stamp_to_ns(msg.header.stamp) == 1_500_000_000
    assert (back.frame_id, back.width, back.height) == ('camera_2', 1242, 375)
    np.testing.assert_array_equal(back.K, K)
    np.testing.assert_array_equal(back.P, P)
    if model == 'none':
        assert back.distortion_model == 'plumb_bob' and back.is_rectified and not back.D.any()
    else:
        assert back.distortion_model == model
        np.testing.assert_array_equal(back.D, d)


def test_unset_r_and_p_and_ros1_names():
    msg = SimpleNamespace(header=SimpleNamespace(frame_id='/cam'), width=640, height=480,
                          distortion_model='', D=[], K=K.reshape(-1).tolist(), R=[0.0] * 9, P=[0.0] * 12,
                          binning_x=0, binning_y=0)
    cam = camera_model_from_msg(msg)
    assert cam.frame_id == 'cam' and cam.distortion_model == 'none'
    np.testing.assert_array_equal(cam.R, np.eye(3))
    np.testing.assert_array_equal(cam.P, np.hstack([K, np.zeros((3, 1))]))


@pytest.mark.parametrize('change, match', [
    (dict(k=np.zeros(9)), 'uncalibrated'),
    (dict(width=0), 'image size'),
    (dict(d=np.zeros(3)), 'coefficients'),
    (dict(distortion_model='kannala'), 'unsupported distortion model'),
    (dict(binning_x=2), 'binning_x'),
])
def test_bad_camera_info(change, match):
    fields = dict(width=10, height=10, distortion_model='plumb_bob', d=np.zeros(5), k=K.reshape(-1))
    fields.update(change)
    with pytest.raises(ValueError, match=match):
        camera_model_from_msg(MSGS.new('sensor_msgs/msg/CameraInfo', **fields))


def test_wrong_matrix_size():
    msg = SimpleNamespace(header=SimpleNamespace(frame_id='c'), width=4, height=4,
                          distortion_model='plumb_bob', d=[0.0] * 5, k=[1.0] * 6, r=[0.0] * 9, p=[0.0] * 12)
    with pytest.raises(ValueError, match='k has 6 values, expected 9'):
        camera_model_from_msg(msg)
