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
