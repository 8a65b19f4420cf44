"""Language-driven 3D retrieval: average precision per free-text query, mAP over queries (POP-3D Sec. 4.1).

POP-3D scores every LiDAR point of a scene by the similarity of its feature to the query's text
embedding; the query's ground truth is a point mask, every other point of the scene is a negative, and
AP is read off the precision-recall curve; mAP is the mean over queries. The paper does not say which AP
form it uses, so this module fixes one:

**AP is the non-interpolated, step-wise form** (the one ``sklearn.metrics.average_precision_score``
computes): with the distinct scores as thresholds, in decreasing order,

    AP = sum_n (R_n - R_{n-1}) P_n,

P_n / R_n the precision / recall of the points scoring >= the n-th threshold (R_0 = 0). Points with equal
scores enter together (one threshold), so the result does not depend on any tie-breaking order. It
equals the mean, over positive points, of the precision at the threshold of that point's score. No
interpolation (VOC's monotone envelope would only raise it).

- NaN similarity (a point with no feature) ranks lowest: it is treated as ``-inf``, tied with every other
  NaN / ``-inf`` point of the query.
- A query with no positive point has no AP (NaN) and is left out of the mAP.
- The accumulator is keyed by query: use the query text to pool frames (one AP per query over a whole
  bag), or ``f'{scene}/{text}'`` for POP-3D's one-AP-per-annotated-sample protocol.

Streaming is **exact**: per query the accumulator keeps, for each distinct score, the number of positive and
negative points with that score (a sorted table, merged lazily with amortised doubling). Memory is at most
3 numbers per distinct score, i.e. bounded by the number of points ranked (about 24 MB for 1e6 distinct
scores); ``decimals`` rounds scores first, bounding the table by the number of representable rounded
values: the AP is then exact for the rounded scores (points whose scores round alike are tied), which is
a different ranking, not an approximation with a bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from perception_nodes.metrics._common import (as_mask, as_numpy, check_state, decode_array, encode_array,
                                              json_float, nanmean)

_MIN_CONSOLIDATE = 1 << 16


def _compress(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct scores with per-score positive and negative counts."""
    if scores.size == 0:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    uniq, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse[positive], minlength=uniq.size).astype(np.int64)
    neg = np.bincount(inverse[~positive], minlength=uniq.size).astype(np.int64)
    return uniq, pos, neg


_Table = tuple[np.ndarray, np.ndarray, np.ndarray]


def _combine(parts: list[_Table]) -> _Table:
    if len(parts) == 1:
        return parts[0]
    scores = np.concatenate([p[0] for p in parts])
    uniq, inverse = np.unique(scores, return_inverse=True)
    # float64 weights hold integer counts exactly up to 2**53
    pos = np.bincount(inverse, weights=np.concatenate([p[1] for p in parts]), minlength=uniq.size)
    neg = np.bincount(inverse, weights=np.concatenate([p[2] for p in parts]), minlength=uniq.size)
    return uniq, pos.astype(np.int64), neg.astype(np.int64)


