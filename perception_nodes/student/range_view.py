"""Range-view student backbone: spherical projection, 2D U-Net, back-projection + point MLP.

Every operation has a static shape for a fixed padded point count (scatter into a fixed H x W image,
gather back per point), so the whole graph exports to standard ONNX operators and TensorRT.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from perception_nodes.student.config import StudentConfig
from perception_nodes.student.devoxelize import Samples, gather_cells, scatter_mean

POSITION_SCALE = 50.0   # metres -> O(1) network inputs


def spherical_cells(xyz: torch.Tensor, height: int, width: int, fov_up_deg: float,
                    fov_down_deg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel id (row * W + col) of each point in the H x W spherical projection, and its range.

    Column from azimuth (col 0 at yaw = +pi, increasing clockwise), row from elevation between the
    sensor's fov_up (row 0) and fov_down (row H-1); elevations outside the FOV clamp to the border rows.
    """
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    planar = torch.sqrt(x * x + y * y)
    rng = torch.sqrt(planar * planar + z * z)
    yaw = torch.atan2(y, x)
    pitch = torch.atan2(z, planar)
    up, down = math.radians(fov_up_deg), math.radians(fov_down_deg)
    col = torch.floor(0.5 * (1.0 - yaw / math.pi) * width).clamp(0, width - 1)
    row = torch.floor((up - pitch) / (up - down) * height).clamp(0, height - 1)
    return (row * width + col).long(), rng


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class UNet2D(nn.Module):
    """A plain 2D U-Net: stride-2 conv downsampling, transposed-conv upsampling, skip concatenation."""

    def __init__(self, cin: int, widths: tuple[int, ...], depths: tuple[int, ...]) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        for i, (w, d) in enumerate(zip(widths, depths)):
            first = conv_bn(cin, w) if i == 0 else conv_bn(widths[i - 1], w, stride=2)
            self.down.append(nn.Sequential(first, *[conv_bn(w, w) for _ in range(d)]))
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            self.up.append(nn.Sequential(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, 2, bias=False),
                                         nn.BatchNorm2d(widths[i - 1]), nn.ReLU(inplace=True)))
            self.fuse.append(conv_bn(2 * widths[i - 1], widths[i - 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips[:-1])):
            x = fuse(torch.cat([up(x), skip], dim=1))
        return x


class RangeBackbone(nn.Module):
    """Per-point features (N, point_width) from a range-view U-Net and an optional point MLP."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        nfeat = len(config.input_features) + 1          # + range
        self.unet = UNet2D(nfeat + 1, config.widths, config.depths)   # + occupied flag
        w0 = config.widths[0]
        self.point_mlp = (nn.Sequential(nn.Linear(nfeat, config.point_width), nn.ReLU(inplace=True),
                                        nn.Linear(config.point_width, config.point_width))
                          if config.point_branch else None)
        fused = w0 + (config.point_width if config.point_branch else 0)
        self.out = nn.Sequential(nn.Linear(fused, config.point_width), nn.ReLU(inplace=True))
        self.sample_width = w0
        self.xyz_columns = [config.input_features.index(a) for a in ('x', 'y', 'z')]

    def forward(self, inputs: torch.Tensor, xyz: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, Samples]:
        """Compute point features (N, point_width) and the pixels as samples for the voxel heads.

        Each occupied pixel is a sample at the mean position of its points, with its U-Net feature
        (4-8x fewer samples than points, so the dense-grid scatter is cheap).
        """
        c = self.config
        cell, rng = spherical_cells(xyz, c.range_height, c.range_width, c.fov_up_deg, c.fov_down_deg)
        point_in = torch.cat([inputs, (rng / POSITION_SCALE).unsqueeze(1)], dim=1)
        mean, count = scatter_mean(point_in, cell, valid, c.range_height * c.range_width)
        occupied = count > 0
        image = torch.cat([mean, occupied.to(mean.dtype).unsqueeze(1)], dim=1)
        image = image.T.reshape(1, -1, c.range_height, c.range_width)
        pixel = self.unet(image).reshape(c.widths[0], -1).T               # (H*W, w0)
        feats = gather_cells(pixel, cell, valid)
        if self.point_mlp is not None:
            feats = torch.cat([feats, self.point_mlp(point_in)], dim=1)
        point = self.out(feats) * valid.to(feats.dtype).unsqueeze(1)
        pixel_xyz = mean[:, self.xyz_columns] * POSITION_SCALE       # inputs hold xyz / POSITION_SCALE
        return point, Samples(xyz=pixel_xyz, features=pixel, valid=occupied)
