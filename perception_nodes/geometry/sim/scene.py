"""A primitives world with ground truth: ground plane, boxes, vertical cylinders and spheres.

World frame: x forward along the road, y left, z up, ground at ``z = ground_z`` (0). Every primitive has a
semantic class (index into :data:`SIM_CLASSES`) and an instance id (>= 1; the ground is instance 0).
Ray casting is vectorised over rays and primitives (torch); rays are ``o + t d`` with any non-zero
``d`` and the returned ``t`` is in units of ``d`` (so ``d`` with unit z in a camera gives z-depth).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

SIM_CLASSES: list[str] = ['road', 'car', 'building', 'pole', 'vegetation', 'trunk', 'person']
ROAD, CAR, BUILDING, POLE, VEGETATION, TRUNK, PERSON = range(len(SIM_CLASSES))
SIM_COLORS = np.array([[128, 64, 128], [0, 0, 142], [70, 70, 70], [153, 153, 153], [107, 142, 35],
                       [120, 80, 40], [220, 20, 60]], dtype=np.uint8)   # Cityscapes-like palette
SKY_COLOR = np.array([135, 190, 235], dtype=np.uint8)
SIM_REFLECTIVITY = np.array([0.25, 0.6, 0.45, 0.7, 0.35, 0.4, 0.3], dtype=np.float32)

_EPS = 1e-6
_CHUNK = 1 << 16


@dataclass
class Hit:
    """First intersection per ray; misses have ``t = inf``, class and instance -1, normal 0."""

    t: torch.Tensor          # (R,)
    cls: torch.Tensor        # (R,) long
    instance: torch.Tensor   # (R,) long
    normal: torch.Tensor     # (R, 3) unit, facing the ray origin


@dataclass
class Scene:
    """Primitives.

    Boxes: (B, 7) [cx, cy, cz, lx, ly, lz, yaw]; cylinders (vertical): (C, 5)
    [cx, cy, z0, z1, r]; spheres: (S, 4) [cx, cy, cz, r]. Each with (.., ) long class and instance.
    """

    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 7))
    box_class: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    box_instance: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    cylinders: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 5))
    cyl_class: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    cyl_instance: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    spheres: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    sph_class: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    sph_instance: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    ground_z: float = 0.0
    ground_class: int = ROAD

    def __post_init__(self) -> None:
        for name, width in (('boxes', 7), ('cylinders', 5), ('spheres', 4)):
            value = torch.as_tensor(getattr(self, name), dtype=torch.float32).reshape(-1, width)
            setattr(self, name, value)
        for name in ('box_class', 'box_instance', 'cyl_class', 'cyl_instance', 'sph_class', 'sph_instance'):
            setattr(self, name, torch.as_tensor(getattr(self, name), dtype=torch.long).reshape(-1))
        for prim, cls, inst in (('boxes', 'box_class', 'box_instance'),
                                ('cylinders', 'cyl_class', 'cyl_instance'),
                                ('spheres', 'sph_class', 'sph_instance')):
            n = len(getattr(self, prim))
            if len(getattr(self, cls)) != n or len(getattr(self, inst)) != n:
                raise ValueError(f'Scene.{prim}: {n} primitives but {len(getattr(self, cls))} classes and '
                                 f'{len(getattr(self, inst))} instances')

    @property
    def num_instances(self) -> int:
        ids = torch.cat([self.box_instance, self.cyl_instance, self.sph_instance])
        return int(ids.max()) if ids.numel() else 0

    def bounding_spheres(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 3) centres and (P,) radii of all primitives: boxes, then cylinders, then spheres."""
        box_r = 0.5 * torch.linalg.norm(self.boxes[:, 3:6], dim=1)
        cyl = self.cylinders
        cyl_c = torch.stack([cyl[:, 0], cyl[:, 1], 0.5 * (cyl[:, 2] + cyl[:, 3])], dim=1)
        cyl_r = torch.sqrt(cyl[:, 4] ** 2 + (0.5 * (cyl[:, 3] - cyl[:, 2])) ** 2)
        centres = torch.cat([self.boxes[:, :3], cyl_c, self.spheres[:, :3]])
        radii = torch.cat([box_r, cyl_r, self.spheres[:, 3]]) * 1.001 + 1e-4
        return centres, radii

    def intersect(self, origins: torch.Tensor, dirs: torch.Tensor, t_min: float = 1e-4) -> Hit:
        """First hit with ``t > t_min`` of rays ``origins + t dirs`` ((R, 3) or (3,) origins, (R, 3) dirs).

        Exact tests run only on (ray, primitive) pairs whose ray passes the primitive's bounding sphere.
        """
        dirs = torch.as_tensor(dirs, dtype=torch.float32).reshape(-1, 3)
        origins = torch.as_tensor(origins, dtype=torch.float32)
        shared = origins.numel() == 3
        r = dirs.shape[0]
        t = torch.full((r,), float('inf'))
        cls = torch.full((r,), -1, dtype=torch.long)
        inst = torch.full((r,), -1, dtype=torch.long)
        normal = torch.zeros(r, 3)
        centres, radii = self.bounding_spheres()
        all_cls = torch.cat([torch.tensor([self.ground_class]), self.box_class, self.cyl_class,
                             self.sph_class])
        all_inst = torch.cat([torch.zeros(1, dtype=torch.long), self.box_instance, self.cyl_instance,
                              self.sph_instance])
        for lo in range(0, r, _CHUNK):
            sl = slice(lo, min(r, lo + _CHUNK))
            o = origins.reshape(1, 3).expand(sl.stop - lo, 3) if shared else origins.reshape(-1, 3)[sl]
            tt, k, nn = self._intersect_chunk(o, dirs[sl], t_min, centres, radii)
            hit = torch.isfinite(tt)
            t[sl] = tt
            cls[sl] = torch.where(hit, all_cls[k], -1)
            inst[sl] = torch.where(hit, all_inst[k], -1)
            normal[sl] = nn * hit[:, None]
        return Hit(t=t, cls=cls, instance=inst, normal=normal)

    def _intersect_chunk(self, o, d, t_min, centres, radii):
        r = d.shape[0]
        inf = float('inf')
        # ground plane (primitive 0)
        dz = d[:, 2]
        down = dz < -_EPS
        t_best = torch.where(down, (self.ground_z - o[:, 2]) / torch.where(down, dz, -torch.ones_like(dz)),
                             torch.full_like(dz, inf))
        t_best = torch.where(t_best > t_min, t_best, torch.full_like(t_best, inf))
        best = torch.zeros(r, dtype=torch.long)
        normal = torch.zeros(r, 3)
        normal[:, 2] = 1.0
        if len(centres):
            # candidate pairs: ray line within the bounding sphere, sphere not entirely behind the origin
            norm = torch.linalg.norm(d, dim=1, keepdim=True).clamp_min(1e-12)
            dn = d / norm
            tc = dn @ centres.T - (o * dn).sum(dim=1, keepdim=True)                 # (R, P)
            p2 = (centres * centres).sum(dim=1)[None] - 2 * (o @ centres.T) + (o * o).sum(dim=1, keepdim=True)
            cand = (p2 - tc * tc <= radii * radii) & (tc + radii > 0)
            rays, prims = torch.nonzero(cand, as_tuple=True)
            nb, nc = len(self.boxes), len(self.cylinders)
            tk = torch.full((len(rays),), inf)
            nk = torch.zeros(len(rays), 3)
            for lo_p, hi_p, fn, params in ((0, nb, _boxes, self.boxes),
                                           (nb, nb + nc, _cylinders, self.cylinders),
                                           (nb + nc, len(centres), _spheres, self.spheres)):
                sel = torch.nonzero((prims >= lo_p) & (prims < hi_p)).squeeze(1)
                if len(sel) == 0:
                    continue
                ri = rays[sel]
                tk[sel], nk[sel] = fn(o[ri], d[ri], params[prims[sel] - lo_p])
            ok = tk > t_min
            rays, prims, tk, nk = rays[ok], prims[ok], tk[ok], nk[ok]
            if len(rays):
                t_best = t_best.scatter_reduce(0, rays, tk, reduce='amin', include_self=True)
                win = tk == t_best[rays]
                best[rays[win]] = prims[win] + 1
                normal[rays[win]] = nk[win]
        flip = (normal * d).sum(dim=1) > 0
        normal = torch.where(flip[:, None], -normal, normal)
        return t_best, best, normal


