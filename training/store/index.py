"""The store's index (``index.json``) and run summary (``summary.json``), merged from the chunk records.

``index.json`` (deterministic: the same bags, settings and teacher give the same file)::

    format, version, complete           'ovp-pseudo-label-store', 1, true
    package_version                     perception_nodes.__version__ of the run
    unit                                'frame' | 'scene';  scene: {sweeps, voxel_size, fixed_frame}
    config_hash, config, perception     the method config, the hashed perception keys
    teacher, teacher_id                 kind, model, pretrained, identity, random_weights, synthetic, note
    vocabulary                          {name, classes, embed_dim}
    label_source, label_methods         the default "labels" method and every stored label method
    class_counts                        {method: labelled points per class over the whole store}
    fields                              optional sample fields every unit has (training.store.dataset)
    grids                               {name: {lower, upper, shape}} of the POP-3D targets
    seeds                               {seed, synthetic_text, synthetic_noise}
    metadata                            {file: 'store.safetensors', sha256}
    bags                                [{path, name, sha256, lidar_topic, cameras, clouds, units, ...}]
    shards                              [{file, sha256, bytes, bag, chunk, units: [UnitMeta...]}]
    num_units, store_hash               sha256 over the metadata and every shard's sha256

``summary.json``: units, skipped frames / cameras with reasons (and counts), per-method class counts and
ignored fractions, visibility cuts (points in some image, visible after the occlusion test, the fraction
the test removed), per-stage timings (total and per unit), store bytes (total and per unit), and what each
rank of the last run did (chunks reused / made / regenerated, frames per second, peak RSS).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from perception_nodes.atomic import atomic_write_text
from perception_nodes.config import PerceptionConfig
from perception_nodes.config.schema import to_dict
from training.store.config import LABEL_METHODS, PseudoLabelConfig, hashed_perception
from training.store.labeling import add_stats
from training.store.plan import Plan
from training.store.shards import FORMAT, FORMAT_VERSION, ChunkRecord, StorePaths, chunk_done, file_sha256

# stored tensor name (per unit) -> the optional sample field it provides
FIELD_SOURCES = {'gt_labels': 'gt_labels', 'gt_instances': 'gt_instances', 'regions': 'regions',
                 'masks/ids': 'pseudo_masks', 'image/0': 'images', 'sweep': 'sweep', 'instances': 'instances'}


def unit_fields(stored: list[str], grids: list[str]) -> set[str]:
    """Return the optional sample fields a unit's stored tensors provide."""
    out = {field for name, field in FIELD_SOURCES.items() if name in stored}
    if 'images' in out:
        out |= {'uv', 'camera_index'}
    if 'pseudo_masks' in out:
        out.add('mask_scores')
    if any(n.startswith('dense/map_') for n in stored):
        out |= {'teacher_index', 'teacher_features'}
    if grids and f'pop3d/occupied/{grids[0]}' in stored:
        out.add('occupancy_target')
    return out


def collect(plan: Plan) -> list[tuple[int, ChunkRecord]] | None:
    """(bag, record) of every chunk of the plan, or None while any is missing or fails its checksum."""
    out = []
    for b, bag in enumerate(plan.bags):
        for c in range(bag.chunks):
            record, _ = chunk_done(bag.folder, c)
            if record is None:
                return None
            out.append((b, record))
    return out


def build_index(plan: Plan, records: list[tuple[int, ChunkRecord]], config: PerceptionConfig,
                method: PseudoLabelConfig, teacher: Any) -> dict[str, Any]:
    """Return the index of a complete plan (module docstring)."""
    import perception_nodes
    root = plan.root
    paths = StorePaths(root)
    meta_sha = file_sha256(paths.meta)
    shards, fields = [], None
    grids = list(method.pop3d.grids) if 'pop3d' in method.methods else []
    for b, r in records:
        folder = plan.bags[b].folder
        units = [vars(u) for u in r.units]
        for u in r.units:
            f = unit_fields(getattr(u, 'fields', []), grids)
            fields = f if fields is None else fields & f
        shards.append({'file': str((folder / r.shard).relative_to(root)), 'sha256': r.sha256,
                       'bytes': r.bytes, 'bag': b, 'chunk': r.chunk, 'units': units})
    from training.pseudo.pop3d import GRIDS
    digest = hashlib.sha256(meta_sha.encode())
    for s in shards:
        digest.update(s['sha256'].encode())
    totals: dict[str, Any] = {}
    for _, r in records:
        add_stats(totals, r.stats)
    class_counts = {m: totals[m]['per_class'] for m in LABEL_METHODS if m in totals}
    index = {
        'format': FORMAT, 'version': FORMAT_VERSION, 'complete': True,
        'package_version': perception_nodes.__version__,
        'unit': 'scene' if plan.sweeps > 1 else 'frame',
        'scene': {'sweeps': plan.sweeps, 'voxel_size': method.scene.voxel_size,
                  'fixed_frame': config.inputs.fixed_frame},
        'config_hash': plan.config_hash, 'config': to_dict(method), 'perception': hashed_perception(
            teacher.pipeline.config),
        'teacher': teacher.identity, 'teacher_id': plan.teacher_id,
        'vocabulary': {'name': teacher.vocabulary_name, 'classes': list(teacher.class_names),
                       'embed_dim': int(teacher.text_embeddings.shape[1])},
        'label_source': method.label_source,
        'label_methods': [m for m in LABEL_METHODS if m in method.methods],
        'class_counts': class_counts,
        'fields': sorted(fields or set()),
        'grids': {g: {'lower': list(GRIDS[g].lower), 'upper': list(GRIDS[g].upper),
                      'shape': list(GRIDS[g].shape)} for g in grids},
        'seeds': {'seed': method.seed, 'synthetic_text': teacher.pipeline.config.teacher.synthetic_text_seed,
                  'synthetic_noise': teacher.pipeline.config.teacher.synthetic_noise_seed},
        'metadata': {'file': paths.meta.name, 'sha256': meta_sha},
        'bags': [bag.to_dict(root) for bag in plan.bags],
        'shards': shards,
        'num_units': sum(len(s['units']) for s in shards),
        'store_hash': digest.hexdigest(),
    }
    return index


