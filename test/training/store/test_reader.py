"""The store through the trainer's data interface: open_source -> FrameDataset of valid FrameSamples."""
from __future__ import annotations

import torch

from training.data import DEFAULT_STORE_READER, FrameSample, collate, open_source


def test_the_trainer_opens_the_store_and_every_sample_validates(street_store):
    ds = open_source(str(street_store), 'train', DEFAULT_STORE_READER)
    info = ds.info
    assert len(ds) == 4 and info.labels_meaningful and info.teacher['kind'] == 'oracle'
    assert info.fields == {'gt_labels', 'gt_instances', 'instances', 'teacher_index', 'teacher_features',
                           'regions', 'images', 'uv', 'image_index', 'occupancy_target'}
    assert info.grid.shape == (100, 100, 8) and info.extra['split'] == 'train'
    assert sum(info.class_counts) > 0 and len(info.class_counts) == info.num_classes
    samples = [ds[i] for i in range(len(ds))]
    for s in samples:
        assert isinstance(s, FrameSample) and s.validate(info.num_classes) is s
        assert s.present() == info.fields and s.frame_id.startswith('bag:')
        assert s.occupancy_target.dtype == torch.bool and s.image_index.dtype == torch.int64
    labelled = torch.cat([s.labels for s in samples])
    counts = torch.bincount(labelled[labelled >= 0], minlength=info.num_classes)
    assert counts.tolist() == list(info.class_counts)
    batch = collate(list(enumerate(samples)))
    assert batch.num_points == sum(s.num_points for s in samples) and batch.frame(1).frame_id == 'bag:000001'


def test_ovp_train_trains_a_student_on_the_store(street_store, tmp_path):
    """Affinity3D's recipe with the knowledge-transfer branch reads labels, images, uv and image_index."""
    import json

    from perception_nodes.cli.main import main
    args = ['train', '--config', 'affinity3d', '--data', str(street_store), '--out', str(tmp_path / 'run'),
            '--no-progress', '--set', 'phases=[{name: train, steps: 2}]', '--set', 'data.num_workers=0',
            '--set', 'train.plots=false', '--set', 'train.device=cpu', '--set', 'recipe.image_stages=[0, 1]',
            '--set', 'student={preset: deployable, range_height: 16, range_width: 128, widths: [8, 16], '
                     'depths: [1, 1]}']
    assert main(args) == 0
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert summary['steps'] == 2
