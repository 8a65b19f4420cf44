"""Core of ``student_node``: LiDAR-only 3D student (TensorRT / ONNX Runtime / torch backend).

Per point: the student's language embedding f_i is classified against the vocabulary's text embeddings
(Affinity3D Eq. 13: argmax_c cos(f_i, t_c)). With cameras configured and ``ensemble`` on, the fused 2D
CLIP feature of each point is classified too and the more confident of the two predictions is kept
(OpenScene 2D-3D ensemble: per point, the larger cosine score wins).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from perception_nodes.frame import Frame
from perception_nodes.geometry.occupancy import NavGridSpec, navigation_grid
from perception_nodes.geometry.voxels import GridSpec, majority_label, voxelize
from perception_nodes.io.messages import MessageTypes
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs, SemanticVoxels
from perception_nodes.runtime.core import PerceptionCore
from perception_nodes.runtime.extrinsics import Lookup
from perception_nodes.runtime.params import NodeParams, VocabularyRequest

DEFAULT_VOXEL_GRID = GridSpec(lower=(-51.2, -51.2, -5.0), upper=(51.2, 51.2, 3.0), shape=(256, 256, 20))


def cosine_classify(embeddings: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, cosine scores) of each row against unit text rows; rows without a feature get score -inf."""
    emb = embeddings.float()
    norms = emb.norm(dim=1)
    ok = torch.isfinite(norms) & (norms > 1e-12)
    unit = torch.where(ok[:, None], emb / norms.clamp_min(1e-12)[:, None], torch.zeros_like(emb))
    logits = unit @ torch.nn.functional.normalize(text.float(), dim=1).T
    scores, labels = logits.max(dim=1) if len(logits) else (logits.new_zeros(0), logits.new_zeros(0).long())
    scores = torch.where(ok, scores, torch.full_like(scores, -float('inf')))
    return labels, scores


def semantic_voxels(points: np.ndarray, labels: np.ndarray, grid: GridSpec) -> SemanticVoxels:
    """Label the occupied voxels of ``grid`` with the majority known label of their points.

    UNKNOWN_LABEL if none: the same rule as the fusion pipeline's voxel stage.
    """
    pts = torch.as_tensor(np.asarray(points, dtype=np.float32))
    lab = torch.as_tensor(np.asarray(labels).astype(np.int64))
    vox = voxelize(pts, grid)
    known = (lab != UNKNOWN_LABEL) & (vox.point_to_voxel >= 0)
    vox_labels = majority_label(vox.point_to_voxel[known], lab[known], vox.num_voxels)
    vox_labels = torch.where(vox_labels < 0, torch.full_like(vox_labels, UNKNOWN_LABEL), vox_labels)
    return SemanticVoxels(centers=grid.voxel_centers(vox.coords).float().numpy(), labels=vox_labels.numpy(),
                          voxel_size=np.asarray(grid.voxel_size))


