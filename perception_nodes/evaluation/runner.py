"""``evaluate_bags``: bags with ground truth through the one pipeline path, scored, resumable, reported.

For each bag: its frames go through :func:`~perception_nodes.replay.processed_frames` (the bag
source, the frame assembler and ``Pipeline.process``, as ``ovp replay``), each frame is scored into
streaming accumulators (:class:`~perception_nodes.evaluation.scoring.Scorer`, bounded memory), a few
frames are rendered bird's-eye, and when the bag is done its accumulator state is written atomically to
``OUT/bags/<bag key>/state.json`` with a fingerprint of everything that changes the numbers (the bag's
files, the config, the labeller provenance, the label map, the options, the queries, the masks file). A
rerun reuses every bag whose state matches, so a killed run redoes only the unfinished bags. Then the
bags are merged and ``report.json``, ``report.md`` and the figures are written (atomically).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from perception_nodes.atomic import atomic_write_text
from perception_nodes.evaluation.options import DEFAULT_UNSEEN, EvalOptions
from perception_nodes.evaluation.queries import Query, class_queries, find_query_file, load_queries
from perception_nodes.evaluation.report import (REPORT_JSON, REPORT_MD, meaningless_reason, write_json,
                                                write_markdown)
from perception_nodes.evaluation.scoring import BagScore, FrameTruth, Scorer
from perception_nodes.replay import processed_frames
from perception_nodes.evaluation.summary import (PROTOCOL_TEXT, SummaryContext, headline, resolve_splits,
                                                 summarize)
from perception_nodes.evaluation.truth import TruthMapper, load_masks, resolve_label_map
from perception_nodes.frame import Frame
from perception_nodes.hashing import file_sha256
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs

BAGS_DIR, STATE_NAME = 'bags', 'state.json'
REPORT_FORMAT = 1
FrameHook = Callable[[Frame, Outputs, FrameTruth], None]


class NoFramesEvaluatedError(ValueError):
    """No frame of a bag could be processed: nothing to score (the reasons are in the message)."""


def bag_key(bag: str | os.PathLike) -> str:
    """Folder name of a bag's state: its name and a hash of its absolute path."""
    p = Path(bag).expanduser().resolve()
    safe = re.sub(r'[^A-Za-z0-9._-]+', '_', p.name)[:60] or 'bag'
    return f'{safe}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}'


def _bag_files_identity(bag: Path) -> list[Any]:
    files = sorted(f for f in bag.rglob('*') if f.is_file()) if bag.is_dir() else [bag]
    return [[str(f.relative_to(bag)) if bag.is_dir() else f.name, f.stat().st_size, f.stat().st_mtime_ns]
            for f in files]


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _student_grid(pipeline: Any) -> Any:
    labeller = pipeline.labeller
    student = labeller if getattr(labeller, 'name', '') == 'student' else getattr(labeller, 'student', None)
    config = getattr(student, 'student_config', None)
    return getattr(config, 'grid', None)


class _Evaluation:
    """One ``evaluate_bags`` call's fixed context (label map, queries, masks, grids, fingerprints)."""

    def __init__(self, pipeline: Any, config: Any, options: EvalOptions) -> None:
        from perception_nodes.config import config_to_dict
        self.pipeline, self.config, self.options = pipeline, config, options
        self.label_map = resolve_label_map(options.label_map, pipeline.class_names, pipeline.vocabulary)
        self.class_names = list(self.label_map.class_names)
        unseen = options.unseen if options.unseen is not None else DEFAULT_UNSEEN.get(self.label_map.name, ())
        bad = [u for u in unseen if u not in self.class_names]
        if bad:
            raise ValueError(f'--split: unseen classes {bad} are not classes of the vocabulary '
                             f'({self.class_names})')
        if unseen and len(set(unseen)) == len(self.class_names):
            raise ValueError('--split: every class is unseen (annotation-free setting: use --split none)')
        self.unseen = tuple(unseen)
        self.mapper = TruthMapper(self.label_map)
        self.masks = load_masks(options.masks) if options.masks else None
        self.masks_sha = file_sha256(options.masks) if options.masks else ''
        self.student_grid = _student_grid(pipeline)
        self.provenance = pipeline.provenance()
        self.retrieval_note = ''
        if 'retrieval' in options.metrics:
            if pipeline.labeller is None:
                self.retrieval_note = 'no labeller: no point features to rank'
            elif not config.outputs.embeddings:
                self.retrieval_note = 'outputs.embeddings is off (ovp eval --retrieval turns it on)'
        self.base_fingerprint = {'config': config_to_dict(config), 'labeller': self.provenance,
                                 'options': options.fingerprint_dict(),
                                 'label_map': {'name': self.label_map.name, 'classes': self.class_names,
                                               'mapping': sorted(self.label_map.mapping.items()),
                                               'ignored': list(self.label_map.ignored),
                                               'instance_classes': self.label_map.instance_classes},
                                 'masks_sha256': self.masks_sha, 'unseen': list(self.unseen)}
        self._vectors: dict[str, np.ndarray] = {}

    # -- retrieval ------------------------------------------------------------------------------------
    def queries_for(self, bag: Path) -> list[Query]:
        if 'retrieval' not in self.options.metrics or self.retrieval_note:
            return []
        path = self.options.queries or find_query_file(bag)
        return load_queries(path, self.class_names) if path else class_queries(self.class_names)

    def query_vector(self, query: Query) -> np.ndarray:
        """Return the unit query embedding in the labeller's space (text encoder, else the class's)."""
        import torch
        if query.text in self._vectors:
            return self._vectors[query.text]
        try:
            vec = self.pipeline.text_embedding(query.text)
        except ValueError:
            clip_text = self.pipeline.clip_text
            if not query.derived or clip_text is None or len(query.classes) != 1:
                raise ValueError(f'query {query.text!r} needs a CLIP text encoder (the pipeline has '
                                 f'none)') from None
            vec = self.pipeline.labeller.project_query(clip_text[query.classes[0]][None].float())[0]
            vec = torch.nn.functional.normalize(vec, dim=0)
        out = np.asarray(torch.as_tensor(vec).float().cpu().numpy(), np.float32)
        self._vectors[query.text] = out
        return out

    def scorer_for(self, bag: Path) -> tuple[Scorer, list[Query]]:
        queries = self.queries_for(bag)
        vectors = [self.query_vector(q) for q in queries] if queries else None
        grid = self.pipeline.voxel_grid
        return Scorer(self.mapper, self.options, occupancy_grid=grid, student_grid=self.student_grid,
                      queries=queries, query_vectors=vectors, masks=self.masks), queries

    def fingerprint(self, bag: Path, queries: Sequence[Query]) -> str:
        data = dict(self.base_fingerprint, bag=str(bag.resolve()), files=_bag_files_identity(bag),
                    queries=[q.to_dict(self.class_names) for q in queries])
        return hashlib.sha256(json.dumps(_clean(data), sort_keys=True, default=str).encode()).hexdigest()


