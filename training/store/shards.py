"""The store on disk: content hashes, the folder layout, shards (safetensors) and their records (JSON).

Layout of a store folder ``OUT/`` (every file written atomically, ``perception_nodes.atomic``)::

    OUT/index.json                      the merged index (schema: training.store.index)
    OUT/summary.json                    counts, ignored fractions, visibility cuts, timings, skips
    OUT/store.safetensors               store-level tensors: text_embeddings (K, C) float32
    OUT/shards/<bag>/<cfg>-<teacher>/c000012.safetensors   one shard = up to store.shard_units units
    OUT/shards/<bag>/<cfg>-<teacher>/c000012.json          its record: sha256, units, skips, statistics
    OUT/runs/rank<r>-of<w>.json         what each worker of the last run did (reused / made chunks, time)

``<bag>`` is the first 16 hex digits of the bag's content sha256, ``<cfg>`` of the method-config hash and
``<teacher>`` of the teacher's weight identity, so shards made from other bags, settings or teachers
never mix and stay reusable when the settings come back. File names hold hashes and chunk numbers only
(never message contents).

A shard holds, per unit ``j`` (a frame or a scene), tensors named ``u<j>/<field>`` (see
:mod:`training.store.labeling`); its safetensors header metadata (one key, ``ovp``: JSON) repeats the unit
list. A chunk is done when its record exists and the shard's sha256 equals the record's: anything else
(missing, truncated, bit-flipped) is made again, never read.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from perception_nodes.atomic import atomic_write, atomic_write_text
from perception_nodes.hashing import file_sha256

INDEX_NAME, SUMMARY_NAME, META_NAME = 'index.json', 'summary.json', 'store.safetensors'
SHARDS_DIR, RUNS_DIR = 'shards', 'runs'
FORMAT = 'ovp-pseudo-label-store'
FORMAT_VERSION = 1


class StoreCorruptError(ValueError):
    """A store file does not match its recorded sha256 (or is unreadable): it is never read silently."""


def bag_content_hash(path: str | os.PathLike) -> str:
    """sha256 of a bag's content: the file, or every file of a bag folder (relative name + bytes, sorted)."""
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    if not p.is_dir():
        raise ValueError(f'input bag not found: {p}')
    digest = hashlib.sha256()
    for f in sorted(q for q in p.rglob('*') if q.is_file()):
        digest.update(str(f.relative_to(p)).encode('utf-8') + b'\0')
        digest.update(file_sha256(f).encode('ascii'))
    return digest.hexdigest()


def safe_label(name: str) -> str:
    """Return a bag name usable in frame keys: letters, digits, ``.``, ``_``, ``-`` (others become ``_``)."""
    text = re.sub(r'[^A-Za-z0-9._-]', '_', str(name)).strip('.') or 'bag'
    return text[:64]


@dataclass(frozen=True)
class StorePaths:
    """Where the files of a store live (module docstring)."""

    root: Path

    @property
    def index(self) -> Path:
        return self.root / INDEX_NAME

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_NAME

    @property
    def meta(self) -> Path:
        return self.root / META_NAME

    def shard_dir(self, bag_hash: str, config_hash: str, teacher_id: str) -> Path:
        for h in (bag_hash, config_hash, teacher_id):
            if not re.fullmatch(r'[0-9a-f]{16,}', h):
                raise ValueError(f'not a hex digest: {h!r}')
        return self.root / SHARDS_DIR / bag_hash[:16] / f'{config_hash[:16]}-{teacher_id[:16]}'

    @staticmethod
    def shard_name(chunk: int) -> str:
        return f'c{int(chunk):06d}.safetensors'

    @staticmethod
    def record_name(chunk: int) -> str:
        return f'c{int(chunk):06d}.json'

    def run_file(self, rank: int, world: int) -> Path:
        return self.root / RUNS_DIR / f'rank{int(rank)}-of{int(world)}.json'


@dataclass
class UnitMeta:
    """One stored unit (a frame or a scene) as listed in a shard record and the index."""

    key: str                      # '<bag label>:<cloud index>' (frame) or '<bag label>:s<scene index>'
    unit: int                     # unit number in its bag
    clouds: list[int]             # cloud indices of the bag it was made from (one for a frame)
    stamp_ns: int
    frame_id: str
    points: int
    cameras: list[str]
    notes: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)    # the unit's stored tensor names (without u<j>/)


@dataclass
class ChunkRecord:
    """The JSON record written next to a shard once the shard is complete."""

    chunk: int
    bag_hash: str
    shard: str                    # file name of the shard (same folder)
    sha256: str
    bytes: int
    units: list[UnitMeta]
    skipped: list[dict[str, Any]]            # {'what', 'where', 'why'} per skipped frame / camera
    counts: dict[str, int]                   # reasons -> count (assembler and runner)
    stats: dict[str, Any]                    # per-method label statistics (training.store.labeling)
    timings_ms: dict[str, float]             # stage -> total milliseconds over the chunk's units

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + '\n'

    @classmethod
    def from_json(cls, text: str) -> ChunkRecord:
        data = json.loads(text)
        data['units'] = [UnitMeta(**u) for u in data['units']]
        return cls(**data)


def write_shard(path: Path, tensors: Mapping[str, Any], metadata: Mapping[str, Any]) -> tuple[str, int]:
    """Write a safetensors shard atomically; returns (sha256, bytes). Arrays may be numpy or torch.

    ``metadata`` goes into the header as ONE key (``ovp``, canonical JSON): safetensors keeps header
    metadata in a hash map whose order varies between writes, and shards must be byte-identical when their
    content is (resumed, re-made and single- / multi-worker stores compare by sha256).
    """
    from safetensors.torch import save_file
    out = {}
    for name, value in tensors.items():
        t = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        out[name] = t.contiguous()
    if not out:
        out['_empty'] = torch.zeros(0, dtype=torch.uint8)     # a shard is never an empty file
    header = {'ovp': json.dumps(dict(metadata), sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(out, tmp, metadata=header), suffix='.safetensors')
    return file_sha256(path), path.stat().st_size


def write_record(path: Path, record: ChunkRecord) -> None:
    atomic_write_text(path, record.to_json())


def read_record(path: Path) -> ChunkRecord | None:
    """Return the record at ``path``, or None when missing or unreadable (the chunk is then made again)."""
    try:
        return ChunkRecord.from_json(path.read_text(encoding='utf-8'))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def chunk_done(folder: Path, chunk: int) -> tuple[ChunkRecord | None, str]:
    """(record, '') when chunk ``chunk`` is complete and its shard matches its checksum; else (None, why)."""
    record_path = folder / StorePaths.record_name(chunk)
    if not record_path.exists():
        return None, 'missing'
    record = read_record(record_path)
    if record is None:
        return None, 'unreadable record'
    shard = folder / record.shard
    if not shard.is_file():
        return None, 'shard missing'
    if shard.stat().st_size != record.bytes or file_sha256(shard) != record.sha256:
        return None, 'checksum mismatch'
    return record, ''
