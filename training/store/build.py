"""``ovp pseudo-label``'s engine: bags through the one perception path into resumable, checksummed shards.

Per rank (one process; ``--workers N`` starts N, torchrun's ``RANK`` / ``WORLD_SIZE`` give the ranks):

1. every chunk this rank owns (:mod:`training.store.plan`) whose record and shard verify is reused; a
   missing, truncated or corrupted shard is made again (``regenerated`` names each with the reason);
2. each bag with chunks to make is read once (:class:`~perception_nodes.io.bag_source.BagSource`); frames of
   other chunks are not assembled; a frame is assembled by the one frame assembler, sweeps are accumulated
   into scenes (:mod:`training.store.scenes`, poses from tf through ``inputs.fixed_frame``), and each unit
   goes through :meth:`Pipeline.process <perception_nodes.pipeline.Pipeline.process>` and the methods
   (:class:`~training.store.labeling.ChunkLabeler`);
3. a frame that fails (its cloud breaks the assembler's rules, the pipeline or a method raises, a sweep
   has no pose) is skipped and recorded with its reason; a camera that is dropped is recorded too;
4. at the end of a chunk its shard is written atomically, then its record (sha256, units, skips,
   statistics, timings): a run killed at any point leaves only complete, verifiable chunks behind.

When every chunk of the plan is done, the index and the summary are (re)written (:mod:`training.store.index`).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from perception_nodes import stats as reasons
from perception_nodes.atomic import atomic_write, atomic_write_text
from perception_nodes.assembly import FrameAssembler
from perception_nodes.config import PerceptionConfig
from perception_nodes.io.bag_source import BagSource
from perception_nodes.io.bags import BagError
from perception_nodes.stats import Stats
from training.store.config import PseudoLabelConfig, config_hash
from training.store.labeling import ChunkLabeler, UnitInput, UnitResult, add_stats
from training.store.plan import Plan, plan_run
from training.store.scenes import accumulate
from training.store.shards import (FORMAT, FORMAT_VERSION, ChunkRecord, StorePaths, chunk_done, write_record,
                                   write_shard)
from training.store.teachers import Teacher, build_teacher

NO_POSE = 'scene/no_pose'
NO_FRAMES = 'scene/no_sweep'
BAG_ENDED = 'bag_ended'
OnUnit = Callable[[str], None]


@dataclass
class RankReport:
    """What one rank did in one run (``runs/rank<r>-of<w>.json``)."""

    rank: int
    world: int
    chunks_owned: int = 0
    chunks_reused: int = 0
    chunks_made: int = 0
    regenerated: list[dict[str, Any]] = field(default_factory=list)
    units_made: int = 0
    frames_read: int = 0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    malformed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory (MiB) of this process (or of its finished children)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return round(resource.getrusage(who).ru_maxrss / 1024.0, 1)


def gt_lookup(teacher: Teacher) -> np.ndarray | None:
    """Raw ground-truth id -> class index: the vocabulary classes' ``ids`` when it has any, else identity."""
    from perception_nodes.metrics.label_maps import lookup_table
    from perception_nodes.vocabulary import load_vocabulary
    mapping = load_vocabulary(teacher.pipeline.config.vocabulary.classes).label_map()
    return lookup_table(mapping) if mapping else None


def write_meta(paths: StorePaths, teacher: Teacher) -> None:
    """Write store.safetensors: the (K, C) text embeddings and the class names (atomic, same bytes)."""
    from safetensors.torch import save_file
    meta = {'ovp': json.dumps({'format': FORMAT, 'class_names': teacher.class_names}, sort_keys=True)}
    atomic_write(paths.meta, lambda tmp: save_file({'text_embeddings': teacher.text_embeddings.contiguous()},
                                                   tmp, metadata=meta), suffix='.safetensors')


class _ChunkWriter:
    """The chunk being made: its labeler, its skips, then its shard and record."""

    def __init__(self, plan: Plan, bag: int, chunk: int, labeler: ChunkLabeler) -> None:
        self.plan, self.bag, self.chunk = plan, bag, chunk
        self.labeler = labeler
        self.stats = Stats(latency_window=None, max_events=100_000)

    def finish(self) -> ChunkRecord:
        results = self.labeler.finish()
        folder = self.plan.bags[self.bag].folder
        tensors: dict[str, Any] = {}
        for j, r in enumerate(results):
            r.meta.fields = sorted(r.tensors)
            tensors.update({f'u{j}/{name}': value for name, value in r.tensors.items()})
        units = [asdict(r.meta) for r in results]
        meta = {'format': FORMAT, 'version': FORMAT_VERSION, 'chunk': self.chunk,
                'bag_sha256': self.plan.bags[self.bag].sha256, 'units': units}
        shard = folder / StorePaths.shard_name(self.chunk)
        sha, size = write_shard(shard, tensors, meta)
        summary = self.stats.summary()
        record = ChunkRecord(self.chunk, self.plan.bags[self.bag].sha256, shard.name, sha, size,
                             [r.meta for r in results], summary['skipped'], summary['counts'],
                             aggregate_stats(results), aggregate_timings(results))
        write_record(folder / StorePaths.record_name(self.chunk), record)
        return record


