"""What the pipeline and the students produce for one frame (ROS-free)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNKNOWN_LABEL = 65535  # uint16 label of points judged "unknown" or seen by no camera


@dataclass
class OccupancyGrid2D:
    """nav_msgs/OccupancyGrid semantics: -1 unknown, 0 free, 100 occupied; row-major (y, x)."""

    data: np.ndarray                   # (H, W) int8
    resolution: float                  # metres per cell
    origin_xy: tuple[float, float]     # world position of cell (0, 0)'s corner
    frame_id: str = ''


@dataclass
class SemanticVoxels:
    """Occupied voxels with a class each, for a MarkerArray of cubes."""

    centers: np.ndarray                # (M, 3) float32
    labels: np.ndarray                 # (M,) int
    voxel_size: np.ndarray             # (3,) float


@dataclass
class Outputs:
    """Per-frame results. Arrays are aligned with the input frame's points."""

    stamp_ns: int
    frame_id: str
    points: np.ndarray                 # (N, 3) float32
    intensity: np.ndarray | None
    labels: np.ndarray                 # (N,) uint16 class index into class_names, UNKNOWN_LABEL if none
    scores: np.ndarray                 # (N,) float32 in [0, 1]
    instances: np.ndarray              # (N,) uint32, 0 = no instance
    class_names: list[str]
    embeddings: np.ndarray | None = None   # (N, C) float32 unit vectors (optional)
    visible: np.ndarray | None = None      # (N,) bool: seen by at least one camera
    occupancy: OccupancyGrid2D | None = None
    voxels: SemanticVoxels | None = None
    overlays: dict[str, np.ndarray] = field(default_factory=dict)  # camera name -> (H, W, 3) uint8
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
