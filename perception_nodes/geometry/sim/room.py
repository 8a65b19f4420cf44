"""Synthetic indoor rooms with instance truth, scanned into point sets with normals (for UnScene3D).

A room is a :class:`~perception_nodes.geometry.sim.scene.Scene` of the same primitives as the street
(the floor is the ground plane, walls and furniture are yawed boxes, legs and lamp poles vertical
cylinders, lamp shades spheres): tables (top + 4 legs), chairs (seat + back + 4 legs), cabinets, sofas
(base + back), boxes and floor lamps, one instance id per object (the floor is instance 0, each wall its
own instance). It is "scanned" like an RGB-D reconstruction: rays from a few scanner positions inside the
room hit the visible surfaces, and the hits are voxel-downsampled (4 cm by default, about the vertex
spacing of ScanNet meshes), keeping per point the true normal, a colour, the class
(:data:`ROOM_CLASSES`) and the instance.

:func:`room_view` renders a posed pinhole camera (RGB, depth, class and instance rasters) as a
:class:`~perception_nodes.frame.CameraView` whose ``T_cam_lidar`` maps room coordinates to the camera,
with ``truth['visible']`` from the depth raster (what an RGB-D back-projection would use).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from perception_nodes.frame import CameraModel, CameraView
from perception_nodes.geometry.sim.scene import Scene

ROOM_CLASSES: list[str] = ['floor', 'wall', 'table', 'chair', 'cabinet', 'sofa', 'box', 'lamp']
FLOOR, WALL, TABLE, CHAIR, CABINET, SOFA, BOX, LAMP = range(len(ROOM_CLASSES))
ROOM_COLORS = np.array([[150, 120, 90], [220, 220, 210], [140, 90, 50], [60, 100, 160], [200, 180, 140],
                        [120, 60, 70], [190, 150, 90], [240, 230, 120]], dtype=np.uint8)
STRUCTURE_CLASSES = (FLOOR, WALL)     # not instances in the ScanNet instance benchmark
WALL_HEIGHT = 2.5


@dataclass
class Room:
    """A scanned room: the primitives and the points with per-point truth (room frame, z up, floor z = 0)."""

    scene: Scene
    instance_class: np.ndarray   # (I + 1,) class of each instance id
    size: tuple[float, float]    # (lx, ly) metres, the room spans [0, lx] x [0, ly]
    points: np.ndarray           # (N, 3) float32
    normals: np.ndarray          # (N, 3) float32 unit, facing the scanner that saw the point
    colors: np.ndarray           # (N, 3) uint8
    classes: np.ndarray          # (N,) int64 index into ROOM_CLASSES
    instances: np.ndarray        # (N,) int64 instance id (0 floor, walls and objects >= 1)

    @property
    def object_mask(self) -> np.ndarray:
        """(N,) bool: the point belongs to an object (not floor or wall)."""
        return ~np.isin(self.classes, STRUCTURE_CLASSES)


class _Builder:
    def __init__(self) -> None:
        self.boxes: list[list[float]] = []
        self.box_inst: list[int] = []
        self.cyls: list[list[float]] = []
        self.cyl_inst: list[int] = []
        self.sphs: list[list[float]] = []
        self.sph_inst: list[int] = []
        self.classes: dict[int, int] = {0: FLOOR}
        self.next_id = 1

    def new(self, cls: int) -> int:
        i = self.next_id
        self.classes[i] = cls
        self.next_id += 1
        return i

    def box(self, inst: int, cx: float, cy: float, z0: float, lx: float, ly: float, lz: float,
            yaw: float) -> None:
        self.boxes.append([cx, cy, z0 + lz / 2, lx, ly, lz, yaw])
        self.box_inst.append(inst)

    def legs(self, inst: int, cx: float, cy: float, lx: float, ly: float, yaw: float, height: float,
             r: float = 0.025) -> None:
        c, s = math.cos(yaw), math.sin(yaw)
        for sx in (-1, 1):
            for sy in (-1, 1):
                dx, dy = sx * (lx / 2 - 2 * r), sy * (ly / 2 - 2 * r)
                self.cyls.append([cx + c * dx - s * dy, cy + s * dx + c * dy, 0.0, height, r])
                self.cyl_inst.append(inst)

    def scene(self) -> tuple[Scene, np.ndarray]:
        table = np.zeros(self.next_id, dtype=np.int64)
        for i, c in self.classes.items():
            table[i] = c

        def cls_of(inst: list[int]) -> list[int]:
            return [int(table[i]) for i in inst]
        scene = Scene(boxes=torch.tensor(self.boxes, dtype=torch.float32).reshape(-1, 7),
                      box_class=cls_of(self.box_inst), box_instance=self.box_inst,
                      cylinders=torch.tensor(self.cyls, dtype=torch.float32).reshape(-1, 5),
                      cyl_class=cls_of(self.cyl_inst), cyl_instance=self.cyl_inst,
                      spheres=torch.tensor(self.sphs, dtype=torch.float32).reshape(-1, 4),
                      sph_class=cls_of(self.sph_inst), sph_instance=self.sph_inst, ground_class=FLOOR)
        return scene, table


def _layout(seed: int, n_objects: int,
            size: tuple[float, float] | None) -> tuple[_Builder, tuple[float, float]]:
    rng = np.random.default_rng([seed, 31337])
    lx, ly = size if size is not None else (float(rng.uniform(4.5, 7.0)), float(rng.uniform(4.0, 6.0)))
    b = _Builder()
    t = 0.1
    for cx, cy, wx, wy in ((lx / 2, -t / 2, lx + 2 * t, t), (lx / 2, ly + t / 2, lx + 2 * t, t),
                           (-t / 2, ly / 2, t, ly), (lx + t / 2, ly / 2, t, ly)):
        b.box(b.new(WALL), cx, cy, 0.0, wx, wy, WALL_HEIGHT, 0.0)
    placed: list[tuple[float, float, float]] = []

    def spot(r: float, wall: bool) -> tuple[float, float, float] | None:
        for _ in range(80):
            if wall:   # against a random wall, facing the room
                side = int(rng.integers(4))
                along = rng.uniform(r + 0.1, (lx if side < 2 else ly) - r - 0.1)
                off = r + 0.05
                x, y, yaw = ((along, off, 0.0), (along, ly - off, math.pi), (off, along, math.pi / 2),
                             (lx - off, along, -math.pi / 2))[side]
            else:
                x, y, yaw = rng.uniform(r + 0.3, lx - r - 0.3), rng.uniform(r + 0.3, ly - r - 0.3), \
                    rng.uniform(-math.pi, math.pi)
            if all(math.hypot(x - px, y - py) > r + pr + 0.15 for px, py, pr in placed):
                placed.append((x, y, r))
                return x, y, yaw
        return None

    kinds = [TABLE, CHAIR, CHAIR, CABINET, SOFA, BOX, LAMP, CHAIR, TABLE, BOX, CABINET, CHAIR]
    for k in range(n_objects):
        cls = kinds[k] if k < len(kinds) else int(rng.choice([TABLE, CHAIR, CABINET, BOX, LAMP]))
        if cls == TABLE:
            w, d = rng.uniform(0.9, 1.6), rng.uniform(0.6, 0.9)
            pos = spot(0.5 * math.hypot(w, d), False)
            if pos is None:
                continue
            h = rng.uniform(0.72, 0.76)
            inst = b.new(TABLE)
            b.box(inst, pos[0], pos[1], h - 0.04, w, d, 0.04, pos[2])
            b.legs(inst, pos[0], pos[1], w, d, pos[2], h - 0.04)
        elif cls == CHAIR:
            w = rng.uniform(0.42, 0.5)
            pos = spot(0.45, False)
            if pos is None:
                continue
            inst = b.new(CHAIR)
            seat = rng.uniform(0.43, 0.48)
            b.box(inst, pos[0], pos[1], seat, w, w, 0.04, pos[2])
            c, s = math.cos(pos[2]), math.sin(pos[2])
            b.box(inst, pos[0] - c * (w / 2 - 0.02), pos[1] - s * (w / 2 - 0.02), seat + 0.04, 0.04, w,
                  rng.uniform(0.4, 0.5), pos[2])
            b.legs(inst, pos[0], pos[1], w, w, pos[2], seat, r=0.02)
        elif cls == CABINET:
            w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.6), rng.uniform(0.8, 2.0)
            pos = spot(0.5 * math.hypot(w, d), True)
            if pos is None:
                continue
            b.box(b.new(CABINET), pos[0], pos[1], 0.0, d, w, h, pos[2])
        elif cls == SOFA:
            w, d = rng.uniform(1.6, 2.2), rng.uniform(0.8, 0.95)
            pos = spot(0.5 * math.hypot(w, d), True)
            if pos is None:
                continue
            inst = b.new(SOFA)
            b.box(inst, pos[0], pos[1], 0.0, d, w, 0.45, pos[2])
            c, s = math.cos(pos[2]), math.sin(pos[2])
            b.box(inst, pos[0] - c * (d / 2 - 0.1), pos[1] - s * (d / 2 - 0.1), 0.45, 0.2, w, 0.4, pos[2])
        elif cls == BOX:
            e = rng.uniform(0.3, 0.6)
            pos = spot(0.75 * e, False)
            if pos is None:
                continue
            b.box(b.new(BOX), pos[0], pos[1], 0.0, e, e * rng.uniform(0.7, 1.0), e * rng.uniform(0.6, 1.0),
                  pos[2])
        else:
            pos = spot(0.3, False)
            if pos is None:
                continue
            inst = b.new(LAMP)
            h = rng.uniform(1.4, 1.7)
            b.cyls.append([pos[0], pos[1], 0.0, h, 0.02])
            b.cyl_inst.append(inst)
            b.sphs.append([pos[0], pos[1], h + 0.15, 0.2])
            b.sph_inst.append(inst)
    return b, (lx, ly)


def _sphere_rays(n_azimuth: int, n_elevation: int, low: float = -85.0, high: float = 40.0) -> torch.Tensor:
    el = torch.linspace(math.radians(low), math.radians(high), n_elevation)
    az = torch.arange(n_azimuth) * (2 * math.pi / n_azimuth)
    e, a = torch.meshgrid(el, az, indexing='ij')
    dirs = torch.stack([torch.cos(e) * torch.cos(a), torch.cos(e) * torch.sin(a), torch.sin(e)], -1)
    return dirs.reshape(-1, 3)


def make_room(seed: int, n_objects: int = 10, size: tuple[float, float] | None = None,
              voxel_size: float = 0.04, n_scanners: int = 4, rays: tuple[int, int] = (720, 360),
              noise: float = 0.01) -> Room:
    """Build a seeded room scanned from ``n_scanners`` positions.

    ``rays`` = (azimuth, elevation) steps per scanner; hits are voxel-downsampled to ``voxel_size``.
    """
    b, (lx, ly) = _layout(seed, n_objects, size)
    scene, table = b.scene()
    rng = np.random.default_rng([seed, 2718])
    dirs = _sphere_rays(*rays)
    pts, nrm, inst = [], [], []
    for k in range(n_scanners):
        ang = 2 * math.pi * (k + rng.uniform(-0.15, 0.15)) / max(n_scanners, 1)
        origin = torch.tensor([lx / 2 + 0.3 * lx * math.cos(ang), ly / 2 + 0.3 * ly * math.sin(ang),
                               rng.uniform(1.2, 1.6)], dtype=torch.float32)
        hit = scene.intersect(origin, dirs)
        ok = torch.isfinite(hit.t)
        p = origin + hit.t[ok, None] * dirs[ok]
        p = p + noise * torch.from_numpy(rng.standard_normal((int(ok.sum()), 3))).float()
        pts.append(p.numpy())
        nrm.append(hit.normal[ok].numpy())
        inst.append(hit.instance[ok].numpy())
    p, n, i = np.concatenate(pts), np.concatenate(nrm), np.concatenate(inst)
    inside = (p[:, 0] > -0.05) & (p[:, 0] < lx + 0.05) & (p[:, 1] > -0.05) & (p[:, 1] < ly + 0.05) & \
        (p[:, 2] < WALL_HEIGHT + 0.05)
    p, n, i = p[inside], n[inside], i[inside]
    # voxel-downsample: the first hit of each voxel (deterministic), like a reconstruction's vertices
    cells = np.floor(p / voxel_size).astype(np.int64)
    cells -= cells.min(axis=0)
    dims = cells.max(axis=0) + 1
    _, first = np.unique((cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2], return_index=True)
    p, n, i = p[first], n[first], i[first]
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    cls = table[i]
    tint = 0.8 + 0.4 * ((i * 2654435761) % 1000) / 999.0
    shade = 0.75 + 0.25 * np.abs(n[:, 2])
    col = ROOM_COLORS[cls].astype(np.float64) * (tint * shade)[:, None] + rng.normal(0, 4, (len(p), 3))
    return Room(scene=scene, instance_class=table, size=(lx, ly), points=p.astype(np.float32),
                normals=n.astype(np.float32), colors=np.clip(col, 0, 255).astype(np.uint8),
                classes=cls.astype(np.int64), instances=i.astype(np.int64))


def room_camera(room: Room, index: int, num_views: int = 4, image_size: tuple[int, int] = (240, 320),
                fov_deg: float = 70.0, height: float = 1.5,
                pitch_deg: float = -20.0) -> tuple[CameraModel, np.ndarray]:
    """Place pinhole camera ``index`` near the room's wall, looking at its centre: (model, T_room_cam)."""
    lx, ly = room.size
    h, w = int(image_size[0]), int(image_size[1])
    f = 0.5 * w / math.tan(math.radians(fov_deg) / 2)
    model = CameraModel(frame_id=f'room_camera_{index}', width=w, height=h,
                        K=np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]]), D=np.zeros(5))
    ang = 2 * math.pi * (index + 0.5) / max(num_views, 1)
    pos = np.array([lx / 2 + 0.42 * lx * math.cos(ang), ly / 2 + 0.42 * ly * math.sin(ang), height])
    yaw = math.atan2(ly / 2 - pos[1], lx / 2 - pos[0])
    pitch = math.radians(pitch_deg)
    fwd = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(fwd, right)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, fwd], axis=1)      # camera axes: x right, y down, z forward
    T[:3, 3] = pos
    return model, T


