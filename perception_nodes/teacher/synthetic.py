"""The synthetic teacher on the one path: ``teacher.source: synthetic`` (synthetic bags with truth rasters).

The CLIP-like teacher of :mod:`perception_nodes.teacher.oracle` (:class:`ClipLikeTeacher`: CLIP's kinds of
mistakes made on the synthetic world's ground-truth rasters) and its "text encoder"
(:func:`clip_like_text_embeddings`), built from the ``teacher.synthetic_*`` keys. Its labels come from the
ground truth of the synthetic world, corrupted like CLIP's: they are NOT CLIP's and exist only for
synthetic data (a bag written with ``write_sim_bag(..., truth=True)`` carries the per-camera
``truth/class`` rasters it reads). The truth rasters' class id k is vocabulary class k (the synthetic
world's own class order: ``sim``, the street classes, the room classes).

The class embeddings depend on the whole class list (look-alike classes share part of their embedding), so
a new vocabulary makes a new teacher (:meth:`SyntheticTeacher.set_classes`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from perception_nodes.frame import CameraView
from perception_nodes.teacher.oracle import ClipLikeNoise, ClipLikeTeacher, clip_like_text_embeddings

SYNTHETIC_TEACHER_NOTE = ('labels come from the synthetic CLIP-like teacher (perception_nodes.teacher.oracle.'
                          'ClipLikeTeacher) on the synthetic world\'s ground-truth rasters, not from CLIP '
                          '(synthetic data only)')
SYNTHETIC_TEXT_NOTE = ('class text embeddings come from the synthetic text encoder (perception_nodes.teacher.'
                       'oracle.clip_like_text_embeddings), not from CLIP')


@dataclass(frozen=True)
class SyntheticSpec:
    """The ``teacher.synthetic_*`` keys: embedding width, seeds, dense-map downsampling."""

    embed_dim: int = 64
    text_seed: int = 0
    noise_seed: int = 1
    downsample: int = 8

    @classmethod
    def from_config(cls, teacher: Any) -> SyntheticSpec:
        """Read the keys of a :class:`~perception_nodes.config.model.TeacherConfig`."""
        return cls(int(teacher.synthetic_embed_dim), int(teacher.synthetic_text_seed),
                   int(teacher.synthetic_noise_seed), int(teacher.synthetic_downsample))

    def identity(self) -> dict[str, Any]:
        """Return the teacher identity a pseudo-label store and a student's provenance record (no note)."""
        return {'kind': 'oracle', 'model': 'ClipLikeTeacher', 'pretrained': 'synthetic',
                'identity': f'ClipLikeTeacher:dim{self.embed_dim}:text{self.text_seed}:'
                            f'noise{self.noise_seed}:down{self.downsample}',
                'random_weights': False, 'synthetic': True, 'embed_dim': self.embed_dim}


def synthetic_text_embeddings(class_names: Sequence[str], spec: SyntheticSpec) -> torch.Tensor:
    """(K, embed_dim) unit class embeddings of the synthetic text encoder (they depend on every name)."""
    k = len(class_names)
    if spec.embed_dim < 2 * k + 2:
        raise ValueError(f'teacher.synthetic_embed_dim {spec.embed_dim} is too small for {k} classes (the '
                         f'synthetic teacher needs >= 2 K + 2 = {2 * k + 2})')
    return clip_like_text_embeddings(list(class_names), spec.embed_dim, seed=spec.text_seed)


class SyntheticTeacher:
    """The ``Teacher`` protocol over a :class:`ClipLikeTeacher` rebuilt for each vocabulary (module doc)."""

    meaningful = True

    def __init__(self, spec: SyntheticSpec, class_names: Sequence[str] | None = None) -> None:
        self.spec = spec
        self.embed_dim = spec.embed_dim
        self.class_names: list[str] = []
        self.teacher: ClipLikeTeacher | None = None
        self.text_embeddings = torch.zeros(0, spec.embed_dim)
        if class_names is not None:
            self.set_classes(class_names)

    def set_classes(self, class_names: Sequence[str]) -> torch.Tensor:
        """Build the teacher for these classes; returns their (K, C) text embeddings."""
        names = [str(n) for n in class_names]
        if names != self.class_names or self.teacher is None:
            emb = synthetic_text_embeddings(names, self.spec)
            self.teacher = ClipLikeTeacher(emb, names, ClipLikeNoise(seed=self.spec.noise_seed),
                                           downsample=self.spec.downsample)
            self.class_names, self.text_embeddings = names, emb
        return self.text_embeddings

    def dense_features(self, views: Sequence[CameraView]) -> list[torch.Tensor]:
        """Per view a unit (C, h, w) map; a view without truth rasters is an error saying why."""
        for view in views:
            if 'class' not in view.truth:
                raise ValueError(f'teacher.source synthetic: camera {view.name!r} has no ground-truth '
                                 f'raster (<image namespace>/truth/class); the synthetic teacher runs on '
                                 f'synthetic bags only (write_sim_bag(..., truth=True))')
        if self.teacher is None:
            raise ValueError('the synthetic teacher has no classes yet (set_classes)')
        return self.teacher.dense_features(views)


__all__ = ['SYNTHETIC_TEACHER_NOTE', 'SYNTHETIC_TEXT_NOTE', 'SyntheticSpec', 'SyntheticTeacher',
           'synthetic_text_embeddings']
