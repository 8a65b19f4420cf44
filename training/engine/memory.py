"""Refuse a batch that would not fit, with the numbers, before the forward pass allocates it.

The estimate counts what a training step keeps alive until ``backward``: the inputs, the student's
activations (range image or sparse voxels per U-Net level, per-point heads, the dense POP-3D grid heads),
recipe extras (image encoders, instance masks), each doubled for the gradients, times a safety factor.
It is an order-of-magnitude guard (within ~2x of the measured peak on the CPU benches), meant to turn an
OOM kill into an error that says which part is large; ``limits.memory_bytes`` caps it explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from perception_nodes.student.config import StudentConfig

FLOAT = 4
SAFETY = 1.5            # allocator slack, temporaries
GRAD = 2.0              # activations + their gradients
# Floats kept per input pixel by the image encoders (forward activations, stride-adjusted sums).
RESNET34_FLOATS_PER_PIXEL = 230.0
DEEPLABV3_FLOATS_PER_PIXEL = {'resnet50': 1500.0, 'resnet101': 2400.0, 'mobilenet_v3_large': 200.0}


class BatchTooLargeError(MemoryError):
    """The batch's estimated need exceeds the memory available; the message lists the parts."""

    def __init__(self, needed: float, available: float, parts: dict[str, float], what: str) -> None:
        listing = ', '.join(f'{k} {_gib(v)}' for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
        super().__init__(f'{what} needs about {_gib(needed)} ({listing}; x{SAFETY} safety) but only '
                         f'{_gib(available)} is available: lower train.batch_size, the student grid / range '
                         'image, or crop the images (limits.memory_bytes sets the budget)')
        self.needed, self.available, self.parts = needed, available, parts


def _gib(n: float) -> str:
    return f'{n / 2 ** 30:.2f} GiB' if n >= 2 ** 27 else f'{n / 2 ** 20:.1f} MiB'


def student_activation_bytes(config: StudentConfig, num_points: int,
                             voxel_language: bool = True) -> dict[str, float]:
    """Activations one frame keeps for backward in the student, by part (bytes, gradients included)."""
    parts: dict[str, float] = {}
    levels = list(zip(config.widths, config.depths))
    if config.arch == 'range_unet':
        pixels = config.range_height * config.range_width
        enc = sum(pixels / 4 ** i * w * (d + 1) * 3 for i, (w, d) in enumerate(levels))
        dec = sum(pixels / 4 ** i * w * 2 * 3 for i, (w, _) in enumerate(levels[:-1]))
        parts['range image'] = (enc + dec) * FLOAT * GRAD
        samples = min(pixels, num_points)
    else:
        enc = sum(num_points / 2 ** i * w * (d + 1) * 3 for i, (w, d) in enumerate(levels))
        dec = sum(num_points / 2 ** i * w * 2 * 3 for i, (w, _) in enumerate(levels[:-1]))
        parts['sparse voxels'] = (enc + dec) * FLOAT * GRAD
        samples = num_points
    per_point = config.in_columns + config.point_width * 8 + config.out_dim * 3
    parts['points'] = num_points * per_point * FLOAT * GRAD
    voxels = config.grid.shape[0] * config.grid.shape[1] * config.grid.shape[2]
    per_voxel = (2 * config.voxel_width + 1) * 3 + config.occupancy_blocks * config.head_hidden * 3 + 2
    if voxel_language:
        per_voxel += config.occupancy_blocks * config.head_hidden * 3 + config.embed_dim
    parts['dense grid'] = (voxels * per_voxel + samples * config.voxel_width) * FLOAT * GRAD
    return parts


def image_encoder_bytes(num_images: int, height: int, width: int, floats_per_pixel: float) -> float:
    """Activations of an image encoder over ``num_images`` images (bytes, gradients included)."""
    return num_images * height * width * floats_per_pixel * FLOAT * GRAD


def available_bytes(device: torch.device) -> float:
    """Free memory: CUDA free + this process's cached blocks, or the kernel's MemAvailable on CPU."""
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return float(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open('/proc/meminfo', encoding='ascii') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float('inf')


@dataclass
class MemoryGuard:
    """Compare a batch's estimate with the budget; raise :class:`BatchTooLargeError` when it is over."""

    device: torch.device
    memory_bytes: int | None = None
    memory_fraction: float = 0.9

    def budget(self) -> float:
        if self.memory_bytes is not None:
            return float(self.memory_bytes)
        return self.memory_fraction * available_bytes(self.device)

    def check(self, parts: dict[str, float], what: str) -> float:
        """Return the estimate (bytes); raise when it exceeds the budget."""
        needed = SAFETY * sum(parts.values())
        budget = self.budget()
        if needed > budget:
            raise BatchTooLargeError(needed, budget, parts, what)
        return needed
