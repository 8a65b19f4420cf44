"""MaskCLIP dense CLIP features (Zhou et al., ECCV 2022).

The 2D teacher of the label-free seed, CLIP2Scene and POP-3D.

ViT: the last transformer block is run on its *value path* only: each token attends to itself, so
the attention output is ``out_proj(v_proj(ln_1(x)))``. Following MaskCLIP's reference code
(``TransformerEncoderLayer.forward(return_qkv=True)``) the block's residual and MLP are kept,
``v = x + out_proj(v_proj(ln_1(x))); v = v + mlp(ln_2(v))``, then ``ln_post`` and ``proj`` map every
patch token into the joint space, giving an (H/p, W/p, C) map. ``keep_residual_mlp=False`` drops
both (the ClearCLIP variant). Positional embeddings are interpolated bicubically for other input sizes.

ResNet: the attention pool is replaced by its value and output projections applied as 1×1
convolutions to the last feature map (no positional embedding, no query/key), as in MaskCLIP.

Refinements from MaskCLIP (Sec. 3.2 "key smoothing" and "prompt denoising"), off by default:
- key smoothing: features are averaged over positions with similar *keys* of the last attention
  layer (weights = max(0, cos(k_i, k_j))), which denoises per-patch predictions. MaskCLIP applies it
  to class probabilities; ``dense_features`` applies it to features (linear logits commute with it),
  ``dense_logits`` applies it to probabilities exactly as MaskCLIP does.
- prompt denoising (``dense_logits`` only, needs the class embeddings): classes whose highest
  probability over all positions of an image is below ``prompt_denoise_threshold`` are deemed absent
  and their scores suppressed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from perception_nodes.frame import CameraView
from perception_nodes.teacher.clip_models import LoadedClip


def interpolate_pos_embed(pos: torch.Tensor, grid: tuple[int, int],
                          new_grid: tuple[int, int]) -> torch.Tensor:
    """Class + patch positional embeddings (1 + g0·g1, D) resampled bicubically to ``new_grid``."""
    if tuple(grid) == tuple(new_grid):
        return pos
    cls_pos, patch_pos = pos[:1], pos[1:]
    width = pos.shape[1]
    patch_pos = patch_pos.reshape(1, grid[0], grid[1], width).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos.float(), size=new_grid, mode='bicubic', align_corners=False)
    return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(-1, width).to(pos.dtype)])


def image_to_tensor(image: np.ndarray, name: str = 'image') -> torch.Tensor:
    """(H, W, 3) uint8 RGB (or (H, W) grey) -> (3, H, W) float in [0, 1]; ValueError for other shapes."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f'{name}: expected an (H, W, 3) RGB image, got shape {arr.shape}')
    arr = arr[..., :3]
    scale = 255.0 if arr.dtype == np.uint8 else (65535.0 if arr.dtype == np.uint16 else 1.0)
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. a view of a ROS message buffer: torch wants writable memory
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float() / scale


