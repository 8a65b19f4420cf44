"""Tiny training configs and data for the engine tests (2 CPU cores: a few hundred points per frame)."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from training.engine.config import apply_overrides, config_dir, load_yaml_tree

torch.set_num_threads(1)

GRID = {'lower': [-40.0, -40.0, -3.0], 'upper': [40.0, 40.0, 3.0], 'shape': [16, 16, 4]}
STUDENTS = {
    'range_unet': {'preset': 'none', 'arch': 'range_unet', 'range_height': 16, 'range_width': 128,
                   'widths': [8, 16], 'depths': [1, 1], 'point_width': 16, 'head_hidden': 16,
                   'voxel_width': 4, 'grid': GRID, 'max_points': 4096},
    'sparse_unet': {'preset': 'none', 'arch': 'sparse_unet', 'voxel_size': 0.5, 'widths': [8, 16],
                    'depths': [1, 1], 'point_width': 16, 'head_hidden': 16, 'voxel_width': 4, 'grid': GRID},
}
#: the synthetic world at test size: 8 x 128 rays, one small camera
SIM = 'sim:frames=4,beams=8,azimuth=128,image=32x96,embed_dim=16'
SIM_VAL = 'sim:frames=2,seed=7,beams=8,azimuth=128,image=32x96,embed_dim=16'


def tiny(recipe: str, arch: str = 'range_unet', steps: int = 4, *overrides: str, **sections: Any) -> dict:
    """Return the recipe's YAML tree with a tiny student, ``steps`` steps and quiet loop settings."""
    tree = load_yaml_tree(config_dir() / f'{recipe}.yaml')
    tree['student'] = copy.deepcopy(STUDENTS[arch])
    tree['phases'] = [{'name': 'train', 'steps': steps}]
    tree['train'].update(progress=False, plots=False, log_every=1, batch_size=2, device='cpu')
    tree['data']['num_workers'] = 0
    tree['augment']['crop_size'] = [32, 96]
    for key, value in sections.items():
        tree[key] = value
    return apply_overrides(tree, overrides)


@pytest.fixture
def tiny_tree():
    return tiny


@pytest.fixture
def sim() -> str:
    return SIM


@pytest.fixture
def sim_val() -> str:
    return SIM_VAL
