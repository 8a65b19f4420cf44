"""The teacher behind a store: the perception pipeline set up for pseudo-labelling, and its identity.

- ``clip``: the pipeline's own MaskCLIP teacher (``teacher.clip_model`` / ``clip_pretrained``, read offline);
  instance crops go through the same CLIP's image encoder
  (:class:`~training.pseudo.instance_labels.ClipCropEncoder`). Random weights (``clip_pretrained: none``)
  are recorded as such: the labels then mean nothing.
- ``synthetic`` (``teacher.source: synthetic``, ``--teacher synthetic``): the pipeline's own synthetic
  teacher (:mod:`perception_nodes.teacher.synthetic`:
  :class:`~perception_nodes.teacher.oracle.ClipLikeTeacher` with CLIP-like mistakes on the synthetic
  world's truth rasters and :func:`~perception_nodes.teacher.oracle.clip_like_text_embeddings`, built from
  the ``teacher.synthetic_*`` keys); crops via
  :class:`~training.pseudo.instance_labels.TeacherCropEncoder`. The labels come from the synthetic
  teacher, not from CLIP, and the provenance says so.

The pipeline always runs with ``outputs.projections: true`` (the projections, visibility and teacher maps
the store keeps) and without the overlay, navigation grid, voxels, instance voting and (unless Affinity3D
AF reads them) the class-agnostic segments: nothing here reads them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch

from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.teacher.synthetic import SYNTHETIC_TEACHER_NOTE as SYNTHETIC_NOTE
from training.pseudo.instance_labels import ClipCropEncoder, CropEncoder, TeacherCropEncoder
from training.store.config import PseudoLabelConfig
RANDOM_NOTE = 'labels come from a randomly initialised CLIP: they carry NO meaning'


@dataclass
class Teacher:
    """A pipeline ready for pseudo-labelling, the crop encoder, the vocabulary and the teacher identity."""

    pipeline: Any
    crop_encoder: CropEncoder
    class_names: list[str]
    vocabulary_name: str
    text_embeddings: torch.Tensor        # (K, C) float32 unit rows
    identity: dict[str, Any]             # kind, model, pretrained, identity, random_weights, synthetic, ...

    @property
    def teacher_id(self) -> str:
        """sha256 of the identity (the teacher part of a store's key)."""
        return teacher_id(self.identity)

    def close(self) -> None:
        self.pipeline.close()


def teacher_id(identity: dict[str, Any]) -> str:
    """sha256 (hex) of a teacher identity (its weights, not the note)."""
    keyed = {k: v for k, v in identity.items() if k != 'note'}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode('utf-8')).hexdigest()


def store_perception_config(config: PerceptionConfig, method: PseudoLabelConfig) -> PerceptionConfig:
    """Return ``config`` with what pseudo-labelling needs (see the module docstring).

    Projections kept; no overlay, grids, voxels or instance voting; the class-agnostic segments only when a
    method reads them (Affinity3D AF with ``af_method: segment_scan``).
    """
    if config.labeller.kind != 'teacher':
        raise ValueError(f'pseudo-labelling runs the 2D teacher (labeller.kind: teacher), not '
                         f'{config.labeller.kind!r}')
    a3d = method.affinity3d
    segments = 'affinity3d' in method.methods and a3d.setting == 'af' and \
        a3d.superpoints.af_method == 'segment_scan'
    return with_overrides(config, {'outputs.projections': True, 'overlay.enabled': False,
                                   'grids.nav_grid': False, 'grids.voxels': False,
                                   'segments.enabled': config.segments.enabled and segments,
                                   'fusion.instance_voting': False})


def build_teacher(config: PerceptionConfig, method: PseudoLabelConfig) -> Teacher:
    """Set up the pipeline and the crop encoder for ``config.teacher.source`` (module docstring)."""
    from perception_nodes.pipeline import Pipeline
    config = store_perception_config(config, method)
    pipeline = Pipeline(config)
    vocab = pipeline.vocabulary
    if config.teacher.source == 'synthetic':
        identity = dict(pipeline.synthetic.spec.identity(), note=SYNTHETIC_NOTE)
        encoder: CropEncoder = TeacherCropEncoder(pipeline.synthetic.teacher)
    else:
        clip = pipeline.clip
        random = not getattr(clip, 'pretrained_meaningful', True)
        identity = {'kind': 'clip', 'model': config.teacher.clip_model,
                    'pretrained': config.teacher.clip_pretrained,
                    'identity': str(getattr(clip, 'identity', '')),
                    'random_weights': bool(random), 'synthetic': False, 'embed_dim': int(clip.embed_dim),
                    'input_size': list(config.teacher.input_size), 'note': RANDOM_NOTE if random else ''}
        encoder = ClipCropEncoder(clip)
    text = torch.nn.functional.normalize(pipeline.clip_text.float().cpu(), dim=1)
    return Teacher(pipeline, encoder, vocab.names, vocab.name, text, identity)