def aggregate_stats(results: list[UnitResult]) -> dict[str, Any]:
    """Sum the per-unit statistics of a chunk (:func:`~training.store.labeling.add_stats`)."""
    out: dict[str, Any] = {'units': len(results)}
    for r in results:
        add_stats(out, r.stats)
    return out


def aggregate_timings(results: list[UnitResult]) -> dict[str, float]:
    """Total milliseconds per stage over a chunk's units."""
    out: dict[str, float] = {}
    for r in results:
        for k, v in r.timings_ms.items():
            out[k] = round(out.get(k, 0.0) + float(v), 3)
    return out


def run_rank(plan: Plan, teacher: Teacher, method: PseudoLabelConfig, rank: int = 0, world: int = 1,
             progress: bool = True, on_unit: OnUnit | None = None) -> RankReport:
    """Make this rank's missing chunks (module docstring); returns what it did."""
    from tqdm import tqdm

    start = time.perf_counter()
    np.random.seed(method.seed)
    torch.manual_seed(method.seed)
    report = RankReport(rank, world)
    todo: dict[int, list[int]] = {}
    for b, bag in enumerate(plan.bags):
        for c in range(bag.chunks):
            if plan.owner(b, c, world) != rank:
                continue
            report.chunks_owned += 1
            record, why = chunk_done(bag.folder, c)
            if record is not None:
                report.chunks_reused += 1
                continue
            if why != 'missing':
                report.regenerated.append({'bag': bag.name, 'chunk': c, 'why': why})
            todo.setdefault(b, []).append(c)
    total = sum(len(plan.chunk_units(b, c)) for b, cs in todo.items() for c in cs)
    bar = tqdm(total=total, desc=f'pseudo-label rank {rank}/{world}', unit='unit', disable=not progress,
               position=rank)
    lut = gt_lookup(teacher)
    try:
        for b, chunks in todo.items():
            _run_bag(plan, b, chunks, teacher, method, lut, report, bar, on_unit)
    finally:
        bar.close()
    report.wall_s = round(time.perf_counter() - start, 3)
    report.peak_rss_mb = peak_rss_mb()
    atomic_write_text(StorePaths(plan.root).run_file(rank, world),
                      json.dumps(asdict(report), indent=1) + '\n')
    return report


def _run_bag(plan: Plan, b: int, chunks: list[int], teacher: Teacher, method: PseudoLabelConfig,
             lut: np.ndarray | None, report: RankReport, bar: Any, on_unit: OnUnit | None) -> None:
    bag = plan.bags[b]
    cfg = teacher.pipeline.config
    wanted = set(chunks)
    last_cloud = min(bag.clouds, (max(chunks) + 1) * plan.shard_units * plan.sweeps)
    source_stats = Stats(latency_window=None)
    writer: _ChunkWriter | None = None
    scene: list[tuple[int, Any, np.ndarray]] = []    # (cloud, frame, pose) of the unit being accumulated
    scene_unit = -1
    done: set[int] = set()

    def new_labeler() -> ChunkLabeler:
        return ChunkLabeler(method, teacher.class_names, teacher.text_embeddings, teacher.crop_encoder,
                            cfg.teacher.sampling, lut, scenes=plan.sweeps > 1)

    def process(unit: UnitInput) -> None:
        try:
            outputs = teacher.pipeline.process(unit.frame)
            writer.labeler.add(unit, outputs)
        except Exception as exc:  # noqa: BLE001  (one unit's failure costs that unit only)
            writer.stats.count(reasons.FRAME_FAILED, problem=f'{type(exc).__name__}: {exc}', where=unit.key)
        else:
            report.units_made += 1
        bar.update(1)
        if on_unit is not None:
            on_unit(unit.key)

    def flush_scene() -> None:
        nonlocal scene, scene_unit
        if scene_unit < 0:
            return
        key = plan.unit_key(b, scene_unit)
        clouds = [c for c, _, _ in scene]
        if not scene:
            writer.stats.count(NO_FRAMES, problem='no sweep of this scene could be used', where=key)
            bar.update(1)
        else:
            acc = accumulate([f for _, f, _ in scene], [p for _, _, p in scene], method.scene.voxel_size)
            process(UnitInput(key, scene_unit, clouds, acc.frame, acc.sweep))
        scene, scene_unit = [], -1

    def finish_chunk() -> None:
        nonlocal writer
        if writer is None:
            return
        if plan.sweeps > 1:
            flush_scene()
        writer.finish()
        done.add(writer.chunk)
        report.chunks_made += 1
        writer = None

    with BagSource(bag.path, cfg.inputs, source_stats) as source:
        assembler = FrameAssembler(source.cameras, source.lookup, Stats(), cfg.inputs.lidar_frame,
                                   cfg.inputs.fixed_frame, cfg.inputs.depth_max_range)
        try:
            for index, synced in source.synced_sets():
                if index >= last_cloud:
                    break
                chunk = plan.chunk_of(index)
                if writer is not None and chunk != writer.chunk:
                    finish_chunk()
                if chunk not in wanted:
                    continue
                if writer is None:
                    writer = _ChunkWriter(plan, b, chunk, new_labeler())
                    assembler.stats = writer.stats
                report.frames_read += 1
                where = f'{bag.name} cloud {index}'
                frame = assembler.assemble(synced, index, where)
                unit = plan.unit_of(index)
                if plan.sweeps == 1:
                    if frame is None:
                        bar.update(1)
                        continue
                    process(UnitInput(plan.unit_key(b, unit), unit, [index], frame))
                    continue
                if unit != scene_unit:
                    flush_scene()
                    scene_unit = unit
                if frame is None:
                    continue
                try:
                    pose = source.lookup(cfg.inputs.fixed_frame, frame.frame_id, frame.stamp_ns)
                except Exception as exc:  # noqa: BLE001  (tf raises several kinds)
                    writer.stats.count(NO_POSE, problem=f'{cfg.inputs.fixed_frame} <- {frame.frame_id}: '
                                       f'{type(exc).__name__}: {exc}', where=where)
                    continue
                scene.append((index, frame, np.asarray(pose, dtype=np.float64)))
        except BagError as exc:          # truncated / corrupted bag: keep what was read
            report.errors.append(f'{bag.name}: {exc}')
        finish_chunk()
    for c in chunks:                     # chunks whose clouds the bag does not hold (it ended early)
        if c not in done:
            writer = _ChunkWriter(plan, b, c, new_labeler())
            writer.stats.count(BAG_ENDED, len(plan.chunk_units(b, c)),
                               problem='the bag ended before these clouds', where=f'{bag.name} chunk {c}')
            bar.update(len(plan.chunk_units(b, c)))
            finish_chunk()
    for k, v in source_stats.counts().items():
        report.malformed[k] = report.malformed.get(k, 0) + v


