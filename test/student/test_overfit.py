"""Sanity fit: each student overfits one synthetic scene to near-perfect per-point accuracy.

Oracle targets: every class of the synthetic world gets a fixed random unit vector, a stand-in for its
text embedding (a distillation target, not CLIP semantics). The student is trained with a cosine-softmax
cross-entropy against them (Affinity3D Eq. 13/18 classifier) plus the POP-3D occupancy cross-entropy
against the scene's own occupied voxels, then classifies every point by cosine similarity.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from perception_nodes.classify import classify
from perception_nodes.student.model import build_student

STEPS = 60
EVERY = 4          # every 4th point of the scan keeps the CPU run short


@pytest.fixture(scope='module')
def scene():
    from perception_nodes.geometry.sim import SIM_CLASSES, SMALL_BEAM_MODEL, make_sim_frame
    frame = make_sim_frame(0, num_cameras=1, image_size='tiny', beam_model=SMALL_BEAM_MODEL)
    points = np.concatenate([frame.points, frame.intensity[:, None]], axis=1)[::EVERY]
    labels = frame.labels[::EVERY]
    return torch.from_numpy(points).float(), torch.from_numpy(labels).long(), len(SIM_CLASSES)


def _recalibrate_batchnorm(model, points):
    """Running statistics := the statistics of this one scene, so eval mode reproduces training mode."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(points, voxel_features=False)
    model.eval()


@pytest.mark.parametrize('arch, overrides', [
    ('range_unet', dict(widths=(8, 16, 32), depths=(1, 1, 1))),
    ('sparse_unet', dict(widths=(8, 16), depths=(1, 1), voxel_size=0.25)),
])
def test_student_overfits_one_synthetic_scene(tiny, scene, arch, overrides):
    points, labels, num_classes = scene
    torch.manual_seed(0)
    config = tiny.config(arch, point_width=32, fov_up_deg=2.5, fov_down_deg=-25.5, **overrides)
    model = build_student(config)
    text = F.normalize(torch.randn(num_classes, config.embed_dim, generator=torch.Generator().manual_seed(1)),
                       dim=1)
    counts = torch.bincount(labels, minlength=num_classes).float()
    weight = counts.sum() / counts.clamp(min=1)
    weight = weight / weight.mean()
    # Oracle occupancy: a voxel is occupied iff a point of the scene falls in it.
    grid = config.grid
    idx, inside = grid.voxel_indices(points[:, :3])
    occupied = torch.zeros(grid.shape, dtype=torch.long)
    occupied[idx[inside, 0], idx[inside, 1], idx[inside, 2]] = 1
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(STEPS):
        out = model(points, voxel_features=False)
        logits = out.point_embeddings @ model.project_text(text).T / 0.05
        loss = F.cross_entropy(logits, labels, weight=weight) + \
            F.cross_entropy(out.occupancy_logits.reshape(-1, 2), occupied.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _recalibrate_batchnorm(model, points)
    with torch.no_grad():
        out = model(points, voxel_features=False)
    predicted = classify(out.point_embeddings, model.project_text(text)).labels
    accuracy = (predicted == labels).float().mean().item()
    per_class = [(predicted[labels == c] == c).float().mean().item()
                 for c in range(num_classes) if (labels == c).sum() >= 10]
    occupancy_acc = (out.occupancy_logits.argmax(-1) == occupied).float().mean().item()
    assert accuracy >= 0.97, (accuracy, per_class)
    assert np.mean(per_class) >= 0.9, per_class
    assert occupancy_acc >= 0.99
