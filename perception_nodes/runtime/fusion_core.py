"""Core of ``fusion_node``: synchronized LiDAR + cameras -> ``Pipeline`` (CLIP features fused onto points)."""
from __future__ import annotations

from typing import Any

import numpy as np

from perception_nodes.frame import Frame
from perception_nodes.io.messages import MessageTypes
from perception_nodes.outputs import Outputs
from perception_nodes.runtime.core import PerceptionCore
from perception_nodes.runtime.extrinsics import Lookup
from perception_nodes.runtime.params import NodeParams, VocabularyRequest


class FusionCore(PerceptionCore):
    """Fusion-pipeline node core.

    ``pipeline`` needs ``process(frame) -> Outputs``, ``set_vocabulary(names_or_vocab, templates=None)``
    and ``text_embedding(text)`` (see perception_nodes.pipeline.Pipeline).
    """

    node_name = 'fusion_node'

    def __init__(self, params: NodeParams, pipeline: Any, msgs: MessageTypes, lookup: Lookup,
                 **kwargs: Any) -> None:
        if not params.cameras:
            raise ValueError('fusion_node needs at least one camera (camera_names, camera_image_topics, '
                             'camera_info_topics); use student_node for LiDAR only')
        super().__init__(params, msgs, lookup, **kwargs)
        self.pipeline = pipeline

    @property
    def backend_name(self) -> str:
        config = getattr(self.pipeline, 'config', None)
        device = getattr(config, 'device', '')
        teacher = getattr(getattr(config, 'teacher', None), 'clip_model', '')
        return f'fusion {teacher} on {device}'.strip() if config is not None else 'fusion'

    def infer(self, frame: Frame) -> Outputs:
        return self.pipeline.process(frame)

    def apply_vocabulary(self, request: VocabularyRequest) -> None:
        self.pipeline.set_vocabulary(request.argument(), list(request.templates) or None)

    def text_embedding(self, text: str) -> np.ndarray:
        emb = self.pipeline.text_embedding(text)
        if hasattr(emb, 'detach'):
            emb = emb.detach().float().cpu().numpy()
        return np.asarray(emb, dtype=np.float32)