class MaskClipTeacher:
    """Dense MaskCLIP features of camera images (Teacher interface)."""

    def __init__(self, clip: LoadedClip, input_size: tuple[int, int] = (224, 416),
                 key_smoothing: bool = False, prompt_denoising: bool = False, batch_size: int = 8,
                 keep_residual_mlp: bool = True, key_smoothing_threshold: float = 1.0,
                 prompt_denoise_threshold: float = 0.5) -> None:
        self.clip = clip
        self.input_size = (int(input_size[0]), int(input_size[1]))
        stride = clip.patch_size
        if self.input_size[0] % stride or self.input_size[1] % stride or min(self.input_size) < stride:
            raise ValueError(f'input_size {self.input_size} must be positive multiples of the {clip.name} '
                             f'output stride {stride}')
        visual = clip.model.visual
        if clip.kind == 'vit':
            block = visual.transformer.resblocks[-1]
            plain = isinstance(getattr(block, 'attn', None), torch.nn.MultiheadAttention)
            if visual.attn_pool is not None or not plain:
                raise ValueError(f'{clip.name}: MaskCLIP needs a plain CLIP ViT (standard attention, '
                                 f'no attention pooler)')
        self.key_smoothing = bool(key_smoothing)
        self.prompt_denoising = bool(prompt_denoising)
        self.key_smoothing_threshold = float(key_smoothing_threshold)
        self.prompt_denoise_threshold = float(prompt_denoise_threshold)
        self.batch_size = max(1, int(batch_size))
        self.keep_residual_mlp = bool(keep_residual_mlp)
        self.embed_dim = clip.embed_dim
        self.meaningful = clip.pretrained_meaningful
        self.device = clip.device
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}
        self._mean = torch.tensor(clip.image_mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(clip.image_std, device=self.device).view(1, 3, 1, 1)

    @property
    def feature_size(self) -> tuple[int, int]:
        """(h, w) of the feature maps."""
        s = self.clip.patch_size
        return self.input_size[0] // s, self.input_size[1] // s

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize each image to ``input_size`` (bilinear, antialiased) and normalise: (B, 3, H, W)."""
        batch = []
        for i, image in enumerate(images):
            x = image_to_tensor(image, f'camera image {i}').to(self.device)[None]
            if tuple(x.shape[-2:]) != self.input_size:
                x = F.interpolate(x, size=self.input_size, mode='bilinear', align_corners=False,
                                  antialias=True)
            batch.append(x)
        return (torch.cat(batch) - self._mean) / self._std

    def _vit(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        visual = self.clip.model.visual
        x = visual.conv1(x)                                     # (B, D, gh, gw)
        b, d, gh, gw = x.shape
        x = x.reshape(b, d, gh * gw).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, d).expand(b, 1, d)
        pos = self._pos_cache.get((gh, gw))
        if pos is None:  # weights are frozen: interpolate once per grid size
            pos = self._pos_cache[(gh, gw)] = interpolate_pos_embed(visual.positional_embedding,
                                                                    visual.grid_size, (gh, gw))
        x = visual.ln_pre(torch.cat([cls, x], dim=1) + pos.to(x.dtype))
        transformer = visual.transformer
        if not transformer.batch_first:
            x = x.transpose(0, 1)
        for block in transformer.resblocks[:-1]:
            x = block(x)
        if not transformer.batch_first:
            x = x.transpose(0, 1)
        last = transformer.resblocks[-1]
        y = last.ln_1(x)
        w_qkv, b_qkv = last.attn.in_proj_weight, last.attn.in_proj_bias
        v = F.linear(y, w_qkv[2 * d:], None if b_qkv is None else b_qkv[2 * d:])
        k = F.linear(y, w_qkv[d:2 * d], None if b_qkv is None else b_qkv[d:2 * d])
        v = last.attn.out_proj(v)
        if self.keep_residual_mlp:
            v = x + last.ls_1(v)
            v = v + last.ls_2(last.mlp(last.ln_2(v)))
        v = visual.ln_post(v) @ visual.proj                       # (B, 1 + L, C)
        feats = v[:, 1:].reshape(b, gh, gw, -1).permute(0, 3, 1, 2)
        keys = k[:, 1:].reshape(b, gh, gw, d).permute(0, 3, 1, 2)
        return feats, keys

    def _resnet(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        visual = self.clip.model.visual
        x = visual.stem(x)
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
        pool = visual.attnpool

        def conv1x1(t: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
            return F.conv2d(t, linear.weight[:, :, None, None], linear.bias)
        feats = conv1x1(conv1x1(x, pool.v_proj), pool.c_proj)
        return feats, conv1x1(x, pool.k_proj)

    @torch.inference_mode()
    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw dense features (B, C, h, w) and last-layer keys (B, D, h, w) of preprocessed pixels."""
        return self._vit(pixels) if self.clip.kind == 'vit' else self._resnet(pixels)

    def _batches(self, views: Sequence[CameraView]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for i in range(0, len(views), self.batch_size):
            pixels = self.preprocess([v.image for v in views[i:i + self.batch_size]])
            feats, keys = self.forward(pixels)
            out += list(zip(feats.float(), keys.float()))
        return out

    @staticmethod
    def _key_weights(keys: torch.Tensor) -> torch.Tensor:
        k = F.normalize(keys.flatten(1).T, dim=1)                  # (L, D)
        return (k @ k.T).clamp_min(0.0)

    def dense_features(self, views: Sequence[CameraView]) -> list[torch.Tensor]:
        """One unit-norm (C, h, w) map per view (key-smoothed when ``key_smoothing``)."""
        result = []
        for feats, keys in self._batches(views):
            if self.key_smoothing:
                c, h, w = feats.shape
                feats = (feats.flatten(1) @ self._key_weights(keys).T).reshape(c, h, w)
            result.append(F.normalize(feats, dim=0))
        return result

    def dense_logits(self, views: Sequence[CameraView], text_embeddings: torch.Tensor,
                     temperature: float = 100.0) -> list[torch.Tensor]:
        """Per-view class probabilities (K, h, w) = softmax(temperature · cos), refined as in MaskCLIP.

        Prompt denoising (when enabled) sets the scores of classes absent from the image to -100 before
        the softmax; key smoothing (when enabled) replaces the probabilities of positions whose top
        probability is below ``key_smoothing_threshold`` by their key-affinity-weighted sum.
        """
        emb = F.normalize(text_embeddings.to(self.device).float(), dim=1)
        result = []
        for feats, keys in self._batches(views):
            c, h, w = feats.shape
            logits = temperature * (emb @ F.normalize(feats, dim=0).flatten(1))     # (K, L)
            if self.prompt_denoising:
                conf = logits.softmax(dim=0).amax(dim=1)                            # (K,)
                absent = conf < self.prompt_denoise_threshold
                absent[conf.argmax()] = False                                       # keep at least one
                logits[absent] = -100.0
            probs = logits.softmax(dim=0)
            if self.key_smoothing:
                smoothed = probs @ self._key_weights(keys).T
                low = probs.amax(dim=0) < self.key_smoothing_threshold
                smoothed = smoothed / smoothed.sum(0, keepdim=True).clamp_min(1e-12)
                probs = torch.where(low[None], smoothed, probs)
            result.append(probs.reshape(-1, h, w))
        return result
