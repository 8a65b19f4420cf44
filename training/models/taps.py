"""Read intermediate student features for the training-only branches without touching the student.

The students (``perception_nodes.student``) return unit point embeddings; the Affinity3D branch and the
UnScene3D head also want the per-point features the language head receives. :class:`PointFeatureTap`
captures that input with a forward pre-hook (the autograd graph is kept, so losses on the branch train
the backbone too).
"""
from __future__ import annotations

from torch import Tensor, nn


class PointFeatureTap:
    """Capture the (N, point_width) input of ``student.language`` on every forward (a context manager)."""

    def __init__(self, student: nn.Module) -> None:
        if not hasattr(student, 'language'):
            raise ValueError(f'{type(student).__name__} has no language head to tap')
        self.features: Tensor | None = None
        self._handle = student.language.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple) -> None:
        self.features = args[0]

    def remove(self) -> None:
        """Detach the hook from the student."""
        self._handle.remove()

    def __enter__(self) -> PointFeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
