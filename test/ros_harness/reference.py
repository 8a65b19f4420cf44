"""``sensor_msgs_py.point_cloud2`` (ROS 2 Jazzy, unchanged) importable without ROS: the I/O oracle.

The tests compare our PointCloud2 encoder's bytes with it and ``bench/io_bench.py`` times ours beside it.
rosbags' message classes stand in for ``sensor_msgs.msg`` / ``std_msgs.msg`` only while the file is
imported (the stubs leave ``sys.modules`` again); its ``PointCloud2`` fills missing fields with their
defaults, as ROS message constructors do. Standalone (no import of the rest of the harness), so that a
bench can load it by path.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

ENV_VAR = 'OVP_ROS2_PYTHON'


def default_root() -> Path:
    """Return where the ROS 2 Python layers are: ``$OVP_ROS2_PYTHON`` or ``<repo>/../shared/ros2-python``."""
    default = Path(__file__).resolve().parents[3] / 'shared' / 'ros2-python'
    return Path(os.environ.get(ENV_VAR) or default).resolve()


def load_point_cloud2_reference(root: Path | None = None) -> types.ModuleType | None:
    """Import ``<root>/sensor_msgs_py/point_cloud2.py`` with rosbags message classes (None if absent)."""
    from perception_nodes.io.messages import default_message_types

    path = (default_root() if root is None else Path(root)) / 'sensor_msgs_py' / 'point_cloud2.py'
    if not path.is_file():
        return None
    msgs = default_message_types()
    base = msgs.typestore.types['sensor_msgs/msg/PointCloud2']

    class PointCloud2(base):  # type: ignore[misc, valid-type]
        def __init__(self, **fields: object) -> None:
            full = vars(msgs.new('sensor_msgs/msg/PointCloud2'))
            full.pop('__msgtype__', None)
            full.update(fields)
            super().__init__(**full)

    names = ('sensor_msgs', 'sensor_msgs.msg', 'std_msgs', 'std_msgs.msg')
    stubs = {name: types.ModuleType(name) for name in names}
    stubs['sensor_msgs.msg'].PointCloud2 = PointCloud2
    stubs['sensor_msgs.msg'].PointField = msgs.typestore.types['sensor_msgs/msg/PointField']
    stubs['std_msgs.msg'].Header = msgs.typestore.types['std_msgs/msg/Header']
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
