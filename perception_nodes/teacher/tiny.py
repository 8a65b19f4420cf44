"""Tiny randomly initialised open_clip configurations for tests and benchmarks.

``ovp-tiny`` (ViT, patch 16, 2 layers, width 64) and ``ovp-tiny-rn`` (ModifiedResNet, one block per
stage, width 8) share a 2-layer text tower and a 32-d joint space. They exercise the real open_clip
code paths in milliseconds; with random weights their outputs carry no meaning.
"""
from __future__ import annotations

from pathlib import Path

import open_clip

CONFIG_DIR = Path(__file__).resolve().parent / 'model_configs'
TINY_MODELS = ('ovp-tiny', 'ovp-tiny-rn')


def register_tiny_models() -> None:
    """Add this package's model_configs/ to open_clip's registry (idempotent)."""
    if all(name in open_clip.list_models() for name in TINY_MODELS):
        return
    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(f'tiny CLIP configs missing: {CONFIG_DIR} (package installed without data?)')
    open_clip.add_model_config(CONFIG_DIR)


register_tiny_models()
