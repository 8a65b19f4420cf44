"""UnScene3D class-agnostic instance head (training only): a small query-based mask decoder.

K learned queries attend to the point features through a few decoder layers (cross-attention to the
points, self-attention among queries, feed-forward; post-norm, as DETR). Each query yields a mask by a dot
product of its mask embedding with per-point mask features, and an objectness logit (the class head
collapsed to foreground / background, UnScene3D Sec. 3.2). This is a reduced Mask3D decoder (our choice of
size: K = 32 queries, 2 layers, width 64, 4 heads; no masked attention or auxiliary per-layer outputs).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

INVALID_LOGIT = -1.0e4    # mask logit of padded / invalid points (sigmoid = 0, finite under fp16)


@dataclass
class InstanceHeadConfig:
    """Decoder sizes (our choices; UnScene3D uses Mask3D's full decoder)."""

    in_dim: int
    hidden: int = 64
    num_queries: int = 32
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 128
    dropout: float = 0.0


@dataclass
class InstancePrediction:
    """mask_logits (B, K, N) (INVALID_LOGIT at invalid points), objectness_logits (B, K)."""

    mask_logits: Tensor
    objectness_logits: Tensor


class DecoderLayer(nn.Module):
    """Cross-attention to points, self-attention among queries, feed-forward (each residual + LayerNorm)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Linear(ffn, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, queries: Tensor, memory: Tensor, padding: Tensor) -> Tensor:
        q = self.norms[0](queries + self.cross(queries, memory, memory, key_padding_mask=padding,
                                               need_weights=False)[0])
        q = self.norms[1](q + self.self_attn(q, q, q, need_weights=False)[0])
        return self.norms[2](q + self.ffn(q))


class QueryMaskDecoder(nn.Module):
    """forward(point features (B, N, C) or (N, C), valid (B, N) / (N,)) -> :class:`InstancePrediction`."""

    def __init__(self, config: InstanceHeadConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.queries = nn.Embedding(config.num_queries, h)
        self.input_proj = nn.Linear(config.in_dim, h)
        self.mask_features = nn.Linear(config.in_dim, h)
        self.layers = nn.ModuleList(DecoderLayer(h, config.num_heads, config.ffn_dim, config.dropout)
                                    for _ in range(config.num_layers))
        self.mask_embed = nn.Sequential(nn.Linear(h, h), nn.ReLU(inplace=True), nn.Linear(h, h))
        self.objectness = nn.Linear(h, 1)

    def forward(self, point_features: Tensor, valid: Tensor | None = None) -> InstancePrediction:
        single = point_features.ndim == 2
        feats = point_features[None] if single else point_features
        b, n, _ = feats.shape
        if valid is None:
            valid = torch.ones(b, n, dtype=torch.bool, device=feats.device)
        elif single:
            valid = valid[None]
        valid = valid.bool()
        if valid.shape != (b, n):
            raise ValueError(f'valid {tuple(valid.shape)} does not match point features {tuple(feats.shape)}')
        feats = torch.where(valid[..., None], feats, torch.zeros_like(feats))
        padding = ~valid
        padding = padding & valid.any(dim=1, keepdim=True)     # a scene with no valid point attends to zeros
        memory = self.input_proj(feats)
        q = self.queries.weight[None].expand(b, -1, -1)
        for layer in self.layers:
            q = layer(q, memory, padding)
        masks = torch.einsum('bkh,bnh->bkn', self.mask_embed(q), self.mask_features(feats))
        masks = masks.masked_fill(~valid[:, None, :], INVALID_LOGIT)
        obj = self.objectness(q).squeeze(-1)
        if single:
            return InstancePrediction(masks[0], obj[0])
        return InstancePrediction(masks, obj)
