"""Render a LiDAR scan of a :class:`~perception_nodes.geometry.sim.scene.Scene` by ray casting."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from perception_nodes.geometry.sim.scene import SIM_REFLECTIVITY, Scene


@dataclass(frozen=True)
class LidarBeamModel:
    """A spinning LiDAR.

    ``n_beams`` elevations evenly from ``fov_up`` to ``fov_down`` degrees and
    ``n_azimuth`` azimuth steps per turn (HDL-64E-like defaults); Gaussian range noise (metres, along the
    beam), random dropouts (fraction of returns lost) and a range window.
    """

    n_beams: int = 64
    fov_up: float = 2.0
    fov_down: float = -24.9
    n_azimuth: int = 2048
    range_noise: float = 0.02
    dropout: float = 0.02
    max_range: float = 80.0
    min_range: float = 1.0

    def __post_init__(self) -> None:
        if self.n_beams < 1 or self.n_azimuth < 1:
            raise ValueError(f'LidarBeamModel needs n_beams and n_azimuth >= 1, got {self.n_beams}, '
                             f'{self.n_azimuth}')
        if not self.fov_up > self.fov_down:
            raise ValueError(f'fov_up ({self.fov_up}) must exceed fov_down ({self.fov_down})')
        if not 0 <= self.dropout < 1 or self.range_noise < 0 or not self.max_range > self.min_range >= 0:
            raise ValueError('LidarBeamModel: need 0 <= dropout < 1, range_noise >= 0 and '
                             'max_range > min_range >= 0')

    def directions(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the unit ray directions and their beam / azimuth indices.

        The directions are (n_beams * n_azimuth, 3), in the sensor frame.
        """
        elev = torch.linspace(math.radians(self.fov_up), math.radians(self.fov_down), self.n_beams)
        az = torch.arange(self.n_azimuth) * (2 * math.pi / self.n_azimuth)
        e, a = torch.meshgrid(elev, az, indexing='ij')
        dirs = torch.stack([torch.cos(e) * torch.cos(a), torch.cos(e) * torch.sin(a), torch.sin(e)], dim=-1)
        beam, azi = torch.meshgrid(torch.arange(self.n_beams), torch.arange(self.n_azimuth), indexing='ij')
        return dirs.reshape(-1, 3), beam.reshape(-1), azi.reshape(-1)


SMALL_BEAM_MODEL = LidarBeamModel(n_beams=32, n_azimuth=512)


@dataclass
class LidarScan:
    """Returns of one sweep (world frame; the sensor's axes are the world's)."""

    points: np.ndarray          # (N, 3) float32, with range noise
    intensity: np.ndarray       # (N,) float32 in [0, 1]
    classes: np.ndarray         # (N,) int64 index into SIM_CLASSES
    instances: np.ndarray       # (N,) int64 (0 = ground)
    origin: np.ndarray          # (3,) float64 sensor position
    surface_points: np.ndarray  # (N, 3) float32 noise-free surface points (for visibility truth)
    beam: np.ndarray            # (N,) int64 beam (row) index
    azimuth: np.ndarray         # (N,) int64 azimuth (column) index

    @property
    def num_points(self) -> int:
        return len(self.points)


def render_lidar(scene: Scene, beam_model: LidarBeamModel | None = None,
                 origin: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 1.73),
                 seed: int = 0) -> LidarScan:
    """Cast every beam into the scene; keep first hits inside the range window, minus dropouts."""
    beam_model = beam_model or LidarBeamModel()
    origin = np.asarray(origin, dtype=np.float64).reshape(3)
    dirs, beam, azi = beam_model.directions()
    o = torch.tensor(origin, dtype=torch.float32)
    hit = scene.intersect(o, dirs)
    gen = torch.Generator().manual_seed(int(seed))
    keep = (hit.t >= beam_model.min_range) & (hit.t <= beam_model.max_range)
    if beam_model.dropout > 0:
        keep &= torch.rand(len(dirs), generator=gen) >= beam_model.dropout
    t = hit.t[keep]
    d = dirs[keep]
    surface = o + t[:, None] * d
    noisy_t = t + beam_model.range_noise * torch.randn(len(t), generator=gen)
    points = o + noisy_t[:, None] * d
    cls = hit.cls[keep]
    cos_inc = (-(hit.normal[keep] * d).sum(dim=1)).clamp(0, 1)
    refl = torch.as_tensor(SIM_REFLECTIVITY)[cls]
    intensity = (refl * (0.3 + 0.7 * cos_inc) + 0.02 * torch.randn(len(t), generator=gen)).clamp(0, 1)
    return LidarScan(points=points.numpy().astype(np.float32), intensity=intensity.numpy().astype(np.float32),
                     classes=cls.numpy().astype(np.int64),
                     instances=hit.instance[keep].numpy().astype(np.int64),
                     origin=origin, surface_points=surface.numpy().astype(np.float32),
                     beam=beam[keep].numpy().astype(np.int64), azimuth=azi[keep].numpy().astype(np.int64))
