"""Offline training: pseudo-labels from CLIP and distillation into the 3D student."""
