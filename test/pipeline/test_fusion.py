"""Fusion maths against slow per-point references."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.classify import classify
from perception_nodes.pipeline.fusion import FeatureAccumulator, vote_segments


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_accumulator_matches_per_point_mean_of_visible_views():
    rng = np.random.default_rng(0)
    n, c, m = 40, 6, 3
    feats = _unit(rng.normal(size=(m, n, c))).astype(np.float32)
    visible = rng.random((m, n)) < 0.5
    acc = FeatureAccumulator(n)
    for v in range(m):
        idx = np.nonzero(visible[v])[0]
        acc.add(torch.from_numpy(idx), torch.from_numpy(feats[v, idx]))
    index, fused = acc.fused()
    seen_ref = visible.any(0)
    assert np.array_equal(acc.seen.numpy(), seen_ref)
    assert np.array_equal(index.numpy(), np.nonzero(seen_ref)[0])
    for row, i in enumerate(index.numpy()):
        views = [feats[v, i] for v in range(m) if visible[v, i]]
        ref = np.mean(views, axis=0)
        ref = ref / np.linalg.norm(ref)
        np.testing.assert_allclose(fused[row].numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(fused.numpy(), axis=1), 1.0, atol=1e-6)


def test_accumulator_single_view_any_order():
    rng = np.random.default_rng(4)
    idx = rng.permutation(50)[:20]
    feats = rng.normal(size=(20, 5)).astype(np.float32)
    acc = FeatureAccumulator(50)
    acc.add(torch.from_numpy(idx), torch.from_numpy(feats))
    index, fused = acc.fused()
    assert np.array_equal(index.numpy(), idx)                  # a single view keeps its own order
    np.testing.assert_allclose(fused.numpy(), _unit(feats), atol=1e-6)
    unit = torch.from_numpy(_unit(feats))
    acc = FeatureAccumulator(50)
    acc.add(torch.from_numpy(idx), unit, unit=True)
    assert acc.fused()[1] is unit                              # already unit: returned without a copy


def test_accumulator_rejects_mismatched_features():
    acc = FeatureAccumulator(5)
    acc.add(torch.tensor([0, 1]), torch.ones(2, 4))
    with pytest.raises(ValueError, match='feature width 3'):
        acc.add(torch.tensor([2]), torch.ones(1, 3))
    with pytest.raises(ValueError, match='n=2'):
        acc.add(torch.tensor([2, 3]), torch.ones(3, 4))


def test_empty_accumulator():
    index, fused = FeatureAccumulator(4).fused()
    assert index.numel() == 0 and fused.shape[0] == 0


def _vote_reference(segments, labels, scores):
    out_l, out_s = labels.copy(), scores.copy()
    for s in set(segments.tolist()) - {-1}:
        members = np.nonzero(segments == s)[0]
        known = [i for i in members if labels[i] != UNKNOWN_LABEL]
        if not known:
            continue
        counts = {}
        for i in known:
            counts[labels[i]] = counts.get(labels[i], 0) + 1
        best = max(counts.values())
        winner = min(k for k, v in counts.items() if v == best)
        out_l[members] = winner
        out_s[members] = np.mean([scores[i] for i in known if labels[i] == winner])
    return out_l, out_s


def test_majority_vote_matches_reference():
    rng = np.random.default_rng(2)
    n, k = 300, 5
    segments = rng.integers(-1, 12, n)
    labels = rng.integers(0, k, n).astype(np.int64)
    labels[rng.random(n) < 0.3] = UNKNOWN_LABEL
    labels[segments == 7] = UNKNOWN_LABEL     # a segment nobody saw keeps "unknown"
    scores = rng.random(n).astype(np.float32)
    scores[labels == UNKNOWN_LABEL] = 0
    got_l, got_s = vote_segments(torch.from_numpy(segments), torch.from_numpy(labels),
                                 torch.from_numpy(scores), k)
    ref_l, ref_s = _vote_reference(segments, labels, scores)
    assert np.array_equal(got_l.numpy(), ref_l)
    np.testing.assert_allclose(got_s.numpy(), ref_s, rtol=1e-5)
    assert (got_l.numpy()[segments == 7] == UNKNOWN_LABEL).all()
    ground = segments == -1
    assert np.array_equal(got_l.numpy()[ground], labels[ground])


def test_mean_feature_vote_classifies_segment_mean():
    t = torch.eye(3)
    # segment 0: two points leaning to class 0, one strongly to class 1 -> mean leans to class 0
    feats = torch.nn.functional.normalize(torch.tensor([[1.0, 0.8, 0], [1.0, 0.9, 0], [0.1, 1.0, 0],
                                                        [0, 0, 1.0]]), dim=1)
    index = torch.tensor([0, 1, 2, 4])
    segments = torch.tensor([0, 0, 0, 0, 1, -1])
    first = classify(feats, t, 10.0)
    labels = torch.full((6,), UNKNOWN_LABEL, dtype=torch.int64)
    scores = torch.zeros(6)
    labels[index], scores[index] = first.labels, first.scores
    out_l, out_s = vote_segments(segments, labels, scores, 3, mode='mean_feature', features=(index, feats),
                                 text_embeddings=t, logit_scale=10.0)
    mean = feats[:3].sum(0)
    ref = classify(mean[None], t, 10.0)
    assert out_l[:4].tolist() == [ref.labels.item()] * 4     # point 3 (unseen) gets its segment's label
    assert out_s[0].item() == pytest.approx(ref.scores.item())
    assert out_l[4].item() == 2 and out_l[5].item() == UNKNOWN_LABEL
    with pytest.raises(ValueError, match='voting mode'):
        vote_segments(segments, labels, scores, 3, mode='median')


@pytest.mark.parametrize('ids', [[0, 1, 2, 3, 1, 0], [5, 5, 9, 2, 9], [7], [3, 10**9, 3, 12], [0] * 4])
def test_compact_ids_is_uniques_inverse(ids):
    """Issue 14: the presence-table ranking equals torch.unique's inverse, dense or sparse ids."""
    from perception_nodes.pipeline.fusion import _compact_ids
    ids = torch.tensor(ids)
    uniq, inverse = torch.unique(ids, return_inverse=True)
    got, count = _compact_ids(ids)
    assert torch.equal(got, inverse) and count == uniq.numel()