def _load_state(path: Path, fingerprint: str) -> BagScore | None:
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
        if data.get('fingerprint') != fingerprint:
            return None
        return BagScore.from_state(data['score'])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _run_bag(ev: _Evaluation, bag: Path, folder: Path, scorer: Scorer, on_frame: FrameHook | None,
             position: str) -> tuple[BagScore, list[str]]:
    from tqdm import tqdm

    from perception_nodes.evaluation.bev import render_bev
    from perception_nodes.io.bag_source import BagSource
    from perception_nodes.io.bags import BagError
    from perception_nodes.stats import Stats
    opts, pipeline = ev.options, ev.pipeline
    stats = Stats(latency_window=None)
    score = scorer.new_score()
    for old in folder.glob('bev_*.png'):
        old.unlink()
    bevs: list[str] = []
    limit = ev.config.replay.max_frames
    start = time.perf_counter()
    with BagSource(bag, ev.config.inputs, stats) as source:
        bar = tqdm(desc=f'eval {position} {bag.name}', unit='frame', disable=not opts.progress,
                   total=limit or None)
        try:
            for done, item in enumerate(processed_frames(source, pipeline, limit)):
                truth = scorer.update(score, item.frame, item.outputs)
                if len(bevs) < opts.bev_frames and done % opts.bev_stride == 0:
                    t0 = time.perf_counter()
                    tag = '' if pipeline.meaningful else ' (labels MEANINGLESS)'
                    png = render_bev(folder / f'bev_{item.index:05d}.png', item.frame.points,
                                     item.outputs.labels, truth.gt, ev.class_names, pipeline.palette,
                                     title=f'{bag.name} cloud {item.index}: {pipeline.labeller_name}{tag}',
                                     unknown_label=UNKNOWN_LABEL)
                    ms = round((time.perf_counter() - t0) * 1e3, 3)
                    score.latency_ms.setdefault('bev_render', []).append(ms)
                    bevs.append(png.name)
                if on_frame is not None:
                    on_frame(item.frame, item.outputs, truth)
                bar.update(1)
        except BagError as exc:          # truncated / corrupted input: keep what was processed
            score.errors.append(f'{bag.name}: {exc}')
        finally:
            bar.close()
    score.wall_s = time.perf_counter() - start
    summary = stats.summary()
    score.skipped = [dict(e, bag=bag.name) for e in summary['skipped']]
    score.stats_counts.update(summary['counts'])
    if not score.counts.get('frames'):
        reasons = ', '.join(f'{k} x{v}' for k, v in sorted(summary['counts'].items())) or 'no clouds'
        first = score.skipped[0]['why'] if score.skipped else (score.errors[0] if score.errors else '')
        raise NoFramesEvaluatedError(f'no frame of {bag} could be processed ({reasons})'
                                     f'{": " + first if first else ""}')
    return score, bevs


