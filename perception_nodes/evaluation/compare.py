"""``ovp eval --compare A B``: headline and per-class IoU differences of two reports, printed and plotted.

Differences are B - A (percentage points for the ratios). Per-class IoU is compared on the headline
protocol of A (the front view or all points) over the classes both reports have; classes without ground
truth in either report have no delta. Written to the output folder: ``compare.json``, ``compare.md`` and
``compare_class_iou.png`` (both systems' bars side by side).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from perception_nodes.atomic import atomic_write_text
from perception_nodes.evaluation.report import HEADLINE_ROWS

PERCENT_KEYS = {key for key, _, fmt in HEADLINE_ROWS if fmt.__name__ == '_pct'}


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``report.json`` (or its folder); ValueError when it is not an ``ovp eval`` report."""
    p = Path(path)
    if p.is_dir():
        p = p / 'report.json'
    if not p.is_file():
        raise FileNotFoundError(f'report not found: {p}')
    data = json.loads(p.read_text(encoding='utf-8'))
    if not isinstance(data, dict) or data.get('tool') != 'ovp eval' or 'headline' not in data:
        raise ValueError(f'{p} is not an ovp eval report.json')
    data['_path'] = str(p)
    return data


def _name(report: dict[str, Any], default: str) -> str:
    lab = report.get('labeller', {}).get('labeller', '?')
    return f'{default}: {lab} ({Path(report["_path"]).parent.name})'


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Headline values of A and B with B - A, and per-class IoU deltas on A's headline protocol."""
    rows = {}
    for key, label, _ in HEADLINE_ROWS:
        va, vb = a['headline'].get(key), b['headline'].get(key)
        if va is None and vb is None:
            continue
        delta = None if va is None or vb is None else vb - va
        rows[key] = {'label': label, 'a': va, 'b': vb, 'delta': delta}
    protocol = a['headline'].get('protocol', 'all')
    sem_a = a['overall']['semantic'].get(protocol, {}).get('per_class') or {}
    sem_b = b['overall']['semantic'].get(protocol, {}).get('per_class') or {}
    classes = [c for c in a['label_map']['classes'] if c in sem_b]
    per_class = {}
    for c in classes:
        ia, ib = _iou(sem_a.get(c)), _iou(sem_b.get(c))
        per_class[c] = {'a': ia, 'b': ib, 'delta': None if ia is None or ib is None else ib - ia}
    warnings = []
    for side, r in (('A', a), ('B', b)):
        if r['header'].get('meaningless'):
            warnings.append(f'{side}: labels MEANINGLESS ({r["header"]["meaningless"]})')
    if a['label_map']['name'] != b['label_map']['name']:
        warnings.append(f'different label maps: {a["label_map"]["name"]} vs {b["label_map"]["name"]}')
    if sorted(x['path'] for x in a['bags'].values()) != sorted(x['path'] for x in b['bags'].values()):
        warnings.append('the reports scored different bags')
    return {'a': a['_path'], 'b': b['_path'], 'a_name': _name(a, 'A'), 'b_name': _name(b, 'B'),
            'protocol': protocol, 'headline': rows, 'per_class_iou': per_class, 'warnings': warnings}


def _iou(entry: Any) -> float | None:
    if not entry or not entry.get('gt_points'):
        return None
    return entry.get('iou')


def _fmt(key: str, v: Any, delta: bool = False) -> str:
    if v is None:
        return '-'
    if key in PERCENT_KEYS:
        return f'{100 * v:+.1f}' if delta else f'{100 * v:.1f}'
    return f'{v:+.2f}' if delta else f'{v:.2f}' if isinstance(v, float) else str(v)


def format_comparison(cmp: dict[str, Any]) -> str:
    """Format the headline and the per-class IoU deltas as a table (the terminal, compare.md)."""
    lines = [f'A = {cmp["a_name"]}', f'B = {cmp["b_name"]}'] + [f'WARNING: {w}' for w in cmp['warnings']]
    lines.append('')
    lines += ['| metric | A | B | B - A |', '| --- | --- | --- | --- |']
    for key, r in cmp['headline'].items():
        lines.append(f'| {r["label"]} | {_fmt(key, r["a"])} | {_fmt(key, r["b"])} | '
                     f'{_fmt(key, r["delta"], True)} |')
    lines += ['', f'per-class IoU ({cmp["protocol"].replace("_", " ")}, %)', '', '| class | A | B | B - A |',
              '| --- | --- | --- | --- |']
    for c, r in cmp['per_class_iou'].items():
        lines.append(f'| {c} | {_fmt("miou", r["a"])} | {_fmt("miou", r["b"])} | '
                     f'{_fmt("miou", r["delta"], True)} |')
    return '\n'.join(lines) + '\n'


def write_comparison(out: str | os.PathLike, cmp: dict[str, Any]) -> dict[str, str]:
    """Write compare.json, compare.md and compare_class_iou.png into ``out``; returns name -> path."""
    from perception_nodes.metrics.plots import plot_class_iou
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {'json': str(folder / 'compare.json'), 'md': str(folder / 'compare.md')}
    atomic_write_text(paths['json'], json.dumps(cmp, indent=1) + '\n')
    atomic_write_text(paths['md'], '# ovp eval comparison\n\n' + format_comparison(cmp))
    classes = list(cmp['per_class_iou'])
    if classes:
        def values(side: str) -> np.ndarray:
            values = [cmp['per_class_iou'][c][side] for c in classes]
            return np.array([np.nan if v is None else v for v in values])
        paths['png'] = str(plot_class_iou({cmp['a_name']: values('a'), cmp['b_name']: values('b')}, classes,
                                          folder / 'compare_class_iou.png',
                                          title=f'per-class IoU, {cmp["protocol"].replace("_", " ")}'))
    return paths


__all__ = ['compare_reports', 'format_comparison', 'load_report', 'write_comparison']
