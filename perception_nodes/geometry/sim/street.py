"""A street with SemanticKITTI's four zero-shot classes: trucks, motorcycles, bicyclists, traffic signs.

The base world (:func:`~perception_nodes.geometry.sim.scene.make_scene`) has seven classes. Affinity3D's
generalised zero-shot split holds out motorcycle, truck, bicyclist and traffic-sign, and CLIP confuses them
with look-alikes (truck / car, bicyclist / person, traffic-sign / pole), so this module adds them:

- truck: a large box (7-10 m long, ~2.5 m wide, 3-3.8 m tall) in a lane;
- motorcycle: a small box (~2.0 x 0.8 x 1.2 m) in a lane or parked at the kerb;
- bicyclist: a rider cylinder on a thin bicycle box, one instance;
- traffic-sign: a plate (box) on top of its own pole (the pole is a separate ``pole`` instance).

The renderer colours primitives by the base classes, so every primitive keeps a base *render* class
(truck and motorcycle render as car, bicyclist as person, traffic-sign as pole) and the fine class of
an added object is looked up by its instance id (:attr:`StreetScene.instance_class`).
:func:`make_street_frame` returns a :class:`~perception_nodes.frame.Frame` whose ``labels`` and camera
``truth['class']`` rasters are in :data:`STREET_CLASSES`. :func:`street_sequence` drives the ego along the
road for consecutive frames (the same instances seen again, as Affinity3D's temporal queue assumes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from perception_nodes.frame import Frame
from perception_nodes.geometry.sim.lidar import LidarBeamModel
from perception_nodes.geometry.sim.scene import CAR, PERSON, POLE, SIM_CLASSES, Scene, make_scene

STREET_CLASSES: list[str] = SIM_CLASSES + ['truck', 'motorcycle', 'bicyclist', 'traffic-sign']
TRUCK, MOTORCYCLE, BICYCLIST, TRAFFIC_SIGN = range(len(SIM_CLASSES), len(STREET_CLASSES))
# the base class each added class is rendered (coloured) as
RENDER_CLASS = {TRUCK: CAR, MOTORCYCLE: CAR, BICYCLIST: PERSON, TRAFFIC_SIGN: POLE}


@dataclass
class StreetScene:
    """A :class:`Scene` (base render classes) plus the fine class of every instance id."""

    scene: Scene
    instance_class: np.ndarray   # (I + 1,) int64: added class of instance id i, -1 = keep the render class

    def fine_labels(self, instances: np.ndarray, render_classes: np.ndarray) -> np.ndarray:
        """Fine classes of hits given their instance ids and base classes (-1 / sky stays -1).

        Instances of the base world keep their render class (a tree's trunk and crown share an instance
        but not a class); instances of the added classes take theirs.
        """
        inst = np.asarray(instances).astype(np.int64)
        cls = np.asarray(render_classes).astype(np.int64)
        known = (inst >= 0) & (inst < len(self.instance_class))
        added = np.where(known, self.instance_class[np.clip(inst, 0, len(self.instance_class) - 1)], -1)
        return np.where(cls < 0, -1, np.where(added >= 0, added, cls))

    def translated(self, dx: float, dy: float = 0.0) -> 'StreetScene':
        """Move the street by (dx, dy) metres (the ego drives by (-dx, -dy)); a new StreetScene."""
        s = self.scene
        shift3 = torch.tensor([dx, dy, 0.0])
        boxes = s.boxes.clone()
        boxes[:, :3] += shift3
        cyl = s.cylinders.clone()
        cyl[:, :2] += shift3[:2]
        sph = s.spheres.clone()
        sph[:, :3] += shift3
        moved = Scene(boxes=boxes, box_class=s.box_class, box_instance=s.box_instance, cylinders=cyl,
                      cyl_class=s.cyl_class, cyl_instance=s.cyl_instance, spheres=sph, sph_class=s.sph_class,
                      sph_instance=s.sph_instance, ground_z=s.ground_z, ground_class=s.ground_class)
        return StreetScene(moved, self.instance_class)

    def without_corridor(self, x0: float, x1: float, half_width: float = 1.2) -> 'StreetScene':
        """Drop every instance with a primitive whose footprint circle reaches the ego's drive corridor.

        The corridor is ``x0 <= x <= x1``, ``|y| < half_width`` (ground level), so a moving ego never
        starts inside an object.
        """
        s = self.scene

        def hits(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            dx = torch.clamp(x, min=x0, max=x1) - x
            return torch.hypot(dx, y) < r + half_width

        box_r = 0.5 * torch.hypot(s.boxes[:, 3], s.boxes[:, 4])
        bad = set(s.box_instance[hits(s.boxes[:, 0], s.boxes[:, 1], box_r)].tolist())
        bad |= set(s.cyl_instance[hits(s.cylinders[:, 0], s.cylinders[:, 1], s.cylinders[:, 4])].tolist())
        bad |= set(s.sph_instance[hits(s.spheres[:, 0], s.spheres[:, 1], s.spheres[:, 3])].tolist())
        if not bad:
            return self
        gone = torch.tensor(sorted(bad))

        def keep(inst: torch.Tensor) -> torch.Tensor:
            return ~torch.isin(inst, gone)

        kb, kc, ks = keep(s.box_instance), keep(s.cyl_instance), keep(s.sph_instance)
        kept = Scene(boxes=s.boxes[kb], box_class=s.box_class[kb], box_instance=s.box_instance[kb],
                     cylinders=s.cylinders[kc], cyl_class=s.cyl_class[kc], cyl_instance=s.cyl_instance[kc],
                     spheres=s.spheres[ks], sph_class=s.sph_class[ks], sph_instance=s.sph_instance[ks],
                     ground_z=s.ground_z, ground_class=s.ground_class)
        return StreetScene(kept, self.instance_class)


def _footprints(scene: Scene) -> list[tuple[float, float, float]]:
    """(x, y, r) footprint circles of the scene's primitives (ground excluded)."""
    out = [(float(b[0]), float(b[1]), 0.5 * math.hypot(float(b[3]), float(b[4]))) for b in scene.boxes]
    out += [(float(c[0]), float(c[1]), float(c[4])) for c in scene.cylinders]
    out += [(float(s[0]), float(s[1]), float(s[3])) for s in scene.spheres]
    return out


