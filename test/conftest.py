"""Shared fixtures: where the real KITTI data lives (skip with the reason when absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

from perception_nodes.io.kitti import DATA_ENV, shared_data_dir


def _require(sub: str) -> Path:
    path = shared_data_dir() / sub
    if not path.is_dir():
        pytest.skip(f'real data not found at {path} (set ${DATA_ENV} to the folder holding {sub}/)')
    return path


@pytest.fixture(scope='session')
def kitti_raw_dir() -> Path:
    """10 consecutive KITTI raw frames with images and calib.txt."""
    return _require('kitti_raw_2011_09_26_seq')


@pytest.fixture(scope='session')
def kitti_object_dir() -> Path:
    """3 KITTI object-benchmark frames (training/{velodyne,image_2,calib,label_2})."""
    return _require('kitti_object_vis')


@pytest.fixture(scope='session')
def semantic_kitti_dir() -> Path:
    """Provide SemanticKITTI sequence 00, scans 0-2 with ground-truth labels (no images)."""
    return _require('semantickitti_seq00')


# -- ROS 2 harness (test/ros_harness): the real Jazzy Python layers with stand-ins for the compiled parts --
def _ros_harness_package():
    """Import test/ros_harness once (test folders are not packages under --import-mode=importlib)."""
    import importlib.util
    import sys

    if 'ros_harness' not in sys.modules:
        folder = Path(__file__).resolve().parent / 'ros_harness'
        spec = importlib.util.spec_from_file_location('ros_harness', folder / '__init__.py',
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules['ros_harness'] = module
        spec.loader.exec_module(module)
    return sys.modules['ros_harness']


@pytest.fixture
def ros_harness_package():
    """Return the test/ros_harness package (``RosHarness`` with options); skip without shared/ros2-python."""
    package = _ros_harness_package()
    if not (package.ros2_python_path() / 'rclpy' / 'node.py').is_file():
        pytest.skip(f'ROS 2 Python layers not found at {package.ros2_python_path()} '
                    f'(set ${package.ENV_VAR} to the ros2-python folder of shared/)')
    return package


@pytest.fixture
def ros_harness(ros_harness_package):
    """Activate the harness for one test: ``import rclpy`` etc. work inside, and are forgotten after."""
    with ros_harness_package.RosHarness(console=False) as harness:
        yield harness


@pytest.fixture
def rclpy_init(ros_harness):
    """``rclpy`` with the default context initialised; shut down (if still up) after the test."""
    import rclpy

    rclpy.init(args=[])
    yield rclpy
    rclpy.try_shutdown()
