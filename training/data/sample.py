"""The trainer's data interface: one frame's training sample, the store-level information, the batch.

A training data source (the pseudo-label store of ``ovp pseudo-label``, or the synthetic test set of
:mod:`training.data.synthetic`) is a :class:`torch.utils.data.Dataset` whose ``__getitem__(i)`` returns a
:class:`FrameSample` and which carries a :class:`StoreInfo` as ``.info`` (see :class:`FrameDataset`).
:func:`collate` concatenates samples into a :class:`Batch` (Pointcept style: points of every frame one
after the other, ``offsets`` marking where each frame starts).

Per-frame fields (N points, M cameras, n points with a teacher feature, R regions, Q pseudo masks)::

    field              shape        dtype     meaning
    points             (N, F>=4)    float32   x, y, z, intensity in the LiDAR frame (more columns allowed)
    labels             (N,)         int64     pseudo-label class index into StoreInfo.class_names, -1 ignore
    visible            (N,)         bool      seen by a camera after the visibility test (Affinity3D Eq. 10)
    frame_id           str                    stable key of the frame ("<bag hash>:<index>"), for logs
    gt_labels          (N,)         int64     optional ground truth (validation), -1 ignore
    gt_instances       (N,)         int64     optional ground-truth instance ids, -1 none
    instances          (N,)         int64     optional pseudo instance ids (Affinity3D instances), -1 none
    teacher_index      (n,)         int64     optional rows of ``points`` that have a fused teacher feature
    teacher_features   (n, C)       float16   optional fused teacher features there (POP-3D Eq. 7 targets)
    regions            (N,)         int64     optional 2D region id per point (CNS), frame-local, -1 none
    region_features    (R, C_r)     float16   optional feature per region (SAM; CNS ϕ_f input)
    images             (M, H, W, 3) uint8     optional camera images (Affinity3D KT branch, CNS 2D net)
    uv                 (N, 2)       float32   optional pixel (u = column, v = row) of each point in its image
    image_index        (N,)         int64     optional camera of each point's ``uv``, -1 = in no image
    pseudo_masks       (Q, N)       bool      optional class-agnostic pseudo masks (UnScene3D M^0)
    occupancy_target   (X, Y, Z)    bool      optional POP-3D dense target on StoreInfo.grid

Optional fields are None when absent; a data source promises the ones listed in ``StoreInfo.fields`` for
every frame. ``uv`` and ``image_index`` come together with ``images``; ``teacher_index`` with
``teacher_features``. One camera per point is enough for training (the store picks one camera among
those that see the point, e.g. the one where it is nearest the image centre).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from perception_nodes.geometry.voxels import GridSpec

IGNORE = -1
#: Fields indexed by point along their first dimension.
POINT_FIELDS = ('points', 'labels', 'visible', 'gt_labels', 'gt_instances', 'instances', 'regions', 'uv',
                'image_index')
#: Optional fields a data source may provide (listed in StoreInfo.fields).
OPTIONAL_FIELDS = ('gt_labels', 'gt_instances', 'instances', 'teacher_index', 'teacher_features', 'regions',
                   'region_features', 'images', 'uv', 'image_index', 'pseudo_masks', 'occupancy_target')
_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    'points': (torch.float32,), 'labels': (torch.int64,), 'visible': (torch.bool,),
    'gt_labels': (torch.int64,), 'gt_instances': (torch.int64,), 'instances': (torch.int64,),
    'teacher_index': (torch.int64,), 'teacher_features': (torch.float16, torch.float32),
    'regions': (torch.int64,), 'region_features': (torch.float16, torch.float32), 'images': (torch.uint8,),
    'uv': (torch.float32,), 'image_index': (torch.int64,), 'pseudo_masks': (torch.bool,),
    'occupancy_target': (torch.bool, torch.int64),
}
_PAIRS = (('teacher_index', 'teacher_features'), ('uv', 'image_index'), ('images', 'uv'))


class SampleError(ValueError):
    """A frame whose fields do not fit the interface; the message names the frame and the field."""


@dataclass
class FrameSample:
    """One frame's training sample (module docstring for the fields)."""

    points: Tensor
    labels: Tensor
    visible: Tensor
    frame_id: str = ''
    gt_labels: Tensor | None = None
    gt_instances: Tensor | None = None
    instances: Tensor | None = None
    teacher_index: Tensor | None = None
    teacher_features: Tensor | None = None
    regions: Tensor | None = None
    region_features: Tensor | None = None
    images: Tensor | None = None
    uv: Tensor | None = None
    image_index: Tensor | None = None
    pseudo_masks: Tensor | None = None
    occupancy_target: Tensor | None = None

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    def present(self) -> frozenset[str]:
        """Return the optional fields this sample carries."""
        return frozenset(f for f in OPTIONAL_FIELDS if getattr(self, f) is not None)

    def validate(self, num_classes: int | None = None) -> FrameSample:
        """Check shapes, dtypes and ranges; :class:`SampleError` names the frame and field. Returns self."""
        name = self.frame_id or '<unnamed frame>'
        n = self.points.shape[0] if self.points.ndim >= 1 else -1

        def fail(msg: str) -> None:
            raise SampleError(f'frame {name}: {msg}')

        if self.points.ndim != 2 or self.points.shape[1] < 4:
            fail(f'points must be (N, >=4) x, y, z, intensity, got {tuple(self.points.shape)}')
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == 'frame_id' or value is None:
                continue
            if not torch.is_tensor(value):
                fail(f'{f.name} must be a torch tensor, got {type(value).__name__}')
            if value.dtype not in _DTYPES[f.name]:
                fail(f'{f.name} must be {" or ".join(str(d) for d in _DTYPES[f.name])}, got {value.dtype}')
            if f.name in POINT_FIELDS and value.shape[0] != n:
                fail(f'{f.name} has {value.shape[0]} rows for {n} points')
        for a, b in _PAIRS:
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                fail(f'{a} and {b} must be given together')
        if self.uv is not None and tuple(self.uv.shape) != (n, 2):
            fail(f'uv must be (N, 2), got {tuple(self.uv.shape)}')
        if self.images is not None:
            if self.images.ndim != 4 or self.images.shape[3] != 3:
                fail(f'images must be (M, H, W, 3) uint8, got {tuple(self.images.shape)}')
            bad = self.image_index >= self.images.shape[0]
            if bool(bad.any()) or bool((self.image_index < IGNORE).any()):
                fail(f'image_index must be in [-1, {self.images.shape[0]}) for {self.images.shape[0]} images')
        if self.teacher_index is not None:
            ti, tf = self.teacher_index, self.teacher_features
            if ti.ndim != 1 or tf.ndim != 2 or tf.shape[0] != ti.shape[0]:
                fail(f'teacher_index {tuple(ti.shape)} / teacher_features {tuple(tf.shape)} must be (n,), '
                     '(n, C)')
            if ti.numel() and (int(ti.min()) < 0 or int(ti.max()) >= n):
                fail(f'teacher_index must index the {n} points')
        if self.pseudo_masks is not None and (self.pseudo_masks.ndim != 2 or self.pseudo_masks.shape[1] != n):
            fail(f'pseudo_masks must be (Q, {n}), got {tuple(self.pseudo_masks.shape)}')
        if self.region_features is not None and self.region_features.ndim != 2:
            fail(f'region_features must be (R, C_r), got {tuple(self.region_features.shape)}')
        if self.regions is not None and self.region_features is not None and self.regions.numel() \
                and int(self.regions.max()) >= self.region_features.shape[0]:
            fail(f'region id {int(self.regions.max())} >= {self.region_features.shape[0]} region features')
        if self.occupancy_target is not None and self.occupancy_target.ndim != 3:
            fail(f'occupancy_target must be (X, Y, Z), got {tuple(self.occupancy_target.shape)}')
        if not bool(torch.isfinite(self.points[:, :3]).all()):
            fail('points hold NaN or inf coordinates (drop them in the store)')
        if num_classes is not None:
            for key in ('labels', 'gt_labels'):
                v = getattr(self, key)
                if v is not None and v.numel() and (int(v.min()) < IGNORE or int(v.max()) >= num_classes):
                    fail(f'{key} must be in [-1, {num_classes}), got [{int(v.min())}, {int(v.max())}]')
        return self

    def select(self, index: Tensor) -> FrameSample:
        """Return the sample restricted to the points ``index`` (long, any order; per-point fields follow)."""
        index = index.long()
        out = replace(self)
        for name in POINT_FIELDS:
            v = getattr(self, name)
            if v is not None:
                setattr(out, name, v.index_select(0, index))
        if self.pseudo_masks is not None:
            out.pseudo_masks = self.pseudo_masks.index_select(1, index)
        if self.teacher_index is not None:
            new_pos = torch.full((self.num_points,), -1, dtype=torch.long)
            new_pos[index] = torch.arange(index.numel())
            mapped = new_pos[self.teacher_index]
            keep = mapped >= 0
            out.teacher_index = mapped[keep]
            out.teacher_features = self.teacher_features[keep]
        return out


