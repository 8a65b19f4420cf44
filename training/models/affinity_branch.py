"""Affinity3D knowledge-transfer branch (Sec. 3.6, Eq. 11-14), training only: never exported.

For each chosen 3D layer l (features F_3D^l of width C_3D^l) and its paired ResNet-34 stage (F_2D^l of
width C_2D^l, sampled at each point's projected pixel, Eq. 1):

    F_2Dlearner = MLP_learner(F_3D)                                   (2D learner)
    F_2D3D      = concat(F_2D, F_2Dlearner)
    H           = MLP_2D3D(F_2D3D)
    gate        = sigmoid(MLP_G(H))                                     (Eq. 11)
    Ḟ_2D3D      = ReLU(gate ⊙ H) + F_2D                                  (Eq. 12)
    Y_3D        = softmax(s · cos(P_3D F_3D, EMB^C))                     (Eq. 13)
    Y_2D3D      = softmax(s · cos(P_2D Ḟ_2D3D, EMB^C))                   (Eq. 14)

Choices where the paper is silent (ours): MLP_2D3D and MLP_G are single linear layers and the learner is
Linear-ReLU-Linear, as in 2DPASS [EXT]; per-layer linear projections P_3D, P_2D map C^l to the text width
(DIGEST [INF]); the logit scale s is CLIP's 100 (``training.losses.common.DEFAULT_LOGIT_SCALE``); features are
sampled bilinearly (``perception_nodes.geometry.sampling``). With ``project_3d=False`` a layer whose width
equals the text width is classified directly (e.g. the student's own point embeddings, making Y_3D exactly
the student's Eq. 18 prediction).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torchvision
from torch import Tensor, nn

from perception_nodes.classify import cosine_logits
from perception_nodes.geometry.sampling import sample_features
from training.losses.common import DEFAULT_LOGIT_SCALE
from training.models.weights import load_pretrained

RESNET34_STAGE_CHANNELS = (64, 128, 256, 512)   # layer1..layer4, strides 4, 8, 16, 32


class ResNet34Encoder(nn.Module):
    """Torchvision ResNet-34 (random init) -> stage maps (B, 64, H/4, W/4) .. (B, 512, H/32, W/32)."""

    def __init__(self) -> None:
        super().__init__()
        net = torchvision.models.resnet34(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.stem(images)
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs

    def load_imagenet(self, path: str | os.PathLike) -> None:
        """Load a local torchvision-layout ResNet-34 ImageNet checkpoint (its ``fc.`` head is ignored)."""
        state_holder = nn.Module()
        for name in ('layer1', 'layer2', 'layer3', 'layer4'):
            state_holder.add_module(name, getattr(self, name))
        state_holder.add_module('conv1', self.stem[0])
        state_holder.add_module('bn1', self.stem[1])
        load_pretrained(state_holder, path, drop_prefixes=('fc.',))


class GatedFusion(nn.Module):
    """Eq. 11-12: (F_2D (N, C), F_2Dlearner (N, C)) -> (Ḟ_2D3D (N, C), gate (N, C) in [0, 1])."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp_2d3d = nn.Linear(2 * channels, channels)
        self.mlp_gate = nn.Linear(channels, channels)

    def forward(self, f_2d: Tensor, f_learner: Tensor) -> tuple[Tensor, Tensor]:
        h = self.mlp_2d3d(torch.cat([f_2d, f_learner], dim=-1))
        gate = torch.sigmoid(self.mlp_gate(h))
        return torch.relu(gate * h) + f_2d, gate