def test_majority_vote_with_unvoted_segments_and_sparse_ids():
    segments = torch.tensor([-1, 10**9, 10**9, 4, 4, 4, 7, 7])
    labels = torch.tensor([2, 1, 1, UNKNOWN_LABEL, 0, 0, UNKNOWN_LABEL, UNKNOWN_LABEL])
    scores = torch.tensor([0.9, 0.5, 0.7, 0.0, 0.2, 0.4, 0.0, 0.0])
    out, sc = vote_segments(segments, labels, scores, 3)
    assert out.tolist() == [2, 1, 1, 0, 0, 0, UNKNOWN_LABEL, UNKNOWN_LABEL]
    assert torch.allclose(sc, torch.tensor([0.9, 0.6, 0.6, 0.3, 0.3, 0.3, 0.0, 0.0]))


def _former_torch_majority(segments, labels, scores, k):
    """The torch majority vote (before the numpy path): index_add_ sums in point order."""
    out_l, out_s = labels.clone(), scores.clone()
    idx = torch.nonzero(segments >= 0).reshape(-1)
    _, seg = torch.unique(segments[idx], return_inverse=True)
    s = int(seg.max()) + 1 if len(seg) else 0
    known = labels[idx] != UNKNOWN_LABEL
    flat = seg[known] * k + labels[idx[known]]
    votes = torch.zeros(s * k).index_add_(0, flat, torch.ones(len(flat)))
    sums = torch.zeros(s * k).index_add_(0, flat, scores[idx[known]])
    count, best = votes.view(s, k).max(dim=1)
    score = sums.view(s, k).gather(1, best[:, None]).squeeze(1) / count.clamp(min=1)
    member = (count > 0)[seg]
    out_l[idx[member]], out_s[idx[member]] = best[seg[member]], score[seg[member]]
    return out_l, out_s


@pytest.mark.parametrize('seed, ids', [(0, 12), (1, 3), (2, 10**7), (3, 200)])
def test_numpy_majority_vote_equals_the_torch_vote_bitwise(seed, ids):
    """Issue 14: the numpy path gives the torch path's labels and float32 scores exactly."""
    rng = np.random.default_rng(seed)
    n, k = 4000, 7
    segments = torch.from_numpy(rng.choice(rng.integers(0, ids, 40), n) * (rng.random(n) > 0.2) -
                                (rng.random(n) < 0.2))
    labels = torch.from_numpy(rng.integers(0, k, n))
    labels[torch.from_numpy(rng.random(n) < 0.4)] = UNKNOWN_LABEL
    scores = torch.from_numpy(rng.random(n).astype(np.float32))
    got_l, got_s = vote_segments(segments, labels, scores, k)
    want_l, want_s = _former_torch_majority(segments, labels, scores, k)
    assert torch.equal(got_l, want_l) and torch.equal(got_s, want_s)
    ref_l, _ = _vote_reference(segments.numpy(), labels.numpy(), scores.numpy())
    assert np.array_equal(got_l.numpy(), ref_l)
