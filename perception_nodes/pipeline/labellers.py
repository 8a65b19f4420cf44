"""Interchangeable labellers: who turns a frame into per-point features in a space with class weights.

A labeller produces :class:`PointFeatures` (unit features of the points it can label, and the class weights
of its space); the pipeline classifies them with the one classifier (``perception_nodes.classify``), so
labels and scores mean the same whoever produced them.

- :class:`TeacherLabeller` (Affinity3D Eq. 1-3, "MC" labels; POP-3D's MaskCLIP+ targets): dense MaskCLIP
  features of every usable camera, sampled at the visible projections, averaged over the views that see a
  point and renormalised. Points no camera sees have no feature (unknown).
- :class:`StudentLabeller` (Affinity3D Eq. 13/18, POP-3D Eq. 2-3): the LiDAR-only 3D student on any
  backend (torch checkpoint, ONNX Runtime, TensorRT engine) labels every point (360°); its text projection
  maps the CLIP text embeddings into its space; its occupancy head feeds the 3D semantic occupancy.
- :class:`EnsembleLabeller` (OpenScene's 2D-3D ensemble): both; per point the more confident prediction.

``submit`` starts the expensive network work (in the pipeline's worker thread when it may overlap the
geometry); ``collect`` finishes it given the frame's projection and visibility.
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from perception_nodes.frame import CameraView, Frame
from perception_nodes.geometry.sampling import sample_features
from perception_nodes.pipeline.fusion import FeatureAccumulator

Submit = Callable[..., Future]


@dataclass
class PointFeatures:
    """One labeller's per-point features and the classifier weights of their space."""

    source: str                        # 'teacher' | 'student'
    index: torch.Tensor                # (n,) int64 points that have a feature
    features: torch.Tensor             # (n, D) unit rows
    text: torch.Tensor                 # (K, D) class weights in the same space
    timings_ms: dict[str, float] = field(default_factory=dict)
    occupancy_logits: np.ndarray | None = None   # (X, Y, Z, 2) free / occupied (student)
    voxel_features: np.ndarray | None = None     # (X, Y, Z, C) CLIP-space language features (student)
    grid: Any = None                             # GridSpec of the occupancy head
    maps: list[torch.Tensor] | None = None       # the teacher's per-camera (C, h, w) feature maps
    unit: bool = False                           # rows are unit vectors: not normalised again to classify


def _resolved(value: Any) -> Future:
    done: Future = Future()
    done.set_result(value)
    return done


class TeacherLabeller:
    """The fused 2D teacher (MaskCLIP dense features, or any object with ``dense_features(views)``)."""

    name = 'teacher'
    needs_cameras = True

    def __init__(self, teacher: Any, sampling: str = 'bilinear', device: torch.device | str = 'cpu') -> None:
        self.teacher = teacher
        self.sampling = sampling
        self.device = torch.device(device)
        self.text: torch.Tensor | None = None

    @property
    def meaningful(self) -> bool:
        return bool(getattr(self.teacher, 'meaningful', True))

    @property
    def embed_dim(self) -> int | None:
        return getattr(self.teacher, 'embed_dim', None)

    def set_text(self, clip_text: torch.Tensor) -> None:
        """Class weights: the CLIP text embeddings themselves (the teacher's space)."""
        self.text = clip_text.to(self.device).float()

    def project_query(self, clip_text: torch.Tensor) -> torch.Tensor:
        return clip_text.float()

    def _dense(self, views: Sequence[CameraView]) -> tuple[list[torch.Tensor], float]:
        start = time.perf_counter()
        maps = self.teacher.dense_features(list(views))
        if len(maps) != len(views):
            raise ValueError(f'teacher returned {len(maps)} feature maps for {len(views)} views')
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return maps, (time.perf_counter() - start) * 1e3

    def submit(self, frame: Frame, views: Sequence[CameraView], run: Submit | None) -> Future:
        if not views or frame.num_points == 0:
            return _resolved(([], 0.0))
        return run(self._dense, views) if run is not None else _resolved(self._dense(views))

    def collect(self, handle: Future, frame: Frame, projection: Any, visible: torch.Tensor) -> PointFeatures:
        assert self.text is not None, 'set_text() before labelling'
        maps, teacher_ms = handle.result()
        start = time.perf_counter()
        acc = FeatureAccumulator(frame.num_points, self.device)
        for m, fmap in enumerate(maps):
            idx = torch.nonzero(visible[m]).reshape(-1)
            if idx.numel() == 0:
                continue
            feats = sample_features(fmap.to(self.device), projection.uv[m, idx], projection.image_sizes[m],
                                    self.sampling).float()
            # normalised in place, across the layout grid_sample gives ((C, n) memory): no copy, and the
            # norms reduce over whole rows of n instead of strided columns
            columns = feats.T
            columns.div_(torch.linalg.vector_norm(columns, dim=0).clamp_min_(1e-12))
            acc.add(idx, feats, unit=True)
        index, fused = acc.fused()
        if fused.numel() == 0:
            fused = torch.zeros(0, self.text.shape[1], device=self.device)
        sampling_ms = (time.perf_counter() - start) * 1e3
        return PointFeatures('teacher', index, fused, self.text,
                             {'teacher': teacher_ms, 'sampling': sampling_ms}, maps=list(maps), unit=True)


