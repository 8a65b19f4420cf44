"""3D student networks (LiDAR only) and their inference backends.

Light imports only here; the networks, checkpoints and backends live in submodules:
``config`` (StudentConfig), ``model`` (build_student, StudentOutput), ``heads`` (language, occupancy heads),
``checkpoint`` (save_checkpoint, load_checkpoint), ``export`` (export_onnx), ``backends`` (load_backend).
"""
from __future__ import annotations

from perception_nodes.student.config import StudentConfig

__all__ = ['StudentConfig']
