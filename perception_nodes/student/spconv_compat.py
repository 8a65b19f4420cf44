"""Import spconv and make its CPU build's backward pass work without CUDA.

spconv 2.3.8's native CPU backward (``ops.indice_conv_backward``) asks torch for the current CUDA stream
before branching on the device, which raises on machines without an NVIDIA driver. The stream handle
is unused on the CPU path, so a 0 handle is substituted there; CUDA machines are left untouched.
"""
from __future__ import annotations

import torch

import spconv.pytorch as spconv  # noqa: F401  (re-exported)
from spconv.pytorch import ops as _ops

if not torch.cuda.is_available():
    _ops.get_current_stream = lambda: 0

__all__ = ['spconv']
