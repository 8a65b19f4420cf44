from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.student.backends import BackendConfig, load_backend


def test_backend_config_validation_and_round_trip():
    cfg = BackendConfig(kind='onnxruntime', providers=('CUDAExecutionProvider', 'CPUExecutionProvider'),
                        max_points=1000)
    assert BackendConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match='kind'):
        BackendConfig(kind='openvino')
    with pytest.raises(ValueError, match='max_points'):
        BackendConfig(max_points=0)
    with pytest.raises(ValueError, match='unknown backend config keys'):
        BackendConfig.from_dict({'kind': 'torch', 'batch': 4})


@pytest.mark.parametrize('ckpt', ['range_checkpoint', 'sparse_checkpoint'])
def test_every_input_point_gets_an_embedding(tiny, request, ckpt):
    backend = load_backend(BackendConfig(kind='torch', max_points=500), request.getfixturevalue(ckpt))
    scan = tiny.scan(1200, seed=2)
    scan[7] = np.nan
    scan[8, 3] = np.inf
    res = backend.infer(scan)
    assert res.num_input == 1200 and res.num_used == 500 and res.subsampled and res.num_nonfinite == 2
    assert res.point_embeddings.shape[0] == 1200 and res.point_embeddings.dtype == np.float32
    assert res.valid.sum() == 1198 and not res.valid[7] and not res.valid[8]
    assert np.isnan(res.point_embeddings[[7, 8]]).all()
    norms = np.linalg.norm(res.point_embeddings[res.valid], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)
    # Slow reference for the fill rule: a dropped point copies its nearest kept neighbour (xyz).
    from perception_nodes.student.padding import pad_points
    kept = pad_points(scan, 500).kept
    kept_set = set(kept.tolist())
    for i in [0, 1, 2, 100, 555, 1199]:
        if i in kept_set or not res.valid[i]:
            continue
        d = np.linalg.norm(scan[kept, :3] - scan[i, :3], axis=1)
        np.testing.assert_array_equal(res.point_embeddings[i], res.point_embeddings[kept[np.argmin(d)]])
    assert set(res.timings) == {'preprocess_s', 'inference_s', 'postprocess_s'}


def test_empty_and_all_nan_scans_never_crash(range_checkpoint):
    backend = load_backend(BackendConfig(kind='torch'), range_checkpoint)
    for scan in (np.zeros((0, 4), np.float32), np.full((5, 4), np.nan, np.float32)):
        res = backend.infer(scan)
        assert res.num_used == 0 and not res.valid.any() and res.point_embeddings.shape == (len(scan), 8)
        assert np.isfinite(res.occupancy_logits).all()
    with pytest.raises(ValueError, match='points must be'):
        backend.infer(np.zeros((5, 2), np.float32))