def two_d_learner(in_dim: int, out_dim: int) -> nn.Sequential:
    """Build the 2D learner MLP mapping F_3D^l into the 2D feature space of its layer."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(inplace=True), nn.Linear(out_dim, out_dim))


@dataclass
class KnowledgeTransferConfig:
    """Widths of the 3D layers used, the ResNet stage (0..3) paired with each, and the text space."""

    point_channels: tuple[int, ...]
    image_stages: tuple[int, ...] | None = None    # default: the last len(point_channels) stages
    embed_dim: int = 512
    logit_scale: float = DEFAULT_LOGIT_SCALE
    project_3d: bool = True
    sampling: str = 'bilinear'

    def __post_init__(self) -> None:
        self.point_channels = tuple(int(c) for c in self.point_channels)
        n = len(self.point_channels)
        if not 1 <= n <= 4:
            raise ValueError(f'1 to 4 point layers are supported, got {n}')
        if self.image_stages is None:
            self.image_stages = tuple(range(4 - n, 4))
        self.image_stages = tuple(int(s) for s in self.image_stages)
        if len(self.image_stages) != n or any(not 0 <= s < 4 for s in self.image_stages):
            raise ValueError(f'image_stages {self.image_stages} must give a ResNet stage 0..3 per point '
                             'layer')
        if not self.project_3d and any(c != self.embed_dim for c in self.point_channels):
            raise ValueError(f'project_3d=False needs point layers of width embed_dim={self.embed_dim}, '
                             f'got {self.point_channels}')


@dataclass
class KnowledgeTransferOutput:
    """Per-layer lists: logits of Y_3D (Eq. 13) and Y_2D3D (Eq. 14), gates, fused and sampled 2D features."""

    logits_3d: list[Tensor]
    logits_fused: list[Tensor]
    gates: list[Tensor]
    fused: list[Tensor]
    image_features: list[Tensor]


class KnowledgeTransferBranch(nn.Module):
    """Image encoder + per-layer 2D learner, gated fusion, text heads -> :class:`KnowledgeTransferOutput`."""

    def __init__(self, config: KnowledgeTransferConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ResNet34Encoder()
        c2d = [RESNET34_STAGE_CHANNELS[s] for s in config.image_stages]
        self.learners = nn.ModuleList(two_d_learner(c3, c2) for c3, c2 in zip(config.point_channels, c2d))
        self.fusions = nn.ModuleList(GatedFusion(c2) for c2 in c2d)
        self.heads_fused = nn.ModuleList(nn.Linear(c2, config.embed_dim) for c2 in c2d)
        self.heads_3d = nn.ModuleList(nn.Linear(c3, config.embed_dim) if config.project_3d else nn.Identity()
                                      for c3 in config.point_channels)

    def sample_image_features(self, maps: list[Tensor], uv: Tensor, image_index: Tensor,
                              image_size: tuple[int, int]) -> list[Tensor]:
        """F_2D^l at each point's pixel (Eq. 1): (N, C_2D^l) per layer; zeros for points in no image."""
        n = uv.shape[0]
        outs = []
        for stage in self.config.image_stages:
            fmap = maps[stage]
            out = fmap.new_zeros(n, fmap.shape[1])
            for b in range(fmap.shape[0]):
                sel = image_index == b
                if bool(sel.any()):
                    got = sample_features(fmap[b], uv[sel], image_size, mode=self.config.sampling)
                    out[sel] = got.to(out.dtype)
            outs.append(out)
        return outs

    def forward(self, images: Tensor, point_features: list[Tensor], uv: Tensor, image_index: Tensor,
                text_embeddings: Tensor) -> KnowledgeTransferOutput:
        """Run Eq. 11-14 for every configured layer.

        images (B, 3, H, W); point_features per layer (N, C_3D^l); uv (N, 2) pixels in ``images``;
        image_index (N,) long (-1: the point is in no image); text_embeddings (V, embed_dim).
        """
        if len(point_features) != len(self.config.point_channels):
            raise ValueError(f'{len(point_features)} point layers given, configured for '
                             f'{len(self.config.point_channels)}')
        if uv.shape != (point_features[0].shape[0], 2) or image_index.shape != uv.shape[:1]:
            raise ValueError(f'uv {tuple(uv.shape)} / image_index {tuple(image_index.shape)} do not fit '
                             f'{point_features[0].shape[0]} points')
        maps = self.encoder(images)
        f2d = self.sample_image_features(maps, uv, image_index.to(uv.device), tuple(images.shape[-2:]))
        out = KnowledgeTransferOutput([], [], [], [], f2d)
        for i, f3d in enumerate(point_features):
            fused, gate = self.fusions[i](f2d[i], self.learners[i](f3d))
            out.logits_3d.append(cosine_logits(self.heads_3d[i](f3d), text_embeddings,
                                               self.config.logit_scale))
            out.logits_fused.append(cosine_logits(self.heads_fused[i](fused), text_embeddings,
                                                  self.config.logit_scale))
            out.gates.append(gate)
            out.fused.append(fused)
        return out
