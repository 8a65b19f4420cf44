"""Grounding similarity against a slow per-point reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception_nodes.runtime.query import similarity_scores


def test_matches_a_per_point_loop():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 8)).astype(np.float32)
    emb[3] = 0.0
    emb[7, 2] = np.nan
    q = rng.normal(size=8)
    sim = similarity_scores(torch.from_numpy(emb), q)
    for i, row in enumerate(emb):
        n = math.sqrt(sum(float(v) ** 2 for v in row))
        if not np.isfinite(n) or n == 0:
            assert np.isnan(sim[i])
            continue
        qn = math.sqrt(sum(float(b) ** 2 for b in q))
        ref = sum(float(a) * float(b) for a, b in zip(row, q)) / (n * qn)
        assert abs(sim[i] - ref) < 1e-5


def test_dimension_mismatch_and_zero_query():
    with pytest.raises(ValueError, match='dimensions'):
        similarity_scores(np.ones((2, 3)), np.ones(4))
    with pytest.raises(ValueError, match='zero'):
        similarity_scores(np.ones((2, 3)), np.zeros(3))
