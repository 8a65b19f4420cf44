"""Small students and checkpoints shared by the student tests (tiny widths keep them fast on CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from perception_nodes.geometry.voxels import GridSpec
from perception_nodes.student.checkpoint import save_checkpoint
from perception_nodes.student.config import StudentConfig
from perception_nodes.student.model import build_student

SMALL_GRID = GridSpec(lower=(-40.0, -40.0, -3.0), upper=(40.0, 40.0, 3.0), shape=(32, 32, 4))


def tiny_config(arch: str = 'range_unet', **overrides) -> StudentConfig:
    base = dict(arch=arch, widths=(8, 16), depths=(1, 1), embed_dim=32, point_width=16, head_hidden=16,
                voxel_width=4, range_height=32, range_width=256, grid=SMALL_GRID, max_points=8192,
                voxel_size=0.2)
    base.update(overrides)
    return StudentConfig(**base)


def tiny_model(arch: str = 'range_unet', seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = build_student(tiny_config(arch, **overrides))
    # Non-trivial BatchNorm statistics so eval-mode outputs depend on them.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def random_scan(n: int, seed: int = 0) -> np.ndarray:
    """Generate a plausible LiDAR-like scan: ring of points around the sensor plus a ground plane."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(2.0, 35.0, n)
    yaw = rng.uniform(-np.pi, np.pi, n)
    z = rng.uniform(-1.7, 1.5, n)
    return np.stack([r * np.cos(yaw), r * np.sin(yaw), z, rng.uniform(0, 1, n)], axis=1).astype(np.float32)


@pytest.fixture()
def range_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / 'range_ckpt'
    save_checkpoint(path, tiny_model('range_unet', proj_dim=8))
    return path


@pytest.fixture()
def sparse_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / 'sparse_ckpt'
    save_checkpoint(path, tiny_model('sparse_unet'))
    return path


@pytest.fixture(scope='session')
def tiny():
    """Factories for tests (conftest modules are not importable under --import-mode=importlib)."""
    from types import SimpleNamespace
    return SimpleNamespace(config=tiny_config, model=tiny_model, scan=random_scan, grid=SMALL_GRID)