class _QueryTable:
    """Distinct score -> (positives, negatives), consolidated lazily."""

    def __init__(self) -> None:
        self.table = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pending_size = 0

    def add(self, part: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        if part[0].size == 0:
            return
        self.pending.append(part)
        self.pending_size += part[0].size
        if self.pending_size > max(self.table[0].size, _MIN_CONSOLIDATE):
            self.consolidate()

    def consolidate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.pending:
            self.table = _combine([self.table, *self.pending])
            self.pending, self.pending_size = [], 0
        return self.table


@dataclass
class RetrievalCurve:
    """Precision-recall points of one query, one per distinct score threshold (decreasing score)."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


@dataclass
class RetrievalResult:
    """AP per query (NaN without positives) and mAP over queries with positives."""

    ap: dict[str, float]
    map: float
    positives: dict[str, int]
    points: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {'map': json_float(self.map),
                'queries': {q: {'ap': json_float(self.ap[q]), 'positives': self.positives[q],
                                'points': self.points[q]} for q in self.ap}}


def _curve_from_table(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> RetrievalCurve:
    order = slice(None, None, -1)                  # decreasing score
    tp = np.cumsum(pos[order])
    fp = np.cumsum(neg[order])
    total = tp[-1] if tp.size else 0
    with np.errstate(invalid='ignore', divide='ignore'):
        precision = tp / (tp + fp)
        recall = tp / total if total else np.full(tp.shape, np.nan)
    return RetrievalCurve(precision=precision, recall=recall, thresholds=scores[order])


def average_precision_from_counts(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
    """Step-wise AP from distinct ``scores`` (any order) with positive / negative counts per score."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores)
    pos = np.asarray(pos, dtype=np.int64)[order]
    neg = np.asarray(neg, dtype=np.int64)[order]
    total = int(pos.sum())
    if total == 0:
        return float('nan')
    c = _curve_from_table(scores[order], pos, neg)
    return float(np.sum(pos[::-1] / total * c.precision))


def average_precision(scores: Any, positive: Any) -> float:
    """Step-wise AP of one ranking (NaN scores rank lowest); NaN when there is no positive."""
    s = as_numpy(scores).astype(np.float64).reshape(-1)
    p = as_mask(positive, s.size, 'positive')
    return average_precision_from_counts(*_compress(np.where(np.isnan(s), -np.inf, s), p))


class RetrievalAccumulator:
    """Exact streaming AP per query: ``update(query, scores, positive, mask)`` per frame, ``compute()``."""

    kind = 'retrieval'
    version = 1

    def __init__(self, decimals: int | None = None) -> None:
        self.decimals = None if decimals is None else int(decimals)
        self._tables: dict[str, _QueryTable] = {}

    @property
    def queries(self) -> list[str]:
        """Query keys in insertion order."""
        return list(self._tables)

    def update(self, query: str, scores: Any, positive: Any, mask: Any | None = None) -> int:
        """Add one frame's ranking for ``query``; returns the number of points ranked.

        ``scores``: per-point similarity (float, NaN = no feature); ``positive``: bool ground-truth mask;
        ``mask``: optional bool, the points to rank (others are left out entirely).
        """
        s = as_numpy(scores).astype(np.float64).reshape(-1)
        p = as_mask(positive, s.size, 'positive')
        if mask is not None:
            keep = as_mask(mask, s.size)
            s, p = s[keep], p[keep]
        s = np.where(np.isnan(s), -np.inf, s)
        if self.decimals is not None:
            s = np.round(s, self.decimals)
        self._tables.setdefault(str(query), _QueryTable()).add(_compress(s, p))
        return int(s.size)

    def _table(self, query: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if query not in self._tables:
            raise KeyError(f'no ranking was added for query {query!r}')
        return self._tables[query].consolidate()

    def merge(self, other: RetrievalAccumulator) -> RetrievalAccumulator:
        """Add another accumulator's rankings (same ``decimals``); returns self."""
        if not isinstance(other, RetrievalAccumulator) or other.decimals != self.decimals:
            raise ValueError('can only merge retrieval accumulators with the same decimals')
        for q in other.queries:
            self._tables.setdefault(q, _QueryTable()).add(other._table(q))
        return self

    def curve(self, query: str) -> RetrievalCurve:
        """Return the precision-recall curve of ``query`` (one point per distinct score)."""
        return _curve_from_table(*self._table(query))

    def compute(self) -> RetrievalResult:
        """AP per query and mAP."""
        ap, positives, points = {}, {}, {}
        for q in self.queries:
            scores, pos, neg = self._table(q)
            ap[q] = average_precision_from_counts(scores, pos, neg)
            positives[q] = int(pos.sum())
            points[q] = int(pos.sum() + neg.sum())
        return RetrievalResult(ap=ap, map=nanmean(np.array(list(ap.values()))), positives=positives,
                               points=points)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (the per-query tables as base64 arrays)."""
        queries = {}
        for q in self.queries:
            scores, pos, neg = self._table(q)
            queries[q] = {'scores': encode_array(scores), 'pos': encode_array(pos), 'neg': encode_array(neg)}
        return {'kind': self.kind, 'version': self.version, 'decimals': self.decimals, 'queries': queries}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RetrievalAccumulator:
        """Rebuild from :meth:`state_dict`."""
        check_state(state, cls.kind, cls.version)
        acc = cls(decimals=state['decimals'])
        for q, t in state['queries'].items():
            table = _QueryTable()
            table.table = (decode_array(t['scores']).astype(np.float64),
                           decode_array(t['pos']).astype(np.int64), decode_array(t['neg']).astype(np.int64))
            acc._tables[q] = table
        return acc


__all__ = ['RetrievalAccumulator', 'RetrievalCurve', 'RetrievalResult', 'average_precision',
           'average_precision_from_counts']
