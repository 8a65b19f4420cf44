"""Class-agnostic pseudo masks by masked NCut on geometric segments (UnScene3D Sec. 3.1, Alg. 1).

1. Segments: Felzenszwalb-Huttenlocher on the point graph with normals (:mod:`training.pseudo.oversegment`,
   segment size 50), and the segment adjacency ``C`` (segments joined by a graph edge).
2. Segment features (Sec. 3.1.1, 3.1.4): point features averaged per segment. 2D: teacher features
   back-projected to the points (points no image saw, zero rows, do not vote; a segment without any
   keeps a zero feature). 3D: supplied backbone features, or :func:`geometric_descriptors` (no learned
   weights: our stand-in for CSC features).
3. Affinity: cosine similarity per modality; with both, the weighted average ``w A_2D + (1 - w) A_3D``
   (weights NOT GIVEN: ``w = 0.5``, as the public code averages). ``W_ij = 1`` if ``A_ij >= τ_cut`` else
   ``ε`` (Alg. 1 line 6), ``τ_cut = 0.55`` for one modality, ``0.65`` for both; ``ε = 1e-5`` (NOT GIVEN in the
   paper; the public code's value).
4. NCut: ``D_ii = Σ_j W_ij``, the second-smallest generalised eigenvector of ``(D - W) v = λ D v``
   (``scipy.linalg.eigh(D - W, D)``); ``m_i = v_i >= mean(v)``; if ``Σ m > N / 2`` (Alg. 1's ``D/2``, with
   ``D`` meaning the number of segments N) then ``m ← 1 - m``, ``v ← -v``.
5. Connectivity split (Sec. 3.1.4): the foreground's connected components in ``C``
   (``scipy.sparse.csgraph.connected_components``); keep the one holding the segment of maximum ``v``
   (Alg. 1 line 13, after the sign flip; the text's "maximum absolute value" is AMBIG). Alternatives of
   Table 9: ``'avg'`` (highest mean ``v``), ``'largest'`` (most segments), ``'none'``.
6. Accept the kept component if it has at least 8 segments (Sec. 7.4; counted on the kept component, as the
   public code does). Either way its segments are removed from the graph before the next cut: the text
   masks out their rows and columns (Alg. 1 zeroes their features instead, which would leave them as an
   ε-connected cluster the next eigenvector cuts off; removing is our reading). Iterate at most
   ``max_iterations`` times (Alg. 1's ``max_inst_num``: NOT GIVEN; 20, the public code's value) or until
   fewer than 2 segments remain.

Masks are disjoint (removed segments never return), so they are returned as per-point instance ids with
one confidence per mask (earlier cuts first: the greedy order "of confidence" of Sec. 3.1.4).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from training.pseudo.oversegment import FHConfig, Oversegmentation, fh_oversegment


@dataclass
class NCutConfig:
    """Masked NCut settings (UnScene3D Sec. 3.1; choices where the paper is silent: module docstring)."""

    tau_cut: float | None = None        # None: 0.55 with one modality, 0.65 with both (Sec. 4, Table 7)
    eps: float = 1e-5                   # weight of sub-threshold pairs: NOT GIVEN (public code value)
    min_foreground_segments: int = 8    # Sec. 7.4 / Table 9
    max_iterations: int = 20            # max_inst_num: NOT GIVEN (public code value)
    separation: str = 'max'             # 'max' | 'avg' | 'largest' | 'none' (Table 9)
    weight_2d: float = 0.5              # A = w A_2D + (1 - w) A_3D: NOT GIVEN (public code averages)
    flip_ratio: float = 0.5             # Alg. 1: invert the bipartition when sum(m) > N / 2

    def __post_init__(self) -> None:
        if self.separation not in ('max', 'avg', 'largest', 'none'):
            raise ValueError(f"separation must be 'max', 'avg', 'largest' or 'none', got {self.separation!r}")
        if self.min_foreground_segments < 1 or self.max_iterations < 1:
            raise ValueError('min_foreground_segments and max_iterations must be >= 1')

    def threshold(self, num_modalities: int) -> float:
        if self.tau_cut is not None:
            return float(self.tau_cut)
        return 0.65 if num_modalities > 1 else 0.55


@dataclass
class PseudoMasks:
    """Disjoint class-agnostic pseudo masks of a scene."""

    instance_ids: np.ndarray       # (N,) int64 mask index per point, -1 outside every mask
    scores: np.ndarray             # (M,) float confidence per mask (earlier cut = higher)
    segment_masks: list[np.ndarray]  # per mask: the segment ids it holds
    segment_ids: np.ndarray        # (N,) the segments the masks are made of

    @property
    def num_masks(self) -> int:
        return len(self.segment_masks)

    def masks(self) -> np.ndarray:
        """(M, N) bool point masks."""
        return np.stack([self.instance_ids == i for i in range(self.num_masks)]) if self.num_masks else \
            np.zeros((0, len(self.instance_ids)), dtype=bool)


def segment_mean(point_features: np.ndarray, segment_ids: np.ndarray, num_segments: int) -> np.ndarray:
    """(S, D) mean feature per segment over its points with a non-zero feature (zero rows do not vote)."""
    feats = np.asarray(point_features, dtype=np.float64)
    seg = np.asarray(segment_ids, dtype=np.int64)
    ok = (seg >= 0) & np.any(feats != 0, axis=1)
    total = np.zeros((num_segments, feats.shape[1]))
    np.add.at(total, seg[ok], feats[ok])
    count = np.bincount(seg[ok], minlength=num_segments).astype(np.float64)
    return np.divide(total, count[:, None], out=np.zeros_like(total), where=count[:, None] > 0)


def geometric_descriptors(points: np.ndarray, normals: np.ndarray, segment_ids: np.ndarray,
                          num_segments: int) -> np.ndarray:
    """(S, 7) learned-weight-free 3D segment descriptors, standardised per dimension over the scene.

    Per segment: |mean normal| (3; the normals' sign is arbitrary), height of the centroid and of the
    lowest and highest point above the scene's floor level (the 1st percentile of z) (3), and planarity
    (smallest / largest PCA extent) (1). Each column is z-scored over the segments, so the cosine of
    :func:`cosine_affinity` compares how segments differ from the scene's average segment. Our stand-in
    for CSC features (none ship): orientation and height separate floor, walls, seats and table tops; size,
    extent and position were left out (on synthetic rooms they lowered the object recall of the masks, and
    FH segment sizes carry no object information).
    """
    pts = np.asarray(points, dtype=np.float64)
    nrm = np.asarray(normals, dtype=np.float64)
    seg = np.asarray(segment_ids, dtype=np.int64)
    ok = seg >= 0
    s = int(num_segments)
    count = np.maximum(np.bincount(seg[ok], minlength=s), 1).astype(np.float64)
    floor = np.percentile(pts[ok, 2], 1) if ok.any() else 0.0

    def mean(v: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(seg[ok], weights=v[ok, d], minlength=s) for d in range(v.shape[1])],
                        axis=1) / count[:, None]

    centroid = mean(pts)
    normal = np.abs(mean(nrm))
    zmin = np.full(s, np.inf)
    zmax = np.full(s, -np.inf)
    np.minimum.at(zmin, seg[ok], pts[ok, 2])
    np.maximum.at(zmax, seg[ok], pts[ok, 2])
    zmin = np.where(np.isfinite(zmin), zmin, floor) - floor
    zmax = np.where(np.isfinite(zmax), zmax, floor) - floor
    d = pts[ok] - centroid[seg[ok]]
    cov = np.zeros((s, 3, 3))
    np.add.at(cov, seg[ok], d[:, :, None] * d[:, None, :])
    eig = np.sqrt(np.clip(np.linalg.eigvalsh(cov / count[:, None, None]), 0, None))   # ascending
    planarity = eig[:, 0] / np.maximum(eig[:, 2], 1e-9)
    desc = np.column_stack([normal, centroid[:, 2] - floor, zmin, zmax, planarity])
    std = desc.std(axis=0)
    return (desc - desc.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)


def cosine_affinity(features: np.ndarray) -> np.ndarray:
    """(S, S) cosine similarities of the rows of ``features`` (zero rows: similarity 0 with everything)."""
    f = np.asarray(features, dtype=np.float64)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    f = np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)
    return f @ f.T


def ncut_vector(weights: np.ndarray) -> np.ndarray:
    """Second-smallest generalised eigenvector of ``(D - W) v = λ D v`` (UnScene3D Sec. 3.1.2, Alg. 1)."""
    from scipy.linalg import eigh
    w = np.asarray(weights, dtype=np.float64)
    d = np.diag(w.sum(axis=1))
    _, vec = eigh(d - w, d, subset_by_index=[1, 1])
    return vec[:, 0]


def _components(nodes: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """Connected-component id of each of ``nodes`` (segment ids) in the segment adjacency graph."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    nodes = np.asarray(nodes, dtype=np.int64)
    adj = np.asarray(adjacency, dtype=np.int64).reshape(-1, 2)
    size = int(max(nodes.max(initial=-1), adj.max(initial=-1))) + 1
    lut = np.full(size, -1, dtype=np.int64)
    lut[nodes] = np.arange(len(nodes))
    i, j = lut[adj[:, 0]], lut[adj[:, 1]]
    sel = (i >= 0) & (j >= 0)
    i, j = i[sel], j[sel]
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(nodes), len(nodes)))
    return connected_components(graph, directed=False)[1]


