"""Camera visibility of LiDAR points for the pseudo labels (Affinity3D Sec. 3.5, Eq. 9-10).

A thin layer over :mod:`perception_nodes.geometry.visibility`, so that pseudo labels use the same test the
live pipeline runs: the paper's superpixel test (``variant='superpixel'``: ``D_sp = scatter_min(D, S_p)``,
Eq. 9; visible iff ``D - D_sp[S_p] < T_D`` and ``S_p > -1``, Eq. 10, ``T_D = 0.5`` m) or the dilated
depth-buffer variant (the pipeline default). Invisible points are ignored in the label target
(:mod:`training.pseudo.assembly`) and flagged ``visible=False`` for the visible-only knowledge-transfer
loss (Eq. 15-16).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from perception_nodes.frame import Frame
from perception_nodes.geometry.projection import Projection, project_frame
from perception_nodes.geometry.visibility import VisibilityConfig, visible_mask


@dataclass
class PointVisibility:
    """Per-camera projection and visibility of a frame's points."""

    projection: Projection
    visible: torch.Tensor       # (M, N) bool: in camera m's image and passing the visibility test there

    @property
    def in_image(self) -> torch.Tensor:
        """(M, N) bool: projects into camera m's image (no occlusion test)."""
        return self.projection.in_image

    @property
    def any_in_image(self) -> np.ndarray:
        """(N,) bool: projects into at least one camera (POP-3D's P_cam)."""
        return self.in_image.any(dim=0).cpu().numpy()

    @property
    def any_visible(self) -> np.ndarray:
        """(N,) bool: visible in at least one camera (Affinity3D Eq. 10, any camera)."""
        return self.visible.any(dim=0).cpu().numpy()


def point_visibility(frame: Frame, config: VisibilityConfig | None = None,
                     projection: Projection | None = None) -> PointVisibility:
    """Project ``frame`` into its cameras and apply the visibility test (variant 'none': in-image)."""
    config = config or VisibilityConfig(variant='superpixel')
    proj = projection if projection is not None else project_frame(frame)
    if proj.num_cameras == 0:
        return PointVisibility(proj, proj.in_image.clone())
    images = [v.image for v in frame.cameras]
    return PointVisibility(proj, visible_mask(proj, images, config))
