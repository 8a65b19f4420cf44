"""Ground truth for ovp eval: label maps vs the vocabulary, unlisted ids, instances, views, ray casting."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from perception_nodes.evaluation.queries import class_queries, find_query_file, load_queries
from perception_nodes.evaluation.truth import (MissingTruthError, TruthMapper, check_bag_truth, field_of_view,
                                               load_masks, ray_cast_truth, resolve_label_map, sensor_origin)
from perception_nodes.frame import Frame
from perception_nodes.geometry.occupancy import FREE, IGNORE, OCCUPIED
from perception_nodes.geometry.voxels import GridSpec
from perception_nodes.metrics import load_label_map
from perception_nodes.vocabulary import load_vocabulary


def test_label_map_must_fit_the_vocabulary():
    kitti = load_vocabulary('semantickitti')
    lm = resolve_label_map(None, kitti.names, kitti)
    assert lm.name == 'semantickitti' and lm.class_names == kitti.names
    sim = load_vocabulary('sim')
    assert resolve_label_map(None, sim.names, sim).mapping == {k: k for k in range(7)}   # vocabulary ids
    with pytest.raises(ValueError, match=r"scannet20.*'wall'.*'car'"):
        resolve_label_map('scannet20', kitti.names, kitti)
    with pytest.raises(ValueError, match='another order'):
        resolve_label_map('semantickitti', list(reversed(kitti.names)), kitti)


def test_mapper_counts_unlisted_raw_ids():
    mapper = TruthMapper(load_label_map('semantickitti'))
    raw = np.array([10, 0, 52, 40, 7, 7, 1000, 252], dtype=np.int32)     # 7 and 1000 are listed nowhere
    frame = Frame(0, 'velodyne', np.zeros((raw.size, 3)), labels=raw)
    unlisted: Counter[int] = Counter()
    gt = mapper.semantic(frame, unlisted)
    car, road = 0, 8
    np.testing.assert_array_equal(gt, [car, -1, -1, road, -1, -1, -1, car])
    assert unlisted == {7: 2, 1000: 1}
    with pytest.raises(MissingTruthError, match='label'):
        mapper.semantic(Frame(0, 'velodyne', np.zeros((2, 3))))


def test_instances_are_class_instance_pairs_of_thing_classes():
    mapper = TruthMapper(load_label_map('semantickitti'))
    # car 1, car 1, car 2, person 1, road with an instance id, car without one, ignored point
    raw = np.array([10, 10, 10, 30, 40, 10, 0])
    inst = np.array([1, 1, 2, 1, 5, 0, 3])
    frame = Frame(0, 'velodyne', np.zeros((raw.size, 3)), labels=raw, instances=inst)
    ids = mapper.instances(frame, mapper.semantic(frame))
    assert ids[0] == ids[1] != ids[2] and ids[3] not in (ids[0], ids[2])     # person 1 is not car 1
    assert ids[0] >= 0 and ids[2] >= 0 and ids[3] >= 0
    np.testing.assert_array_equal(ids[4:], [-1, -1, -1])                      # stuff, no id, ignored
    assert mapper.instances(Frame(0, 'v', np.zeros((7, 3)), labels=raw), np.zeros(7, int)) is None


def test_field_of_view_is_not_visibility(sim_truth_frames):
    frame = sim_truth_frames[0]
    fov = field_of_view(frame)
    truly_visible = np.any([v.truth['visible'] for v in frame.cameras], axis=0)
    assert (truly_visible <= fov).all()                   # what a camera sees is in its field of view
    assert (fov & ~truly_visible).sum() > 0               # ... but occluded points are in it too
    assert 0 < fov.mean() < 1
    no_camera = Frame(0, 'velodyne', frame.points)
    assert not field_of_view(no_camera).any()


def test_ray_cast_truth_majority_of_evaluated_labels():
    grid = GridSpec((0.0, -0.5, -0.5), (5.0, 0.5, 0.5), (5, 1, 1))
    points = np.array([[3.5, 0, 0], [3.6, 0, 0], [3.7, 0, 0], [4.5, 0, 0]], np.float32)
    gt = np.array([2, 2, 1, -1])
    out = ray_cast_truth(points, gt, grid, np.array([0.2, 0.0, 0.0]))
    # the ray to 4.5 crosses the 4th voxel, which holds labelled returns: its majority class wins over free
    np.testing.assert_array_equal(out, [FREE, FREE, FREE, 2, OCCUPIED])
    out = ray_cast_truth(points[:1], gt[:1], grid, np.array([2.2, 0.0, 0.0]))
    np.testing.assert_array_equal(out, [IGNORE, IGNORE, FREE, 2, IGNORE])
    assert sensor_origin(Frame(0, 'map', points)) is None
    np.testing.assert_array_equal(sensor_origin(Frame(0, 'velodyne', points)), [0, 0, 0])


def test_bag_without_labels_is_refused_naming_the_fields(sim_plain_bag, sim_truth_bag):
    with pytest.raises(MissingTruthError, match=r"\['label', 'instance'\].*x, y, z, intensity"):
        check_bag_truth(sim_plain_bag)
    assert check_bag_truth(sim_truth_bag) == ['x', 'y', 'z', 'intensity', 'label', 'instance']


def test_queries(tmp_path):
    names = ['road', 'car', 'building']
    path = tmp_path / 'q.yaml'
    path.write_text('queries:\n  - {query: a parked car, classes: [car]}\n'
                    '  - {query: lamp, instances: [3, 4]}\n')
    a, b = load_queries(path, names)
    assert (a.text, a.classes, b.instances) == ('a parked car', [1], [3, 4])
    gt = np.array([0, 1, 1, 2])
    frame = Frame(0, 'v', np.zeros((4, 3)), labels=gt, instances=np.array([3, 0, 4, 4]))
    np.testing.assert_array_equal(a.positives(gt, frame), [False, True, True, False])
    np.testing.assert_array_equal(b.positives(gt, frame), [True, False, True, True])
    assert [q.text for q in class_queries(names)] == names
    twice = '- {query: x, classes: [car]}\n- {query: x, classes: [car]}'
    for bad, match in (('- {query: x, classes: [sky]}', 'not classes'), ('- {query: x}', 'no "classes"'),
                       ('[]', 'non-empty'), (twice, 'twice')):
        path.write_text(bad)
        with pytest.raises(ValueError, match=match):
            load_queries(path, names)
    bag = tmp_path / 'bag'
    bag.mkdir()
    assert find_query_file(bag) is None
    (tmp_path / 'bag.queries.yaml').write_text('[]')
    assert find_query_file(bag) == tmp_path / 'bag.queries.yaml'


def test_masks_file(tmp_path):
    path = tmp_path / 'm.npz'
    np.savez(path, masks=np.eye(3, 5, dtype=bool), scores=np.array([0.1, 0.2, 0.3]))
    masks, scores = load_masks(path)
    assert masks.shape == (3, 5) and scores.tolist() == [0.1, 0.2, 0.3]
    np.savez(path, masks=np.eye(3, 5), scores=np.ones(3))
    with pytest.raises(ValueError, match='bool'):
        load_masks(path)
    np.savez(path, masks=np.eye(3, 5, dtype=bool))
    with pytest.raises(ValueError, match='scores'):
        load_masks(path)
