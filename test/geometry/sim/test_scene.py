"""Ray-primitive intersections of the synthetic world: known answers and a brute-force check of culling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception_nodes.geometry.sim.scene import SIM_CLASSES, Scene, _boxes, _cylinders, _spheres, make_scene


def test_known_answers():
    scene = Scene(boxes=[[10.0, 0.0, 1.0, 2.0, 2.0, 2.0, math.pi / 4]], box_class=[1], box_instance=[1],
                  cylinders=[[0.0, 10.0, 0.0, 5.0, 0.5]], cyl_class=[3], cyl_instance=[2],
                  spheres=[[0.0, -10.0, 2.0, 1.0]], sph_class=[4], sph_instance=[3])
    o = torch.tensor([0.0, 0.0, 1.0])
    dirs = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0.1], [0, -1.0, 0.2], [1.0, 0, -0.5],
                         [-1.0, 0, 0.2], [0, 0.1, 1.0]])
    hit = scene.intersect(o, dirs)
    # box rotated 45 degrees: its corner points at the origin, at x = 10 - sqrt(2)
    assert hit.t[0].item() == pytest.approx(10 - math.sqrt(2), abs=1e-4)
    # one of the two faces meeting at the corner, facing the origin
    assert hit.normal[0, 0].item() == pytest.approx(-math.sqrt(0.5), abs=1e-5)
    assert abs(hit.normal[0, 1].item()) == pytest.approx(math.sqrt(0.5), abs=1e-5)
    assert hit.t[1].item() == pytest.approx(9.5, abs=1e-5) and hit.cls[1] == 3 and hit.instance[1] == 2
    torch.testing.assert_close(hit.normal[1], torch.tensor([0.0, -1.0, 0.0]))
    # sphere at (0, -10, 2), r = 1: ray (0, -1, 0.1) from z = 1
    t = hit.t[2].item()
    p = np.array([0.0, 0.0, 1.0]) + t * np.array([0.0, -1.0, 0.1])
    assert np.linalg.norm(p - [0, -10, 2]) == pytest.approx(1.0, abs=1e-4) and hit.cls[2] == 4
    # (t - 10)^2 + (0.2 t - 1)^2 = 1  ->  1.04 t^2 - 20.4 t + 100 = 0  ->  t = 20 / 2.08
    assert hit.t[3].item() == pytest.approx(20 / 2.08, abs=1e-4) and hit.instance[3] == 3
    assert hit.t[4].item() == pytest.approx(2.0) and hit.cls[4] == 0 and hit.instance[4] == 0
    torch.testing.assert_close(hit.normal[4], torch.tensor([0.0, 0.0, 1.0]))
    assert math.isinf(hit.t[5].item()) and hit.cls[5] == -1 and hit.instance[5] == -1
    assert math.isinf(hit.t[6].item())


def test_cylinder_cap():
    scene = Scene(cylinders=[[5.0, 0.0, 0.0, 2.0, 1.0]], cyl_class=[3], cyl_instance=[1])
    hit = scene.intersect(torch.tensor([5.2, 0.1, 4.0]), torch.tensor([[0.0, 0.0, -1.0]]))
    assert hit.t[0].item() == pytest.approx(2.0) and hit.cls[0] == 3
    torch.testing.assert_close(hit.normal[0], torch.tensor([0.0, 0.0, 1.0]))


def test_culling_equals_brute_force():
    scene = make_scene(3)
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(4000, 3, generator=g)
    dirs[:, 2] = -dirs[:, 2].abs() * 0.3
    o = torch.tensor([0.3, -0.2, 1.73])
    hit = scene.intersect(o, dirs)
    oo = o.expand(len(dirs), 3)
    cands = [(scene.ground_z - o[2]) / dirs[:, 2:3]]
    for fn, prims in ((_boxes, scene.boxes), (_cylinders, scene.cylinders), (_spheres, scene.spheres)):
        for p in prims:
            t, _ = fn(oo, dirs, p.expand(len(dirs), -1))
            cands.append(t[:, None])
    t_all = torch.cat(cands, dim=1)
    t_all = torch.where(t_all > 1e-4, t_all, torch.full_like(t_all, float('inf')))
    torch.testing.assert_close(hit.t, t_all.min(dim=1).values)


def test_make_scene_is_seeded():
    a, b, c = make_scene(7), make_scene(7), make_scene(8)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.spheres, b.spheres)
    assert not torch.equal(a.boxes, c.boxes)
    # the first car is ahead of the ego, classes are valid, instance ids unique per primitive (trees share)
    assert 6.0 <= a.boxes[0, 0] <= 14.0 and SIM_CLASSES[int(a.box_class[0])] == 'car'
    all_cls = torch.cat([a.box_class, a.cyl_class, a.sph_class])
    assert ((all_cls > 0) & (all_cls < len(SIM_CLASSES))).all()
    assert len(set(a.box_instance.tolist())) == len(a.boxes)


def test_bad_scene():
    with pytest.raises(ValueError, match='boxes'):
        Scene(boxes=[[0, 0, 0, 1, 1, 1, 0]], box_class=[1, 2], box_instance=[1])