class StudentLabeller:
    """The 3D student on a backend (``infer(points (N, 4)) -> BackendResult``)."""

    name = 'student'
    needs_cameras = False

    def __init__(self, backend: Any, device: torch.device | str = 'cpu', backend_name: str = '') -> None:
        self.backend = backend
        self.device = torch.device(device)
        self.backend_name = backend_name or str(getattr(backend, 'name', type(backend).__name__))
        projection = getattr(backend, 'text_projection', None)
        self.projection = None if projection is None else torch.as_tensor(np.asarray(projection, np.float32))
        self.student_config = getattr(backend, 'student', None)
        self.text: torch.Tensor | None = None
        self.clip_text: torch.Tensor | None = None

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(getattr(self.student_config, 'provenance', {}) or {})

    @property
    def meaningful(self) -> bool:
        """True only for a student trained (``ovp train``) from meaningful pseudo-labels."""
        return bool(self.provenance.get('labels_meaningful', False))

    @property
    def embed_dim(self) -> int | None:
        return None if self.projection is None else int(self.projection.shape[1])

    def project_query(self, clip_text: torch.Tensor) -> torch.Tensor:
        """CLIP text embedding(s) -> the student's embedding space (its learned text projection)."""
        text = clip_text.float().cpu()
        if self.projection is not None:
            if text.shape[-1] != self.projection.shape[1]:
                raise ValueError(f'text embeddings have {text.shape[-1]} dims, the student\'s text '
                                 f'projection '
                                 f'expects {self.projection.shape[1]} (was it trained with another CLIP?)')
            text = text @ self.projection.T
        return text

    def set_text(self, clip_text: torch.Tensor) -> None:
        self.clip_text = clip_text.float().cpu()
        self.text = self.project_query(clip_text).to(self.device)

    def _infer(self, frame: Frame) -> tuple[Any, float]:
        start = time.perf_counter()
        n = frame.num_points
        intensity = frame.intensity if frame.intensity is not None else np.zeros(n, np.float32)
        points = np.concatenate([frame.points, np.asarray(intensity, np.float32).reshape(-1, 1)], axis=1)
        result = self.backend.infer(points.astype(np.float32, copy=False))
        return result, (time.perf_counter() - start) * 1e3

    def submit(self, frame: Frame, views: Sequence[CameraView], run: Submit | None) -> Future:
        return run(self._infer, frame) if run is not None else _resolved(self._infer(frame))

    def collect(self, handle: Future, frame: Frame, projection: Any, visible: torch.Tensor) -> PointFeatures:
        assert self.text is not None, 'set_text() before labelling'
        result, ms = handle.result()
        emb = result.point_embeddings
        emb = (emb if torch.is_tensor(emb) else torch.from_numpy(np.asarray(emb, np.float32))).float()
        if emb.shape[0] != frame.num_points:
            raise ValueError(f'the student returned {emb.shape[0]} embeddings for {frame.num_points} points')
        index = torch.arange(emb.shape[0], device=self.device)
        grid = getattr(self.student_config, 'grid', None)
        occupancy = getattr(result, 'occupancy_logits', None)
        voxel = getattr(result, 'voxel_features', None)
        return PointFeatures('student', index, emb.to(self.device), self.text, {'student': ms},
                             occupancy_logits=None if occupancy is None else np.asarray(occupancy),
                             voxel_features=None if voxel is None else np.asarray(voxel), grid=grid)


class EnsembleLabeller:
    """Teacher and student together (OpenScene 2D-3D ensemble: per point the more confident one wins)."""

    name = 'ensemble'
    needs_cameras = True

    def __init__(self, teacher: TeacherLabeller, student: StudentLabeller) -> None:
        self.teacher = teacher
        self.student = student
        self.backend_name = student.backend_name

    @property
    def meaningful(self) -> bool:
        return self.teacher.meaningful and self.student.meaningful

    @property
    def provenance(self) -> dict[str, Any]:
        return self.student.provenance

    @property
    def embed_dim(self) -> int | None:
        return self.student.embed_dim

    def set_text(self, clip_text: torch.Tensor) -> None:
        self.teacher.set_text(clip_text)
        self.student.set_text(clip_text)

    def project_query(self, clip_text: torch.Tensor) -> torch.Tensor:
        return self.student.project_query(clip_text)

    def submit(self, frame: Frame, views: Sequence[CameraView], run: Submit | None) -> tuple[Future, Future]:
        return self.teacher.submit(frame, views, run), self.student.submit(frame, views, run)

    def collect(self, handle: tuple[Future, Future], frame: Frame, projection: Any,
                visible: torch.Tensor) -> list[PointFeatures]:
        return [self.student.collect(handle[1], frame, projection, visible),
                self.teacher.collect(handle[0], frame, projection, visible)]
