"""Superpoints = instances of Affinity3D's instance generation module (Sec. 3.2, 4.2).

- Generalised zero-shot (GZS): the points that do not carry a seen-class ground-truth label are clustered
  with DBSCAN (:func:`gzs_superpoints`). Seen-class points are not clustered (they keep their ground truth
  in PL', Step 5). Points without any ground truth (label < 0, e.g. SemanticKITTI "unlabeled") do not
  carry a seen label either, so they are clustered too unless ``cluster_unlabelled`` is False.
- Annotation-free (AF): the paper uses BPSS supervoxels (Lin et al. 2018), which are not available here; we
  over-segment geometrically instead (:func:`annotation_free_superpoints`), either with our
  Felzenszwalb-Huttenlocher point-graph segmentation (``method='fh'``, every point gets a segment, the
  ground included, which AF must also label) or with the package's ground removal + clustering
  (``method='segment_scan'``; the ground then stays unassigned, i.e. ignored).
- Superpoints with fewer than 2 points are invalid (Sec. 3.2) and dropped (:func:`drop_small`).

DBSCAN's ``eps`` and ``min_samples`` are NOT GIVEN in the paper. Our choice: ``eps = 0.5`` m and
``min_samples = 3`` on 0.1 m voxel centres (one sample per occupied voxel, so the density test does not
depend on the distance-dependent LiDAR point density as much as on raw points). The annotation-free FH
uses ``k = 0.05``, ``min_size = 20`` voxels of 0.15 m and ``color_weight = 0`` (LiDAR has no colour): coarser
than the indoor 2 cm / size 50 of UnScene3D, to give supervoxels of roughly BPSS size on a 64-beam scan.
FH never cuts a smooth surface, so the whole road would be one segment whose 2D box spans the image (its
crop then shows whatever fills the image centre); supervoxels have a bounded size, so FH segments are
further cut by a 4 m xy grid (``tile_size``, our choice).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.pseudo.oversegment import FHConfig, fh_oversegment


@dataclass
class SuperpointConfig:
    """Instance generation (Affinity3D Sec. 3.2); NOT GIVEN constants are our choices (module docstring)."""

    eps: float = 0.5                   # DBSCAN radius, metres (GZS)
    min_samples: int = 3               # DBSCAN core size, in voxels (GZS)
    voxel_size: float = 0.1            # DBSCAN runs on voxel centres of this size (GZS)
    cluster_unlabelled: bool = True    # GZS: also cluster points without ground truth (label < 0)
    min_points: int = 2                # Sec. 3.2: superpoints with fewer points are invalid
    af_method: str = 'fh'              # 'fh' | 'segment_scan' (AF; BPSS is not available)
    fh: FHConfig = field(default_factory=lambda: FHConfig(k=0.05, min_size=20, voxel_size=0.15))
    tile_size: float = 4.0             # AF: cut segments by an xy grid of this size (metres; 0 = off)
    segment_options: dict = field(default_factory=dict)   # extra teacher.instances.segment_scan arguments

    def __post_init__(self) -> None:
        if self.af_method not in ('fh', 'segment_scan'):
            raise ValueError(f"af_method must be 'fh' or 'segment_scan', got {self.af_method!r}")
        if not self.eps > 0 or self.min_samples < 1 or self.min_points < 1:
            raise ValueError('eps must be > 0, min_samples and min_points >= 1')


def drop_small(segment_ids: np.ndarray, min_points: int = 2) -> np.ndarray:
    """Set segments with fewer than ``min_points`` points to -1 and renumber the rest densely 0..S-1."""
    seg = np.asarray(segment_ids, dtype=np.int64).copy()
    ok = seg >= 0
    if not ok.any():
        return seg
    uniq, inverse, counts = np.unique(seg[ok], return_inverse=True, return_counts=True)
    keep = counts >= int(min_points)
    new_id = np.where(keep, np.cumsum(keep) - 1, -1)
    seg[ok] = new_id[inverse.reshape(-1)]
    return seg


def gzs_superpoints(points: np.ndarray, labels: np.ndarray, seen: np.ndarray,
                    config: SuperpointConfig | None = None) -> np.ndarray:
    """GZS instances: DBSCAN clusters of the points not carrying a seen-class label; (N,) ids, -1 elsewhere.

    ``labels`` (N,) ground-truth class indices (-1 = none); ``seen`` (K,) bool per class index.
    """
    from perception_nodes.teacher.instances import segment_scan
    config = config or SuperpointConfig()
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    seen = np.asarray(seen, dtype=bool).reshape(-1)
    if len(lab) != len(pts):
        raise ValueError(f'{len(lab)} labels for {len(pts)} points')
    known = (lab >= 0) & (lab < len(seen))
    carries_seen = np.zeros(len(pts), dtype=bool)
    carries_seen[known] = seen[lab[known]]
    candidates = ~carries_seen
    if not config.cluster_unlabelled:
        candidates &= lab >= 0
    out = np.full(len(pts), -1, dtype=np.int64)
    idx = np.flatnonzero(candidates)
    if len(idx):
        out[idx] = segment_scan(pts[idx], ground='none', eps=config.eps, min_samples=config.min_samples,
                                voxel_size=config.voxel_size, cluster='dbscan')
    return drop_small(out, config.min_points)


def annotation_free_superpoints(points: np.ndarray, config: SuperpointConfig | None = None,
                                viewpoint: np.ndarray | None = None) -> np.ndarray:
    """AF instances: a geometric over-segmentation of the whole scan; (N,) ids, -1 = unassigned."""
    from perception_nodes.teacher.instances import segment_scan
    config = config or SuperpointConfig()
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if config.af_method == 'fh':
        finite = np.isfinite(pts).all(axis=1)
        out = np.full(len(pts), -1, dtype=np.int64)
        if finite.any():
            out[finite] = fh_oversegment(pts[finite], config.fh, viewpoint=viewpoint).segment_ids
    else:
        out = segment_scan(pts, **config.segment_options)
    if config.tile_size > 0:
        out = tile_segments(pts, out, config.tile_size)
    return drop_small(out, config.min_points)


def tile_segments(points: np.ndarray, segment_ids: np.ndarray, tile_size: float) -> np.ndarray:
    """Split every segment by an xy grid of ``tile_size`` metres: (N,) ids, dense, -1 kept."""
    seg = np.asarray(segment_ids, dtype=np.int64)
    ok = (seg >= 0) & np.isfinite(points).all(axis=1)
    out = np.full(len(seg), -1, dtype=np.int64)
    if not ok.any():
        return out
    cells = np.floor(points[ok, :2] / float(tile_size)).astype(np.int64)
    cells -= cells.min(axis=0)
    key = (seg[ok] * (cells[:, 0].max() + 1) + cells[:, 0]) * (cells[:, 1].max() + 1) + cells[:, 1]
    out[ok] = np.unique(key, return_inverse=True)[1].reshape(-1)
    return out
