"""Fixtures of the I/O tests: sensor_msgs_py's point_cloud2 (the ROS 2 Jazzy reference) as an oracle."""
from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1] / 'ros_harness' / 'reference.py'


def _reference_loader() -> types.ModuleType:
    """Load test/ros_harness/reference.py by path (test folders are not packages under importlib mode)."""
    spec = importlib.util.spec_from_file_location('_ovp_point_cloud2_reference_loader', REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def ros2_point_cloud2() -> types.ModuleType:
    """sensor_msgs_py.point_cloud2 from $OVP_ROS2_PYTHON (default <repo>/../shared/ros2-python)."""
    loader = _reference_loader()
    module = loader.load_point_cloud2_reference()
    if module is None:
        pytest.skip(f'ROS 2 reference not found under {loader.default_root()} (set ${loader.ENV_VAR})')
    return module
