"""Report figures as PNG files, written atomically: confusion matrix, per-class IoU bars, PR curves.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch, safe in
threads and without a display) and written with :func:`perception_nodes.atomic.atomic_write`, so a crash
never leaves a half-written PNG under the final name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from perception_nodes.atomic import atomic_write

_MAX_CURVE_POINTS = 2000


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Render ``fig`` on an Agg canvas and write it to ``path`` as a PNG, atomically."""
    FigureCanvasAgg(fig)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=dpi), suffix='.png')


def _tick_step(n: int, max_labels: int = 60) -> int:
    return max(1, int(np.ceil(n / max_labels)))


def plot_confusion(confusion: Any, class_names: Sequence[str], path: str | os.PathLike, title: str = '',
                   dpi: int = 100) -> Path:
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction) as a PNG.

    ``confusion`` is (K, K) or (K, K+1) with the last column "unknown" (as the semantic accumulator keeps
    it). Rows without ground truth stay empty. Large vocabularies label every n-th class.
    """
    conf = np.asarray(confusion, dtype=np.float64)
    k = len(class_names)
    if conf.ndim != 2 or conf.shape[0] != k or conf.shape[1] not in (k, k + 1):
        raise ValueError(f'confusion of shape {conf.shape} does not fit {k} classes')
    cols = list(class_names) + (['unknown'] if conf.shape[1] == k + 1 else [])
    rows = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    size = min(4.0 + 0.28 * k, 30.0)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot()
    im = ax.imshow(norm, vmin=0.0, vmax=1.0, cmap='viridis', interpolation='nearest', aspect='auto')
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='fraction of ground-truth row')
    step = _tick_step(len(cols))
    ax.set_xticks(range(0, len(cols), step), [cols[i] for i in range(0, len(cols), step)], rotation=90,
                  fontsize=7)
    ax.set_yticks(range(0, k, step), [class_names[i] for i in range(0, k, step)], fontsize=7)
    ax.set_xlabel('prediction')
    ax.set_ylabel('ground truth')
    if k <= 25:
        for i in range(k):
            for j in range(len(cols)):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f'{100 * norm[i, j]:.0f}', ha='center', va='center', fontsize=6,
                            color='black' if norm[i, j] > 0.5 else 'white')
    ax.set_title(title or 'confusion (row-normalised, %)')
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def plot_class_iou(ious: Mapping[str, Sequence[float]] | Sequence[float], class_names: Sequence[str],
                   path: str | os.PathLike, title: str = '', dpi: int = 100) -> Path:
    """Per-class IoU bars; several systems (e.g. ``{'teacher': iou_t, 'student': iou_s}``) side by side.

    IoU values in [0, 1] (NaN = class absent: no bar, an 'n/a' mark); the legend gives each system's
    mean over the classes with a value.
    """
    systems = dict(ious) if isinstance(ious, Mapping) else {'IoU': ious}
    if not systems:
        raise ValueError('no IoU values to plot')
    k = len(class_names)
    values = {name: np.asarray(v, dtype=np.float64).reshape(-1) for name, v in systems.items()}
    for name, v in values.items():
        if v.size != k:
            raise ValueError(f'{name!r}: {v.size} IoU values for {k} classes')
    fig = Figure(figsize=(min(4.0 + 0.35 * k * max(1, len(values)) ** 0.5, 40.0), 4.8))
    ax = fig.add_subplot()
    width = 0.8 / len(values)
    x = np.arange(k)
    for s, (name, v) in enumerate(values.items()):
        pos = x - 0.4 + width * (s + 0.5)
        finite = ~np.isnan(v)
        mean = float(v[finite].mean()) if finite.any() else float('nan')
        ax.bar(pos[finite], 100 * v[finite], width=width, label=f'{name} (mean {100 * mean:.1f})')
        for p in pos[~finite]:
            ax.text(p, 1.0, 'n/a', rotation=90, ha='center', va='bottom', fontsize=6)
    step = _tick_step(k, 100)
    ax.set_xticks(x[::step], [class_names[i] for i in range(0, k, step)], rotation=90, fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel('IoU (%)')
    ax.set_xlim(-0.6, k - 0.4)
    ax.legend(fontsize=8, loc='upper right')
    ax.set_title(title or 'per-class IoU')
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def _as_pr(curve: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(curve, 'precision') and hasattr(curve, 'recall'):
        p, r = curve.precision, curve.recall
    else:
        p, r = curve
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    r = np.asarray(r, dtype=np.float64).reshape(-1)
    if p.size != r.size:
        raise ValueError(f'{p.size} precision values for {r.size} recall values')
    if p.size > _MAX_CURVE_POINTS:                       # thin for drawing only
        keep = np.unique(np.linspace(0, p.size - 1, _MAX_CURVE_POINTS).round().astype(np.int64))
        p, r = p[keep], r[keep]
    return p, r


def plot_pr_curves(curves: Mapping[str, Any], path: str | os.PathLike, title: str = '',
                   ap: Mapping[str, float] | None = None, dpi: int = 100) -> Path:
    """Precision-recall curves, one line per entry (retrieval queries, instance AP thresholds, systems).

    Each value is an object with ``precision`` / ``recall`` arrays (``RetrievalCurve``,
    ``PrecisionRecallCurve``) or a ``(precision, recall)`` pair; ``ap`` optionally adds "AP x.x" to labels.
    """
    if not curves:
        raise ValueError('no curves to plot')
    fig = Figure(figsize=(6.0, 5.0))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        p, r = _as_pr(curve)
        order = np.argsort(r, kind='stable')
        label = name if ap is None or name not in ap else f'{name} (AP {100 * ap[name]:.1f})'
        ax.plot(r[order], p[order], drawstyle='steps-post', linewidth=1.2, label=label)
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel('recall')
    ax.set_ylabel('precision')
    ax.grid(alpha=0.3)
    if len(curves) <= 20:
        ax.legend(fontsize=7, loc='lower left')
    ax.set_title(title or 'precision-recall')
    fig.tight_layout()
    return save_figure(fig, path, dpi)


__all__ = ['plot_class_iou', 'plot_confusion', 'plot_pr_curves', 'save_figure']
