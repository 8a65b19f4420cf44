"""Sparse 3D U-Net student backbone on spconv (MinkUNet / SPVCNN family).

Voxelize at ``voxel_size`` (mean of point features per voxel), encode with submanifold convolutions
and stride-2 sparse convolutions, decode with inverse convolutions and skip concatenation, then
devoxelize to points (nearest voxel) and add an SPVCNN-style point MLP branch.
"""
from __future__ import annotations

import torch
from torch import nn

from perception_nodes.student.config import StudentConfig
from perception_nodes.student.devoxelize import Samples, scatter_mean
from perception_nodes.student.spconv_compat import spconv


def _subm(cin: int, cout: int, key: str) -> spconv.SparseSequential:
    return spconv.SparseSequential(spconv.SubMConv3d(cin, cout, 3, bias=False, indice_key=key),
                                   nn.BatchNorm1d(cout), nn.ReLU(inplace=True))


class SparseBackbone(nn.Module):
    """Per-point features (N, point_width) from a sparse voxel U-Net."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        widths, depths = config.widths, config.depths
        nfeat = len(config.input_features)
        self.levels = len(widths)
        self.stem = _subm(nfeat, widths[0], 'subm0')
        self.enc = nn.ModuleList()
        for i, (w, d) in enumerate(zip(widths, depths)):
            layers = [] if i == 0 else [spconv.SparseSequential(
                spconv.SparseConv3d(widths[i - 1], w, 2, 2, bias=False, indice_key=f'down{i}'),
                nn.BatchNorm1d(w), nn.ReLU(inplace=True))]
            layers += [_subm(w, w, f'subm{i}') for _ in range(d)]
            self.enc.append(spconv.SparseSequential(*layers))
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for i in range(self.levels - 1, 0, -1):
            self.up.append(spconv.SparseSequential(
                spconv.SparseInverseConv3d(widths[i], widths[i - 1], 2, bias=False, indice_key=f'down{i}'),
                nn.BatchNorm1d(widths[i - 1]), nn.ReLU(inplace=True)))
            self.fuse.append(_subm(2 * widths[i - 1], widths[i - 1], f'subm{i - 1}'))
        self.point_mlp = (nn.Sequential(nn.Linear(nfeat + 3, config.point_width), nn.ReLU(inplace=True),
                                        nn.Linear(config.point_width, config.point_width))
                          if config.point_branch else None)
        fused = widths[0] + (config.point_width if config.point_branch else 0)
        self.out = nn.Sequential(nn.Linear(fused, config.point_width), nn.ReLU(inplace=True))
        self.sample_width = config.point_width

    def forward(self, inputs: torch.Tensor, xyz: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, Samples]:
        """Point features (N, point_width); the points themselves are the voxel heads' samples."""
        point = self._points(inputs, xyz, valid)
        return point, Samples(xyz=xyz, features=point, valid=valid)

    def _points(self, inputs: torch.Tensor, xyz: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        out = inputs.new_zeros(len(inputs), self.config.point_width)
        keep = torch.nonzero(valid).squeeze(1)
        if len(keep) == 0:
            return out
        feats_in, pos = inputs[keep], xyz[keep]
        vs = self.config.voxel_size
        coords = torch.floor(pos / vs).long()
        coords = coords - coords.min(dim=0).values
        uniq, inverse = torch.unique(coords, dim=0, return_inverse=True)
        voxel_in, _ = scatter_mean(feats_in, inverse, torch.ones_like(inverse, dtype=torch.bool), len(uniq))
        mult = 2 ** (self.levels - 1)
        shape = ((uniq.max(dim=0).values + 1 + mult - 1) // mult * mult).tolist()
        indices = torch.cat([torch.zeros_like(uniq[:, :1]), uniq], dim=1).int()
        x = spconv.SparseConvTensor(voxel_in, indices, shape, 1)
        x = self.stem(x)
        skips = []
        for stage in self.enc:
            x = stage(x)
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips[:-1])):
            y = up(x)
            x = fuse(y.replace_feature(torch.cat([y.features, skip.features], dim=1)))
        point = x.features[inverse]                       # devoxelization (nearest voxel)
        if self.point_mlp is not None:
            offset = pos / vs - torch.floor(pos / vs) - 0.5   # position inside the voxel
            point = torch.cat([point, self.point_mlp(torch.cat([feats_in, offset], dim=1))], dim=1)
        return out.index_copy(0, keep, self.out(point))
