"""Retrieval AP (POP-3D): hand-computed rankings, sklearn, a slow reference, exact streaming."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

import perception_nodes.metrics.retrieval as retrieval
from perception_nodes.metrics.retrieval import RetrievalAccumulator, average_precision


def _reference(scores, positive):
    """Step-wise AP by plain loops: for each distinct threshold (decreasing), precision x recall gain."""
    s = [-math.inf if math.isnan(v) else v for v in scores]
    total = sum(positive)
    if total == 0:
        return math.nan
    ap, prev_recall = 0.0, 0.0
    for thr in sorted(set(s), reverse=True):
        tp = sum(1 for v, p in zip(s, positive) if v >= thr and p)
        n = sum(1 for v in s if v >= thr)
        recall = tp / total
        ap += (recall - prev_recall) * tp / n
        prev_recall = recall
    return ap


def test_hand_computed_rankings():
    # ranking +, -, +, -: precision at the positives 1/1 and 2/3, each positive 1/2 of recall
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert average_precision([0.9, 0.8, 0.7, 0.6], np.array([1, 0, 1, 0], bool)) == pytest.approx(5 / 6)
    # a tie at 0.5 between a positive and a negative enters as one threshold: P = 1/2 at R = 1/2,
    # then the second positive: P = 2/3 at R = 1 -> AP = 1/2 * 1/2 + 1/2 * 2/3 = 7/12
    assert average_precision([0.5, 0.5, 0.2], np.array([1, 0, 1], bool)) == pytest.approx(7 / 12)
    # NaN ranks lowest: the positive without a feature comes after the negative -> P = 1/2 at R = 1
    assert average_precision([math.nan, 0.1], np.array([1, 0], bool)) == pytest.approx(0.5)
    # perfect and worst rankings
    assert average_precision([3, 2, 1], np.array([1, 1, 0], bool)) == 1.0
    assert average_precision([1, 2, 3], np.array([1, 0, 0], bool)) == pytest.approx(1 / 3)
    assert math.isnan(average_precision([1, 2], np.array([0, 0], bool)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 60), decimals=st.sampled_from([None, 1, 2]),
       nan_rate=st.sampled_from([0.0, 0.2]))
def test_matches_sklearn_and_reference(seed, n, decimals, nan_rate):
    rng = np.random.default_rng(seed)
    scores = rng.random(n) * 2 - 1
    if decimals is not None:
        scores = np.round(scores, decimals)              # many ties
    scores[rng.random(n) < nan_rate] = np.nan
    positive = rng.random(n) < 0.3
    if not positive.any():
        positive[rng.integers(n)] = True
    ours = average_precision(scores, positive)
    assert ours == pytest.approx(_reference(scores.tolist(), positive.tolist()), abs=1e-12)
    # sklearn has no NaN: put them below every finite score (tied), which is the documented rule
    finite = np.where(np.isnan(scores), -10.0, scores)
    assert ours == pytest.approx(average_precision_score(positive, finite), abs=1e-12)


def test_streaming_is_exact():
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(12):
        n = int(rng.integers(50, 400))
        s = np.round(rng.normal(size=n), 2).astype(np.float32)      # float32 with ties, like real features
        s[rng.random(n) < 0.05] = np.nan
        frames.append((s, rng.random(n) < 0.2))
    all_s = np.concatenate([f[0] for f in frames])
    all_p = np.concatenate([f[1] for f in frames])
    expected = average_precision(all_s, all_p)
    assert expected == pytest.approx(_reference(all_s.astype(np.float64).tolist(), all_p.tolist()))
    acc = RetrievalAccumulator()
    for s, p in frames:
        acc.update('tire', torch.from_numpy(s), torch.from_numpy(p))
    assert acc.compute().ap['tire'] == pytest.approx(expected, abs=1e-12)
    left, right = RetrievalAccumulator(), RetrievalAccumulator()
    for i, (s, p) in enumerate(frames):
        (left if i % 2 else right).update('tire', s, p)
    merged = RetrievalAccumulator.from_state(json.loads(json.dumps(left.merge(right).state_dict())))
    res = merged.compute()
    assert res.ap['tire'] == pytest.approx(expected, abs=1e-12)
    assert res.positives['tire'] == int(all_p.sum()) and res.points['tire'] == all_s.size


def test_lazy_consolidation_keeps_counts(monkeypatch):
    monkeypatch.setattr(retrieval, '_MIN_CONSOLIDATE', 8)
    rng = np.random.default_rng(4)
    s = rng.integers(0, 30, 2000).astype(np.float64)          # 30 distinct scores
    p = rng.random(2000) < 0.25
    acc = RetrievalAccumulator()
    for sl in np.array_split(np.arange(2000), 100):
        acc.update('q', s[sl], p[sl])
    scores, pos, neg = acc._table('q')
    assert scores.size == np.unique(s).size                    # memory: one row per distinct score
    assert int(pos.sum()) == int(p.sum()) and int(neg.sum()) == int((~p).sum())
    assert acc.compute().ap['q'] == pytest.approx(average_precision_score(p, s), abs=1e-12)


def test_map_over_queries_mask_and_decimals():
    acc = RetrievalAccumulator()
    acc.update('door', [0.9, 0.8, 0.7, 0.6], np.array([1, 0, 1, 0], bool))      # AP 5/6
    acc.update('tire', [0.1, 0.9, 0.5], np.array([1, 0, 0], bool),
               mask=np.array([True, False, True]))                             # ranks 0.5-, 0.1+: AP 1/2
    acc.update('nothing', [0.3, 0.2], np.array([0, 0], bool))                  # no positive: NaN
    r = acc.compute()
    assert r.ap['door'] == pytest.approx(5 / 6) and r.ap['tire'] == pytest.approx(0.5)
    assert math.isnan(r.ap['nothing'])
    assert r.map == pytest.approx((5 / 6 + 0.5) / 2)
    assert json.loads(json.dumps(r.to_dict()))['queries']['nothing']['ap'] is None
    # decimals: 0.51 and 0.49 round to 0.5 and tie -> the AP of the rounded ranking
    rounded = RetrievalAccumulator(decimals=0)
    rounded.update('q', [0.51, 0.49], np.array([0, 1], bool))
    assert rounded.compute().ap['q'] == pytest.approx(0.5)
    with pytest.raises(ValueError, match='decimals'):
        rounded.merge(RetrievalAccumulator())
    with pytest.raises(KeyError):
        acc.curve('unknown query')


def test_curve_points():
    acc = RetrievalAccumulator()
    acc.update('q', [0.9, 0.8, 0.7, 0.6], np.array([1, 0, 1, 0], bool))
    c = acc.curve('q')
    np.testing.assert_allclose(c.thresholds, [0.9, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(c.precision, [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(c.recall, [0.5, 0.5, 1, 1])


def test_million_points_one_query_is_fast_and_exact():
    rng = np.random.default_rng(0)
    n = 1_000_000
    s = rng.random(n).astype(np.float32)
    p = rng.random(n) < 0.001
    acc = RetrievalAccumulator()
    for sl in np.array_split(np.arange(n), 10):
        acc.update('q', s[sl], p[sl])
    assert acc.compute().ap['q'] == pytest.approx(average_precision_score(p, s.astype(np.float64)), abs=1e-12)
