"""Ray-cast occupancy labels (POP-3D Sec. 4.1, Fig. 3) and a 2D navigation grid.

Every LiDAR return defines a ray from the sensor origin ``o`` to the point ``p``. With voxels as half-open
cells ``[lo, hi)`` (see :mod:`perception_nodes.geometry.voxels`):

- a voxel is **free** when the ray passes through it, i.e. it holds ``o + t (p - o)`` for some
  ``t in [0, 1)`` (the part of the ray inside the grid; points outside the grid still free what their
  rays cross);
- a voxel is **occupied** when it holds at least one return; occupied overrides free; with labels it
  carries the most frequent label of its returns (ties: the smallest label);
- every other voxel is **ignored** (never observed).

The traversal is an exact, vectorised equivalent of Amanatides & Woo's 3D DDA: a ray's voxels are the
voxel holding its (grid-clipped) start plus, for every voxel plane it crosses, the voxel it enters there.
Crossings are independent of each other, so all crossings of all rays are enumerated at once (chunked to
bound memory) instead of stepping rays in a loop. The entered voxel is the one holding the ray just after
the crossing, so a ray passing exactly through a voxel edge or corner marks only the voxels it really
enters, in either direction. Boundary ties: float64 rounding of a crossing that lies exactly on a plane
of another axis, or exactly at the ray's end, can shift that crossing's voxel by one; and a dense
reference sampling misses voxels a ray clips for less than its step. Apart from those, both mark the same
voxels (see the tests).

Label constants are negative so they never collide with semantic labels (which are >= 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from perception_nodes.geometry.voxels import GridSpec, majority_label
from perception_nodes.outputs import OccupancyGrid2D

IGNORE = -1     # never observed
FREE = -2       # crossed by at least one ray, holds no return
OCCUPIED = -3   # holds a return (used when no labels are given)


def _clip_to_grid(origin: torch.Tensor, d: torch.Tensor, lower: torch.Tensor,
                  upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test: parameter interval [t_enter, t_exit) of o + t d, t in [0, 1), inside the box."""
    with torch.no_grad():
        nz = d != 0
        safe = torch.where(nz, d, torch.ones_like(d))
        t_a = (lower - origin) / safe
        t_b = (upper - origin) / safe
        t_lo = torch.where(nz, torch.minimum(t_a, t_b), torch.full_like(d, -np.inf))
        t_hi = torch.where(nz, torch.maximum(t_a, t_b), torch.full_like(d, np.inf))
        # an axis the ray does not move along: inside the slab for all t, or never
        in_slab = (origin >= lower) & (origin < upper)
        t_lo = torch.where(nz | in_slab, t_lo, torch.full_like(d, np.inf))
        t_enter = torch.clamp(t_lo.max(dim=1).values, min=0.0)
        t_exit = torch.clamp(t_hi.min(dim=1).values, max=1.0)
    return t_enter, t_exit


_CHUNK_CROSSINGS = 2_000_000  # plane crossings processed at once (bounds memory)