def masked_ncut(features: Sequence[np.ndarray], adjacency: np.ndarray, config: NCutConfig | None = None,
                ) -> tuple[list[np.ndarray], list[float]]:
    """Alg. 1 on segment features: accepted masks (arrays of segment ids) and their confidences.

    ``features``: one (S, D) array per modality (2D first when there are two); ``adjacency`` (P, 2) segment
    pairs that touch. See the module docstring for every step.
    """
    config = config or NCutConfig()
    if not features:
        raise ValueError('masked_ncut needs at least one feature modality')
    s = features[0].shape[0]
    if any(f.shape[0] != s for f in features):
        raise ValueError('every modality needs one feature row per segment')
    if len(features) == 1:
        affinity = cosine_affinity(features[0])
    else:
        w = float(config.weight_2d)
        rest = sum(cosine_affinity(f) for f in features[1:]) / (len(features) - 1)
        affinity = w * cosine_affinity(features[0]) + (1 - w) * rest
    tau = config.threshold(len(features))
    remaining = np.arange(s)
    masks: list[np.ndarray] = []
    for _ in range(int(config.max_iterations)):
        if len(remaining) < 2:
            break
        sub = affinity[np.ix_(remaining, remaining)]
        weights = np.where(sub >= tau, 1.0, config.eps)
        v = ncut_vector(weights)
        fg = v >= v.mean()
        if fg.sum() > config.flip_ratio * len(remaining):
            fg, v = ~fg, -v
        nodes = remaining[fg]
        if config.separation != 'none' and len(nodes) > 1:
            comp = _components(nodes, adjacency)
            vf = v[fg]
            if config.separation == 'max':
                keep = comp[np.argmax(vf)]
            elif config.separation == 'avg':
                keep = int(np.argmax([vf[comp == c].mean() for c in range(comp.max() + 1)]))
            else:
                keep = int(np.argmax(np.bincount(comp)))
            nodes = nodes[comp == keep]
        if len(nodes) == 0:
            break
        if len(nodes) >= config.min_foreground_segments:
            masks.append(np.sort(nodes))
        remaining = np.setdiff1d(remaining, nodes)
    scores = [1.0 - i / max(len(masks), 1) for i in range(len(masks))]
    return masks, scores


