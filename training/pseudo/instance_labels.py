"""Instance pseudo labels from CLIP crops of superpoints (Affinity3D Sec. 3.2-3.3, Eq. 4).

Each superpoint's projected points are enclosed by a 2D box per camera, grown to at least 30 x 30 px
(:func:`perception_nodes.teacher.instances.segment_boxes`); superpoints with fewer than 2 projected points
in a camera get no box there. The box crops are encoded by a :class:`CropEncoder` (CLIP's image encoder,
:class:`ClipCropEncoder`, or the synthetic CLIP-like teacher, :class:`TeacherCropEncoder`); a superpoint
seen by several cameras gets the normalised mean of its crop embeddings (our choice: the paper has one
camera). Eq. 4: ``Y_kept = softmax(s · F_CLIP · EMB^Ω)`` over the candidate classes Ω (the unseen classes
in GZS, all classes in AF), with cosine similarities and ``s = 100``, CLIP's logit scale (the paper writes
no scale; raw cosines would give nearly uniform rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from perception_nodes.frame import CameraView
from perception_nodes.teacher.instances import segment_boxes, segment_pseudo_labels

LOGIT_SCALE = 100.0   # Eq. 4 temperature: NOT GIVEN, CLIP's learned logit scale (our choice)
MIN_BOX = 30.0        # Sec. 3.2: boxes smaller than 30 x 30 px grow to 30 x 30


@runtime_checkable
class CropEncoder(Protocol):
    """Encodes box crops of a camera view into (S, C) unit image embeddings."""

    embed_dim: int

    def encode_crops(self, view: CameraView, boxes: np.ndarray) -> torch.Tensor:
        ...


class ClipCropEncoder:
    """CLIP's image encoder on box crops (``perception_nodes.teacher.instances.encode_crops``)."""

    def __init__(self, clip, batch_size: int = 32) -> None:
        self.clip = clip
        self.batch_size = int(batch_size)
        self.embed_dim = int(clip.embed_dim)

    def encode_crops(self, view: CameraView, boxes: np.ndarray) -> torch.Tensor:
        from perception_nodes.teacher.instances import encode_crops
        return encode_crops(self.clip, view.image, boxes, self.batch_size).float().cpu()


class TeacherCropEncoder:
    """Crops encoded by a synthetic teacher with ``crop_features(view, boxes)`` (ClipLikeTeacher)."""

    def __init__(self, teacher) -> None:
        self.teacher = teacher
        self.embed_dim = int(teacher.embed_dim)

    def encode_crops(self, view: CameraView, boxes: np.ndarray) -> torch.Tensor:
        return self.teacher.crop_features(view, boxes)


@dataclass
class InstanceCrops:
    """Per-superpoint crop embeddings (Affinity3D F_CLIP^{SP_j})."""

    features: torch.Tensor        # (S, C) float32, unit rows for valid superpoints, zeros otherwise
    valid: np.ndarray             # (S,) bool: at least one camera had a box (>= 2 projected points)
    boxes: list[np.ndarray]       # per camera (S, 4) [u0, v0, u1, v1] (zeros where no box)
    box_valid: list[np.ndarray]   # per camera (S,) bool

    @property
    def num_segments(self) -> int:
        return int(self.features.shape[0])


def instance_crops(views: Sequence[CameraView], uv: torch.Tensor, in_image: torch.Tensor,
                   segment_ids: np.ndarray, encoder: CropEncoder, min_size: float = MIN_BOX,
                   min_points: int = 2, num_segments: int | None = None) -> InstanceCrops:
    """Boxes of every superpoint in every camera and their crop embeddings (Sec. 3.2).

    ``uv`` (M, N, 2) and ``in_image`` (M, N) from the projection; ``segment_ids`` (N,) superpoint ids, -1
    for points in none.
    """
    seg = np.asarray(segment_ids, dtype=np.int64).reshape(-1)
    s = int(num_segments) if num_segments is not None else int(seg.max(initial=-1)) + 1
    total = torch.zeros(s, encoder.embed_dim)
    valid = np.zeros(s, dtype=bool)
    all_boxes, all_valid = [], []
    for m, view in enumerate(views):
        size = (int(view.model.height), int(view.model.width))
        sb = segment_boxes(uv[m].cpu().numpy(), in_image[m].cpu().numpy(), seg, size, min_size=min_size,
                           min_points=min_points, num_segments=s)
        all_boxes.append(sb.boxes)
        all_valid.append(sb.valid)
        idx = np.flatnonzero(sb.valid)
        if len(idx):
            feats = encoder.encode_crops(view, sb.boxes[idx]).float().cpu()
            total[torch.from_numpy(idx)] += F.normalize(feats, dim=1)
            valid[idx] = True
    return InstanceCrops(F.normalize(total, dim=1), valid, all_boxes, all_valid)


def instance_probabilities(features: torch.Tensor, text_embeddings: torch.Tensor,
                           candidates: np.ndarray | None = None,
                           logit_scale: float = LOGIT_SCALE) -> torch.Tensor:
    """Eq. 4 over the candidate classes: (S, K) float32, zero for classes outside ``candidates``.

    ``candidates`` (K,) bool (EMB^U in GZS) or None for all classes (AF: EMB^U = EMB^C).
    """
    k = text_embeddings.shape[0]
    cand = np.ones(k, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool).reshape(-1)
    if cand.shape != (k,) or not cand.any():
        raise ValueError(f'candidates must be a (K,) = ({k},) bool mask with at least one class')
    out = torch.zeros(features.shape[0], k)
    if features.shape[0] == 0:
        return out
    cols = torch.from_numpy(np.flatnonzero(cand))
    out[:, cols] = segment_pseudo_labels(features.float(), text_embeddings[cols].float(), logit_scale).cpu()
    return out
