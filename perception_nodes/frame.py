"""The data contract between I/O, geometry, teachers, students and the pipeline.

Arrays in, arrays out: these dataclasses hold numpy arrays and never ROS messages.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DISTORTION_MODELS = ('none', 'plumb_bob', 'rational_polynomial', 'equidistant')


@dataclass
class CameraModel:
    """Pinhole camera with optional distortion, as described by sensor_msgs/CameraInfo.

    Projection convention (that of ROS image_geometry):
    - ``is_rectified`` (all distortion coefficients zero): a point X in the camera frame maps to
      ``P @ [X, 1]``. ``P`` may carry a stereo baseline term (KITTI's P2 does), in which case the
      camera frame is the rectified reference frame of the stereo rig.
    - otherwise the image is raw: ``K @ distort(X / Z)`` with the coefficients ``D`` of
      ``distortion_model``; ``R`` and ``P`` then describe rectification only.
    """

    frame_id: str
    width: int
    height: int
    K: np.ndarray                      # (3, 3) float64
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n,) float64
    distortion_model: str = 'plumb_bob'
    R: np.ndarray = field(default_factory=lambda: np.eye(3))    # (3, 3)
    P: np.ndarray | None = None        # (3, 4); defaults to [K | 0]

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        if self.P is None:
            self.P = np.concatenate([self.K, np.zeros((3, 1))], axis=1)
        self.P = np.asarray(self.P, dtype=np.float64).reshape(3, 4)
        if self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(
                f'unknown distortion model {self.distortion_model!r}; expected one of {DISTORTION_MODELS}')
        self.width = int(self.width)
        self.height = int(self.height)

    @property
    def is_rectified(self) -> bool:
        """True when no distortion is to be applied (projection uses ``P``)."""
        return self.distortion_model == 'none' or not np.any(self.D)


@dataclass
class CameraView:
    """One camera's contribution to a frame."""

    name: str                          # camera name (usually the image topic)
    image: np.ndarray                  # (H, W, 3) uint8 RGB
    model: CameraModel
    T_cam_lidar: np.ndarray            # (4, 4) float64: lidar-frame points -> camera frame
    stamp_ns: int = 0
    # Ground truth from the synthetic world, for evaluation and the oracle teacher only:
    # 'class' / 'instance' (H, W) int rasters, 'depth' (H, W) float, 'visible' (N,) bool per LiDAR point.
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.T_cam_lidar = np.asarray(self.T_cam_lidar, dtype=np.float64).reshape(4, 4)


@dataclass
class Frame:
    """One LiDAR sweep with its synchronized cameras (LiDAR is the time reference)."""

    stamp_ns: int
    frame_id: str                      # LiDAR frame
    points: np.ndarray                 # (N, 3) float32, LiDAR frame
    intensity: np.ndarray | None = None  # (N,) float32
    cameras: list[CameraView] = field(default_factory=list)
    labels: np.ndarray | None = None     # (N,) ground-truth semantic ids, evaluation only
    instances: np.ndarray | None = None  # (N,) ground-truth instance ids, evaluation only
    index: int = 0                     # position in its source (bag message order)
    missing_cameras: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 3)
        n = len(self.points)
        for name in ('intensity', 'labels', 'instances'):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f'Frame.{name} has {len(value)} entries for {n} points')

    @property
    def num_points(self) -> int:
        return len(self.points)
