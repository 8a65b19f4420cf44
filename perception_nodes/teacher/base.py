"""The 2D teacher interface: camera images in, per-pixel embeddings in CLIP's joint space out."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch

from perception_nodes.frame import CameraView


@runtime_checkable
class Teacher(Protocol):
    """A 2D teacher.

    ``dense_features(views)`` returns one float tensor (C, h, w) per view, unit-norm along C (zero
    vectors allowed where the teacher has no information), covering the whole image: feature cell
    (i, j) of an (h, w) map covers the image pixels whose centres lie in the (H/h × W/w) cell, the
    convention of ``perception_nodes.geometry.sampling.sample_features``.
    ``meaningful`` is False when the features carry no semantics (random weights).
    """

    embed_dim: int
    meaningful: bool

    def dense_features(self, views: Sequence[CameraView]) -> list[torch.Tensor]:
        ...
