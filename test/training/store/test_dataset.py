"""The Dataset over a store: each field (dtype, shape), known answers, bounded memory, StoreMetadata."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from perception_nodes.config import InputsConfig
from perception_nodes.geometry.projection import project_points
from perception_nodes.geometry.sim.street import STREET_CLASSES
from perception_nodes.geometry.voxels import POP3D_GRID, dense_occupancy
from perception_nodes.io.bag_source import BagSource
from training.store.dataset import PseudoLabelDataset, load_index

DTYPES = {'points': torch.float32, 'labels': torch.int64, 'visible': torch.bool, 'gt_labels': torch.int64,
          'gt_instances': torch.int64, 'teacher_index': torch.int64, 'teacher_features': torch.float16,
          'regions': torch.int64, 'images': torch.uint8, 'uv': torch.float32, 'camera_index': torch.int64,
          'occupancy_target': torch.uint8, 'instances': torch.int64}


@pytest.fixture(scope='module')
def frames(street):
    return list(BagSource(street['bag'], InputsConfig()).frames())


def test_fields_dtypes_shapes_and_store_info(street_store, frames):
    ds = PseudoLabelDataset(street_store)
    assert set(ds.info.fields) == set(DTYPES) - {'points', 'labels', 'visible'}
    assert ds.info.class_names == STREET_CLASSES
    assert ds.info.text_embeddings.shape == (len(STREET_CLASSES), 64)
    assert ds.info.teacher['synthetic'] and ds.info.teacher['kind'] == 'oracle' and ds.info.labels_meaningful
    assert ds.info.grid == POP3D_GRID and ds.info.unit == 'frame' and ds.info.num_samples == 4
    assert ds.info.bags[0]['clouds'] == 4 and len(ds.info.bags[0]['sha256']) == 64
    for i, frame in enumerate(frames):
        s = ds[i]
        n = frame.num_points
        assert {k for k in s if k != 'frame_key'} == set(DTYPES)
        for k, dtype in DTYPES.items():
            assert s[k].dtype == dtype, k
        assert s['points'].shape == (n, 4)
        assert s['uv'].shape == (n, 2) and s['images'].shape == (1, 120, 400, 3)
        assert s['teacher_features'].shape == (len(s['teacher_index']), 64)
        assert s['occupancy_target'].shape == (100, 100, 8)
        np.testing.assert_array_equal(s['points'][:, 3].numpy(), frame.intensity)
        err = np.abs(s['images'][0].numpy().astype(float) - frame.cameras[0].image)
        assert err.mean() < 3.0                                            # JPEG, quality 90
    assert ds.info.config['store']['image_format'] == 'jpeg'


def test_known_answers_uv_camera_occupancy_regions(street_store, frames):
    ds = PseudoLabelDataset(street_store)
    for i, frame in enumerate(frames):
        s = ds[i]
        view = frame.cameras[0]
        proj = project_points(torch.from_numpy(frame.points), [view.model],
                              torch.from_numpy(view.T_cam_lidar)[None])
        cam = s['camera_index'].numpy()
        seen = cam >= 0
        np.testing.assert_array_equal(np.flatnonzero(seen), s['teacher_index'].numpy())   # one camera
        assert (cam[seen] == 0).all() and s['visible'].numpy()[seen].all()
        np.testing.assert_array_equal(s['uv'].numpy()[seen], proj.uv[0].numpy()[seen])    # exact float32 uv
        occ = dense_occupancy(torch.from_numpy(frame.points), POP3D_GRID).numpy()
        np.testing.assert_array_equal(s['occupancy_target'].numpy(), occ.astype(np.uint8))
        regions = s['regions'].numpy()
        assert (regions[~seen] == -1).all() and (regions[seen] >= 0).mean() > 0.99


def test_label_sources_and_unknown_ones(street_store):
    index = load_index(street_store)
    assert index['label_methods'] == ['affinity3d', 'cns', 'dense']
    a, c, d = (PseudoLabelDataset(street_store, label_source=m)[1]['labels']
               for m in ('affinity3d', 'cns', 'dense'))
    assert not torch.equal(a, c) and not torch.equal(c, d)
    with pytest.raises(ValueError, match="no 'unscene3d' labels"):
        PseudoLabelDataset(street_store, label_source='unscene3d')


def test_memory_is_bounded_and_the_dataset_pickles(street_store):
    ds = PseudoLabelDataset(street_store, max_open_shards=1)
    first = [ds[i]['labels'] for i in range(len(ds))]
    assert len(ds._open) == 1 and ds._verified == {0, 1}
    copy = pickle.loads(pickle.dumps(ds))                  # DataLoader workers: no open memory map travels
    assert len(copy._open) == 0
    assert all(torch.equal(copy[i]['labels'], first[i]) for i in range(len(ds)))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=list)
    assert [len(b) for b in loader] == [2, 2]


def test_index_and_summary_tell_what_was_made(street_store):
    index = json.loads((street_store / 'index.json').read_text())
    summary = json.loads((street_store / 'summary.json').read_text())
    assert index['format'] == 'ovp-pseudo-label-store' and index['complete'] and index['num_units'] == 4
    assert [s['chunk'] for s in index['shards']] == [0, 1]
    assert index['teacher']['note'].startswith('labels come')
    assert set(index['perception']) >= {'inputs', 'fusion', 'teacher', 'vocabulary'}
    assert 'runtime' not in index['perception'] and len(index['config_hash']) == 64
    per_class = summary['methods']['affinity3d']['per_class']
    assert set(per_class) == set(STREET_CLASSES) and sum(per_class.values()) + \
        summary['methods']['affinity3d']['ignored'] == summary['points']
    assert 0 < summary['methods']['affinity3d']['ignored_fraction'] < 1
    assert abs(summary['bytes']['per_unit'] - sum(s['bytes'] for s in index['shards']) / 4) <= 1
    for stage in ('pipeline/teacher', 'pipeline/visibility', 'store/affinity3d', 'store/dense'):
        assert summary['timings_ms'][stage]['total'] > 0
    assert summary['visibility']['visible'] <= summary['visibility']['in_image']


def test_a_missing_index_is_an_error(tmp_path):
    with pytest.raises(ValueError, match='not a pseudo-label store'):
        PseudoLabelDataset(tmp_path)