def _fraction(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def build_summary(index: dict[str, Any], records: list[tuple[int, ChunkRecord]], reports: list[dict],
                  wall_s: float) -> dict[str, Any]:
    """Return the run summary (module docstring) from the records and the rank reports of this run."""
    classes = index['vocabulary']['classes']
    stats: dict[str, Any] = {}
    timings: dict[str, float] = {}
    skipped, counts = [], {}
    for _, r in records:
        add_stats(stats, r.stats)
        for k, v in r.timings_ms.items():
            timings[k] = timings.get(k, 0.0) + v
        skipped += r.skipped
        for k, v in r.counts.items():
            counts[k] = counts.get(k, 0) + v
    units = index['num_units']
    methods = {}
    for m in ('dense', 'affinity3d', 'cns'):
        if m in stats:
            s = stats[m]
            methods[m] = {'points': s['points'], 'ignored': s['ignored'],
                          'ignored_fraction': _fraction(s['ignored'], s['points']),
                          'per_class': dict(zip(classes, s['per_class']))}
            methods[m].update({k: v for k, v in s.items() if k not in ('points', 'ignored', 'per_class')})
    for m in ('pop3d', 'unscene3d'):
        if m in stats:
            methods[m] = stats[m]
    total_bytes = sum(s['bytes'] for s in index['shards'])
    made = sum(r.get('units_made', 0) for r in reports)
    slowest = max((r.get('wall_s', 0.0) for r in reports), default=0.0)
    return {
        'output': str(Path(index.get('root', ''))), 'units': units, 'unit': index['unit'],
        'frames_per_unit': index['scene']['sweeps'],
        'skipped': skipped, 'skip_counts': counts,
        'points': stats.get('points', 0),
        'visibility': {'in_image': stats.get('in_image', 0), 'visible': stats.get('visible', 0),
                       'occlusion_cut_fraction': None if not stats.get('in_image') else
                       round(1 - stats.get('visible', 0) / stats['in_image'], 4)},
        'methods': methods,
        'timings_ms': {k: {'total': round(v, 1), 'per_unit': round(v / max(units, 1), 2)}
                       for k, v in sorted(timings.items())},
        'bytes': {'shards': total_bytes, 'per_unit': round(total_bytes / max(units, 1))},
        'run': {'ranks': reports, 'units_made': made, 'wall_s': round(wall_s, 3),
                'units_per_s': round(made / slowest, 3) if slowest > 0 and made else None,
                'chunks_reused': sum(r.get('chunks_reused', 0) for r in reports),
                'chunks_made': sum(r.get('chunks_made', 0) for r in reports),
                'regenerated': [g for r in reports for g in r.get('regenerated', [])]},
        'teacher': index['teacher'], 'labels_meaningful': not index['teacher'].get('random_weights', False),
        'config_hash': index['config_hash'], 'store_hash': index['store_hash'],
    }


def merge(plan: Plan, config: PerceptionConfig, method: PseudoLabelConfig, teacher: Any, world: int,
          ranks: list[int], wall_s: float) -> dict[str, Any] | None:
    """Write index.json and summary.json when every chunk is done; else None (other ranks still work)."""
    records = collect(plan)
    if records is None:
        return None
    paths = StorePaths(plan.root)
    index = build_index(plan, records, config, method, teacher)
    reports = []
    for r in range(world):
        f = paths.run_file(r, world)
        if f.is_file() and (r in ranks or world > 1):
            reports.append(json.loads(f.read_text(encoding='utf-8')))
    summary = build_summary(index, records, reports, wall_s)
    summary['output'] = str(plan.root)
    atomic_write_text(paths.index, json.dumps(index, indent=1, sort_keys=True) + '\n')
    atomic_write_text(paths.summary, json.dumps(summary, indent=1) + '\n')
    return summary
