"""RosbagsMessageTypes: defaults from the typestore, conversions, CDR round trips."""
from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.io.messages import RosbagsMessageTypes, default_message_types


def test_defaults_are_filled_by_introspection():
    msgs = default_message_types()
    assert msgs is default_message_types()
    hdr = msgs.new('std_msgs/msg/Header', frame_id='x')
    assert (hdr.frame_id, hdr.stamp.sec, hdr.stamp.nanosec) == ('x', 0, 0)
    info = msgs.new('sensor_msgs/msg/CameraInfo')
    assert info.k.shape == (9,) and info.k.dtype == np.float64 and info.d.shape == (0,)
    assert info.roi.do_rectify is False and info.distortion_model == ''
    cloud = msgs.new('sensor_msgs/msg/PointCloud2')
    assert cloud.data.dtype == np.uint8 and cloud.fields == [] and cloud.is_dense is False
    marker = msgs.new('visualization_msgs/msg/Marker')
    assert marker.pose.orientation.w == 1.0 and marker.pose.orientation.x == 0.0   # ROS 2 identity default
    assert marker.points == []


def test_conversions_and_cdr_round_trip():
    msgs = RosbagsMessageTypes()
    img = msgs.new('sensor_msgs/msg/Image', height=1, width=2, encoding='mono8', step=2, data=b'\x01\xff')
    assert img.data.dtype == np.uint8 and img.data.tolist() == [1, 255]
    info = msgs.new('sensor_msgs/msg/CameraInfo', k=[1, 2, 3, 4, 5, 6, 7, 8, 9], d=[0.5])
    assert info.k.dtype == np.float64 and info.d.tolist() == [0.5]
    back = msgs.deserialize(msgs.serialize(info), 'sensor_msgs/msg/CameraInfo')
    np.testing.assert_array_equal(back.k, np.arange(1, 10))
    assert msgs.serialize(img) == msgs.serialize(img, 'sensor_msgs/msg/Image')


def test_errors():
    msgs = default_message_types()
    with pytest.raises(ValueError, match="unknown message type 'nope/msg/Nope'"):
        msgs.new('nope/msg/Nope')
    with pytest.raises(ValueError, match=r"no field\(s\) \['colour'\]"):
        msgs.new('std_msgs/msg/Header', colour=1)
    with pytest.raises(ValueError, match='exactly 9 values'):
        msgs.new('sensor_msgs/msg/CameraInfo', k=[1, 2])
