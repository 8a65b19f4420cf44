"""CNS 2D network (DeepLabV3, 512-d per pixel) and the K_f = 64 latent maps θ_f, φ_f, ϕ_f (training only).

CNS supplement [P]: the 2D network is DeepLabV3 (ImageNet-pretrained in the paper; random init here, or
a local backbone checkpoint via :meth:`CNS2DNet.load_imagenet_backbone`); pixel, point and text features
are 512-d; three linear maps project 2D features (θ_f), 3D features (φ_f) and SAM features (ϕ_f) into a
shared 64-d latent space. Our choices: the torchvision ResNet-50 DeepLabV3 builder (the supplement names no
backbone depth), θ_f applied to the 512-d output features, and SAM's 256-d image-encoder width as the
default region feature width.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from torch import Tensor, nn
from torchvision.models import segmentation

from training.losses.consistency import CNS_FEATURE_DIM, CNS_LATENT_DIM
from training.models.weights import load_pretrained

SAM_FEATURE_DIM = 256     # SAM ViT image-encoder output width (our default for ϕ_f's input)
BACKBONES = ('resnet50', 'resnet101', 'mobilenet_v3_large')


class CNS2DNet(nn.Module):
    """DeepLabV3 with ``out_dim`` outputs: images (B, 3, H, W) -> per-pixel features (B, out_dim, H, W)."""

    def __init__(self, out_dim: int = CNS_FEATURE_DIM, backbone: str = 'resnet50') -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f'backbone must be one of {BACKBONES}, got {backbone!r}')
        builder = getattr(segmentation, f'deeplabv3_{backbone}')
        self.net = builder(weights=None, weights_backbone=None, num_classes=out_dim, aux_loss=False)
        self.backbone_name = backbone
        self.out_dim = out_dim

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)['out']

    def load_imagenet_backbone(self, path: str | os.PathLike) -> None:
        """Load a local torchvision-layout ImageNet backbone checkpoint (classifier ``fc.`` ignored)."""
        if self.backbone_name == 'mobilenet_v3_large':
            raise ValueError('loading ImageNet weights is implemented for the ResNet backbones only')
        load_pretrained(self.net.backbone, path, drop_prefixes=('fc.',))


@dataclass
class LatentConfig:
    """Input widths of the three latent maps and K_f."""

    dim_2d: int = CNS_FEATURE_DIM
    dim_3d: int = CNS_FEATURE_DIM
    dim_region: int = SAM_FEATURE_DIM
    latent_dim: int = CNS_LATENT_DIM


class LatentProjections(nn.Module):
    """θ_f (2D), φ_f (3D) and ϕ_f (SAM region) linear maps into the K_f-dim latent space."""

    def __init__(self, config: LatentConfig | None = None) -> None:
        super().__init__()
        config = config or LatentConfig()
        self.config = config
        self.theta = nn.Linear(config.dim_2d, config.latent_dim)
        self.phi = nn.Linear(config.dim_3d, config.latent_dim)
        self.varphi = nn.Linear(config.dim_region, config.latent_dim)

    def forward(self, features_2d: Tensor, features_3d: Tensor, region_features: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        """(P, dim_2d), (N, dim_3d), (R, dim_region) -> their (·, K_f) latents."""
        return self.theta(features_2d), self.phi(features_3d), self.varphi(region_features)


def pixel_rows(features: Tensor) -> Tensor:
    """(B, C, H, W) per-pixel features -> (B·H·W, C) rows in (b, row, col) order."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def pixels_at(features: Tensor, image_index: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """(B, C, H, W) features at integer pixels -> (P, C) (the point/pixel pairs of the consistency loss)."""
    return features[image_index.long(), :, rows.long(), cols.long()]
