"""Student network configuration: one dataclass, serialised to YAML/JSON with the checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from perception_nodes.geometry.voxels import POP3D_GRID, GridSpec

ARCHS = ('sparse_unet', 'range_unet')
# Column of each input feature in the points array handed to a student: x, y, z, intensity[, r, g, b].
FEATURE_COLUMNS = {'x': 0, 'y': 1, 'z': 2, 'intensity': 3, 'r': 4, 'g': 5, 'b': 6}


@dataclass
class StudentConfig:
    """Architecture, heads and identity of a 3D student.

    ``arch``: 'sparse_unet' (spconv U-Net, the accurate training-time family) or 'range_unet'
    (range-view 2D U-Net + point branch: static-shape ONNX, TensorRT-deployable; docs/student.md).
    ``proj_dim``: when set, point embeddings are K-dim unit vectors and the vocabulary's text
    embeddings are mapped into that space by the learned ``text_projection`` (see heads.py).
    """

    arch: str = 'range_unet'
    widths: tuple[int, ...] = (16, 32, 64, 64)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    voxel_size: float = 0.1                 # sparse_unet voxel edge (m)
    input_features: tuple[str, ...] = ('x', 'y', 'z', 'intensity')
    embed_dim: int = 512                    # C: CLIP space
    proj_dim: int | None = None             # K: optional projected embedding space
    point_branch: bool = True               # SPVCNN-style point MLP beside the voxel/pixel path
    point_width: int = 32                   # per-point feature width fed to the heads
    head_hidden: int = 64                   # hidden width of the voxel Linear-Softplus-Linear heads
    occupancy_blocks: int = 2               # POP-3D Eq. 2: N blocks
    voxel_width: int = 8                    # channels per voxel of the dense grid feature
    grid: GridSpec = field(default_factory=lambda: POP3D_GRID)
    range_height: int = 64                  # range_unet spherical projection rows (HDL-64)
    range_width: int = 512                  # ... and columns
    fov_up_deg: float = 3.0
    fov_down_deg: float = -25.0
    max_points: int = 131072                # padded point count of the static-shape graph
    vocabulary: dict[str, Any] = field(default_factory=dict)   # identity: name, hash, classes
    provenance: dict[str, Any] = field(default_factory=dict)   # training run, data, git commit

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.depths = tuple(int(d) for d in self.depths)
        self.input_features = tuple(str(f) for f in self.input_features)
        if isinstance(self.grid, dict):
            self.grid = GridSpec(**self.grid)
        if self.arch not in ARCHS:
            raise ValueError(f'StudentConfig.arch must be one of {ARCHS}, got {self.arch!r}')
        if not self.widths or len(self.widths) != len(self.depths):
            raise ValueError(f'StudentConfig widths {self.widths} and depths {self.depths} must have '
                             'the same non-zero length')
        if any(w <= 0 for w in self.widths) or any(d < 0 for d in self.depths):
            raise ValueError('StudentConfig widths must be positive and depths non-negative')
        unknown = [f for f in self.input_features if f not in FEATURE_COLUMNS]
        if unknown or not {'x', 'y', 'z'} <= set(self.input_features):
            raise ValueError(f'StudentConfig.input_features {self.input_features}: need x, y, z; '
                             f'allowed {tuple(FEATURE_COLUMNS)}')
        if not 0.01 <= self.voxel_size <= 1.0:
            raise ValueError(f'StudentConfig.voxel_size {self.voxel_size} m outside 0.01..1.0')
        if self.embed_dim <= 0 or (self.proj_dim is not None and self.proj_dim <= 0):
            raise ValueError('StudentConfig embed_dim / proj_dim must be positive')
        if self.max_points <= 0:
            raise ValueError(f'StudentConfig.max_points must be positive, got {self.max_points}')
        if self.arch == 'range_unet':
            stride = 2 ** (len(self.widths) - 1)
            if self.range_height % stride or self.range_width % stride:
                raise ValueError(f'range image {self.range_height}x{self.range_width} must be divisible '
                                 f'by {stride} for {len(self.widths)} U-Net levels')
            if self.fov_up_deg <= self.fov_down_deg:
                raise ValueError('fov_up_deg must exceed fov_down_deg')

    @property
    def out_dim(self) -> int:
        """Dimension of the per-point embeddings the network emits (K if projected, else C)."""
        return self.proj_dim or self.embed_dim

    @property
    def in_columns(self) -> int:
        """Number of columns the points array must have."""
        return max(FEATURE_COLUMNS[f] for f in self.input_features) + 1

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out['widths'] = list(self.widths)
        out['depths'] = list(self.depths)
        out['input_features'] = list(self.input_features)
        out['grid'] = {'lower': list(self.grid.lower), 'upper': list(self.grid.upper),
                       'shape': list(self.grid.shape)}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        if not isinstance(data, dict):
            raise ValueError(f'student config must be a mapping, got {type(data).__name__}')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown student config keys: {unknown}')
        return cls(**data)

    @classmethod
    def deployable(cls, **overrides: Any) -> StudentConfig:
        """Return the default robot student: range_unet sized for >= 10 Hz on 2 CPU cores via ONNX Runtime."""
        base: dict[str, Any] = dict(arch='range_unet', widths=(16, 32, 48, 64), point_width=16, proj_dim=64,
                                    head_hidden=32, occupancy_blocks=1, voxel_width=4)
        base.update(overrides)
        return cls(**base)
