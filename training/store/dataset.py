"""The PyTorch Dataset over a pseudo-label store, and the store-level information (:class:`StoreMetadata`).

:class:`PseudoLabelDataset` yields one sample per unit (a frame, or a scene of accumulated sweeps) as a
dict; N points, M cameras, n points with a teacher feature, Q pseudo masks::

    field              shape          dtype     meaning
    frame_key          str                      '<bag>:<cloud>' (frame) or '<bag>:s<scene>' (scene)
    points             (N, 4)         float32   x, y, z, intensity in the LiDAR (first sweep's) frame
    labels             (N,)           int64     pseudo-label class index, -1 ignore (``label_source``; all
                                                -1 in a store without a label method, e.g. UnScene3D only)
    visible            (N,)           bool      visible in some camera after the occlusion test
    gt_labels          (N,)           int64     ground truth as vocabulary indices, -1 none    [optional]
    gt_instances       (N,)           int64     ground-truth instance ids as in the bag         [optional]
    teacher_index      (n,)           int64     points with a fused teacher feature             [optional]
    teacher_features   (n, C)         float16   their fused teacher features, regenerated       [optional]
    regions            (N,)           int64     CNS region id (unique across cameras), -1 none  [optional]
    instances          (N,)           int64     Affinity3D superpoint (instance) id, -1 none    [optional]
    images             (M, H, W, 3)   uint8     camera images (zero-padded to the largest)      [optional]
    uv                 (N, 2)         float32   pixel (u, v) in ``camera_index``'s image       [with images]
    camera_index       (N,)           int64     first camera that sees the point, -1 none      [with images]
    pseudo_masks       (Q, N)         bool      UnScene3D class-agnostic pseudo masks           [optional]
    mask_scores        (Q,)           float32   their confidences                               [optional]
    occupancy_target   (X, Y, Z)      uint8     POP-3D occupancy on ``StoreMetadata.grid``          [optional]
    sweep              (N,)           int64     scenes: the sweep each point comes from         [optional]

The optional fields every unit has are listed in ``StoreMetadata.fields``. ``teacher_features`` are rebuilt
from the stored low-resolution maps and projections exactly as the pipeline fused them
(:class:`~training.pseudo.dense_targets.DenseTargets`). Memory is bounded: a sample reads only its own
tensors from a memory-mapped shard (``safetensors.safe_open``), at most ``max_open_shards`` shards are open
(least recently used closed first), and every shard is checked against its sha256 in the index before its
first read (:class:`~training.store.shards.StoreCorruptError` otherwise: rerun ``ovp pseudo-label`` to
make it again). Usable with DataLoader workers (open shards are not pickled).
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from perception_nodes.geometry.voxels import GridSpec
from training.pseudo.dense_targets import DenseTargets
from training.store.shards import FORMAT, INDEX_NAME, StoreCorruptError, file_sha256

OPTIONAL_FIELDS = ('gt_labels', 'gt_instances', 'teacher_index', 'teacher_features', 'regions', 'images',
                   'uv', 'camera_index', 'pseudo_masks', 'mask_scores', 'occupancy_target', 'sweep',
                   'instances')


@dataclass
class StoreMetadata:
    """Store-level information for a trainer to check compatibility (from index.json + store.safetensors)."""

    class_names: list[str]
    text_embeddings: torch.Tensor          # (K, C) float32 unit rows
    vocabulary_name: str
    teacher: dict[str, Any]                # kind, model, pretrained, identity, random_weights, synthetic, ...
    teacher_id: str
    config: dict[str, Any]                 # the method config
    config_hash: str
    store_hash: str
    package_version: str
    seeds: dict[str, int]
    bags: list[dict[str, Any]]             # name, path, sha256, clouds, units, ...
    unit: str                              # 'frame' | 'scene'
    label_source: str
    label_methods: list[str]
    fields: frozenset[str] = frozenset()
    grid: GridSpec | None = None           # grid of occupancy_target
    num_samples: int = 0
    class_counts: dict[str, list[int]] = field(default_factory=dict)   # method -> labelled points per class
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def embed_dim(self) -> int:
        return int(self.text_embeddings.shape[1])

    @property
    def labels_meaningful(self) -> bool:
        """False for random CLIP weights; True for a pretrained CLIP or the synthetic teacher."""
        return not self.teacher.get('random_weights', False)

    def provenance(self) -> dict[str, Any]:
        """Flat keys to compare against what a training recipe expects."""
        out = {'vocabulary.name': self.vocabulary_name, 'vocabulary.classes': list(self.class_names),
               'embed_dim': self.embed_dim, 'config_hash': self.config_hash, 'store_hash': self.store_hash,
               'unit': self.unit, 'label_source': self.label_source}
        for k in ('kind', 'model', 'pretrained', 'identity', 'random_weights', 'synthetic'):
            out[f'teacher.{k}'] = self.teacher.get(k)
        return out

    def mismatches(self, expect: dict[str, Any]) -> list[str]:
        """``key: expected x, store has y`` for every flat key of :meth:`provenance` that differs."""
        have = self.provenance()
        out = []
        for k, v in sorted(expect.items()):
            if k not in have:
                out.append(f'{k}: unknown key (known: {sorted(have)})')
            elif (list(v) if isinstance(v, tuple) else v) != have[k]:
                out.append(f'{k}: expected {v!r}, store has {have[k]!r}')
        return out


def load_index(root: str | os.PathLike) -> dict[str, Any]:
    """index.json of a store (ValueError when absent, incomplete or not a store)."""
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        raise ValueError(f'{root} has no {INDEX_NAME}: not a pseudo-label store, or its run has not finished '
                         f'(rerun ovp pseudo-label to complete it)')
    index = json.loads(path.read_text(encoding='utf-8'))
    if index.get('format') != FORMAT or not index.get('complete'):
        raise ValueError(f'{path} is not a complete {FORMAT} index')
    return index


def store_info(root: str | os.PathLike, index: dict[str, Any] | None = None,
               verify: bool = True) -> StoreMetadata:
    """Return the :class:`StoreMetadata` of a store (checked against the index with ``verify``)."""
    from safetensors.torch import load_file
    root = Path(root)
    index = index or load_index(root)
    meta = root / index['metadata']['file']
    if verify and (not meta.is_file() or file_sha256(meta) != index['metadata']['sha256']):
        raise StoreCorruptError(f'{meta} does not match its sha256 in the index: rerun ovp pseudo-label')
    text = load_file(str(meta))['text_embeddings'].float()
    grids = index.get('grids') or {}
    grid = None
    if grids:
        g = next(iter(grids.values()))
        grid = GridSpec(tuple(g['lower']), tuple(g['upper']), tuple(g['shape']))
    return StoreMetadata(class_names=list(index['vocabulary']['classes']), text_embeddings=text,
                         vocabulary_name=index['vocabulary']['name'], teacher=dict(index['teacher']),
                         teacher_id=index['teacher_id'], config=index['config'],
                         config_hash=index['config_hash'],
                         store_hash=index['store_hash'], package_version=index['package_version'],
                         seeds=dict(index['seeds']), bags=list(index['bags']), unit=index['unit'],
                         label_source=index['label_source'], label_methods=list(index['label_methods']),
                         fields=frozenset(index['fields']), grid=grid,
                         num_samples=int(index['num_units']),
                         class_counts={m: list(v) for m, v in index.get('class_counts', {}).items()},
                         extra={'grids': grids, 'scene': index.get('scene')})


def decode_images(arrays: list[np.ndarray]) -> np.ndarray:
    """(M, H, W, 3) uint8 RGB of encoded images, zero-padded at the bottom / right to the largest."""
    import cv2
    imgs = []
    for a in arrays:
        bgr = cv2.imdecode(np.asarray(a, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise StoreCorruptError('a stored image does not decode')
        imgs.append(bgr[..., ::-1])
    if not imgs:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    h, w = max(i.shape[0] for i in imgs), max(i.shape[1] for i in imgs)
    out = np.zeros((len(imgs), h, w, 3), dtype=np.uint8)
    for m, i in enumerate(imgs):
        out[m, :i.shape[0], :i.shape[1]] = i
    return out


def first_camera_uv(targets: DenseTargets) -> tuple[np.ndarray, np.ndarray]:
    """((N, 2) float32 uv, (N,) int64 camera) of each point's first visible camera (-1 / 0 where none)."""
    n = targets.num_points
    uv = np.zeros((n, 2), dtype=np.float32)
    cam = np.full(n, -1, dtype=np.int64)
    for m in range(targets.num_cameras):
        used = np.flatnonzero(targets.used_mask(m))        # ascending: the row order of targets.uv[m]
        take = cam[used] < 0
        cam[used[take]] = m
        uv[used[take]] = targets.uv[m][take]
    return uv, cam