def _cell_after(pos: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """Cell holding the ray just after ``pos`` (voxel units): ``floor``, or ``ceil - 1`` when moving down."""
    return torch.where(down, torch.ceil(pos) - 1, torch.floor(pos)).long()


def _mark_crossings(free: torch.Tensor, s: torch.Tensor, e: torch.Tensor, grid: GridSpec) -> None:
    """Mark the voxel each ray enters at each voxel plane it crosses.

    ``s`` / ``e`` (R, 3) are the clipped start and end of each ray in voxel units (float64). Along axis
    ``a`` a ray moving up crosses planes ``k`` with ``s_a <= k < e_a`` (entering voxel ``k``), moving down
    planes with ``e_a < k <= s_a`` (entering voxel ``k - 1``); the other coordinates of the entered voxel
    are those of the cell the ray is in just after the crossing (:func:`_cell_after`).
    """
    device = s.device
    shape = torch.tensor(grid.shape, dtype=torch.long, device=device)
    stride = (grid.shape[1] * grid.shape[2], grid.shape[2], 1)
    for a in range(3):
        b, c = [i for i in range(3) if i != a]
        da = e[:, a] - s[:, a]
        up = da > 0
        k_first = torch.where(up, torch.ceil(s[:, a]), torch.floor(e[:, a]) + 1).long()
        k_last = torch.where(up, torch.ceil(e[:, a]) - 1, torch.floor(s[:, a])).long()
        count = (k_last - k_first + 1).clamp(min=0)
        count[da == 0] = 0
        rays = torch.nonzero(count).squeeze(1)
        if rays.numel() == 0:
            continue
        safe = torch.where(da != 0, da, torch.ones_like(da))
        slope_b = (e[:, b] - s[:, b]) / safe            # d(pos_b) / d(pos_a)
        slope_c = (e[:, c] - s[:, c]) / safe
        base_b = s[:, b] - s[:, a] * slope_b
        base_c = s[:, c] - s[:, a] * slope_c
        entered_shift = torch.where(up, 0, -1)
        down_b = (e[:, b] - s[:, b]) < 0
        down_c = (e[:, c] - s[:, c]) < 0
        cum = torch.cumsum(count[rays], 0)
        n_chunks = int(cum[-1]) // _CHUNK_CROSSINGS + 1
        splits = torch.searchsorted(cum, torch.linspace(0, int(cum[-1]), n_chunks + 1, device=device)[1:-1])
        for r in torch.tensor_split(rays, splits.cpu()):
            if r.numel() == 0:
                continue
            cnt = count[r]
            ray = torch.repeat_interleave(r, cnt)
            k = torch.arange(ray.numel(), device=device) + torch.repeat_interleave(
                k_first[r] - (torch.cumsum(cnt, 0) - cnt), cnt)
            kd = k.double()
            vb = _cell_after(base_b[ray] + kd * slope_b[ray], down_b[ray]).clamp_(0, grid.shape[b] - 1)
            vc = _cell_after(base_c[ray] + kd * slope_c[ray], down_c[ray]).clamp_(0, grid.shape[c] - 1)
            va = k + entered_shift[ray]
            ok = (va >= 0) & (va < shape[a])
            free[(va * stride[a] + vb * stride[b] + vc * stride[c])[ok]] = True


def traverse_free(points: torch.Tensor, origin: torch.Tensor, grid: GridSpec) -> torch.Tensor:
    """Flat (X*Y*Z,) bool: voxels crossed by the rays origin -> points, t in [0, 1).

    Exact equivalent of the 3D DDA (Amanatides & Woo), vectorised over crossings instead of steps: a ray's
    voxels are the voxel holding its (clipped) start plus, for every voxel plane it crosses, the voxel it
    enters there. Each crossing is independent, so all crossings of all rays are enumerated at once.
    """
    device = points.device
    free = torch.zeros(grid.shape[0] * grid.shape[1] * grid.shape[2], dtype=torch.bool, device=device)
    pts = points.double()
    o = origin.double().to(device).view(1, 3)
    pts = pts[torch.isfinite(pts).all(dim=1)]
    if pts.shape[0] == 0:
        return free
    lower = torch.tensor(grid.lower, dtype=torch.float64, device=device)
    upper = torch.tensor(grid.upper, dtype=torch.float64, device=device)
    size = torch.tensor(grid.voxel_size, dtype=torch.float64, device=device)
    shape = torch.tensor(grid.shape, dtype=torch.long, device=device)
    d = pts - o
    t_enter, t_exit = _clip_to_grid(o, d, lower, upper)
    keep = t_enter < t_exit
    d, t_enter, t_exit = d[keep], t_enter[keep], t_exit[keep]
    if d.shape[0] == 0:
        return free
    start = torch.floor((o + t_enter[:, None] * d - lower) / size).long()
    start = torch.minimum(torch.maximum(start, torch.zeros_like(start)), shape - 1)
    free[grid.linear_index(start)] = True
    _mark_crossings(free, (o + t_enter[:, None] * d - lower) / size, (o + t_exit[:, None] * d - lower) / size,
                    grid)
    return free


def _prepare(points, origin) -> tuple[torch.Tensor, torch.Tensor]:
    points = torch.as_tensor(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got {tuple(points.shape)}')
    if not points.is_floating_point():
        points = points.float()
    origin = torch.as_tensor(origin, device=points.device).reshape(-1)
    if origin.shape != (3,) or not torch.isfinite(origin).all():
        raise ValueError(f'origin must be 3 finite values, got {origin.tolist()}')
    return points, origin


def ray_cast_labels(points: torch.Tensor, origin: torch.Tensor, grid: GridSpec,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
    """POP-3D evaluation labels: (X, Y, Z) long tensor of FREE, IGNORE, and OCCUPIED / majority label.

    points (N, 3) in the grid's frame, origin (3,) the sensor position in that frame, labels (N,) >= 0.
    Non-finite points are dropped.
    """
    points, origin = _prepare(points, origin)
    if labels is not None:
        labels = torch.as_tensor(labels, device=points.device).long()
        if labels.shape != (points.shape[0],):
            raise ValueError(f'labels must be ({points.shape[0]},), got {tuple(labels.shape)}')
        if labels.numel() and int(labels.min()) < 0:
            raise ValueError('labels must be >= 0 (negative values are reserved for FREE/IGNORE/OCCUPIED)')
    free = traverse_free(points, origin, grid)
    out = torch.full(free.shape, IGNORE, dtype=torch.long, device=points.device)
    out[free] = FREE
    idx, inside = grid.voxel_indices(points.double())
    lin = grid.linear_index(idx[inside])
    if labels is None:
        out[lin] = OCCUPIED
    else:
        uniq, inverse = torch.unique(lin, return_inverse=True)
        out[uniq] = majority_label(inverse, labels[inside], int(uniq.numel()))
    return out.view(grid.shape)


@dataclass
class NavGridSpec:
    """A 2D navigation grid: cells of ``resolution`` metres over ``size_xy`` metres, obstacles in a z band.

    ``origin_xy`` is the world corner of cell (0, 0); None centres the grid on the sensor origin.
    ``z_min`` / ``z_max`` bound the obstacle height band in the points' frame (defaults suit a LiDAR
    mounted 1.73 m above the ground, KITTI-like: obstacles from ~0.3 m to ~2.2 m above the road).
    """

    resolution: float = 0.2
    size_xy: tuple[float, float] = (100.0, 100.0)
    origin_xy: tuple[float, float] | None = None
    z_min: float = -1.4
    z_max: float = 0.5
    frame_id: str = ''

    def __post_init__(self) -> None:
        if not self.resolution > 0:
            raise ValueError(f'NavGridSpec.resolution must be positive, got {self.resolution}')
        if len(self.size_xy) != 2 or min(self.size_xy) < self.resolution:
            raise ValueError(f'NavGridSpec.size_xy must be two sizes of at least one cell, '
                             f'got {self.size_xy}')
        if not self.z_max > self.z_min:
            raise ValueError(f'NavGridSpec.z_max ({self.z_max}) must exceed z_min ({self.z_min})')

    def grid(self, origin: torch.Tensor | np.ndarray | tuple) -> GridSpec:
        """Return the one-layer 3D grid the rays are cast through."""
        nx = int(round(self.size_xy[0] / self.resolution))
        ny = int(round(self.size_xy[1] / self.resolution))
        if self.origin_xy is None:
            o = [float(v) for v in np.asarray(torch.as_tensor(origin).cpu()).reshape(-1)[:2]]
            ox, oy = o[0] - nx * self.resolution / 2, o[1] - ny * self.resolution / 2
        else:
            ox, oy = float(self.origin_xy[0]), float(self.origin_xy[1])
        return GridSpec(lower=(ox, oy, self.z_min),
                        upper=(ox + nx * self.resolution, oy + ny * self.resolution, self.z_max),
                        shape=(nx, ny, 1))


def navigation_grid(points: torch.Tensor, origin: torch.Tensor, spec: NavGridSpec | None = None,
                    labels: torch.Tensor | None = None,
                    obstacle_classes: list[int] | tuple[int, ...] | None = None) -> OccupancyGrid2D:
    """nav_msgs/OccupancyGrid-style grid (-1 unknown, 0 free, 100 occupied) from the same ray casting.

    Cells crossed by a ray inside the height band are free; cells holding an in-band return are occupied
    (only returns whose label is in ``obstacle_classes`` when that is given; other returns just end
    their rays). ``data`` is (rows = y, cols = x) int8.
    """
    spec = spec or NavGridSpec()
    points, origin = _prepare(points, origin)
    if obstacle_classes is not None and labels is None:
        raise ValueError('obstacle_classes needs per-point labels')
    grid = spec.grid(origin)
    free = traverse_free(points, origin, grid)
    occupied_points = points
    if obstacle_classes is not None:
        labels = torch.as_tensor(labels, device=points.device).long()
        if labels.shape != (points.shape[0],):
            raise ValueError(f'labels must be ({points.shape[0]},), got {tuple(labels.shape)}')
        classes = torch.as_tensor(list(obstacle_classes), dtype=torch.long, device=points.device)
        occupied_points = points[torch.isin(labels, classes)]
    idx, inside = grid.voxel_indices(occupied_points.double())
    cells = torch.full(free.shape, -1, dtype=torch.int8, device=points.device)
    cells[free] = 0
    cells[grid.linear_index(idx[inside])] = 100
    data = cells.view(grid.shape[0], grid.shape[1]).T.contiguous().cpu().numpy()
    return OccupancyGrid2D(data=data, resolution=float(spec.resolution),
                           origin_xy=(grid.lower[0], grid.lower[1]), frame_id=spec.frame_id)
