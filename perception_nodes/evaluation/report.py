"""``report.json`` and ``report.md`` of ``ovp eval`` (atomic writes).

``report.json`` holds every number (per bag and overall), the config, the labeller's provenance
(``Pipeline.provenance()``), the label map, the options, the protocols and the skipped items;
``report.md`` lays the same out as tables, under a header that says plainly when the labels are
meaningless (random CLIP weights, an untrained student, no usable camera for the teacher, no labeller).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from perception_nodes.atomic import atomic_write_text

REPORT_JSON, REPORT_MD = 'report.json', 'report.md'


def meaningless_reason(provenance: dict[str, Any], frames: int, frames_with_camera: int,
                       needs_cameras: bool) -> str | None:
    """Why the labels carry no meaning (every reason, '; '-joined), or None when they do."""
    if provenance.get('labeller') == 'none':
        return 'no labeller (labeller.kind none): every label is "unknown", semantic scores are 0 by design'
    reasons = []
    if needs_cameras and frames and not frames_with_camera:
        reasons.append('no frame had a usable camera: the teacher labelled nothing, every label is "unknown" '
                       '(semantic scores 0)')
    clip = provenance.get('clip') or {}
    if clip.get('random_weights'):
        reasons.append(f'the labels come from a randomly initialised CLIP ({clip.get("model")}, pretrained='
                       f'{clip.get("pretrained")}): they carry NO meaning; the numbers only exercise the '
                       f'pipeline')
    elif not provenance.get('labels_meaningful', False):
        reasons.append('the labeller is not meaningful (an untrained student or random weights): the '
                       'semantic numbers mean nothing')
    return '; '.join(reasons) or None


def write_json(path: Path, report: dict[str, Any]) -> Path:
    """Write ``report`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(report, indent=1, sort_keys=False, allow_nan=False) + '\n')


def _pct(v: Any, digits: int = 1) -> str:
    return '-' if v is None else f'{100 * float(v):.{digits}f}'


def _num(v: Any, digits: int = 2) -> str:
    if v is None:
        return '-'
    return f'{v:.{digits}f}' if isinstance(v, float) else str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(' --- ' for _ in header) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return lines + ['']


HEADLINE_ROWS = [
    ('miou', 'mIoU (headline protocol)', _pct), ('accuracy', 'accuracy', _pct),
    ('miou_all_points', 'mIoU, all points', _pct), ('miou_front_view', 'mIoU, front view (camera FOV)', _pct),
    ('miou_visible', 'mIoU, visible points', _pct),
    ('miou_invisible', 'mIoU, points no camera sees', _pct), ('lidar_miou', 'LiDAR mIoU (POP-3D)', _pct),
    ('miou_seen', 'mIoU seen', _pct), ('miou_unseen', 'mIoU unseen', _pct),
    ('hiou', 'hIoU (Affinity3D Eq. 21)', _pct),
    ('miou_head', 'mIoU head', _pct), ('miou_common', 'mIoU common', _pct), ('miou_tail', 'mIoU tail', _pct),
    ('occupancy_iou', 'occupancy IoU (POP-3D)', _pct),
    ('occupancy_miou', 'occupancy mIoU (classes + empty)', _pct),
    ('retrieval_map', 'retrieval mAP', _pct), ('instance_ap', 'instance AP (segments)', _pct),
    ('instance_ap50', 'instance AP50 (segments)', _pct), ('instance_ap25', 'instance AP25 (segments)', _pct),
    ('masks_ap', 'instance AP (masks file)', _pct), ('masks_ap50', 'instance AP50 (masks file)', _pct),
    ('masks_ap25', 'instance AP25 (masks file)', _pct),
    ('fraction_evaluated', 'fraction of points evaluated', _pct),
    ('fraction_unknown', 'fraction of points predicted unknown', _pct), ('frames', 'frames', _num),
    ('frames_per_s', 'eval frames/s', _num),
]


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md`` from the report dict."""
    h = report['headline']
    lab = report['labeller']
    lines = ['# ovp eval report', '']
    if report['header']['meaningless']:
        lines += [f'> **LABELS MEANINGLESS**: {report["header"]["meaningless"]}.', '']
    clip = f' (CLIP {lab["clip"]["model"]} / {lab["clip"]["pretrained"]})' if lab.get('clip') else ''
    lines += [f'- labeller: **{lab.get("labeller")}**{clip}',
              f'- label map: {report["label_map"]["name"]} -> vocabulary {report["label_map"]["vocabulary"]} '
              f'({len(report["label_map"]["classes"])} classes)',
              f'- bags: {", ".join(b["path"] for b in report["bags"].values())}',
              f'- headline protocol: {report["protocols"][h["protocol"]]}', '']
    if lab.get('student'):
        student = lab['student']
        lines.insert(-1, f'- student: {student.get("model")} sha256 {student.get("sha256", "")[:16]}')
    rows = [(name, fmt(h.get(key))) for key, name, fmt in HEADLINE_ROWS if h.get(key) is not None]
    lines += ['## Headline', ''] + _table(['metric', 'value'], rows)
    overall = report['overall']
    if not overall['frames_with_camera']:
        lines += ['No frame had a camera: the front-view protocol and the LiDAR mIoU evaluate no point.', '']
    lines += _per_class(overall, report['label_map']['classes'])
    lines += _splits(overall, report['headline']['protocol'])
    lines += _occupancy(overall) + _retrieval(overall) + _instances(overall)
    lines += _per_bag(report) + _speed(overall) + _skipped(overall)
    figures = dict(report.get('figures') or {})
    for bag in report['bags'].values():
        figures.update({Path(p).stem + ' ' + Path(bag['path']).name: p for p in bag.get('bev_pngs', [])})
    if figures:
        lines += ['## Figures', ''] + [f'![{name}]({path})' for name, path in figures.items()] + ['']
    return '\n'.join(lines) + '\n'


def _per_class(overall: dict[str, Any], classes: Sequence[str]) -> list[str]:
    sem = overall['semantic']
    cols = [p for p in ('all', 'front_view') if sem[p].get('points')]
    if not cols:
        return ['## Semantic', '', 'No point was evaluated.', '']
    header = ['class', 'GT points'] + [f'IoU {c}' for c in cols] + ['precision', 'recall']
    rows = []
    main = cols[0]
    for name in classes:
        per = sem[main]['per_class'][name]
        rows.append([name, per['gt_points']] + [_pct(sem[c]['per_class'][name]['iou']) for c in cols]
                    + [_pct(per['precision']), _pct(per['recall'])])
    rows.append(['**mean**', sem[main]['points']] + [_pct(sem[c]['miou']) for c in cols]
                + [_pct(sem[main]['mean_precision']), _pct(sem[main]['mean_recall'])])
    return [f'## Semantic (per class; precision / recall over {main.replace("_", " ")})', '',
            'IoU = TP / (TP + FP + FN); "unknown" predictions are misses; mIoU over classes with ground '
            'truth.',
            ''] + _table(header, rows)


def _splits(overall: dict[str, Any], protocol: str) -> list[str]:
    main = overall['semantic'][protocol]
    out = []
    su = main.get('seen_unseen')
    if su:
        out += ['## Seen / unseen (Affinity3D Eq. 21)', '', f'unseen: {", ".join(su["unseen"]["classes"])}',
                '']
        out += _table(['seen', 'unseen', 'all', 'hIoU'],
                      [[_pct(su['miou_seen']), _pct(su['miou_unseen']), _pct(su['miou']), _pct(su['hiou'])]])
    splits = main.get('splits')
    if splits:
        out += ['## Head / common / tail (ScanNet200)', '']
        out += _table(['split', 'classes (present)', 'mIoU', 'precision', 'recall'],
                      [[k, f'{len(v["classes"])} ({v["classes_present"]})', _pct(v['miou']),
                        _pct(v['precision']), _pct(v['recall'])] for k, v in splits.items()])
    return out


def _occupancy(overall: dict[str, Any]) -> list[str]:
    occ = overall['occupancy']
    if 'skipped' in occ:
        return ['## Occupancy (POP-3D)', '', f'skipped: {occ["skipped"]}', '']
    return ['## Occupancy (POP-3D ray-cast protocol)', '', f'prediction: {occ["source"]}', ''] + _table(
        ['IoU', 'precision', 'recall', 'mIoU (classes + empty)', 'observed voxels', 'occupied voxels'],
        [[_pct(occ['iou']), _pct(occ['precision']), _pct(occ['recall']), _pct(occ['miou']),
          occ['observed_voxels'], occ['occupied_voxels']]])


def _retrieval(overall: dict[str, Any]) -> list[str]:
    ret = overall['retrieval']
    if 'skipped' in ret:
        return ['## Retrieval (POP-3D)', '', f'skipped: {ret["skipped"]}', '']
    rows = [[q, _pct(v['ap']), v['positives'], v['points']] for q, v in ret['queries'].items()]
    return ['## Retrieval (POP-3D): AP per query', '', f'mAP over queries with positives: {_pct(ret["map"])}',
            ''] + _table(['query', 'AP', 'positives', 'points'], rows)


def _instances(overall: dict[str, Any]) -> list[str]:
    out = ['## Class-agnostic instances (ScanNet / UnScene3D AP)', '']
    rows = []
    for key in ('instances', 'instances_masks'):
        r = overall.get(key)
        if not r:
            continue
        if 'skipped' in r:
            rows.append([key, 'skipped: ' + r['skipped'], '', '', '', ''])
        else:
            rows.append([r['predictions'], _pct(r['ap']), _pct(r['ap50']), _pct(r['ap25']), r['num_gt'],
                         r['num_pred']])
    out += _table(['predictions', 'AP', 'AP50', 'AP25', 'GT instances', 'predictions scored'], rows)
    r = overall.get('instances') or {}
    if 'ap_thresholds' in r:
        thresholds = ', '.join(f'{t:.2f}' for t in r['ap_thresholds'])
        out += [f'AP = mean over IoU thresholds {thresholds} (the ScanNet script\'s np.arange(0.5, 0.95, '
                f'0.05)); minimum region {r["min_region_size"]} points.', '']
    return out


def _per_bag(report: dict[str, Any]) -> list[str]:
    rows = []
    for name, bag in report['bags'].items():
        s = bag['summary']
        h = bag['headline']
        rows.append([name, s['frames'], _pct(s['points']['fraction_evaluated_all']),
                     _pct(s['points']['fraction_evaluated_front_view']), _pct(h['miou_all_points']),
                     _pct(h['miou_front_view']), _pct(h['occupancy_iou']), _pct(h['instance_ap50']),
                     _num(h['frames_per_s']), 'resumed' if bag.get('resumed') else ''])
    header = ['bag', 'frames', 'evaluated (all)', 'evaluated (front view)', 'mIoU all', 'mIoU front view',
              'occ. IoU', 'AP50', 'frames/s', '']
    return ['## Per bag', ''] + _table(header, rows)


def _speed(overall: dict[str, Any]) -> list[str]:
    sp = overall['speed']
    rows = [[k, v.get('p50'), v.get('p90'), v.get('p99'), v.get('mean')] for k, v in sp['latency_ms'].items()]
    text = (f'eval {_num(sp["frames_per_s"])} frames/s; pipeline alone {_num(sp["pipeline_frames_per_s"])} '
            f'frames/s')
    return ['## Speed', '', text, ''] + _table(['stage (ms)', 'p50', 'p90', 'p99', 'mean'], rows)


def _skipped(overall: dict[str, Any]) -> list[str]:
    items = overall['skipped']
    errors = overall.get('errors') or []
    if not items and not errors:
        return []
    out = ['## Skipped', '']
    out += [f'- error: {e}' for e in errors]
    out += [f'- {e["what"]} at {e["where"]}: {e["why"]}' for e in items[:50]]
    if len(items) > 50:
        out.append(f'- ... {len(items) - 50} more in report.json')
    return out + ['']


def write_markdown(path: Path, report: dict[str, Any]) -> Path:
    """Write ``report.md`` atomically."""
    return atomic_write_text(path, render_markdown(report))


__all__ = ['HEADLINE_ROWS', 'REPORT_JSON', 'REPORT_MD', 'meaningless_reason', 'render_markdown', 'write_json',
           'write_markdown']