@runtime_checkable
class FrameDataset(Protocol):
    """What the trainer reads: ``len``, ``dataset[i] -> FrameSample`` and ``.info`` (a StoreInfo)."""

    info: StoreInfo

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> FrameSample: ...


def teacher_meaningful(teacher: dict[str, Any]) -> bool:
    """Tell whether a store's teacher makes meaningful labels.

    True for a pretrained CLIP (``kind`` 'clip', not ``random_weights``, a ``pretrained`` tag) or the
    synthetic oracle on the synthetic world (``kind`` 'oracle'); False otherwise (random weights, unknown).
    """
    kind = str(teacher.get('kind', ''))
    if kind == 'oracle':
        return True
    return kind == 'clip' and teacher.get('random_weights') is False and bool(teacher.get('pretrained'))


def vocabulary_hash(class_names: Sequence[str], text_embeddings: Tensor) -> str:
    """sha256 of the class names and the float32 text embeddings (the identity a student is trained for)."""
    from perception_nodes.student.config import vocabulary_hash as student_vocabulary_hash
    return student_vocabulary_hash(class_names, text_embeddings)


@dataclass
class StoreInfo:
    """Store-level information every data source gives (``dataset.info``).

    ``teacher``: {'kind': 'clip' | 'oracle' | ..., 'model', 'pretrained', 'random_weights'} (the identity of
    the 2D teacher that made the labels). ``config_hash``: hash of the pseudo-label config the store was
    made with. ``store_hash``: content identity of the store. ``fields``: the optional FrameSample fields
    every frame carries. ``class_counts``: labelled training points per class (computed by one pass over
    the labels when None). ``grid``: the grid of ``occupancy_target``. ``complete`` False with ``missing``
    (what is absent) marks a partial store.
    """

    class_names: list[str]
    text_embeddings: Tensor
    vocabulary_name: str = 'custom'
    teacher: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ''
    store_hash: str = ''
    fields: frozenset[str] = frozenset()
    class_counts: list[int] | None = None
    grid: GridSpec | None = None
    complete: bool = True
    missing: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_names = [str(c) for c in self.class_names]
        self.fields = frozenset(self.fields)
        self.text_embeddings = torch.as_tensor(self.text_embeddings).float()
        unknown = sorted(self.fields - set(OPTIONAL_FIELDS))
        if unknown:
            raise SampleError(f'store info lists unknown fields {unknown}; known {list(OPTIONAL_FIELDS)}')
        if self.text_embeddings.ndim != 2 or self.text_embeddings.shape[0] != len(self.class_names):
            raise SampleError(f'text embeddings {tuple(self.text_embeddings.shape)} do not fit '
                              f'{len(self.class_names)} class names')
        if not self.class_names:
            raise SampleError('the store has no classes (empty vocabulary)')

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def embed_dim(self) -> int:
        return int(self.text_embeddings.shape[1])

    @property
    def vocabulary_hash(self) -> str:
        return vocabulary_hash(self.class_names, self.text_embeddings)

    @property
    def labels_meaningful(self) -> bool:
        return teacher_meaningful(self.teacher)

    def provenance(self) -> dict[str, Any]:
        """Flat provenance keys a recipe's ``data.expect`` is compared against."""
        out: dict[str, Any] = {'vocabulary.name': self.vocabulary_name,
                               'vocabulary.hash': self.vocabulary_hash,
                               'vocabulary.classes': list(self.class_names), 'embed_dim': self.embed_dim,
                               'config_hash': self.config_hash, 'store_hash': self.store_hash}
        for key in ('kind', 'model', 'pretrained', 'random_weights'):
            out[f'teacher.{key}'] = self.teacher.get(key)
        return out


