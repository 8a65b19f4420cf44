"""Fixtures of the I/O tests: sensor_msgs_py's point_cloud2 (the ROS 2 Jazzy reference) as an oracle."""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from perception_nodes.io.messages import default_message_types


def load_sensor_msgs_py_point_cloud2(root: Path) -> types.ModuleType:
    """Import ``<root>/sensor_msgs_py/point_cloud2.py`` with rosbags classes standing in for sensor_msgs.msg.

    ``PointCloud2`` is a subclass of the rosbags class whose constructor fills missing fields with
    their defaults (as ROS message constructors do); the stubs are removed from ``sys.modules`` again.
    """
    path = root / 'sensor_msgs_py' / 'point_cloud2.py'
    if not path.is_file():
        pytest.skip(f'ROS 2 reference not found at {path} (set OVP_ROS2_PYTHON)')
    msgs = default_message_types()
    base = msgs.typestore.types['sensor_msgs/msg/PointCloud2']

    class PointCloud2(base):  # type: ignore[misc, valid-type]
        def __init__(self, **fields: object) -> None:
            full = vars(msgs.new('sensor_msgs/msg/PointCloud2'))
            full.pop('__msgtype__', None)
            full.update(fields)
            super().__init__(**full)

    sensor_msgs, sensor_msgs_msg = types.ModuleType('sensor_msgs'), types.ModuleType('sensor_msgs.msg')
    sensor_msgs_msg.PointCloud2 = PointCloud2
    sensor_msgs_msg.PointField = msgs.typestore.types['sensor_msgs/msg/PointField']
    std_msgs, std_msgs_msg = types.ModuleType('std_msgs'), types.ModuleType('std_msgs.msg')
    std_msgs_msg.Header = msgs.typestore.types['std_msgs/msg/Header']
    stubs = {'sensor_msgs': sensor_msgs, 'sensor_msgs.msg': sensor_msgs_msg, 'std_msgs': std_msgs,
             'std_msgs.msg': std_msgs_msg}
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location('_ros2_reference_point_cloud2', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


@pytest.fixture(scope='session')
def ros2_point_cloud2() -> types.ModuleType:
    """sensor_msgs_py.point_cloud2 from $OVP_ROS2_PYTHON (default <repo>/../shared/ros2-python)."""
    root = Path(os.environ.get('OVP_ROS2_PYTHON', Path(__file__).resolve().parents[2].parent / 'shared'
                               / 'ros2-python'))
    return load_sensor_msgs_py_point_cloud2(root)


__all__ = ['load_sensor_msgs_py_point_cloud2', 'np']
