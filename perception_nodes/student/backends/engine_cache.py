"""TensorRT engine cache bookkeeping (no TensorRT import): keys, sidecar metadata, staleness checks.

An engine is only valid for the ONNX graph, TensorRT version and GPU it was built with, so its file
name is keyed by all three (plus precision) and a JSON sidecar records them for explicit engine paths.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from perception_nodes.atomic import atomic_write_bytes


@dataclass(frozen=True)
class EngineMeta:
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    fp16: bool

    def key(self) -> str:
        text = f'{self.onnx_sha256}|{self.trt_version}|{self.gpu_name}|fp16={self.fp16}'
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def mismatches(self, other: EngineMeta) -> list[str]:
        """Fields on which an engine described by ``self`` cannot serve ``other``."""
        return [f'{k}: engine {v!r} != here {getattr(other, k)!r}'
                for k, v in asdict(self).items() if getattr(other, k) != v]


def sidecar(engine_path: str | os.PathLike) -> Path:
    return Path(str(engine_path) + '.json')


def cached_engine_path(cache_dir: str | os.PathLike, meta: EngineMeta) -> Path:
    return Path(cache_dir) / f'student-{meta.key()}.engine'


def write_engine(path: str | os.PathLike, blob: bytes, meta: EngineMeta) -> Path:
    """Atomically write an engine and its sidecar."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, bytes(blob))
    atomic_write_bytes(sidecar(path), json.dumps(asdict(meta), indent=1).encode())
    return path


def read_meta(engine_path: str | os.PathLike) -> EngineMeta | None:
    """Read the sidecar of an engine, or None when it has none / it is unreadable."""
    try:
        data = json.loads(sidecar(engine_path).read_text())
        return EngineMeta(**data)
    except (OSError, ValueError, TypeError):
        return None


def stale_reason(engine_path: str | os.PathLike, wanted: EngineMeta) -> str | None:
    """Why the engine at ``engine_path`` cannot be used for ``wanted`` (None when it can)."""
    if not Path(engine_path).is_file():
        return f'{engine_path} does not exist'
    meta = read_meta(engine_path)
    if meta is None:
        return f'{engine_path} has no readable {sidecar(engine_path).name} (unknown TensorRT version / GPU)'
    problems = meta.mismatches(wanted)
    return f'{engine_path} was built for another setup: {"; ".join(problems)}' if problems else None