def evaluate_bags(bags: Sequence[str | os.PathLike], pipeline: Any, out: str | os.PathLike,
                  options: EvalOptions | None = None, config: Any = None,
                  on_frame: FrameHook | None = None) -> dict[str, Any]:
    """Score ``pipeline`` on ``bags`` (with ground truth) into the report folder ``out``; returns the report.

    ``config``: the run's config (default ``pipeline.config``: its inputs and ``replay.max_frames`` apply).
    ``on_frame(frame, outputs, truth)`` is called for every scored frame (tests, the demo). Raises
    ValueError for a label map that does not fit the vocabulary, a bad split or query file,
    :class:`~perception_nodes.evaluation.truth.MissingTruthError` for a bag without ``label`` field,
    :class:`NoFramesEvaluatedError` when no frame of a bag could be processed, BagError / ValueError when a
    bag cannot be opened. See the module docstring for the files written.
    """
    options = options or EvalOptions()
    config = config or pipeline.config
    out = Path(out)
    if not bags:
        raise ValueError('no bag to evaluate')
    ev = _Evaluation(pipeline, config, options)
    out.mkdir(parents=True, exist_ok=True)
    per_bag: dict[str, dict[str, Any]] = {}
    scores: dict[str, BagScore] = {}
    for i, bag_path in enumerate(bags):
        bag = Path(bag_path)
        key = bag_key(bag)
        if key in scores:
            raise ValueError(f'bag {bag} is listed twice')
        folder = out / BAGS_DIR / key
        folder.mkdir(parents=True, exist_ok=True)
        scorer, queries = ev.scorer_for(bag)
        fingerprint = ev.fingerprint(bag, queries)
        state_path = folder / STATE_NAME
        score = _load_state(state_path, fingerprint) if options.resume else None
        resumed = score is not None
        if score is not None:
            bevs = sorted(p.name for p in folder.glob('bev_*.png'))
        else:
            score, bevs = _run_bag(ev, bag, folder, scorer, on_frame, f'{i + 1}/{len(bags)}')
            atomic_write_text(state_path, json.dumps({'fingerprint': fingerprint, 'bag': str(bag),
                                                      'score': _clean(score.state_dict())}) + '\n')
        scores[key] = score
        per_bag[key] = {'path': str(bag), 'fingerprint': fingerprint, 'resumed': resumed,
                        'state': str(Path(BAGS_DIR) / key / STATE_NAME),
                        'bev_pngs': [str(Path(BAGS_DIR) / key / b) for b in bevs],
                        'queries': [q.to_dict(ev.class_names) for q in queries]}
    return _write_report(ev, out, scores, per_bag)


def _write_report(ev: _Evaluation, out: Path, scores: dict[str, BagScore],
                  per_bag: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from perception_nodes.config import config_to_dict
    from perception_nodes.evaluation.figures import report_figures
    overall = BagScore.from_state(next(iter(scores.values())).state_dict())
    for key in list(scores)[1:]:
        overall.merge(scores[key])
    splits, splits_source = resolve_splits(ev.label_map, ev.options.class_counts, overall)
    occupancy_source = ('student' if overall.counts.get('occupancy_frames_student') else
                        'geometry' if overall.counts.get('occupancy_frames_geometry') else '')
    ctx = SummaryContext(ev.class_names, ev.unseen, splits, splits_source, ev.options.front_view,
                         occupancy_source)
    needs_cameras = bool(getattr(ev.pipeline.labeller, 'needs_cameras', False))
    reason = meaningless_reason(ev.provenance, overall.counts.get('frames', 0),
                                overall.counts.get('frames_with_camera', 0), needs_cameras)
    overall_summary = summarize(overall, ctx)
    for key, score in scores.items():
        s = summarize(score, ctx)
        per_bag[key]['summary'] = s
        per_bag[key]['headline'] = headline(s, ctx)
    lm = ev.label_map
    report: dict[str, Any] = {
        'tool': 'ovp eval', 'format': REPORT_FORMAT,
        'created': _dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds'),
        'header': {'labels_meaningful': reason is None, 'meaningless': reason,
                   'retrieval_note': ev.retrieval_note or None},
        'labeller': ev.provenance,
        'label_map': {'name': lm.name, 'vocabulary': lm.vocabulary, 'source': lm.source,
                      'classes': lm.class_names, 'ignored_raw_ids': list(lm.ignored),
                      'instance_classes': [lm.class_names[k] for k in lm.instance_class_indices()],
                      'unmapped_classes': lm.unmapped_classes},
        'options': ev.options.to_dict(),
        'context': ctx.to_dict(),
        'protocols': dict(PROTOCOL_TEXT),
        'headline': headline(overall_summary, ctx),
        'overall': overall_summary,
        'bags': per_bag,
        'config': config_to_dict(ev.config),
    }
    note = 'labels MEANINGLESS' if reason else ''
    report['figures'] = report_figures(out, overall, overall_summary, ctx, note)
    report = _clean(report)
    write_json(out / REPORT_JSON, report)
    write_markdown(out / REPORT_MD, report)
    return report


__all__ = ['BAGS_DIR', 'NoFramesEvaluatedError', 'REPORT_FORMAT', 'STATE_NAME', 'bag_key', 'evaluate_bags']
