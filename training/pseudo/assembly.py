"""Point-wise pseudo labels PL' (Affinity3D Sec. 3.4 last paragraph and Step 5 of DIGEST Sec. 2.A).

- GZS seen-class points keep their ground truth;
- points of kept superpoints get their instance's refined label (argmax of Eq. 8);
- everything else is ignored (-1);
- invisible points (Eq. 10 false in every camera) are ignored as well, and flagged ``visible=False`` for
  the visible-only knowledge-transfer loss (Eq. 15-16).

AMBIG in the paper: whether seen-class ground truth on invisible points (outside every camera or
occluded) is also ignored. "The invisible points are set to the ignoring label for self-training" reads as
all points, so :attr:`AssemblyConfig.ignore_invisible_ground_truth` defaults to True; False keeps the
ground truth everywhere (it is correct whether or not a camera sees the point).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

IGNORE = -1
SOURCE_NONE, SOURCE_GROUND_TRUTH, SOURCE_INSTANCE, SOURCE_DENSE = 0, 1, 2, 3

# Affinity3D's GZS split of SemanticKITTI (names as in config/vocabularies/semantickitti.yaml).
SEMANTICKITTI_UNSEEN = ('motorcycle', 'truck', 'bicyclist', 'traffic-sign')


@dataclass(frozen=True)
class SeenUnseenSplit:
    """Which vocabulary classes are unseen (no labels) in the generalised zero-shot setting."""

    class_names: tuple[str, ...]
    unseen: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, 'class_names', tuple(str(n) for n in self.class_names))
        object.__setattr__(self, 'unseen', tuple(str(n) for n in self.unseen))
        missing = [n for n in self.unseen if n not in self.class_names]
        if missing:
            raise ValueError(f'unseen classes {missing} are not in the vocabulary {list(self.class_names)}')
        if not self.unseen:
            raise ValueError('the split needs at least one unseen class')

    @classmethod
    def annotation_free(cls, class_names: Sequence[str]) -> 'SeenUnseenSplit':
        """All classes unseen (AF: EMB^U = EMB^C)."""
        return cls(tuple(class_names), tuple(class_names))

    @property
    def unseen_mask(self) -> np.ndarray:
        """(K,) bool: class k is unseen."""
        return np.array([n in self.unseen for n in self.class_names], dtype=bool)

    @property
    def seen_mask(self) -> np.ndarray:
        """(K,) bool: class k is seen (its ground truth is available)."""
        return ~self.unseen_mask


@dataclass
class AssemblyConfig:
    """PL' assembly choices."""

    ignore_invisible_ground_truth: bool = True   # AMBIG in the paper: our choice, see module docstring
    ignore_invisible: bool = True                # Sec. 3.5: invisible points are ignored (False: no Vis.)


@dataclass
class PointLabels:
    """Point-wise pseudo labels of one frame or scene."""

    labels: np.ndarray     # (N,) int64 class index, IGNORE = -1
    source: np.ndarray     # (N,) uint8 SOURCE_*: where the label came from (SOURCE_NONE for ignored)
    visible: np.ndarray    # (N,) bool: visible in some camera (Eq. 10): the visible-only KT loss mask

    @property
    def ignored_fraction(self) -> float:
        return float((self.labels == IGNORE).mean()) if self.labels.size else float('nan')


def assemble_point_labels(segment_ids: np.ndarray, segment_labels: np.ndarray, visible: np.ndarray,
                          ground_truth: np.ndarray | None = None, seen: np.ndarray | None = None,
                          config: AssemblyConfig | None = None,
                          dense_labels: np.ndarray | None = None) -> PointLabels:
    """Affinity3D PL' from instance labels (see the module docstring).

    ``segment_ids`` (N,) superpoint ids (-1 none); ``segment_labels`` (S,) refined class per superpoint
    (-1 = not kept: outside every image, invalid, or a seen-class instance); ``visible`` (N,) bool;
    ``ground_truth`` (N,) and ``seen`` (K,) bool for GZS. ``dense_labels`` (N,) fills points that no
    instance covers (used for the MaskCLIP "MC" baseline, where every point takes its dense label; -1 none).
    """
    config = config or AssemblyConfig()
    seg = np.asarray(segment_ids, dtype=np.int64).reshape(-1)
    n = len(seg)
    vis = np.asarray(visible, dtype=bool).reshape(-1)
    if len(vis) != n:
        raise ValueError(f'visible has {len(vis)} entries for {n} points')
    seg_lab = np.asarray(segment_labels, dtype=np.int64).reshape(-1)
    labels = np.full(n, IGNORE, dtype=np.int64)
    source = np.zeros(n, dtype=np.uint8)
    if dense_labels is not None:
        dense = np.asarray(dense_labels, dtype=np.int64).reshape(-1)
        has = dense >= 0
        labels[has], source[has] = dense[has], SOURCE_DENSE
    in_seg = (seg >= 0) & (seg < len(seg_lab))
    inst = np.where(in_seg, seg_lab[np.clip(seg, 0, max(len(seg_lab) - 1, 0))] if len(seg_lab) else -1, -1)
    has = inst >= 0
    labels[has], source[has] = inst[has], SOURCE_INSTANCE
    if config.ignore_invisible:
        drop = ~vis & (source != SOURCE_NONE)
        labels[drop], source[drop] = IGNORE, SOURCE_NONE
    if ground_truth is not None:
        if seen is None:
            raise ValueError('ground_truth needs the seen-class mask')
        gt = np.asarray(ground_truth, dtype=np.int64).reshape(-1)
        seen = np.asarray(seen, dtype=bool).reshape(-1)
        if len(gt) != n:
            raise ValueError(f'ground_truth has {len(gt)} entries for {n} points')
        ok = (gt >= 0) & (gt < len(seen))
        is_seen = np.zeros(n, dtype=bool)
        is_seen[ok] = seen[gt[ok]]
        keep = is_seen & (vis | (not config.ignore_invisible_ground_truth) | (not config.ignore_invisible))
        labels[is_seen], source[is_seen] = IGNORE, SOURCE_NONE        # seen points never take a pseudo label
        labels[keep], source[keep] = gt[keep], SOURCE_GROUND_TRUTH
    return PointLabels(labels, source, vis)
