"""MaskCLIP dense features on the tiny random CLIPs: shapes, norms, and step-by-step references."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception_nodes.frame import CameraModel, CameraView
from perception_nodes.teacher.base import Teacher
from perception_nodes.teacher.clip_models import ClipSpec, LoadedClip, load_clip
from perception_nodes.teacher.maskclip import MaskClipTeacher, interpolate_pos_embed


@pytest.fixture(scope='module')
def vit() -> LoadedClip:
    return load_clip(ClipSpec('ovp-tiny', 'none', seed=1))


@pytest.fixture(scope='module')
def rn() -> LoadedClip:
    clip = load_clip(ClipSpec('ovp-tiny-rn', 'none', seed=2))
    # random-init BatchNorm running stats are (0, 1); give them values so the stem is exercised
    gen = torch.Generator().manual_seed(0)
    for module in clip.model.visual.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
    return clip


def view(height: int, width: int, seed: int = 0, name: str = 'cam') -> CameraView:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return CameraView(name, image, CameraModel(name, width, height, np.eye(3)), np.eye(4))


@pytest.mark.parametrize('which, size, expected', [('vit', (224, 416), (14, 26)), ('rn', (224, 416), (7, 13)),
                                                   ('vit', (96, 160), (6, 10))])
def test_shapes_and_unit_norm(which: str, size: tuple[int, int], expected: tuple[int, int],
                              request: pytest.FixtureRequest) -> None:
    clip = request.getfixturevalue(which)
    teacher = MaskClipTeacher(clip, input_size=size, batch_size=2)
    assert isinstance(teacher, Teacher)
    assert teacher.meaningful is False and teacher.embed_dim == 32
    views = [view(375, 1242, 0), view(300, 400, 1), view(370, 1224, 2)]   # different sizes, 2 batches
    feats = teacher.dense_features(views)
    assert len(feats) == 3
    for f in feats:
        assert f.shape == (32, *expected) and f.dtype == torch.float32
        torch.testing.assert_close(f.norm(dim=0), torch.ones(expected), atol=1e-5, rtol=0)
    # batching does not change results: one view alone gives the same map
    torch.testing.assert_close(teacher.dense_features(views[1:2])[0], feats[1], atol=1e-5, rtol=1e-5)


def reference_vit(clip: LoadedClip, pixels: torch.Tensor, keep_residual_mlp: bool) -> torch.Tensor:
    """Slow reference built from open_clip's own modules: the last block runs with an attention mask that
    lets every token attend only to itself (MaskCLIP's value path), so softmax(q·k) becomes the identity."""
    visual = clip.model.visual
    _, _, height, width = pixels.shape
    p = visual.patch_size[0]
    grid = (height // p, width // p)
    saved = visual.positional_embedding.data.clone()
    try:
        visual.positional_embedding.data = interpolate_pos_embed(saved, visual.grid_size, grid)
        x = visual._embeds(pixels)                       # open_clip's patch + class + position embedding
    finally:
        visual.positional_embedding.data = saved
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    last = blocks[-1]
    n = x.shape[1]
    eye_mask = torch.full((n, n), float('-inf'))
    eye_mask.fill_diagonal_(0.0)
    if keep_residual_mlp:
        x = last(x, attn_mask=eye_mask)                  # residual + identity-attention + residual MLP
    else:
        x = last.attention(last.ln_1(x), attn_mask=eye_mask)
    out = visual.ln_post(x) @ visual.proj
    tokens = out[0, 1:]
    return F.normalize(tokens, dim=-1).reshape(*grid, -1).permute(2, 0, 1)


@pytest.mark.parametrize('size', [(224, 224), (224, 416)])
@pytest.mark.parametrize('keep', [True, False])
def test_vit_value_path_matches_reference(vit: LoadedClip, size: tuple[int, int], keep: bool) -> None:
    teacher = MaskClipTeacher(vit, input_size=size, keep_residual_mlp=keep)
    v = view(*size, seed=4)
    fast = teacher.dense_features([v])[0]
    with torch.inference_mode():
        slow = reference_vit(vit, teacher.preprocess([v.image]), keep)
    torch.testing.assert_close(fast, slow, atol=2e-5, rtol=1e-4)


def test_vit_value_path_explicit_equations(vit: LoadedClip) -> None:
    """Without residual/MLP a patch feature is normalise(ln_post(W_o (W_v ln_1(x_i) + b_v) + b_o) · proj),
    computed here token by token with plain matrix products on the last block's input."""
    teacher = MaskClipTeacher(vit, input_size=(224, 416), keep_residual_mlp=False)
    v = view(224, 416, seed=5)
    pixels = teacher.preprocess([v.image])
    visual = vit.model.visual
    with torch.inference_mode():
        x = visual.conv1(pixels).flatten(2).transpose(1, 2)
        pos = interpolate_pos_embed(visual.positional_embedding, visual.grid_size, (14, 26))
        x = visual.ln_pre(torch.cat([visual.class_embedding.view(1, 1, -1), x], dim=1) + pos)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        last = visual.transformer.resblocks[-1]
        d = x.shape[-1]
        w_v, b_v = last.attn.in_proj_weight[2 * d:], last.attn.in_proj_bias[2 * d:]
        rows = []
        for i in range(1, x.shape[1]):
            h = F.layer_norm(x[0, i], (d,), last.ln_1.weight, last.ln_1.bias, last.ln_1.eps)
            o = last.attn.out_proj.weight @ (w_v @ h + b_v) + last.attn.out_proj.bias
            o = F.layer_norm(o, (d,), visual.ln_post.weight, visual.ln_post.bias, visual.ln_post.eps)
            rows.append(F.normalize(o @ visual.proj, dim=0))
        slow = torch.stack(rows).reshape(14, 26, -1).permute(2, 0, 1)
        fast = teacher.dense_features([v])[0]
    torch.testing.assert_close(fast, slow, atol=2e-5, rtol=1e-4)


def test_resnet_value_path_matches_per_pixel_linear(rn: LoadedClip) -> None:
    teacher = MaskClipTeacher(rn, input_size=(224, 416))
    v = view(224, 416, seed=6)
    visual = rn.model.visual
    pool = visual.attnpool
    with torch.inference_mode():
        x = visual.stem(teacher.preprocess([v.image]))
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = layer(x)
        slow = torch.zeros(32, 7, 13)
        for i in range(7):
            for j in range(13):
                slow[:, i, j] = F.normalize(pool.c_proj(pool.v_proj(x[0, :, i, j])), dim=0)
        fast = teacher.dense_features([v])[0]
    torch.testing.assert_close(fast, slow, atol=2e-5, rtol=1e-4)


def test_interpolate_pos_embed_known_answers() -> None:
    pos = torch.randn(1 + 4 * 4, 8)
    assert interpolate_pos_embed(pos, (4, 4), (4, 4)) is pos
    const = torch.cat([torch.randn(1, 8), torch.ones(16, 8) * 3.0])
    out = interpolate_pos_embed(const, (4, 4), (4, 7))
    assert out.shape == (1 + 28, 8)
    torch.testing.assert_close(out[0], const[0])                       # class token untouched
    torch.testing.assert_close(out[1:], torch.full((28, 8), 3.0))      # bicubic keeps constants


def test_key_smoothing_with_controlled_keys(vit: LoadedClip, monkeypatch: pytest.MonkeyPatch) -> None:
    feats = torch.randn(1, 32, 2, 3)
    teacher = MaskClipTeacher(vit, input_size=(32, 48), key_smoothing=True)
    same_keys = torch.ones(1, 64, 2, 3)                 # all keys equal -> every position = mean feature
    monkeypatch.setattr(teacher, 'forward', lambda pixels: (feats, same_keys))
    out = teacher.dense_features([view(32, 48)])[0]
    expected = F.normalize(feats[0].flatten(1).sum(1), dim=0)
    torch.testing.assert_close(out, expected[:, None, None].expand(32, 2, 3))
    orthogonal = torch.eye(6).reshape(1, 6, 2, 3)       # orthogonal keys -> no smoothing
    monkeypatch.setattr(teacher, 'forward', lambda pixels: (feats, orthogonal))
    torch.testing.assert_close(teacher.dense_features([view(32, 48)])[0], F.normalize(feats[0], dim=0))


def test_prompt_denoising_removes_absent_class(vit: LoadedClip, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = torch.eye(3, 32)                                # classes along axes 0, 1, 2
    feats = torch.zeros(1, 32, 1, 2)
    feats[0, 0, 0, 0] = 1.0                               # position 0: clearly class 0
    feats[0, :3, 0, 1] = torch.tensor([0.6, 0.0, 0.59])   # position 1: class 0 vs class 2, nearly tied
    feats[0, 1, 0, 1] = 0.58
    teacher = MaskClipTeacher(vit, input_size=(32, 48), prompt_denoising=True)
    monkeypatch.setattr(teacher, 'forward', lambda pixels: (feats, torch.eye(2).reshape(1, 2, 1, 2)))
    probs = teacher.dense_logits([view(32, 48)], emb)[0]
    assert probs.shape == (3, 1, 2)
    torch.testing.assert_close(probs.sum(0), torch.ones(1, 2))
    # class 0 peaks at ~1.0 at position 0; classes 1, 2 never exceed 0.5 -> absent, suppressed
    assert probs[1:].max() < 1e-30 and probs[0, 0, 1] > 0.999
    teacher.prompt_denoising = False
    plain = teacher.dense_logits([view(32, 48)], emb)[0]
    assert plain[2, 0, 1] > 0.2


def test_bad_inputs(vit: LoadedClip) -> None:
    with pytest.raises(ValueError, match='multiples'):
        MaskClipTeacher(vit, input_size=(224, 410))
    teacher = MaskClipTeacher(vit, input_size=(32, 48))
    bad = view(32, 48)
    bad.image = np.zeros((32, 48, 5), dtype=np.uint8)
    with pytest.raises(ValueError, match=r'expected an \(H, W, 3\) RGB image'):
        teacher.dense_features([bad])
    grey = view(32, 48)
    grey.image = np.full((40, 50), 128, dtype=np.uint8)
    assert teacher.dense_features([grey])[0].shape == (32, 2, 3)
    assert teacher.dense_features([]) == []
    frozen = view(32, 48)
    frozen.image.flags.writeable = False                   # e.g. a view of a message buffer
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert teacher.dense_features([frozen])[0].shape == (32, 2, 3)
