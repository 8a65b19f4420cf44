"""Language-driven grounding (POP-3D Sec. 3.4): per-point similarity of features to a text query."""
from __future__ import annotations

from typing import Any

import numpy as np


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def similarity_scores(embeddings: Any, text_embedding: Any) -> np.ndarray:
    """(N,) cosine similarity of each point embedding with the query (NaN where a point has no feature).

    POP-3D grounds a query by the dot product of the normalised 3D language features with the CLIP text
    embedding of the query; rows that are all-zero or non-finite (points seen by no camera) get NaN.
    """
    emb = _numpy(embeddings)
    q = _numpy(text_embedding).reshape(-1)
    if emb.ndim != 2 or emb.shape[1] != q.shape[0]:
        raise ValueError(f'embeddings {emb.shape} and query embedding {q.shape} dimensions differ')
    qn = float(np.linalg.norm(q))
    if not np.isfinite(qn) or qn == 0:
        raise ValueError('query embedding is zero or not finite')
    norms = np.linalg.norm(emb, axis=1)
    ok = np.isfinite(norms) & (norms > 1e-12)
    sim = np.full(len(emb), np.nan, dtype=np.float32)
    sim[ok] = (emb[ok] @ (q / qn)) / norms[ok]
    return sim
