"""The backend interface: configuration, result, and the shared pre/post-processing."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from perception_nodes.student.config import StudentConfig
from perception_nodes.student.padding import PaddedPoints, pad_points

BACKEND_KINDS = ('torch', 'onnxruntime', 'tensorrt')


@dataclass
class BackendConfig:
    """How to run a student. ``providers``: ONNX Runtime execution providers in order of preference."""

    kind: str = 'torch'
    device: str = 'cpu'
    providers: list[str] = field(default_factory=lambda: ['CPUExecutionProvider'])
    onnx_path: str | None = None
    engine_path: str | None = None
    engine_cache_dir: str | None = None      # ONNX exports and TensorRT engines built on demand
    fp16: bool = False
    workspace_mb: int = 2048
    max_points: int | None = None            # None: the student's config.max_points
    voxel_features: bool = False             # also return the (X, Y, Z, C) voxel language features
    threads: int | None = None               # CPU threads (torch / ONNX Runtime intra-op)

    def __post_init__(self) -> None:
        if self.kind not in BACKEND_KINDS:
            raise ValueError(f'BackendConfig.kind must be one of {BACKEND_KINDS}, got {self.kind!r}')
        self.providers = list(self.providers)
        if self.max_points is not None and self.max_points <= 0:
            raise ValueError(f'BackendConfig.max_points must be positive, got {self.max_points}')
        if self.workspace_mb <= 0:
            raise ValueError(f'BackendConfig.workspace_mb must be positive, got {self.workspace_mb}')

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendConfig:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f'unknown backend config keys: {unknown}')
        return cls(**data)


@dataclass
class BackendResult:
    """A student's output for every input point of one scan.

    point_embeddings: (N, D) float32 unit vectors for ALL N input points. Points removed by the
      deterministic subsampling get the embedding of their nearest kept neighbour (in xyz); points
      with a non-finite coordinate get a NaN row (so cosine scores are NaN: "unknown") and ``valid`` False.
    text_projection: (K, C) when the student embeds into a projected K-dim space, else None: map the
      vocabulary's CLIP text embeddings through it before classifying (``perception_nodes.classify``).
    """

    point_embeddings: np.ndarray
    valid: np.ndarray
    occupancy_logits: np.ndarray
    voxel_features: np.ndarray | None
    num_input: int
    num_used: int
    num_nonfinite: int
    subsampled: bool
    timings: dict[str, float]
    text_projection: np.ndarray | None = None


class StudentBackend(ABC):
    """``infer(points (N, 4) float32) -> BackendResult``; subclasses implement ``_run``."""

    name: str = 'backend'

    def __init__(self, config: BackendConfig, student: StudentConfig, max_points: int,
                 text_projection: np.ndarray | None) -> None:
        self.config = config
        self.student = student
        self.max_points = max_points
        self.text_projection = text_projection

    @abstractmethod
    def _run(self, padded: PaddedPoints) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(embeddings (max_points, D), occupancy logits, voxel features or None) for a padded scan."""

    def infer(self, points: np.ndarray) -> BackendResult:
        t0 = time.perf_counter()
        padded = pad_points(points, self.max_points, self.student.in_columns)
        t1 = time.perf_counter()
        emb, occupancy, voxel = self._run(padded)
        t2 = time.perf_counter()
        n, dim = padded.num_input, emb.shape[1]
        if padded.num_used == n:                         # every point used, in order: the rows themselves
            out = np.ascontiguousarray(emb[:n], dtype=np.float32)
        else:
            out = np.zeros((n, dim), dtype=np.float32)
            out[~padded.finite] = np.nan                 # no embedding for non-finite input points
            out[padded.kept] = emb[:padded.num_used]
        if padded.subsampled:
            xyz = np.asarray(points)[:, :3].astype(np.float32)
            kept_xyz = xyz[padded.kept]
            is_kept = np.zeros(n, dtype=bool)
            is_kept[padded.kept] = True
            dropped = np.flatnonzero(padded.finite & ~is_kept)
            _, nearest = cKDTree(kept_xyz).query(xyz[dropped], k=1)
            out[dropped] = out[padded.kept[nearest]]
        t3 = time.perf_counter()
        return BackendResult(
            point_embeddings=out, valid=padded.finite.copy(), occupancy_logits=np.asarray(occupancy),
            voxel_features=None if voxel is None else np.asarray(voxel), num_input=n,
            num_used=padded.num_used, num_nonfinite=padded.num_nonfinite, subsampled=padded.subsampled,
            timings={'preprocess_s': t1 - t0, 'inference_s': t2 - t1, 'postprocess_s': t3 - t2},
            text_projection=self.text_projection)
