"""The one classifier: labels, scores and "unknown" against a loop over points and hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception_nodes.classify import classify, cosine_logits
from perception_nodes.outputs import UNKNOWN_LABEL


def test_against_a_loop_over_points():
    """Label = argmax cosine (Affinity3D Eq. 3, 13/18); score = the winning softmax probability."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(40, 6, generator=g) * 5
    text = torch.randn(5, 6, generator=g) * 3
    result = classify(emb, text, logit_scale=10.0)
    for i in range(len(emb)):
        cos = [float(emb[i] @ t / (emb[i].norm() * t.norm())) for t in text]
        best = max(range(len(cos)), key=cos.__getitem__)
        total = sum(math.exp(10.0 * (c - cos[best])) for c in cos)
        assert result.labels[i].item() == best
        assert result.scores[i].item() == pytest.approx(1.0 / total, rel=1e-5)


def test_threshold_and_prenormalised_rows_against_a_softmax_reference():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(25, 8)).astype(np.float32)
    t = rng.normal(size=(4, 8)).astype(np.float32)
    scale, thr = 10.0, 0.6
    out = classify(torch.from_numpy(f), torch.from_numpy(t), scale, thr)
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    pre = classify(torch.from_numpy(unit), torch.from_numpy(t), scale, thr, normalized=True)
    assert torch.equal(pre.labels, out.labels) and torch.allclose(pre.scores, out.scores, atol=1e-6)
    for i in range(len(f)):
        cos = [float(f[i] @ t[k] / np.linalg.norm(f[i]) / np.linalg.norm(t[k])) for k in range(4)]
        e = [math.exp(scale * x) for x in cos]
        p = [x / sum(e) for x in e]
        k = int(np.argmax(p))
        assert out.scores[i].item() == pytest.approx(p[k], rel=1e-4)
        assert out.labels[i].item() == (k if p[k] >= thr else UNKNOWN_LABEL)
    assert (out.labels == UNKNOWN_LABEL).any() and (out.labels != UNKNOWN_LABEL).any()


def test_known_answer_and_unknown_rows():
    # cosines of row 0: (0, 1) -> class 1 with p = e^s / (e^s + 1); row 1 -> class 0 likewise
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [float('nan'), 1.0], [1.0, 1.0]])
    text = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    r = classify(emb, text, logit_scale=2.0)
    p = math.exp(2.0) / (math.exp(2.0) + 1.0)
    assert r.labels.tolist()[:2] == [1, 0]
    assert r.scores[:2].tolist() == pytest.approx([p, p])
    # zero and non-finite rows have no feature: unknown with score 0
    assert r.labels[2:4].tolist() == [UNKNOWN_LABEL, UNKNOWN_LABEL] and r.scores[2:4].tolist() == [0.0, 0.0]
    # a tie (cosines equal): p = 0.5; under a threshold of 0.6 it is unknown but keeps its score
    thresholded = classify(emb, text, logit_scale=2.0, unknown_threshold=0.6)
    assert thresholded.labels[4].item() == UNKNOWN_LABEL
    assert thresholded.scores[4].item() == pytest.approx(0.5)
    assert thresholded.labels[:2].tolist() == [1, 0]          # p = 0.88 stays labelled


def test_logits_are_differentiable_and_scaled():
    f = torch.tensor([[3.0, 4.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logits = cosine_logits(f, t, 100.0)
    assert logits.tolist()[0] == pytest.approx([60.0, 80.0])
    logits.sum().backward()
    assert torch.isfinite(f.grad).all()


def test_bad_input():
    with pytest.raises(ValueError, match='do not match'):
        classify(torch.randn(4, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match='empty'):
        classify(torch.randn(4, 3), torch.randn(0, 3))
    empty = classify(torch.zeros(0, 3), torch.randn(2, 3))
    assert empty.labels.numel() == 0 and empty.scores.numel() == 0


def test_unit_rows_equals_the_masked_division_bitwise():
    """Issue 14: rows divided in place and invalid rows zeroed, exactly as the broadcast torch.where did."""
    from perception_nodes.classify import unit_rows
    x = torch.randn(500, 24, generator=torch.Generator().manual_seed(0)) * 7
    x[3] = float('nan')
    x[4, 2] = float('inf')
    x[5] = 0.0
    x[6] = 1e-20
    norms = torch.linalg.vector_norm(x, dim=1)
    ok = torch.isfinite(norms) & (norms > 1e-12)
    want = torch.where(ok[:, None], x / norms.clamp_min(1e-12)[:, None], torch.zeros_like(x))
    unit, got_ok = unit_rows(x)
    assert torch.equal(got_ok, ok) and torch.equal(unit, want)
    unit, got_ok = unit_rows(x[ok])                           # every row valid: no masking at all
    assert got_ok.all() and torch.equal(unit, want[ok])


@pytest.mark.parametrize('n, d, k', [(5000, 64, 20), (300, 512, 3), (40, 8, 1), (1, 4, 200)])
def test_cpu_top_class_equals_softmax_max(n, d, k):
    """Issue 14: the (K, n) numpy layout gives softmax(logits).max's labels and scores (float rounding)."""
    g = torch.Generator().manual_seed(n + k)
    feats, text = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    got = classify(feats, text, 100.0, 0.3)
    probs = torch.softmax(cosine_logits(feats, text, 100.0), dim=1)
    scores, labels = probs.max(dim=1)
    torch.testing.assert_close(got.scores, scores, rtol=1e-5, atol=1e-6)
    labels = torch.where(scores < 0.3, torch.full_like(labels, UNKNOWN_LABEL), labels)
    logits = cosine_logits(feats, text, 100.0)
    top2 = logits.topk(min(2, k), dim=1).values
    clear = (top2[:, 0] - top2[:, -1] > 1e-3) | torch.tensor(k == 1)   # no near-tie between the best two
    sure = (scores - 0.3).abs() > 1e-5                                    # not at the unknown threshold
    assert torch.equal(got.labels[clear & sure], labels[clear & sure])
    assert (clear & sure).float().mean() > 0.9
    twins = torch.cat([text[:1], text[:1], text[1:]])                     # an exact tie: the first wins
    assert (classify(text[:1].repeat(4, 1), twins).labels == 0).all()