class StudentCore(PerceptionCore):
    """Student-model node core; its dependencies are injected.

    - ``backend.infer(points (N, 4) float32)`` -> object with ``point_embeddings`` (N, C);
    - ``text_embedder.embed(vocabulary, templates)`` -> (K, C') CLIP text embeddings (cached per class);
    - ``project_text`` maps CLIP text embeddings (K, C') into the student's space (K, C) (identity if None);
    - ``pipeline`` (optional): the fusion pipeline for the 2D-3D ensemble (``process`` with kept embeddings).
    """

    node_name = 'student_node'

    def __init__(self, params: NodeParams, backend: Any, text_embedder: Any, msgs: MessageTypes,
                 lookup: Lookup, *, project_text: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 pipeline: Any = None,
                 voxel_grid: GridSpec | None = DEFAULT_VOXEL_GRID, nav_grid: NavGridSpec | None = None,
                 backend_name: str = '', **kwargs: Any) -> None:
        if params.ensemble and (pipeline is None or not params.cameras):
            raise ValueError('ensemble needs cameras (camera_* parameters) and a fusion pipeline')
        super().__init__(params, msgs, lookup, **kwargs)
        self.backend = backend
        self.text_embedder = text_embedder
        self.project_text = project_text
        self.pipeline = pipeline
        self.voxel_grid = voxel_grid
        self.nav_grid = nav_grid or NavGridSpec()
        self._backend_name = backend_name or type(backend).__name__
        self.text_clip: torch.Tensor | None = None      # (K, C') CLIP space
        self.text_student: torch.Tensor | None = None   # (K, C) student space

    @property
    def backend_name(self) -> str:
        return self._backend_name

    def _project(self, text: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.project_text(text) if self.project_text is not None else text
        return torch.as_tensor(out).float().cpu()

    def apply_vocabulary(self, request: VocabularyRequest) -> None:
        templates = list(request.templates) or None
        clip = torch.as_tensor(self.text_embedder.embed(request.argument(), templates)).float().cpu()
        student = self._project(clip)
        if self.pipeline is not None and self.params.ensemble:
            self.pipeline.set_vocabulary(request.argument(), templates)
        self.text_clip, self.text_student = clip, student

    def text_embedding(self, text: str) -> np.ndarray:
        templates = list(self.vocabulary.templates) if self.vocabulary and self.vocabulary.templates else None
        clip = torch.as_tensor(self.text_embedder.embed([text], templates)).float().cpu()
        return self._project(clip)[0].numpy()

    def infer(self, frame: Frame) -> Outputs:
        assert self.text_student is not None and self.vocabulary is not None, 'start() loads the vocabulary'
        n = frame.num_points
        intensity = frame.intensity if frame.intensity is not None else np.zeros(n, np.float32)
        points = np.concatenate([frame.points, intensity.reshape(-1, 1)], axis=1).astype(np.float32)
        result = self.backend.infer(points)
        emb = result.point_embeddings
        emb = (emb if torch.is_tensor(emb) else torch.as_tensor(np.asarray(emb))).float().cpu()
        if emb.shape[0] != n:
            raise ValueError(f'backend returned {emb.shape[0]} embeddings for {n} points')
        labels, scores = cosine_classify(emb, self.text_student)
        embeddings = emb
        outputs_2d = None
        if self.params.ensemble and frame.cameras:
            outputs_2d = self.pipeline.process(frame)
            if outputs_2d.embeddings is not None:
                fused = torch.as_tensor(np.asarray(outputs_2d.embeddings, dtype=np.float32))
                labels_2d, scores_2d = cosine_classify(fused, self.text_clip)
                take = scores_2d > scores
                labels = torch.where(take, labels_2d, labels)
                scores = torch.where(take, scores_2d, scores)
        no_feature = ~torch.isfinite(scores)           # invalid points (non-finite input): unknown
        labels = torch.where(no_feature, torch.full_like(labels, UNKNOWN_LABEL), labels)
        labels_np = labels.numpy().astype(np.uint16)
        scores_np = torch.where(no_feature, torch.zeros_like(scores), scores).numpy().astype(np.float32)
        outputs = Outputs(stamp_ns=frame.stamp_ns, frame_id=frame.frame_id, points=frame.points,
                          intensity=frame.intensity, labels=labels_np, scores=scores_np,
                          instances=np.zeros(n, np.uint32), class_names=list(self.vocabulary.names),
                          embeddings=embeddings.numpy())
        if self.voxel_grid is not None:
            outputs.voxels = semantic_voxels(frame.points, labels_np, self.voxel_grid)
        if n:
            outputs.occupancy = navigation_grid(torch.as_tensor(frame.points), torch.zeros(3), self.nav_grid)
            outputs.occupancy.frame_id = frame.frame_id
        if outputs_2d is not None:
            outputs.overlays = dict(outputs_2d.overlays)
            outputs.visible = outputs_2d.visible
        return outputs
