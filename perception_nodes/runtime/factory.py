"""Build the node cores with their real dependencies (pipeline, CLIP text encoder, student backend).

ROS-free: the rclpy nodes call these with an rclpy message factory and a tf2 lookup; tests call them with
rosbags messages and a fixed lookup.
"""
from __future__ import annotations

from typing import Any, Callable

from perception_nodes.io.messages import MessageTypes
from perception_nodes.runtime.extrinsics import Lookup
from perception_nodes.runtime.fusion_core import FusionCore
from perception_nodes.runtime.params import NodeParams
from perception_nodes.runtime.student_core import StudentCore


def pipeline_config(params: NodeParams, overrides: dict[str, Any] | None = None) -> Any:
    """Build the PipelineConfig from ``pipeline_config`` (defaults when empty).

    Fused embeddings are kept for queries.
    """
    from perception_nodes.config import load_config, with_overrides
    config = load_config(params.pipeline_config or None)
    return with_overrides(config, {'fusion.keep_embeddings': True, **(overrides or {})})


def build_fusion_core(params: NodeParams, msgs: MessageTypes, lookup: Lookup,
                      config_overrides: dict[str, Any] | None = None, **kwargs: Any) -> FusionCore:
    """Build a FusionCore around ``Pipeline(config)`` (the configured CLIP teacher)."""
    from perception_nodes.pipeline import Pipeline
    pipeline = Pipeline(pipeline_config(params, config_overrides))
    return FusionCore(params, pipeline, msgs, lookup, **kwargs)


def build_student_core(params: NodeParams, msgs: MessageTypes, lookup: Lookup,
                       config_overrides: dict[str, Any] | None = None,
                       warn: Callable[[str], None] = lambda text: None,
                       backend_loader: Callable[[Any, Any], Any] | None = None, **kwargs: Any) -> StudentCore:
    """Build a StudentCore.

    It gets the backend chosen by ``backend_plan``, a cached CLIP text encoder for the vocabulary
    and queries, and (with ``ensemble``) the fusion pipeline.
    """
    import numpy as np
    import torch

    from perception_nodes.geometry.voxels import GridSpec
    from perception_nodes.runtime.backend_select import load_student_backend
    from perception_nodes.teacher.clip_models import ClipSpec, load_clip
    from perception_nodes.vocabulary import TextEmbedder

    config = pipeline_config(params, config_overrides)
    backend, name = load_student_backend(params, backend_loader, warn=warn)
    t = config.teacher
    clip = load_clip(ClipSpec(model=t.clip_model, pretrained=t.clip_pretrained, cache_dir=t.cache_dir or None,
                              offline=t.offline, device=config.device))
    embedder = TextEmbedder(clip, t.cache_dir or None)
    projection = getattr(backend, 'text_projection', None)
    project = None
    if projection is not None:
        proj = torch.from_numpy(np.asarray(projection, dtype=np.float32))
        project = lambda text: text.float().cpu() @ proj.T                  # noqa: E731
    pipeline = None
    if params.ensemble:
        from perception_nodes.pipeline import Pipeline
        pipeline = Pipeline(config, clip=clip)
    grid = GridSpec(config.grids.voxel_lower, config.grids.voxel_upper, config.grids.voxel_shape) \
        if config.grids.voxels else None
    return StudentCore(params, backend, embedder, msgs, lookup, project_text=project, pipeline=pipeline,
                       voxel_grid=grid, backend_name=name, **kwargs)
