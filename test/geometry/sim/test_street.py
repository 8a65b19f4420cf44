"""The street with trucks, motorcycles, bicyclists and traffic signs; consecutive frames of a drive."""
from __future__ import annotations

import numpy as np

from perception_nodes.geometry.projection import pixel_indices, project_frame
from perception_nodes.geometry.sim import SIM_CLASSES, SMALL_BEAM_MODEL
from perception_nodes.geometry.sim.scene import CAR, POLE
from perception_nodes.geometry.sim.street import (BICYCLIST, MOTORCYCLE, RENDER_CLASS, STREET_CLASSES,
                                                  TRAFFIC_SIGN, TRUCK, make_street_frame, make_street_scene,
                                                  street_sequence)


def test_street_scene_adds_the_four_classes():
    street = make_street_scene(0)
    assert STREET_CLASSES[:len(SIM_CLASSES)] == SIM_CLASSES
    assert STREET_CLASSES[TRUCK] == 'truck' and STREET_CLASSES[TRAFFIC_SIGN] == 'traffic-sign'
    present = set(street.instance_class.tolist())
    assert {TRUCK, MOTORCYCLE, BICYCLIST, TRAFFIC_SIGN} <= present
    # render classes stay base classes (the renderer's palette), added classes come per instance
    s = street.scene
    for prim_cls, prim_inst in ((s.box_class, s.box_instance), (s.cyl_class, s.cyl_instance),
                                (s.sph_class, s.sph_instance)):
        assert int(prim_cls.max()) < len(SIM_CLASSES)
        fine = street.fine_labels(prim_inst.numpy(), prim_cls.numpy())
        for f, r in zip(fine, prim_cls.numpy()):
            assert r == RENDER_CLASS.get(int(f), int(f))
    # a tree keeps a trunk and a crown class under one instance id
    tree = s.cyl_instance[s.cyl_class == 5]
    if len(tree):
        assert street.fine_labels(np.array([int(tree[0])] * 2), np.array([5, 4])).tolist() == [5, 4]
    assert RENDER_CLASS[TRUCK] == CAR and RENDER_CLASS[TRAFFIC_SIGN] == POLE
    again = make_street_scene(0)
    np.testing.assert_array_equal(again.scene.boxes.numpy(), s.boxes.numpy())


def test_street_frame_labels_and_rasters_agree():
    frame = make_street_frame(2, image_size='tiny', beam_model=SMALL_BEAM_MODEL)
    assert frame.labels.max() < len(STREET_CLASSES)
    assert np.isin([TRUCK, TRAFFIC_SIGN], frame.labels).any()
    view = frame.cameras[0]
    proj = project_frame(frame)
    vis = view.truth['visible']
    rows, cols = pixel_indices(proj.uv[0], view.image.shape[:2])
    agree = view.truth['class'][rows.numpy()[vis], cols.numpy()[vis]] == frame.labels[vis]
    assert agree.mean() > 0.9


def test_sequence_moves_the_ego_and_keeps_instance_ids():
    frames = street_sequence(1, 3, step=2.0, image_size=(40, 120), beam_model=SMALL_BEAM_MODEL)
    assert [f.index for f in frames] == [1000, 1001, 1002] and len({f.stamp_ns for f in frames}) == 3
    # a static object's points move by -step along x from one frame to the next
    common = set(frames[0].instances.tolist()) & set(frames[1].instances.tolist()) - {0}
    shifts = []
    for i in common:
        a = frames[0].points[frames[0].instances == i]
        b = frames[1].points[frames[1].instances == i]
        if len(a) > 30 and len(b) > 30:
            shifts.append(np.median(b[:, 0]) - np.median(a[:, 0]))
    assert shifts and abs(np.median(shifts) + 2.0) < 0.3
    # the drive corridor is clear: no point within 1 m of the sensor
    for f in frames:
        assert np.linalg.norm(f.points[:, :2], axis=1).min() > 1.0