@dataclass
class UnScene3DConfig:
    """Pseudo-mask generation: segments (FH, size 50) + masked NCut."""

    segments: FHConfig = field(default_factory=FHConfig)
    ncut: NCutConfig = field(default_factory=NCutConfig)
    geometric_3d: bool = True      # use geometric_descriptors as the 3D features when none are supplied


def unscene3d_pseudo_masks(points: np.ndarray, config: UnScene3DConfig | None = None,
                           features_2d: np.ndarray | None = None, features_3d: np.ndarray | None = None,
                           colors: np.ndarray | None = None, normals: np.ndarray | None = None,
                           segments: Oversegmentation | None = None) -> PseudoMasks:
    """UnScene3D initial pseudo masks of one scene (see the module docstring).

    ``features_2d`` (N, D2): per-point 2D teacher features (zero rows where no image saw the point);
    ``features_3d`` (N, D3): per-point 3D features (a backbone's); without them the 3D modality is
    :func:`geometric_descriptors` (``config.geometric_3d``). ``segments`` may be given precomputed.
    """
    config = config or UnScene3DConfig()
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    over = segments
    if over is None:
        over = fh_oversegment(pts, config.segments, colors=colors, normals=normals)
    s = over.num_segments
    modalities = []
    if features_2d is not None:
        modalities.append(segment_mean(features_2d, over.segment_ids, s))
    if features_3d is not None:
        modalities.append(segment_mean(features_3d, over.segment_ids, s))
    elif config.geometric_3d:
        modalities.append(geometric_descriptors(pts, over.normals, over.segment_ids, s))
    if not modalities:
        raise ValueError('no features: give features_2d / features_3d or enable geometric_3d')
    masks, scores = masked_ncut(modalities, over.adjacency, config.ncut) if s >= 2 else ([], [])
    lut = np.full(max(s, 1), -1, dtype=np.int64)
    for i, m in enumerate(masks):
        lut[m] = i
    inst = np.where(over.segment_ids >= 0, lut[np.clip(over.segment_ids, 0, None)], -1)
    return PseudoMasks(inst, np.asarray(scores, dtype=np.float64), masks, over.segment_ids)


def segments_as_masks(segment_ids: np.ndarray, min_points: int = 1) -> PseudoMasks:
    """Use every Felzenszwalb segment directly as a mask (the baseline of UnScene3D Tables 1/8).

    Confidence = the segment's share of the points (larger segments first), our choice for ranking.
    """
    seg = np.asarray(segment_ids, dtype=np.int64)
    s = int(seg.max(initial=-1)) + 1
    counts = np.bincount(seg[seg >= 0], minlength=s)
    keep = np.flatnonzero(counts >= min_points)
    lut = np.full(max(s, 1), -1, dtype=np.int64)
    lut[keep] = np.arange(len(keep))
    inst = np.where(seg >= 0, lut[np.clip(seg, 0, None)], -1)
    scores = counts[keep] / max(int(counts.sum()), 1)
    return PseudoMasks(inst, scores.astype(np.float64), [np.array([k]) for k in keep], seg)