def make_street_scene(seed: int, n_trucks: int = 3, n_motorcycles: int = 3, n_bicyclists: int = 3,
                      n_signs: int = 4, extent: float = 40.0, clear_radius: float = 3.5,
                      **base_kwargs) -> StreetScene:
    """Build the base street of ``make_scene(seed, **base_kwargs)`` plus the four added classes (seeded)."""
    base = make_scene(seed, extent=extent, clear_radius=clear_radius, **base_kwargs)
    rng = np.random.default_rng([seed, 7919])
    placed = _footprints(base)

    def place(sample, r: float, tries: int = 60):
        for _ in range(tries):
            x, y = sample()
            if math.hypot(x, y) < clear_radius + r:
                continue
            if all(math.hypot(x - px, y - py) > r + pr + 0.3 for px, py, pr in placed):
                placed.append((x, y, r))
                return x, y
        return None

    boxes = [list(map(float, b)) for b in base.boxes]
    box_cls, box_inst = base.box_class.tolist(), base.box_instance.tolist()
    cyls = [list(map(float, c)) for c in base.cylinders]
    cyl_cls, cyl_inst = base.cyl_class.tolist(), base.cyl_instance.tolist()
    fine: dict[int, int] = {}        # added instances only; base instances keep their render classes
    next_id = base.num_instances + 1

    def lane() -> tuple[float, float]:
        return rng.uniform(-extent, extent), float(rng.choice([-4.5, -1.8, 1.8, 4.5])) + rng.normal(0, 0.3)

    def kerb() -> tuple[float, float]:
        return rng.uniform(-extent, extent), float(rng.choice([-1, 1])) * rng.uniform(5.8, 6.6)

    for kind, count in ((TRUCK, n_trucks), (MOTORCYCLE, n_motorcycles)):
        for _ in range(count):
            if kind == TRUCK:
                lx, ly, lz = rng.uniform(7.0, 10.0), rng.uniform(2.4, 2.6), rng.uniform(3.0, 3.8)
            else:
                lx, ly, lz = rng.uniform(1.8, 2.2), rng.uniform(0.7, 0.9), rng.uniform(1.1, 1.3)
            pos = place(lane if kind == TRUCK or rng.random() < 0.5 else kerb, 0.5 * math.hypot(lx, ly))
            if pos is None:
                continue
            yaw = float(rng.choice([0.0, math.pi])) + rng.normal(0, 0.06)
            boxes.append([pos[0], pos[1], lz / 2, lx, ly, lz, yaw])
            box_cls.append(RENDER_CLASS[kind])
            box_inst.append(next_id)
            fine[next_id] = kind
            next_id += 1
    for _ in range(n_bicyclists):
        pos = place(lambda: (rng.uniform(-25, 25), float(rng.choice([-1, 1])) * rng.uniform(3.2, 6.0)), 0.9)
        if pos is None:
            continue
        yaw = float(rng.choice([0.0, math.pi])) + rng.normal(0, 0.1)
        boxes.append([pos[0], pos[1], 0.5, 1.7, 0.15, 1.0, yaw])            # the bicycle
        box_cls.append(RENDER_CLASS[BICYCLIST])
        box_inst.append(next_id)
        cyls.append([pos[0], pos[1], 0.9, rng.uniform(1.7, 1.9), rng.uniform(0.22, 0.28)])   # the rider
        cyl_cls.append(RENDER_CLASS[BICYCLIST])
        cyl_inst.append(next_id)
        fine[next_id] = BICYCLIST
        next_id += 1
    for _ in range(n_signs):
        r = rng.uniform(0.05, 0.08)
        pos = place(lambda: (rng.uniform(-extent, extent),
                             float(rng.choice([-1, 1])) * rng.uniform(6.0, 7.0)), 0.5)
        if pos is None:
            continue
        top = rng.uniform(2.2, 2.8)
        cyls.append([pos[0], pos[1], 0.0, top, r])                            # the sign's pole
        cyl_cls.append(POLE)
        cyl_inst.append(next_id)
        next_id += 1
        w, h = rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.9)
        yaw = math.pi / 2 + rng.normal(0, 0.2)                                # faces the road
        boxes.append([pos[0], pos[1], top + h / 2, w, 0.06, h, yaw])
        box_cls.append(RENDER_CLASS[TRAFFIC_SIGN])
        box_inst.append(next_id)
        fine[next_id] = TRAFFIC_SIGN
        next_id += 1
    table = np.full(next_id, -1, dtype=np.int64)
    for i, c in fine.items():
        table[i] = c
    scene = Scene(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 7), box_class=box_cls,
                  box_instance=box_inst, cylinders=torch.tensor(cyls, dtype=torch.float32).reshape(-1, 5),
                  cyl_class=cyl_cls, cyl_instance=cyl_inst, spheres=base.spheres, sph_class=base.sph_class,
                  sph_instance=base.sph_instance, ground_z=base.ground_z, ground_class=base.ground_class)
    return StreetScene(scene, table)