def prepare(bags: list[str | os.PathLike], out: str | os.PathLike, config: PerceptionConfig,
            method: PseudoLabelConfig) -> tuple[Plan, Teacher]:
    """Load the teacher, check and hash the bags, and plan the run (writes store.safetensors)."""
    if method.scene.sweeps > 1 and not config.inputs.fixed_frame:
        raise ValueError('scenes (scene.sweeps > 1) need the poses in tf: set inputs.fixed_frame '
                         '(--fixed-frame odom / map)')
    if not bags:
        raise ValueError('no input bag')
    for bag in bags:                    # before loading any model: missing bags / topics fail fast
        if not Path(bag).exists():
            raise ValueError(f'input bag not found: {bag}')
        BagSource(bag, config.inputs).close()
    teacher = build_teacher(config, method)
    try:
        method.affinity3d.split(teacher.class_names)      # a GZS split naming unknown classes fails here
        chash = config_hash(method, teacher.pipeline.config)
        plan = plan_run(bags, out, teacher.pipeline.config, method.scene.sweeps, method.store.shard_units,
                        chash, teacher.teacher_id)
        write_meta(StorePaths(Path(out)), teacher)
    except BaseException:
        teacher.close()
        raise
    return plan, teacher


def _worker(bags: list[str], out: str, config: PerceptionConfig, method: PseudoLabelConfig, rank: int,
            world: int, progress: bool) -> None:
    torch.set_num_threads(max(1, config.runtime.torch_threads))
    plan, teacher = prepare(bags, out, config, method)
    try:
        run_rank(plan, teacher, method, rank, world, progress)
    finally:
        teacher.close()


def build_store(bags: list[str | os.PathLike], out: str | os.PathLike, config: PerceptionConfig,
                method: PseudoLabelConfig, rank: int = 0, world: int = 1, workers: int = 1,
                progress: bool = True, on_unit: OnUnit | None = None) -> dict[str, Any] | None:
    """Make (or complete) the store ``out`` from ``bags`` and return its summary.

    Returns None when other ranks still have chunks to make (the last one to finish writes the index).
    ``workers`` > 1 starts that many processes (ranks ``rank * workers + i`` of ``world * workers``).
    """
    from training.store.index import merge
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    plan, teacher = prepare(bags, out, config, method)
    try:
        if workers > 1:
            teacher.close()
            ctx = multiprocessing.get_context('spawn')
            procs = [ctx.Process(target=_worker, args=([str(b) for b in bags], str(out), config, method,
                                                       rank * workers + i, world * workers, progress))
                     for i in range(workers)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
            if failed:
                raise RuntimeError(f'pseudo-label worker(s) {failed} failed (exit codes '
                                   f'{[procs[i].exitcode for i in failed]}); rerun to resume')
            ranks = list(range(rank * workers, (rank + 1) * workers))
            world_total = world * workers
        else:
            run_rank(plan, teacher, method, rank, world, progress, on_unit)
            ranks, world_total = [rank], world
    finally:
        teacher.close()
    return merge(plan, config, method, teacher, world_total, ranks, time.perf_counter() - start)
