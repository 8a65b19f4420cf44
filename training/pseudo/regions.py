"""Region consistency for the label-free CLIP + SAM method (CNS; supplement, DIGEST Sec. 1).

CNS regularises its 2D and 3D networks with 2D regions: SAM masks (we also offer superpixels, the
default, since no SAM weights ship). What is built here (per image, then per point):

- :func:`image_regions`: (H, W) region ids, ``-1`` where no region covers a pixel. Superpixels
  (scikit-image SLIC or Felzenszwalb, the parameters of ``geometry.visibility.superpixels``) or SAM's
  automatic masks (:func:`sam_regions`, needs the ``segment_anything`` package and a local checkpoint,
  loaded offline like the CLIP weights: a clear error names the missing file or package).
- :func:`region_vote`: max-vote of the per-pixel CLIP labels inside every region (the most frequent label
  wins, ties to the smaller class index; unlabelled pixels (-1) do not vote), the refinement CNS applies
  to the noisy CLIP pseudo labels.
- :func:`point_regions`: the region of every visible (point, camera) pair, with ids made unique across
  cameras (camera offsets), for the latent-space consistency loss (features pooled per region), and one
  primary region per point (its first visible camera).
- :func:`region_point_labels`: the voted labels at the points (first visible camera).

The supplement gives neither the SAM prompting nor its parameters (NOT GIVEN): we use
``SamAutomaticMaskGenerator`` with its defaults and paint masks from the largest to the smallest, so a
pixel belongs to the smallest mask covering it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from perception_nodes.geometry.projection import pixel_indices


class SamUnavailableError(RuntimeError):
    """SAM was requested but its package or checkpoint is missing."""


@dataclass
class RegionConfig:
    """2D regions per image: 'slic' (default) | 'felzenszwalb' | 'sam'."""

    method: str = 'slic'
    params: dict[str, Any] = field(default_factory=dict)   # extra arguments of the superpixel function
    sam_checkpoint: str = ''                                # local SAM weights file (method 'sam')
    sam_model_type: str = 'vit_b'                           # segment_anything registry key
    sam_params: dict[str, Any] = field(default_factory=dict)  # SamAutomaticMaskGenerator arguments

    def __post_init__(self) -> None:
        if self.method not in ('slic', 'felzenszwalb', 'sam'):
            raise ValueError(f"region method must be 'slic', 'felzenszwalb' or 'sam', got {self.method!r}")


def sam_regions(image: np.ndarray, checkpoint: str | Path, model_type: str = 'vit_b',
                device: str = 'cpu', **params: Any) -> np.ndarray:
    """(H, W) region ids from SAM's automatic masks (smallest mask on top), -1 where none.

    Raises :class:`SamUnavailableError` naming the package or the checkpoint file when either is missing
    (weights are never downloaded).
    """
    path = Path(checkpoint).expanduser() if str(checkpoint) else None
    if path is None or not path.is_file():
        raise SamUnavailableError(f'SAM checkpoint not found: {path if path else "(none given)"}. Place the '
                                  f'segment_anything {model_type!r} weights there (e.g. '
                                  f'sam_vit_b_01ec64.pth) and pass its path; nothing is downloaded.')
    try:
        from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
    except ImportError as exc:
        raise SamUnavailableError('SAM regions need the segment_anything package '
                                  '(pip install segment-anything); use method "slic" otherwise') from exc
    if model_type not in sam_model_registry:
        raise SamUnavailableError(f'unknown SAM model type {model_type!r}; expected one of '
                                  f'{sorted(sam_model_registry)}')
    sam = sam_model_registry[model_type](checkpoint=str(path)).to(device)
    masks = SamAutomaticMaskGenerator(sam, **params).generate(np.asarray(image))
    return masks_to_regions([m['segmentation'] for m in masks], np.asarray(image).shape[:2])


def masks_to_regions(masks: Sequence[np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    """Paint binary masks from the largest to the smallest: (H, W) ids in mask order, -1 uncovered."""
    out = np.full(tuple(image_size), -1, dtype=np.int64)
    areas = [int(np.asarray(m).sum()) for m in masks]
    for i in np.argsort(areas, kind='stable')[::-1]:
        out[np.asarray(masks[i], dtype=bool)] = int(i)
    return out


def image_regions(image: np.ndarray, config: RegionConfig | None = None) -> np.ndarray:
    """(H, W) int64 region ids of an RGB image (see :class:`RegionConfig`)."""
    from perception_nodes.geometry.visibility import superpixels
    config = config or RegionConfig()
    if config.method == 'sam':
        return sam_regions(image, config.sam_checkpoint, config.sam_model_type, **config.sam_params)
    return superpixels(image, config.method, **config.params)


def region_vote(regions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Max-vote ``labels`` (H, W) inside each region of ``regions`` (H, W): the voted (H, W) labels.

    Pixels outside every region (-1) keep their own label; a region without labelled pixels stays -1.
    """
    reg = np.asarray(regions, dtype=np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    if reg.shape != lab.shape:
        raise ValueError(f'regions {reg.shape} and labels {lab.shape} differ in shape')
    out = lab.copy()
    inside = reg >= 0
    if not inside.any():
        return out
    r = int(reg.max()) + 1
    voters = inside & (lab >= 0) & (lab < num_classes)
    votes = np.bincount(reg[voters] * num_classes + lab[voters], minlength=r * num_classes)
    votes = votes.reshape(r, num_classes)
    winner = np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), -1)
    out[inside] = winner[reg[inside]]
    return out


