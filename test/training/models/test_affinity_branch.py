"""Affinity3D knowledge-transfer branch: gated fusion (Eq. 11-12), fused head (Eq. 14), point sampling."""
from __future__ import annotations

import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from perception_nodes.classify import cosine_logits
from perception_nodes.geometry.sampling import sample_features
from training.models.affinity_branch import (GatedFusion, KnowledgeTransferBranch, KnowledgeTransferConfig,
                                             ResNet34Encoder)
from training.models.weights import WeightsError, load_state_dict_file

torch.set_num_threads(1)


def test_gated_fusion_follows_eq_11_12_and_gate_in_unit_interval():
    torch.manual_seed(0)
    fusion = GatedFusion(6)
    f2d, fl = torch.randn(9, 6) * 5, torch.randn(9, 6) * 5
    out, gate = fusion(f2d, fl)
    assert out.shape == (9, 6) and gate.shape == (9, 6)
    assert bool((gate >= 0).all() and (gate <= 1).all())
    h = fusion.mlp_2d3d(torch.cat([f2d, fl], 1))
    expected = torch.relu(torch.sigmoid(fusion.mlp_gate(h)) * h) + f2d
    torch.testing.assert_close(out, expected)


@pytest.fixture(scope='module')
def branch():
    torch.manual_seed(1)
    return KnowledgeTransferBranch(KnowledgeTransferConfig(point_channels=(8, 16), embed_dim=12)).eval()


def test_branch_shapes_and_per_image_sampling(branch):
    g = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 64, 96, generator=g)
    n = 7
    feats = [torch.randn(n, 8, generator=g), torch.randn(n, 16, generator=g)]
    uv = torch.rand(n, 2, generator=g) * torch.tensor([95.0, 63.0])
    index = torch.tensor([0, 1, 1, -1, 0, 1, 0])
    text = torch.randn(5, 12, generator=g)
    with torch.no_grad():
        out = branch(images, feats, uv, index, text)
        maps = branch.encoder(images)
    assert [t.shape for t in out.logits_3d] == [(n, 5), (n, 5)]
    assert [t.shape for t in out.logits_fused] == [(n, 5), (n, 5)]
    assert [t.shape[1] for t in out.image_features] == [256, 512]     # ResNet-34 stages 3 and 4
    assert all(bool((gt >= 0).all() and (gt <= 1).all()) for gt in out.gates)
    # Each point reads its own image at its pixel; points in no image get zeros.
    for layer, stage in enumerate((2, 3)):
        for i in range(n):
            b = int(index[i])
            if b < 0:
                feats_i = out.image_features[layer][i]
                assert torch.equal(feats_i, torch.zeros_like(feats_i))
            else:
                want = sample_features(maps[stage][b], uv[i:i + 1], (64, 96))[0]
                torch.testing.assert_close(out.image_features[layer][i], want)
    torch.testing.assert_close(out.logits_fused[1], cosine_logits(branch.heads_fused[1](out.fused[1]), text))


def test_unprojected_3d_layer_is_the_students_own_prediction_and_gradients_reach_the_encoder():
    torch.manual_seed(3)
    branch = KnowledgeTransferBranch(KnowledgeTransferConfig(point_channels=(12,), embed_dim=12,
                                                             project_3d=False, logit_scale=10.0))
    emb = torch.randn(4, 12, requires_grad=True)
    text = torch.randn(3, 12)
    index = torch.zeros(4, dtype=torch.long)
    out = branch(torch.rand(1, 3, 64, 64), [emb], torch.rand(4, 2) * 63, index, text)
    torch.testing.assert_close(out.logits_3d[0], cosine_logits(emb, text, 10.0))
    out.logits_fused[0].sum().backward()
    assert branch.encoder.layer4[0].conv1.weight.grad is not None
    with pytest.raises(ValueError, match='embed_dim'):
        KnowledgeTransferConfig(point_channels=(8,), embed_dim=12, project_3d=False)


def test_imagenet_weights_load_from_safetensors_and_torch_state_dicts(tmp_path):
    torch.manual_seed(4)
    ref = torchvision.models.resnet34(weights=None)
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file(state, str(tmp_path / 'r34.safetensors'))
    torch.save(state, tmp_path / 'r34.pth')
    for name in ('r34.safetensors', 'r34.pth'):
        enc = ResNet34Encoder()
        enc.load_imagenet(tmp_path / name)
        torch.testing.assert_close(enc.layer3[1].conv2.weight, ref.layer3[1].conv2.weight)
        torch.testing.assert_close(enc.stem[1].running_var, ref.bn1.running_var)


def test_weights_errors_name_the_file_and_never_unpickle(tmp_path):
    with pytest.raises(WeightsError, match='nowhere.pth not found'):
        ResNet34Encoder().load_imagenet(tmp_path / 'nowhere.pth')
    save_file({'conv1.weight': torch.zeros(2, 2)}, str(tmp_path / 'small.safetensors'))
    with pytest.raises(WeightsError, match='small.safetensors does not fit'):
        ResNet34Encoder().load_imagenet(tmp_path / 'small.safetensors')
    evil = tmp_path / 'evil.pt'
    with open(evil, 'wb') as f:
        pickle.dump({'w': torch.zeros(1), 'obj': WeightsError('x')}, f, protocol=2)
    with pytest.raises(WeightsError, match='evil.pt'):
        load_state_dict_file(evil)
