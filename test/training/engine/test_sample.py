"""The data interface: FrameSample validation, selection, collation; store provenance checks."""
from __future__ import annotations

import pytest
import torch

from training.data import (FrameSample, SampleError, StoreInfo, check_expected, collate, open_source,
                           teacher_meaningful)


def _sample(n: int = 5, frame_id: str = 'f') -> FrameSample:
    pts = torch.arange(n * 4, dtype=torch.float32).reshape(n, 4)
    return FrameSample(points=pts, labels=torch.arange(n) % 3, visible=torch.arange(n) % 2 == 0,
                       frame_id=frame_id, gt_labels=torch.arange(n) % 3,
                       teacher_index=torch.tensor([0, 2, 4]), teacher_features=torch.eye(3, 4).half(),
                       pseudo_masks=torch.ones(2, n, dtype=torch.bool))


def test_collate_concatenates_and_frame_restores_each_sample():
    a, b = _sample(5, 'a'), _sample(3, 'b')
    b.teacher_index = torch.tensor([1])
    b.teacher_features = torch.ones(1, 4).half()
    batch = collate([(7, a), (9, b)])
    assert batch.offsets.tolist() == [0, 5, 8]
    assert batch.indices == [7, 9] and batch.frame_ids == ['a', 'b']
    assert batch.batch_index.tolist() == [0] * 5 + [1] * 3
    assert batch.teacher_index.tolist() == [0, 2, 4, 6]          # b's row 1 is batch row 6
    back = batch.frame(1)
    assert torch.equal(back.points, b.points) and torch.equal(back.teacher_index, b.teacher_index)
    assert torch.equal(back.gt_labels, b.gt_labels) and back.pseudo_masks.shape == (2, 3)


def test_collate_refuses_a_field_present_in_some_frames_only():
    a, b = _sample(), _sample()
    b.gt_labels = None
    with pytest.raises(SampleError, match='gt_labels'):
        collate([a, b])


def test_select_keeps_per_point_fields_aligned_and_reindexes_the_teacher():
    s = _sample(5)
    out = s.select(torch.tensor([4, 1, 2]))
    assert out.points[:, 0].tolist() == [16.0, 4.0, 8.0]
    assert out.labels.tolist() == [1, 1, 2]
    assert out.teacher_index.tolist() == [2, 0]           # old rows 2 and 4 are now 2 and 0
    assert torch.equal(out.teacher_features[0], s.teacher_features[1])   # row of old point 2
    assert out.pseudo_masks.shape == (2, 3)


@pytest.mark.parametrize('field, value, message', [
    ('labels', torch.zeros(4, dtype=torch.int64), 'labels has 4 rows for 5 points'),
    ('visible', torch.zeros(5, dtype=torch.int64), 'visible must be torch.bool'),
    ('teacher_index', torch.tensor([0, 9, 1]), 'teacher_index must index the 5 points'),
    ('labels', torch.full((5,), 3), r'labels must be in \[-1, 3\)'),
])
def test_validate_names_the_frame_and_the_field(field, value, message):
    s = _sample(frame_id='bag:12')
    setattr(s, field, value)
    with pytest.raises(SampleError, match=f'frame bag:12: {message}'):
        s.validate(num_classes=3)


def test_store_provenance_mismatch_is_refused_naming_the_key():
    info = StoreInfo(class_names=['a', 'b'], text_embeddings=torch.eye(2),
                     teacher={'kind': 'clip', 'model': 'ViT-B-32', 'pretrained': 'openai',
                              'random_weights': False})
    check_expected(info, {'teacher.model': 'ViT-B-32', 'embed_dim': 2})
    with pytest.raises(SampleError, match="teacher.model: expected 'ViT-L-14', store has 'ViT-B-32'"):
        check_expected(info, {'teacher.model': 'ViT-L-14'})
    with pytest.raises(SampleError, match='unknown keys'):
        check_expected(info, {'teacher.colour': 'red'})


def test_teacher_meaningful_only_for_pretrained_clip_or_the_oracle():
    assert teacher_meaningful({'kind': 'clip', 'pretrained': 'openai', 'random_weights': False})
    assert teacher_meaningful({'kind': 'oracle'})
    assert not teacher_meaningful({'kind': 'clip', 'pretrained': None, 'random_weights': True})
    assert not teacher_meaningful({})


def test_open_source_says_what_is_missing(tmp_path):
    with pytest.raises(SampleError, match='no such store folder'):
        open_source(str(tmp_path / 'nope'))
    with pytest.raises(SampleError, match='reader .* is not importable'):
        open_source(str(tmp_path), reader='no_such_module_xyz:open_dataset')


def test_synthetic_frames_follow_the_interface_and_have_noisy_labels(sim):
    ds = open_source(sim)
    s = ds[0]
    assert s.present() == ds.info.fields
    assert s.points.dtype == torch.float32 and s.points.shape[1] == 4
    vis = s.visible
    assert bool((s.labels[~vis] == -1).all())                        # invisible points are ignored
    agree = float((s.labels[vis] == s.gt_labels[vis]).float().mean())
    assert 0.5 < agree <= 1.0
    assert s.teacher_features.dtype == torch.float16 and s.teacher_index.numel() == int(vis.sum())
    assert ds.info.labels_meaningful and ds.info.teacher['kind'] == 'oracle'
