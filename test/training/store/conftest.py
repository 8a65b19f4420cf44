"""Shared fixtures: a small synthetic street bag (ground truth, truth rasters, odom poses) and its store."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from perception_nodes.geometry.sim.lidar import LidarBeamModel
from perception_nodes.geometry.sim.street import STREET_CLASSES, street_sequence
from perception_nodes.io.sample_bags import write_sim_bag

UNSEEN = ('truck', 'motorcycle', 'bicyclist', 'traffic-sign')
STEP = 1.5
FRAMES = 4


def street_args(bag: Path, out: Path, *extra: str) -> list[str]:
    """``ovp pseudo-label`` arguments for the street bag with the synthetic teacher (GZS, 2 units a shard)."""
    return ['pseudo-label', str(bag), '--out', str(out), '--teacher', 'synthetic', '--quiet',
            '--vocabulary', ','.join(STREET_CLASSES), '--setting', 'gzs', '--shard-frames', '2',
            '--methods', 'dense,affinity3d,cns,pop3d', '--set', 'fusion.visibility_block=2',
            '--method-set', f'affinity3d.unseen={",".join(UNSEEN)}',
            '--method-set', 'affinity3d.affinity.queue_size=10', *extra]


@pytest.fixture(scope='session')
def street(tmp_path_factory) -> dict:
    """Write four consecutive sweeps of a seeded road scene as a bag (the ego drives 1.5 m per sweep)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('street')
    frames = street_sequence(3, FRAMES, step=STEP, image_size=(120, 400),
                             beam_model=LidarBeamModel(n_beams=32, n_azimuth=512))
    poses = []
    for i in range(FRAMES):
        T = np.eye(4)
        T[0, 3] = STEP * i            # the street moves by -STEP per sweep: the ego by +STEP in odom
        poses.append(T)
    write_sim_bag(root / 'bag', frames, poses=poses, truth=True)
    return {'bag': root / 'bag', 'frames': frames, 'poses': poses, 'root': root}


@pytest.fixture(scope='session')
def street_store(street) -> Path:
    """Make the street bag's store once, through the CLI."""
    from perception_nodes.cli.main import main
    out = street['root'] / 'store'
    assert main(street_args(street['bag'], out)) == 0
    return out
