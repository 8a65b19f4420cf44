"""The report's figures (PNG, atomic, matplotlib Agg via ``metrics.plots``).

``confusion.png`` (headline protocol, row-normalised), ``class_iou.png`` (per-class IoU, all points next to
the front view), ``retrieval_pr.png`` (precision-recall per query), ``instances_pr.png`` (class-agnostic
instance precision-recall at IoU 0.5 and 0.25). Bird's-eye renders are drawn during the run
(:mod:`perception_nodes.evaluation.bev`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perception_nodes.evaluation.scoring import BagScore
from perception_nodes.evaluation.summary import PROTOCOLS, SummaryContext

MAX_CURVES = 12


def report_figures(folder: Path, score: BagScore, summary: dict[str, Any], ctx: SummaryContext,
                   note: str = '') -> dict[str, str]:
    """Draw every figure that has data; returns name -> path (relative to ``folder``).

    ``note`` (e.g. "labels MEANINGLESS") is added to the titles of the figures that depend on the labels.
    """
    from perception_nodes.metrics.plots import plot_class_iou, plot_confusion, plot_pr_curves
    names = ctx.class_names
    out: dict[str, str] = {}
    suffix = f' - {note}' if note else ''
    sem = summary['semantic']
    main = ctx.headline_protocol
    if sem[main].get('points'):
        acc = score.semantic[PROTOCOLS[main]]
        plot_confusion(acc.confusion, names, folder / 'confusion.png',
                       title=f'confusion, {main.replace("_", " ")} (row-normalised, %){suffix}')
        out['confusion'] = 'confusion.png'
    bars = {}
    for protocol in ('all', 'front_view'):
        if sem[protocol].get('points'):
            acc = score.semantic[PROTOCOLS[protocol]]
            bars[protocol.replace('_', ' ')] = np.where(acc.confusion.sum(1) > 0, acc.compute().iou, np.nan)
    if bars:
        plot_class_iou(bars, names, folder / 'class_iou.png', title=f'per-class IoU{suffix}')
        out['class_iou'] = 'class_iou.png'
    if score.retrieval is not None and score.retrieval.queries:
        result = score.retrieval.compute()
        ranked = sorted((q for q in result.ap if not np.isnan(result.ap[q])),
                        key=lambda q: -result.positives[q])[:MAX_CURVES]
        if ranked:
            plot_pr_curves({q: score.retrieval.curve(q) for q in ranked}, folder / 'retrieval_pr.png',
                           title=f'retrieval precision-recall (points){suffix}',
                           ap={q: result.ap[q] for q in ranked})
            out['retrieval_pr'] = 'retrieval_pr.png'
    curves, aps = {}, {}
    for label, acc in (('segments', score.instances), ('masks file', score.instances_masks)):
        if acc is None or acc.scenes == 0 or acc.num_gt == 0:
            continue
        for t in (0.5, 0.25):
            key = f'{label} IoU>{t:.2f}'
            curves[key] = acc.curve(t)
            aps[key] = acc.average_precision(t)
    if curves:
        plot_pr_curves(curves, folder / 'instances_pr.png',
                       title='class-agnostic instances precision-recall', ap=aps)
        out['instances_pr'] = 'instances_pr.png'
    return out


__all__ = ['report_figures']