def _safe(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < _EPS, torch.where(x < 0, -_EPS, _EPS) + torch.zeros_like(x), x)


def _boxes(o: torch.Tensor, d: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test, one ray per yawed box (K pairs): entry t (inf if missed or inside) and (K, 3) normals."""
    c, half, yaw = boxes[:, :3], boxes[:, 3:6] / 2, boxes[:, 6]
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    p = o - c
    px = cos * p[:, 0] + sin * p[:, 1]                # rotate into the box frame by -yaw
    py = -sin * p[:, 0] + cos * p[:, 1]
    dx = cos * d[:, 0] + sin * d[:, 1]
    dy = -sin * d[:, 0] + cos * d[:, 1]
    dz = d[:, 2]
    local_p = torch.stack([px, py, p[:, 2]], dim=1)
    local_d = _safe(torch.stack([dx, dy, dz], dim=1))
    t1 = (-half - local_p) / local_d
    t2 = (half - local_p) / local_d
    t_near, axis = torch.minimum(t1, t2).max(dim=1)
    t_far = torch.maximum(t1, t2).min(dim=1).values
    hit = (t_near <= t_far) & (t_near > 0)
    t = torch.where(hit, t_near, torch.full_like(t_near, float('inf')))
    sign = -torch.sign(torch.gather(local_d, 1, axis[:, None]))[:, 0]
    nx = torch.where(axis == 0, sign, 0.0)
    ny = torch.where(axis == 1, sign, 0.0)
    nz = torch.where(axis == 2, sign, 0.0)
    normal = torch.stack([cos * nx - sin * ny, sin * nx + cos * ny, nz], dim=1)
    return t, normal


def _cylinders(o: torch.Tensor, d: torch.Tensor, cyl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical capped cylinders, one ray per cylinder (K pairs): t and (K, 3) normals."""
    cx, cy, z0, z1, rad = cyl.unbind(dim=1)
    px, py = o[:, 0] - cx, o[:, 1] - cy
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    a = dx * dx + dy * dy
    b = 2 * (px * dx + py * dy)
    cc = px * px + py * py - rad * rad
    disc = b * b - 4 * a * cc
    ok = (disc >= 0) & (a > _EPS)
    t_side = (-b - torch.sqrt(disc.clamp(min=0))) / (2 * torch.where(a > _EPS, a, torch.ones_like(a)))
    z_side = o[:, 2] + t_side * dz
    ok &= (t_side > 0) & (z_side >= z0) & (z_side <= z1)
    inf = torch.full_like(t_side, float('inf'))
    t_side = torch.where(ok, t_side, inf)
    safe_dz = _safe(dz)
    caps = []
    for zc in (z1, z0):
        tc = (zc - o[:, 2]) / safe_dz
        qx, qy = px + tc * dx, py + tc * dy
        okc = (tc > 0) & (qx * qx + qy * qy <= rad * rad) & (dz.abs() > _EPS)
        caps.append(torch.where(okc, tc, inf))
    t, which = torch.stack([t_side] + caps, dim=1).min(dim=1)
    hx, hy = px + t_side * dx, py + t_side * dy
    side_n = torch.nan_to_num(torch.stack([hx / rad, hy / rad, torch.zeros_like(hx)], dim=1),
                              nan=0.0, posinf=0.0, neginf=0.0)
    cap_n = torch.zeros_like(side_n)
    cap_n[:, 2] = torch.where(which == 1, 1.0, -1.0)
    return t, torch.where((which == 0)[:, None], side_n, cap_n)


def _spheres(o: torch.Tensor, d: torch.Tensor, sph: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spheres, one ray per sphere (K pairs): t and (K, 3) normals."""
    c, rad = sph[:, :3], sph[:, 3]
    p = o - c
    a = (d * d).sum(dim=1)
    b = 2 * (p * d).sum(dim=1)
    cc = (p * p).sum(dim=1) - rad * rad
    disc = b * b - 4 * a * cc
    t = (-b - torch.sqrt(disc.clamp(min=0))) / (2 * a)
    ok = (disc >= 0) & (t > 0)
    t = torch.where(ok, t, torch.full_like(t, float('inf')))
    hitp = p + torch.nan_to_num(t, posinf=0.0)[:, None] * d
    return t, hitp / rad[:, None]


def _yaw_box_radius(lx: float, ly: float) -> float:
    return 0.5 * math.hypot(lx, ly)


def make_scene(seed: int, n_cars: int = 8, n_buildings: int = 8, n_poles: int = 6, n_trees: int = 4,
               n_bushes: int = 5, n_people: int = 3, extent: float = 40.0,
               clear_radius: float = 3.5) -> Scene:
    """Make a random street.

    Cars on and beside the road (the first one 6-14 m ahead of the ego, so the camera
    sees parallax occlusion), buildings along both sides, poles, trees (trunk + crown, one instance),
    bushes and people. Deterministic in ``seed``; nothing within ``clear_radius`` of the ego (0, 0).
    """
    rng = np.random.default_rng(seed)
    placed: list[tuple[float, float, float]] = []  # footprint circles (x, y, r)

    def free_at(x: float, y: float, r: float) -> bool:
        if math.hypot(x, y) < clear_radius + r:
            return False
        return all(math.hypot(x - px, y - py) > r + pr + 0.3 for px, py, pr in placed)

    def place(sample, r_of, tries: int = 50):
        for _ in range(tries):
            cand = sample()
            r = r_of(cand)
            if free_at(cand[0], cand[1], r):
                placed.append((cand[0], cand[1], r))
                return cand
        return None

    boxes, box_cls, box_inst = [], [], []
    cyls, cyl_cls, cyl_inst = [], [], []
    sphs, sph_cls, sph_inst = [], [], []
    next_id = 1
    for i in range(n_cars):
        length, width, height = rng.uniform(3.8, 4.8), rng.uniform(1.7, 2.0), rng.uniform(1.4, 1.7)
        if i == 0:
            def sample():
                return (rng.uniform(6.0, 14.0), rng.uniform(-1.5, 1.5))
        else:
            def sample():
                return (rng.uniform(-extent, extent), float(rng.choice([-4.5, -1.8, 1.8, 4.5]))
                        + rng.normal(0, 0.3))
        pos = place(sample, lambda c: _yaw_box_radius(length, width))
        if pos is None:
            continue
        yaw = float(rng.choice([0.0, math.pi])) + rng.normal(0, 0.08)
        boxes.append([pos[0], pos[1], height / 2, length, width, height, yaw])
        box_cls.append(CAR)
        box_inst.append(next_id)
        next_id += 1
    for i in range(n_buildings):
        side = 1.0 if i % 2 == 0 else -1.0
        lx, ly, lz = rng.uniform(8, 18), rng.uniform(6, 10), rng.uniform(5, 14)
        pos = place(lambda: (rng.uniform(-extent, extent), side * (11.0 + ly / 2 + rng.uniform(0, 3))),
                    lambda c: 0.45 * min(lx, ly))
        if pos is None:
            continue
        boxes.append([pos[0], pos[1], lz / 2, lx, ly, lz, rng.normal(0, 0.05)])
        box_cls.append(BUILDING)
        box_inst.append(next_id)
        next_id += 1

    def sidewalk() -> tuple[float, float]:
        return (rng.uniform(-extent, extent), float(rng.choice([-1, 1])) * rng.uniform(6.5, 9.5))

    for _ in range(n_poles):
        r = rng.uniform(0.08, 0.15)
        pos = place(sidewalk, lambda c: r)
        if pos is None:
            continue
        cyls.append([pos[0], pos[1], 0.0, rng.uniform(4.0, 7.0), r])
        cyl_cls.append(POLE)
        cyl_inst.append(next_id)
        next_id += 1
    for _ in range(n_trees):
        r_trunk, crown = rng.uniform(0.15, 0.3), rng.uniform(1.3, 2.3)
        pos = place(sidewalk, lambda c: r_trunk + 0.5)
        if pos is None:
            continue
        h = rng.uniform(2.0, 3.0)
        cyls.append([pos[0], pos[1], 0.0, h + 0.5 * crown, r_trunk])
        cyl_cls.append(TRUNK)
        cyl_inst.append(next_id)
        sphs.append([pos[0], pos[1], h + crown, crown])
        sph_cls.append(VEGETATION)
        sph_inst.append(next_id)
        next_id += 1
    for _ in range(n_bushes):
        r = rng.uniform(0.5, 1.1)
        pos = place(sidewalk, lambda c: r)
        if pos is None:
            continue
        sphs.append([pos[0], pos[1], 0.6 * r, r])
        sph_cls.append(VEGETATION)
        sph_inst.append(next_id)
        next_id += 1
    for _ in range(n_people):
        r = rng.uniform(0.22, 0.3)
        pos = place(lambda: (rng.uniform(-25, 25), rng.uniform(-9.5, 9.5)), lambda c: r)
        if pos is None:
            continue
        cyls.append([pos[0], pos[1], 0.0, rng.uniform(1.55, 1.9), r])
        cyl_cls.append(PERSON)
        cyl_inst.append(next_id)
        next_id += 1
    return Scene(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 7), box_class=box_cls,
                 box_instance=box_inst, cylinders=torch.tensor(cyls, dtype=torch.float32).reshape(-1, 5),
                 cyl_class=cyl_cls, cyl_instance=cyl_inst,
                 spheres=torch.tensor(sphs, dtype=torch.float32).reshape(-1, 4), sph_class=sph_cls,
                 sph_instance=sph_inst)