class PseudoLabelDataset(Dataset):
    """One sample per stored unit (module docstring); ``label_source`` picks the method behind ``labels``."""

    def __init__(self, root: str | os.PathLike, label_source: str | None = None, verify: bool = True,
                 max_open_shards: int = 2, load_images: bool = True) -> None:
        self.root = Path(root)
        self.index = load_index(self.root)
        self.info = store_info(self.root, self.index, verify)
        self.label_source = label_source or self.info.label_source
        if self.label_source and self.label_source not in self.info.label_methods:
            raise ValueError(f'no {self.label_source!r} labels in this store (it has '
                             f'{self.info.label_methods or "none"})')
        self.verify = verify
        self.max_open = max(1, int(max_open_shards))
        self.load_images = load_images
        self.samples: list[tuple[int, int]] = [(s, j) for s, shard in enumerate(self.index['shards'])
                                               for j in range(len(shard['units']))]
        self._open: OrderedDict[int, Any] = OrderedDict()
        self._verified: set[int] = set()
        grids = self.index.get('grids') or {}
        self._grid_name = next(iter(grids), None)

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state['_open'] = OrderedDict()          # memory maps are per process
        return state

    def key(self, i: int) -> str:
        s, j = self.samples[i]
        return self.index['shards'][s]['units'][j]['key']

    def _shard(self, s: int) -> Any:
        from safetensors import safe_open
        if s in self._open:
            self._open.move_to_end(s)
            return self._open[s]
        entry = self.index['shards'][s]
        path = self.root / entry['file']
        if self.verify and s not in self._verified:
            ok = path.is_file() and path.stat().st_size == entry['bytes'] and \
                file_sha256(path) == entry['sha256']
            if not ok:
                raise StoreCorruptError(f'shard {path} does not match its sha256 in the index (corrupted or '
                                        f'changed): rerun ovp pseudo-label on the same output to remake it')
            self._verified.add(s)
        try:
            handle = safe_open(str(path), framework='pt')
        except Exception as exc:  # noqa: BLE001  (safetensors raises its own error types)
            raise StoreCorruptError(f'shard {path} cannot be read: {exc}') from None
        self._open[s] = handle
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return handle

    def arrays(self, i: int) -> dict[str, np.ndarray]:
        """Return the raw stored tensors of sample ``i`` (names without the ``u<j>/`` prefix)."""
        s, j = self.samples[i]
        handle = self._shard(s)
        prefix = f'u{j}/'
        fields = self.index['shards'][s]['units'][j]['fields']
        return {name: handle.get_tensor(prefix + name).numpy() for name in fields}

    def dense_targets(self, i: int) -> DenseTargets:
        """Return the stored dense teacher targets of sample ``i``."""
        a = self.arrays(i)
        return DenseTargets.from_arrays({k[6:]: v for k, v in a.items() if k.startswith('dense/')})

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self.samples):
            raise IndexError(f'sample {i} of {len(self.samples)}')
        a = self.arrays(i)
        n = int(a['points'].shape[0])
        key = f'labels/{self.label_source}'
        labels = a[key].astype(np.int64) if self.label_source else np.full(n, -1, dtype=np.int64)
        out: dict[str, Any] = {
            'frame_key': self.key(i),
            'points': torch.from_numpy(np.ascontiguousarray(a['points'], dtype=np.float32)),
            'labels': torch.from_numpy(labels),
            'visible': torch.from_numpy(np.unpackbits(a['visible'], count=n).astype(bool))}
        for name in ('gt_labels', 'gt_instances', 'sweep', 'instances'):
            if name in a:
                out[name] = torch.from_numpy(a[name].astype(np.int64))
        dense = {k[len('dense/'):]: v for k, v in a.items() if k.startswith('dense/')}
        if dense:
            targets = DenseTargets.from_arrays(dense)
            index = np.flatnonzero(targets.seen)
            if 'regions' in a:                  # stored at the seen points only (training.store.labeling)
                regions = np.full(n, -1, dtype=np.int64)
                regions[index] = a['regions']
                out['regions'] = torch.from_numpy(regions)
            out['teacher_index'] = torch.from_numpy(index.astype(np.int64))
            out['teacher_features'] = targets.features(index).half()
            images = [a[f'image/{m}'] for m in range(targets.num_cameras) if f'image/{m}' in a]
            if self.load_images and len(images) == targets.num_cameras and images:
                uv, cam = first_camera_uv(targets)
                out['images'] = torch.from_numpy(decode_images(images))
                out['uv'] = torch.from_numpy(uv)
                out['camera_index'] = torch.from_numpy(cam)
        if 'masks/ids' in a:
            ids = a['masks/ids'].astype(np.int64)
            scores = a['masks/scores'].astype(np.float32)
            out['pseudo_masks'] = torch.from_numpy(ids[None, :] == np.arange(len(scores))[:, None])
            out['mask_scores'] = torch.from_numpy(scores)
        grid = self.info.grid
        if self._grid_name is not None and f'pop3d/occupied/{self._grid_name}' in a and grid is not None:
            occ = np.zeros(int(np.prod(grid.shape)), dtype=np.uint8)
            occ[a[f'pop3d/occupied/{self._grid_name}'].astype(np.int64)] = 1
            out['occupancy_target'] = torch.from_numpy(occ.reshape(grid.shape))
        return out
