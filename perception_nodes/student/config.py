"""Student network configuration: one dataclass, serialised to YAML/JSON with the checkpoint.

A trained student carries the vocabulary it was trained for in ``StudentConfig.vocabulary``: its name, class
names, their hash and the (K, C) class text embeddings of the teacher's space it was trained against
(``text_embeddings``: float32, row-major, base64; :meth:`StudentConfig.set_trained_vocabulary`,
:meth:`StudentConfig.trained_text`). They travel with the checkpoint's config and the ONNX metadata, so the
student labeller can classify in its own space without any CLIP (``labeller.text_source: student``).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import torch

from perception_nodes.geometry.voxels import POP3D_GRID, GridSpec

ARCHS = ('sparse_unet', 'range_unet')
# Column of each input feature in the points array handed to a student: x, y, z, intensity[, r, g, b].
FEATURE_COLUMNS = {'x': 0, 'y': 1, 'z': 2, 'intensity': 3, 'r': 4, 'g': 5, 'b': 6}
TEXT_EMBEDDINGS = 'text_embeddings'          # key of StudentConfig.vocabulary holding the encoded (K, C)
MAX_TEXT_EMBEDDING_VALUES = 4_000_000        # K x C bound of a decoded vocabulary (16 MB of float32)


def vocabulary_hash(class_names: Sequence[str], text_embeddings: Any) -> str:
    """sha256 of the class names and the float32 text embeddings (the identity a student is trained for)."""
    h = hashlib.sha256()
    h.update('\n'.join(str(c) for c in class_names).encode('utf-8'))
    emb = text_embeddings.detach().cpu().float().numpy() if torch.is_tensor(text_embeddings) else \
        np.asarray(text_embeddings, dtype=np.float32)
    h.update(np.ascontiguousarray(emb, dtype=np.float32).tobytes())
    return h.hexdigest()


def encode_text_embeddings(text_embeddings: Any) -> dict[str, Any]:
    """(K, C) embeddings -> {'dtype': 'float32', 'shape': [K, C], 'base64': ...} (JSON / YAML-safe)."""
    emb = text_embeddings.detach().cpu().float().numpy() if torch.is_tensor(text_embeddings) else \
        np.asarray(text_embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.size == 0:
        raise ValueError(f'text embeddings must be a non-empty (K, C) array, got shape {emb.shape}')
    data = np.ascontiguousarray(emb, dtype='<f4').tobytes()
    return {'dtype': 'float32', 'shape': [int(emb.shape[0]), int(emb.shape[1])],
            'base64': base64.b64encode(data).decode('ascii')}


def decode_text_embeddings(blob: Any, where: str = 'student vocabulary') -> torch.Tensor:
    """Inverse of :func:`encode_text_embeddings`; a malformed blob is a one-line ValueError."""
    if not isinstance(blob, dict) or blob.get('dtype') != 'float32' or \
            not isinstance(blob.get('base64'), str):
        raise ValueError(f'{where}: text_embeddings must be {{dtype: float32, shape: [K, C], base64: ...}}')
    shape = blob.get('shape')
    ok = isinstance(shape, (list, tuple)) and len(shape) == 2 and \
        all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
    if not ok:
        raise ValueError(f'{where}: text_embeddings shape {shape!r} is not [K, C] with positive sizes')
    if shape[0] * shape[1] > MAX_TEXT_EMBEDDING_VALUES:
        raise ValueError(f'{where}: text_embeddings {shape} exceed {MAX_TEXT_EMBEDDING_VALUES} values')
    try:
        raw = base64.b64decode(blob['base64'].encode('ascii'), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f'{where}: text_embeddings are not valid base64 ({exc})') from None
    if len(raw) != 4 * shape[0] * shape[1]:
        raise ValueError(f'{where}: text_embeddings hold {len(raw)} bytes, shape {shape} needs '
                         f'{4 * shape[0] * shape[1]}')
    emb = torch.from_numpy(np.frombuffer(raw, dtype='<f4').astype(np.float32).reshape(shape))
    if not torch.isfinite(emb).all():
        raise ValueError(f'{where}: text_embeddings contain NaN or inf')
    return emb


@dataclass
class StudentConfig:
    """Architecture, heads and identity of a 3D student.

    ``arch``: 'sparse_unet' (spconv U-Net, the accurate training-time family) or 'range_unet'
    (range-view 2D U-Net + point branch: static-shape ONNX, TensorRT-deployable; docs/student.md).
    ``proj_dim``: when set, point embeddings are K-dim unit vectors and the vocabulary's text
    embeddings are mapped into that space by the learned ``text_projection`` (see heads.py).
    """

    arch: str = 'range_unet'
    widths: tuple[int, ...] = (16, 32, 64, 64)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    voxel_size: float = 0.1                 # sparse_unet voxel edge (m)
    input_features: tuple[str, ...] = ('x', 'y', 'z', 'intensity')
    embed_dim: int = 512                    # C: CLIP space
    proj_dim: int | None = None             # K: optional projected embedding space
    point_branch: bool = True               # SPVCNN-style point MLP beside the voxel/pixel path
    point_width: int = 32                   # per-point feature width fed to the heads
    head_hidden: int = 64                   # hidden width of the voxel Linear-Softplus-Linear heads
    occupancy_blocks: int = 2               # POP-3D Eq. 2: N blocks
    voxel_width: int = 8                    # channels per voxel of the dense grid feature
    grid: GridSpec = field(default_factory=lambda: POP3D_GRID)
    range_height: int = 64                  # range_unet spherical projection rows (HDL-64)
    range_width: int = 512                  # ... and columns
    fov_up_deg: float = 3.0
    fov_down_deg: float = -25.0
    max_points: int = 131072                # padded point count of the static-shape graph
    vocabulary: dict[str, Any] = field(default_factory=dict)   # identity: name, hash, classes
    provenance: dict[str, Any] = field(default_factory=dict)   # training run, data, git commit

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.depths = tuple(int(d) for d in self.depths)
        self.input_features = tuple(str(f) for f in self.input_features)
        if isinstance(self.grid, dict):
            self.grid = GridSpec(**self.grid)
        if self.arch not in ARCHS:
            raise ValueError(f'StudentConfig.arch must be one of {ARCHS}, got {self.arch!r}')
        if not self.widths or len(self.widths) != len(self.depths):
            raise ValueError(f'StudentConfig widths {self.widths} and depths {self.depths} must have '
                             'the same non-zero length')
        if any(w <= 0 for w in self.widths) or any(d < 0 for d in self.depths):
            raise ValueError('StudentConfig widths must be positive and depths non-negative')
        unknown = [f for f in self.input_features if f not in FEATURE_COLUMNS]
        if unknown or not {'x', 'y', 'z'} <= set(self.input_features):
            raise ValueError(f'StudentConfig.input_features {self.input_features}: need x, y, z; '
                             f'allowed {tuple(FEATURE_COLUMNS)}')
        if not 0.01 <= self.voxel_size <= 1.0:
            raise ValueError(f'StudentConfig.voxel_size {self.voxel_size} m outside 0.01..1.0')
        if self.embed_dim <= 0 or (self.proj_dim is not None and self.proj_dim <= 0):
            raise ValueError('StudentConfig embed_dim / proj_dim must be positive')
        if self.max_points <= 0:
            raise ValueError(f'StudentConfig.max_points must be positive, got {self.max_points}')
        if self.arch == 'range_unet':
            stride = 2 ** (len(self.widths) - 1)
            if self.range_height % stride or self.range_width % stride:
                raise ValueError(f'range image {self.range_height}x{self.range_width} must be divisible '
                                 f'by {stride} for {len(self.widths)} U-Net levels')
            if self.fov_up_deg <= self.fov_down_deg:
                raise ValueError('fov_up_deg must exceed fov_down_deg')

    @property
    def out_dim(self) -> int:
        """Dimension of the per-point embeddings the network emits (K if projected, else C)."""
        return self.proj_dim or self.embed_dim

    @property
    def in_columns(self) -> int:
        """Number of columns the points array must have."""
        return max(FEATURE_COLUMNS[f] for f in self.input_features) + 1

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out['widths'] = list(self.widths)
        out['depths'] = list(self.depths)
        out['input_features'] = list(self.input_features)
        out['grid'] = {'lower': list(self.grid.lower), 'upper': list(self.grid.upper),
                       'shape': list(self.grid.shape)}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        if not isinstance(data, dict):
            raise ValueError(f'student config must be a mapping, got {type(data).__name__}')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown student config keys: {unknown}')
        return cls(**data)

    def set_trained_vocabulary(self, name: str, class_names: Sequence[str], text_embeddings: Any) -> None:
        """Record the vocabulary the student is trained for: name, classes, hash and (K, C) embeddings."""
        names = [str(c) for c in class_names]
        emb = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32)) if not torch.is_tensor(
            text_embeddings) else text_embeddings.detach().cpu().float()
        if emb.ndim != 2 or emb.shape[0] != len(names):
            raise ValueError(f'text embeddings {tuple(emb.shape)} do not fit {len(names)} class names')
        if emb.shape[1] != self.embed_dim:
            raise ValueError(f'text embeddings are {emb.shape[1]}-d, the student\'s embed_dim is '
                             f'{self.embed_dim}')
        self.vocabulary = {'name': str(name), 'classes': names, 'hash': vocabulary_hash(names, emb),
                           TEXT_EMBEDDINGS: encode_text_embeddings(emb)}

    def trained_text(self) -> tuple[list[str], torch.Tensor] | None:
        """(class names, (K, embed_dim) text embeddings) the student was trained with; None if not stored.

        The embeddings are in the teacher's space (the student's text projection maps them into its own).
        A malformed record, or one whose hash does not match its content, is a one-line ValueError.
        """
        vocab = self.vocabulary or {}
        if TEXT_EMBEDDINGS not in vocab:
            return None
        names = vocab.get('classes')
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError('student vocabulary: classes must be a non-empty list of names')
        emb = decode_text_embeddings(vocab[TEXT_EMBEDDINGS])
        if emb.shape != (len(names), self.embed_dim):
            raise ValueError(f'student vocabulary: text embeddings {tuple(emb.shape)} do not fit '
                             f'{len(names)} classes x embed_dim {self.embed_dim}')
        if vocab.get('hash') and vocab['hash'] != vocabulary_hash(names, emb):
            raise ValueError('student vocabulary: the text embeddings do not match the vocabulary hash '
                             '(corrupted or edited)')
        return list(names), emb

    @classmethod
    def deployable(cls, **overrides: Any) -> StudentConfig:
        """Return the default robot student: range_unet sized for >= 10 Hz on 2 CPU cores via ONNX Runtime."""
        base: dict[str, Any] = dict(arch='range_unet', widths=(16, 32, 48, 64), point_width=16, proj_dim=64,
                                    head_hidden=32, occupancy_blocks=1, voxel_width=4)
        base.update(overrides)
        return cls(**base)
