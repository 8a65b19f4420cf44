"""What a run has to make: the bags (content hashes, topics, cloud counts), their units, chunks and owners.

Units: a frame per cloud (``scene.sweeps`` = 1) or a scene of K consecutive clouds; unit u of a bag holds
clouds ``[u K, (u + 1) K)``. Chunks (shards): ``store.shard_units`` consecutive units. Chunks are numbered
over all bags in order (bag 0's first, ...) and chunk g belongs to rank ``g % world``: a deterministic,
disjoint split that keeps consecutive frames together (the Affinity3D queue runs within a chunk), so one
worker or many, interrupted or not, make the same shards.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from perception_nodes.config import PerceptionConfig
from perception_nodes.io.bag_source import BagSource
from training.store.shards import StorePaths, bag_content_hash, safe_label


@dataclass
class BagPlan:
    """One input bag of a run."""

    index: int
    path: Path
    name: str                    # safe label of the bag (frame keys)
    sha256: str                  # content hash
    lidar_topic: str
    cameras: list[str]
    clouds: int                  # clouds taken (replay.max_frames applied)
    units: int
    chunks: int
    folder: Path                 # its shard folder

    def to_dict(self, root: Path) -> dict:
        return {'path': str(self.path), 'name': self.name, 'sha256': self.sha256,
                'lidar_topic': self.lidar_topic, 'cameras': list(self.cameras), 'clouds': self.clouds,
                'units': self.units, 'chunks': self.chunks, 'dir': str(self.folder.relative_to(root))}


@dataclass
class Plan:
    """All bags of a run and how their chunks are shared (module docstring)."""

    root: Path
    bags: list[BagPlan]
    sweeps: int
    shard_units: int
    config_hash: str
    teacher_id: str
    first_chunk: list[int] = field(default_factory=list)    # global number of each bag's chunk 0

    def __post_init__(self) -> None:
        start, self.first_chunk = 0, []
        for bag in self.bags:
            self.first_chunk.append(start)
            start += bag.chunks

    @property
    def num_chunks(self) -> int:
        return sum(b.chunks for b in self.bags)

    def owner(self, bag: int, chunk: int, world: int) -> int:
        """Rank that makes chunk ``chunk`` of bag ``bag`` among ``world`` ranks."""
        return (self.first_chunk[bag] + chunk) % max(int(world), 1)

    def chunk_units(self, bag: int, chunk: int) -> range:
        """Return the unit numbers of a chunk."""
        lo = chunk * self.shard_units
        return range(lo, min(lo + self.shard_units, self.bags[bag].units))

    def unit_of(self, cloud: int) -> int:
        return cloud // self.sweeps

    def chunk_of(self, cloud: int) -> int:
        return self.unit_of(cloud) // self.shard_units

    def unit_key(self, bag: int, unit: int) -> str:
        name = self.bags[bag].name
        return f'{name}:{unit:06d}' if self.sweeps == 1 else f'{name}:s{unit:06d}'


def _cloud_count(source: BagSource) -> int:
    topic = source.reader.topics.get(source.lidar_topic)
    return int(getattr(topic, 'msgcount', 0) or 0)


def plan_run(bags: list[str | os.PathLike], root: str | os.PathLike, config: PerceptionConfig, sweeps: int,
             shard_units: int, config_hash: str, teacher_id: str) -> Plan:
    """Hash and open every bag once (topics checked, BagSource lists what a bag has when one is missing)."""
    root = Path(root)
    paths = StorePaths(root)
    out: list[BagPlan] = []
    names: set[str] = set()
    limit = int(config.replay.max_frames)
    for i, bag in enumerate(bags):
        path = Path(bag)
        if not path.exists():
            raise ValueError(f'input bag not found: {path}')
        with BagSource(path, config.inputs) as source:
            clouds = _cloud_count(source)
            lidar, cameras = source.lidar_topic, [c.image_topic for c in source.cameras]
        if limit:
            clouds = min(clouds, limit)
        name = safe_label(path.stem if path.is_file() else path.name)
        base, k = name, 2
        while name in names:
            name, k = f'{base}_{k}', k + 1
        names.add(name)
        digest = bag_content_hash(path)
        units = math.ceil(clouds / sweeps)
        out.append(BagPlan(i, path, name, digest, lidar, cameras, clouds, units,
                           math.ceil(units / shard_units), paths.shard_dir(digest, config_hash, teacher_id)))
    return Plan(root, out, int(sweeps), int(shard_units), config_hash, teacher_id)