def make_street_frame(seed: int, street: StreetScene | None = None, num_cameras: int = 1,
                      image_size='small', beam_model: LidarBeamModel | None = None, **frame_kwargs) -> Frame:
    """``make_sim_frame`` on a :class:`StreetScene`, with labels and truth rasters in STREET_CLASSES."""
    from perception_nodes.geometry.sim.frame import make_sim_frame
    street = street if street is not None else make_street_scene(seed)
    frame = make_sim_frame(seed, num_cameras=num_cameras, image_size=image_size, beam_model=beam_model,
                           scene=street.scene, **frame_kwargs)
    frame.labels = street.fine_labels(frame.instances, frame.labels)
    for view in frame.cameras:
        view.truth['class'] = street.fine_labels(view.truth['instance'], view.truth['class'])
    return frame


def street_sequence(seed: int, num_frames: int, step: float = 2.0, num_cameras: int = 1, image_size='small',
                    beam_model: LidarBeamModel | None = None, **frame_kwargs) -> list[Frame]:
    """Consecutive frames of one street, the ego advancing ``step`` metres along x per frame.

    Frame t has stamp / index ``seed * 1000 + t`` (its own LiDAR noise and teacher noise draws); instance
    ids are shared by all frames, so an object keeps its id as in a tracked sequence. ``frame_kwargs`` go
    to ``make_sim_frame`` (e.g. ``camera_offset``).
    """
    start = -step * (num_frames - 1) / 2            # centre the drive on the scene
    street = make_street_scene(seed).without_corridor(start - 1.0, start + step * (num_frames - 1) + 1.0)
    return [make_street_frame(seed * 1000 + t, street.translated(-(start + t * step)), num_cameras,
                              image_size, beam_model, **frame_kwargs) for t in range(num_frames)]
