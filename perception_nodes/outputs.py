"""What the pipeline produces for one frame, whichever labeller ran (ROS-free).

Labels and scores follow one convention everywhere (``perception_nodes.classify``): ``labels`` index
``class_names``; :data:`UNKNOWN_LABEL` (65535) marks a point without a label; ``scores`` is the winning
class's softmax probability in [0, 1] (0 for points without a feature). Ground-truth and pseudo-label
arrays elsewhere use :data:`IGNORE_LABEL` (-1) for "not evaluated / not supervised".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNKNOWN_LABEL = 65535  # uint16 label of points judged "unknown" or seen by no camera
IGNORE_LABEL = -1      # ground truth / pseudo-labels: this point is not evaluated / not supervised


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
    labels: np.ndarray                 # (M,) int, UNKNOWN_LABEL when no class
    voxel_size: np.ndarray             # (3,) float


@dataclass
class Projections:
    """Per usable camera m: where each point lands and whether it was used (pseudo-labelling's inputs)."""

    cameras: list[str]                 # camera names, in the order below
    image_sizes: list[tuple[int, int]]  # (H, W) per camera
    uv: np.ndarray                     # (M, N, 2) float32 pixel coordinates
    in_image: np.ndarray               # (M, N) bool: inside the image, in front of the camera
    visible: np.ndarray                # (M, N) bool: in_image and passing the occlusion test
    teacher_maps: list[np.ndarray] | None = None  # per camera (C, h, w) float32 teacher features, if any


@dataclass
class Outputs:
    """Per-frame results. Per-point arrays are aligned with the input frame's points."""

    stamp_ns: int
    frame_id: str
    points: np.ndarray                 # (N, 3) float32
    intensity: np.ndarray | None
    labels: np.ndarray                 # (N,) uint16 index into class_names, UNKNOWN_LABEL if none
    scores: np.ndarray                 # (N,) float32 winning-class probability in [0, 1]
    instances: np.ndarray              # (N,) uint32 class-agnostic segment + 1, 0 = none
    class_names: list[str]
    palette: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))   # (K, 3) uint8 RGB
    labeller: str = ''                 # which labeller produced the labels ('teacher', 'student', ...)
    embeddings: np.ndarray | None = None   # (N, D) float32 unit features (zero rows: no feature), optional
    visible: np.ndarray | None = None      # (N,) bool: seen by a camera (after the visibility test)
    occupancy: OccupancyGrid2D | None = None
    voxels: SemanticVoxels | None = None
    occupancy_3d: np.ndarray | None = None  # (X, Y, Z) float32 occupied probability (the student's head)
    projections: Projections | None = None  # per-camera geometry + teacher maps (outputs.projections)
    overlays: dict[str, np.ndarray] = field(default_factory=dict)  # camera name -> (H, W, 3) uint8
    camera_frames: dict[str, tuple[str, int]] = field(default_factory=dict)  # camera -> (frame_id, stamp)
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
