from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.student.backends import BackendConfig, load_backend
from perception_nodes.student.checkpoint import load_checkpoint


@pytest.mark.parametrize('ckpt', ['range_checkpoint', 'sparse_checkpoint'])
def test_matches_the_model(tiny, request, ckpt):
    path = request.getfixturevalue(ckpt)
    backend = load_backend(BackendConfig(kind='torch', voxel_features=True), path)
    assert backend.name == 'torch[cpu]'
    scan = tiny.scan(900, seed=4)
    res = backend.infer(scan)
    model, _ = load_checkpoint(path)
    with torch.no_grad():
        ref = model(torch.from_numpy(scan))
    np.testing.assert_allclose(res.point_embeddings, ref.point_embeddings.numpy(), atol=1e-5)
    np.testing.assert_allclose(res.occupancy_logits, ref.occupancy_logits.numpy(), atol=1e-5)
    assert res.voxel_features.shape == (*model.config.grid.shape, model.config.embed_dim)


def test_needs_a_checkpoint_and_an_available_device(range_checkpoint):
    with pytest.raises(ValueError, match='needs a checkpoint'):
        load_backend(BackendConfig(kind='torch'))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            load_backend(BackendConfig(kind='torch', device='cuda'), range_checkpoint)
