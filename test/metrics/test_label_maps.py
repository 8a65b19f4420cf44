"""Label maps: benchmark tables, vocabulary order, validation, and the real SemanticKITTI / ScanNet labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from perception_nodes.metrics.label_maps import (BUILTIN_LABEL_MAPS, apply_label_map, label_map_from_dict,
                                                 label_map_path, load_label_map)
from perception_nodes.vocabulary import load_vocabulary

# semantic-kitti-api config/semantic-kitti.yaml learning_map: raw id -> train id (0 = unlabeled/ignore).
SEMANTICKITTI_LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9, 44: 10,
    48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0,
    252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5}
# nuScenes-lidarseg raw index -> challenge id 1..16 (0 = ignore), as mmdetection3d's seg config has it.
NUSCENES_LEARNING_MAP = {
    1: 0, 5: 0, 7: 0, 8: 0, 10: 0, 11: 0, 13: 0, 19: 0, 20: 0, 0: 0, 29: 0, 31: 0, 9: 1, 14: 2, 15: 3,
    16: 3, 17: 4, 18: 5, 21: 6, 2: 7, 3: 7, 4: 7, 6: 7, 12: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 30: 16}
# ScanNet benchmark scripts (scannet200_constants.py).
VALID_CLASS_IDS_20 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
VALID_CLASS_IDS_200 = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24, 26, 27, 28, 29, 31,
    32, 33, 34, 35, 36, 38, 39, 40, 41, 42, 44, 45, 46, 47, 48, 49, 50, 51, 52, 54, 55, 56, 57, 58, 59,
    62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 82, 84, 86, 87, 88, 89,
    90, 93, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 110, 112, 115, 116, 118, 120,
    121, 122, 125, 128, 130, 131, 132, 134, 136, 138, 139, 140, 141, 145, 148, 154, 155, 156, 157, 159,
    161, 163, 165, 166, 168, 169, 170, 177, 180, 185, 188, 191, 193, 195, 202, 208, 213, 214, 221, 229,
    230, 232, 233, 242, 250, 261, 264, 276, 283, 286, 300, 304, 312, 323, 325, 331, 342, 356, 370, 392,
    395, 399, 408, 417, 488, 540, 562, 570, 572, 581, 609, 748, 776, 1156, 1163, 1164, 1165, 1166, 1167,
    1168, 1169, 1170, 1171, 1172, 1173, 1174, 1175, 1176, 1178, 1179, 1180, 1181, 1182, 1183, 1184,
    1185, 1186, 1187, 1188, 1189, 1190, 1191)


@pytest.mark.parametrize('name', BUILTIN_LABEL_MAPS)
def test_builtin_maps_follow_their_vocabulary(name):
    lm = load_label_map(name)
    vocab = load_vocabulary(lm.vocabulary)
    assert lm.class_names == vocab.names and lm.unmapped_classes == []
    assert set(lm.mapping.values()) == set(range(len(vocab)))
    assert not set(lm.mapping) & set(lm.ignored)
    raw = yaml.safe_load(label_map_path(name).read_text(encoding='utf-8'))
    assert list(raw['classes']) == vocab.names                   # the file lists classes in vocabulary order


def test_semantickitti_is_the_benchmark_learning_map():
    lm = load_label_map('semantickitti')
    for raw, train in SEMANTICKITTI_LEARNING_MAP.items():
        assert apply_label_map(np.array([raw]), lm)[0] == train - 1, raw        # train id k+1 = index k
    assert lm.class_names[lm.mapping[252]] == 'car' and lm.class_names[lm.mapping[60]] == 'road'
    # the vocabulary's own evaluation ids agree (they were written from the same table)
    assert lm.mapping == load_vocabulary('semantickitti').label_map()


def test_nuscenes_is_the_challenge_merge():
    lm = load_label_map('nuscenes')
    raw = np.arange(32)
    expected = np.array([NUSCENES_LEARNING_MAP[r] - 1 for r in range(32)])
    np.testing.assert_array_equal(lm.apply(raw), expected)
    assert lm.class_names[lm.mapping[24]] == 'driveable_surface'
    assert lm.class_names[lm.mapping[3]] == 'pedestrian'
    # 12 of the 32 raw classes are ignored, the rest cover all 16 classes
    assert (lm.apply(raw) == -1).sum() == 12 and len(lm.ignored) == 12


def test_scannet_maps_are_the_benchmark_ids():
    s20 = load_label_map('scannet20')
    np.testing.assert_array_equal(s20.apply(np.array(VALID_CLASS_IDS_20)), np.arange(20))
    assert (s20.apply(np.arange(41))[~np.isin(np.arange(41), VALID_CLASS_IDS_20)] == -1).all()
    assert s20.mapping == load_vocabulary('scannet20').label_map()
    s200 = load_label_map('scannet200')
    np.testing.assert_array_equal(s200.apply(np.array(VALID_CLASS_IDS_200)), np.arange(200))
    assert s200.mapping == load_vocabulary('scannet200').label_map()
    assert s200.class_names[:3] == ['wall', 'chair', 'floor'] and s200.class_names[-1] == 'mattress'
    sizes = {k: len(v) for k, v in s200.splits.items()}
    assert sizes == {'head': 66, 'common': 68, 'tail': 66}
    idx = s200.split_indices()
    assert sorted(idx['head'] + idx['common'] + idx['tail']) == list(range(200))
    assert {'wall', 'floor', 'chair'} <= set(s200.splits['head']) and 'luggage' in s200.splits['tail']


def test_apply_label_map_forms():
    lut_map = {3: 0, 7: 2, 5: 1}
    raw = np.array([[3, 7, 5], [4, 100, -2]], dtype=np.int32)
    expected = [[0, 2, 1], [-1, -1, -1]]                           # unknown, out of range, negative -> -1
    assert apply_label_map(raw, lut_map).tolist() == expected
    assert apply_label_map(torch.from_numpy(raw), lut_map).tolist() == expected
    lut = np.array([-1, -1, -1, 0, -1, 1, -1, 2])
    assert apply_label_map(raw, lut).tolist() == expected
    assert apply_label_map(np.array([3, 2**32 - 1], dtype=np.uint32), lut_map).tolist() == [0, -1]
    assert apply_label_map(np.zeros((0,), np.uint16), lut_map).shape == (0,)
    with pytest.raises(ValueError, match='integer'):
        apply_label_map(np.array([1.5]), lut_map)


def _doc(**over):
    d = {'vocabulary': 'scannet20', 'classes': {'wall': [1], 'floor': [2]}, 'ignore': [0]}
    d.update(over)
    return d


@pytest.mark.parametrize('doc,match', [
    (_doc(classes={'walls': [1]}), 'not a class'),
    (_doc(classes={'wall': [1], 'floor': [1]}), 'listed twice'),
    (_doc(ignore=[1]), 'listed twice'),
    (_doc(classes={'wall': [-3]}), 'non-negative'),
    (_doc(classes={'wall': [True]}), 'non-negative'),
    (_doc(classes={'wall': ['1']}), 'non-negative'),
    (_doc(splits={'a': ['wall'], 'b': ['wall']}), 'splits'),
    (_doc(splits={'a': ['sky']}), 'not a class'),
    (_doc(colour='red'), 'unknown keys'),
    (_doc(instance_classes=['sky']), 'not classes'),
    (_doc(instance_classes=['wall', 'wall']), 'distinct'),
    (_doc(instance_classes=['wall'], stuff_classes=['floor']), 'not both'),
    ({'classes': {'wall': [1]}}, 'needs "vocabulary"'),
    ([1, 2], 'mapping'),
])
def test_validation(doc, match):
    with pytest.raises(ValueError, match=match):
        label_map_from_dict(doc)


def test_instance_classes():
    from perception_nodes.metrics.instances import SCANNET_INSTANCE_NYU40_IDS
    lm = load_label_map('scannet20')      # the benchmark's 18 instance classes: NYU40 ids but wall, floor
    assert sorted(i for i, k in lm.mapping.items() if k in lm.instance_class_indices()) == \
        sorted(SCANNET_INSTANCE_NYU40_IDS)
    s200 = load_label_map('scannet200')
    assert len(s200.instance_classes) == 198 and {'wall', 'floor'}.isdisjoint(s200.instance_classes)
    kitti = load_label_map('semantickitti')
    assert kitti.instance_class_indices() == list(range(8))       # car .. motorcyclist, the panoptic things
    assert label_map_from_dict(_doc()).instance_class_indices() == list(range(20))   # none listed: all
    assert label_map_from_dict(_doc(stuff_classes=['wall'])).instance_class_indices() == list(range(1, 20))


def test_partial_map_reports_unmapped_classes(tmp_path):
    path = tmp_path / 'mine.yaml'
    path.write_text(yaml.safe_dump(_doc()), encoding='utf-8')
    lm = load_label_map(path)
    assert lm.name == 'mine' and len(lm.unmapped_classes) == 18 and lm.apply(np.array([2, 0]))[0] == 1
    with pytest.raises(FileNotFoundError):
        load_label_map(tmp_path / 'missing.yaml')


def test_semantickitti_real_labels(semantic_kitti_dir):
    from perception_nodes.io.kitti import read_semantic_labels
    lm = load_label_map('semantickitti')
    names = lm.class_names
    files = sorted((semantic_kitti_dir / 'sequences' / '00' / 'labels').glob('*.label'))
    assert len(files) == 3
    for path in files:
        sem, _ = read_semantic_labels(path)                        # lower 16 bits of each word
        y = lm.apply(sem)
        assert y.min() >= -1 and y.max() < 19
        # ignored: exactly the unlabeled / outlier / other-structure / other-object points (~4 %)
        np.testing.assert_array_equal(y == -1, np.isin(sem, [0, 1, 52, 99]))
        assert 0.02 < (y == -1).mean() < 0.06
        hist = np.bincount(y[y >= 0], minlength=19)
        for cls in ('road', 'sidewalk', 'building', 'vegetation', 'car'):
            assert hist[names.index(cls)] > 4000, cls
        assert hist[names.index('road')] > hist[names.index('parking')] > 0
        for cls in ('bicycle', 'truck', 'person', 'other-ground'):      # not in these residential scans
            assert hist[names.index(cls)] == 0, cls
        # moving-motorcyclist (255) is the only motorcyclist source here
        assert hist[names.index('motorcyclist')] == int((sem == 255).sum()) > 0


def test_nyu40_to_scannet20_on_the_real_scene():
    from perception_nodes.io.kitti import DATA_ENV, shared_data_dir
    d = shared_data_dir() / 'scannet_scene0000_00'
    if not d.is_dir():
        pytest.skip(f'real data not found at {d} (set ${DATA_ENV})')
    sem = np.load(d / 'scene0000_00_sem_label_all.npy')
    lm = load_label_map('scannet20')
    y = lm.apply(sem)
    assert y.shape == sem.shape and y.min() >= -1 and y.max() < 20
    np.testing.assert_array_equal(y == -1, ~np.isin(sem, VALID_CLASS_IDS_20))
    hist = dict(zip(lm.class_names, np.bincount(y[y >= 0], minlength=20).tolist()))
    # a bedroom / living room: walls and floor dominate; its bed, sofa, desk and toilet are there
    assert hist['wall'] > hist['floor'] > 5000
    for cls in ('cabinet', 'bed', 'sofa', 'table', 'door', 'desk', 'curtain', 'refrigerator', 'toilet'):
        assert hist[cls] > 300, cls
    assert hist['chair'] == hist['bathtub'] == 0