def room_view(room: Room, index: int, num_views: int = 4, image_size: tuple[int, int] = (240, 320),
              depth_tolerance: float = 0.05, **camera_kwargs) -> CameraView:
    """Render camera ``index``: RGB, depth, class and instance rasters and per-point visibility truth."""
    model, T_room_cam = room_camera(room, index, num_views, image_size, **camera_kwargs)
    h, w = model.height, model.width
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing='ij')
    rays = np.linalg.solve(model.K, np.stack([u.ravel(), v.ravel(), np.ones(h * w)]))
    dirs = (T_room_cam[:3, :3] @ (rays / rays[2:3])).T
    hit = room.scene.intersect(torch.tensor(T_room_cam[:3, 3], dtype=torch.float32),
                               torch.tensor(dirs, dtype=torch.float32))
    depth = hit.t.numpy().reshape(h, w).astype(np.float32)
    inst = hit.instance.numpy().reshape(h, w).astype(np.int64)
    miss = ~np.isfinite(depth)
    cls = np.where(miss, -1, room.instance_class[np.clip(inst, 0, None)])
    shade = 0.6 + 0.4 * np.abs(hit.normal.numpy()[:, 2]).reshape(h, w)
    rgb = ROOM_COLORS[np.clip(cls, 0, None)].astype(np.float64) * shade[..., None]
    rgb[miss] = 0
    T_cam_room = np.linalg.inv(T_room_cam)
    pc = room.points.astype(np.float64) @ T_cam_room[:3, :3].T + T_cam_room[:3, 3]
    z = pc[:, 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        uu = model.K[0, 0] * pc[:, 0] / z + model.K[0, 2]
        vv = model.K[1, 1] * pc[:, 1] / z + model.K[1, 2]
    inside = (z > 0.05) & (uu >= -0.5) & (uu < w - 0.5) & (vv >= -0.5) & (vv < h - 0.5)
    r = np.clip(np.floor(vv + 0.5), 0, h - 1).astype(np.int64)
    c = np.clip(np.floor(uu + 0.5), 0, w - 1).astype(np.int64)
    visible = inside & (np.abs(np.where(inside, depth[r, c], np.inf) - z) < depth_tolerance)
    return CameraView(name=model.frame_id, image=np.clip(rgb, 0, 255).astype(np.uint8), model=model,
                      T_cam_lidar=T_cam_room, stamp_ns=int(index),
                      truth={'class': cls.astype(np.int64), 'instance': inst, 'depth': depth,
                             'visible': visible})
