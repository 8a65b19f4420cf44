"""PyTorch backend: the checkpoint's network on CPU or CUDA (spconv students included)."""
from __future__ import annotations

import os

import numpy as np
import torch

from perception_nodes.student.backends.base import BackendConfig, StudentBackend
from perception_nodes.student.checkpoint import load_checkpoint
from perception_nodes.student.padding import PaddedPoints


class TorchBackend(StudentBackend):
    def __init__(self, config: BackendConfig, checkpoint: str | os.PathLike | None) -> None:
        if checkpoint is None:
            raise ValueError('the torch backend needs a checkpoint')
        device = torch.device(config.device)
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(f'device {config.device!r} requested but CUDA is not available')
        if config.threads:
            torch.set_num_threads(config.threads)
        model, student = load_checkpoint(checkpoint, device=device)
        self.model = model
        self.device = device
        projection = (model.language.text_projection.weight.detach().cpu().numpy()
                      if model.language.text_projection is not None else None)
        super().__init__(config, student, config.max_points or student.max_points, projection)
        self.name = f'torch[{device}]'

    @torch.inference_mode()
    def _run(self, padded: PaddedPoints) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        points = torch.from_numpy(padded.points).to(self.device)
        mask = torch.from_numpy(padded.mask).to(self.device)
        out = self.model(points, mask, voxel_features=self.config.voxel_features)
        voxel = out.voxel_features.float().cpu().numpy() if out.voxel_features is not None else None
        return (out.point_embeddings.float().cpu().numpy(), out.occupancy_logits.float().cpu().numpy(), voxel)