def check_expected(info: StoreInfo, expect: dict[str, Any], source: str = 'store') -> None:
    """Refuse a store whose provenance differs from ``expect`` (flat keys of StoreInfo.provenance)."""
    have = info.provenance()
    unknown = sorted(set(expect) - set(have))
    if unknown:
        raise SampleError(f'data.expect has unknown keys {unknown}; known {sorted(have)}')
    diff = [f'{k}: expected {expect[k]!r}, store has {have[k]!r}' for k in sorted(expect)
            if _normal(expect[k]) != _normal(have[k])]
    if diff:
        raise SampleError(f'{source} was made with another config or teacher than this recipe expects: '
                          + '; '.join(diff))


def _normal(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


# --------------------------------------------------------------------------------------------- batch

@dataclass
class Batch:
    """Frames concatenated Pointcept style: point fields stacked, ``offsets`` (B+1,) frame boundaries.

    Per-point fields are (ΣN, ...); ``teacher_index`` holds batch-global point rows with
    ``teacher_offsets`` (B+1,); camera images, region features, pseudo masks and occupancy targets stay
    per-frame lists. ``indices`` are the dataset indices of the frames, ``frame_ids`` their keys.
    """

    points: Tensor
    labels: Tensor
    visible: Tensor
    offsets: Tensor
    frame_ids: list[str]
    indices: list[int]
    point_fields: dict[str, Tensor] = field(default_factory=dict)
    teacher_index: Tensor | None = None
    teacher_features: Tensor | None = None
    teacher_offsets: Tensor | None = None
    images: list[Tensor] | None = None
    region_features: list[Tensor] | None = None
    pseudo_masks: list[Tensor] | None = None
    occupancy_target: list[Tensor] | None = None

    def __len__(self) -> int:
        return len(self.frame_ids)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def batch_index(self) -> Tensor:
        """(ΣN,) frame index of every point."""
        counts = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(torch.arange(len(self), device=self.points.device), counts)

    def _map(self, fn: Any) -> Batch:
        def mv(x: Any) -> Any:
            if torch.is_tensor(x):
                return fn(x)
            if isinstance(x, list):
                return [mv(v) for v in x]
            if isinstance(x, dict):
                return {k: mv(v) for k, v in x.items()}
            return x
        return Batch(**{f.name: mv(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move every tensor to ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Page-lock every tensor (the DataLoader calls this with ``pin_memory=True``)."""
        return self._map(lambda t: t.pin_memory())

    def frame(self, b: int) -> FrameSample:
        """Frame ``b`` as a FrameSample (views of the concatenated tensors)."""
        lo, hi = int(self.offsets[b]), int(self.offsets[b + 1])
        kw: dict[str, Any] = {name: v[lo:hi] for name, v in self.point_fields.items()}
        if self.teacher_index is not None:
            t0, t1 = int(self.teacher_offsets[b]), int(self.teacher_offsets[b + 1])
            kw['teacher_index'] = self.teacher_index[t0:t1] - lo
            kw['teacher_features'] = self.teacher_features[t0:t1]
        for name in ('images', 'region_features', 'pseudo_masks', 'occupancy_target'):
            v = getattr(self, name)
            if v is not None:
                kw[name] = v[b]
        return FrameSample(points=self.points[lo:hi], labels=self.labels[lo:hi], visible=self.visible[lo:hi],
                           frame_id=self.frame_ids[b], **kw)

    def frames(self) -> list[FrameSample]:
        return [self.frame(b) for b in range(len(self))]


def _common(samples: Sequence[FrameSample], name: str) -> bool:
    have = [getattr(s, name) is not None for s in samples]
    if any(have) and not all(have):
        missing = [s.frame_id for s, h in zip(samples, have) if not h]
        raise SampleError(f'{name} is present in some frames of the batch but not in {missing}')
    return all(have)


def collate(items: Iterable[FrameSample | tuple[int, FrameSample]]) -> Batch:
    """Concatenate samples (or ``(dataset index, sample)`` pairs) into a :class:`Batch`."""
    items = list(items)
    if not items:
        raise SampleError('cannot collate an empty batch')
    indices = [it[0] if isinstance(it, tuple) else -1 for it in items]
    samples = [it[1] if isinstance(it, tuple) else it for it in items]
    counts = torch.tensor([s.num_points for s in samples], dtype=torch.long)
    offsets = torch.zeros(len(samples) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(counts, 0)
    widths = {s.points.shape[1] for s in samples}
    if len(widths) != 1:
        raise SampleError(f'frames of a batch have different point widths {sorted(widths)}')
    point_fields = {name: torch.cat([getattr(s, name) for s in samples])
                    for name in POINT_FIELDS[3:] if _common(samples, name)}
    batch = Batch(points=torch.cat([s.points for s in samples]),
                  labels=torch.cat([s.labels for s in samples]),
                  visible=torch.cat([s.visible for s in samples]), offsets=offsets,
                  frame_ids=[s.frame_id for s in samples], indices=indices, point_fields=point_fields)
    if _common(samples, 'teacher_index'):
        batch.teacher_index = torch.cat([s.teacher_index + int(offsets[b]) for b, s in enumerate(samples)])
        batch.teacher_features = torch.cat([s.teacher_features for s in samples])
        tcounts = torch.tensor([s.teacher_index.numel() for s in samples], dtype=torch.long)
        batch.teacher_offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(tcounts, 0)])
    for name in ('images', 'region_features', 'pseudo_masks', 'occupancy_target'):
        if _common(samples, name):
            setattr(batch, name, [getattr(s, name) for s in samples])
    return batch