@dataclass
class PointRegions:
    """Region membership of the visible (point, camera) pairs."""

    point_index: np.ndarray   # (P,) int64 point
    camera_index: np.ndarray  # (P,) int64 camera
    region: np.ndarray        # (P,) int64 region id, unique across cameras (camera m's ids + offsets[m])
    offsets: np.ndarray       # (M,) int64 first global id of each camera's regions
    num_points: int

    def primary(self) -> np.ndarray:
        """(N,) region of each point in its first visible camera, -1 for points in none."""
        out = np.full(self.num_points, -1, dtype=np.int64)
        ok = self.region >= 0
        order = np.lexsort((self.camera_index[ok], self.point_index[ok]))
        pts, reg = self.point_index[ok][order], self.region[ok][order]
        first = np.ones(len(pts), dtype=bool)
        first[1:] = pts[1:] != pts[:-1]
        out[pts[first]] = reg[first]
        return out


def point_regions(region_maps: Sequence[np.ndarray], uv: torch.Tensor, visible: torch.Tensor) -> PointRegions:
    """Region of each visible projection.

    ``region_maps``: per camera (H, W) ids; ``uv`` (M, N, 2); ``visible`` (M, N).
    """
    m = len(region_maps)
    if uv.shape[0] != m or visible.shape != uv.shape[:2]:
        raise ValueError(f'{m} region maps for uv {tuple(uv.shape)} and visibility {tuple(visible.shape)}')
    pts, cams, regs, offsets = [], [], [], []
    offset = 0
    for i, rmap in enumerate(region_maps):
        rmap = np.asarray(rmap, dtype=np.int64)
        offsets.append(offset)
        idx = torch.nonzero(visible[i]).reshape(-1)
        rows, cols = pixel_indices(uv[i, idx], rmap.shape)
        r = rmap[rows.cpu().numpy(), cols.cpu().numpy()]
        pts.append(idx.cpu().numpy())
        cams.append(np.full(len(idx), i, dtype=np.int64))
        regs.append(np.where(r >= 0, r + offset, -1))
        offset += int(rmap.max(initial=-1)) + 1
    cat = (lambda xs: np.concatenate(xs).astype(np.int64)) if m else (lambda xs: np.zeros(0, dtype=np.int64))
    return PointRegions(cat(pts), cat(cams), cat(regs), np.asarray(offsets, dtype=np.int64), int(uv.shape[1]))


def region_point_labels(voted_maps: Sequence[np.ndarray], uv: torch.Tensor,
                        visible: torch.Tensor) -> np.ndarray:
    """(N,) region-voted label of each point in its first visible camera, -1 for points in none."""
    n = int(uv.shape[1])
    out = np.full(n, -1, dtype=np.int64)
    for i in reversed(range(len(voted_maps))):     # earlier cameras overwrite later ones
        lab = np.asarray(voted_maps[i], dtype=np.int64)
        idx = torch.nonzero(visible[i]).reshape(-1)
        rows, cols = pixel_indices(uv[i, idx], lab.shape)
        val = lab[rows.cpu().numpy(), cols.cpu().numpy()]
        sel = idx.cpu().numpy()[val >= 0]
        out[sel] = val[val >= 0]
    return out


def upsample_labels(cell_labels: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Upsample (h, w) feature-cell labels to the (H, W) image (nearest, as ``sample_features``)."""
    lab = np.asarray(cell_labels)
    h, w = lab.shape
    hh, ww = int(image_size[0]), int(image_size[1])
    rows = np.minimum(np.floor((np.arange(hh) + 0.5) * h / hh).astype(np.int64), h - 1)
    cols = np.minimum(np.floor((np.arange(ww) + 0.5) * w / ww).astype(np.int64), w - 1)
    return lab[np.ix_(rows, cols)]


@dataclass
class RegionTargets:
    """CNS targets of one frame: region-voted labels at the points and the points' regions."""

    point_labels: np.ndarray      # (N,) int64 region-voted CLIP label (first visible camera), -1 none
    raw_point_labels: np.ndarray  # (N,) int64 the same before voting (per-pixel CLIP labels), -1 none
    regions: PointRegions         # per visible (point, camera) pair, ids unique across cameras
    region_maps: list[np.ndarray]  # per camera (H, W) region ids


def frame_region_targets(images: Sequence[np.ndarray], feature_maps: Sequence[torch.Tensor],
                         text_embeddings: torch.Tensor, uv: torch.Tensor, visible: torch.Tensor,
                         config: RegionConfig | None = None) -> RegionTargets:
    """Regions, max-voted CLIP labels and per-point regions of one frame (see the module docstring).

    Per camera: the per-pixel CLIP label is the argmax cosine of the (C, h, w) teacher map against the
    text embeddings (cells with a zero feature are unlabelled), upsampled to the image (nearest), then
    max-voted in each region of the image; the points take the labels at their pixels.
    """
    emb = torch.nn.functional.normalize(text_embeddings.float(), dim=1)
    maps, raw, voted = [], [], []
    for image, fmap in zip(images, feature_maps):
        f = torch.as_tensor(fmap).float()
        c, h, w = f.shape
        flat = f.reshape(c, -1).T
        cell = (flat @ emb.T.to(flat)).argmax(dim=1).numpy()
        cell[flat.norm(dim=1).numpy() == 0] = -1
        pixel = upsample_labels(cell.reshape(h, w), np.asarray(image).shape[:2])
        regions = image_regions(np.asarray(image), config)
        maps.append(regions)
        raw.append(pixel)
        voted.append(region_vote(regions, pixel, emb.shape[0]))
    return RegionTargets(region_point_labels(voted, uv, visible), region_point_labels(raw, uv, visible),
                         point_regions(maps, uv, visible), maps)
