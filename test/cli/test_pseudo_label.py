"""``ovp pseudo-label`` from the command line: the real CLIP path, bad input, skipped frames, settings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception_nodes.cli.main import main
from perception_nodes.io.bags import BagWriter
from perception_nodes.io.pointcloud2 import FLOAT32, create_cloud, xyz_fields
from perception_nodes.io.sample_bags import sim_frames, write_sim_bag
from perception_nodes.io.stamps import header

TINY = ['--clip-model', 'ovp-tiny', '--clip-pretrained', 'none', '--set', 'teacher.input_size=[64,128]',
        '--set', 'vocabulary.templates=[a photo of a {}.]']


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit):
        main(['pseudo-label', '--help'])
    text = capsys.readouterr().out
    for flag in ('--out', '--method-config', '--methods', '--setting', '--teacher', '--scene-sweeps',
                 '--fixed-frame', '--workers', '--clip-model', '--vocabulary', '--max-frames'):
        assert flag in text


def test_kitti_sample_with_a_random_tiny_clip(kitti_raw_dir, tmp_path, capsys):
    """The real CLIP path (MaskCLIP teacher + CLIP crop encoder) on the real KITTI sample."""
    from perception_nodes.io.sample_bags import write_kitti_sample_bag
    from training.store.dataset import PseudoLabelDataset
    write_kitti_sample_bag(kitti_raw_dir, tmp_path / 'kitti', max_frames=2)
    out = tmp_path / 'store'
    args = ['pseudo-label', str(tmp_path / 'kitti'), '--out', str(out), '--quiet', *TINY,
            '--set', f'teacher.cache_dir={tmp_path}', '--vocabulary', 'car,road,vegetation,building',
            '--methods', 'dense,affinity3d,cns', '--setting', 'af']
    assert main(args) == 0
    assert 'NO meaning' in capsys.readouterr().out
    ds = PseudoLabelDataset(out)
    assert len(ds) == 2 and ds.info.teacher['kind'] == 'clip' and ds.info.teacher['random_weights'] is True
    assert not ds.info.labels_meaningful and ds.info.teacher['identity'].startswith('ovp-tiny')
    s = ds[1]
    assert s['points'].shape[0] > 100_000 and s['images'].shape[0] == 1
    assert s['teacher_features'].shape[1] == ds.info.embed_dim == 32
    assert (s['camera_index'] >= 0).sum() == len(s['teacher_index'])          # the visible points
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['visibility']['in_image'] >= summary['visibility']['visible'] > 1000
    assert 0 < summary['visibility']['occlusion_cut_fraction'] < 0.5


def test_a_bag_without_the_topics_lists_what_it_has(tmp_path, capsys):
    write_sim_bag(tmp_path / 'bag', sim_frames(1, image_size='tiny', beams=(8, 64)))
    code = main(['pseudo-label', str(tmp_path / 'bag'), '--out', str(tmp_path / 'out'), '--teacher',
                 'synthetic', '--camera-topics', '/front/image_raw', '--vocabulary', 'sim'])
    err = capsys.readouterr().err
    assert code == 2 and "['/front/image_raw', '/front/camera_info']" in err and '/velodyne_points' in err
    assert main(['pseudo-label', str(tmp_path / 'nope'), '--out', str(tmp_path / 'o')]) == 2
    assert 'not found' in capsys.readouterr().err


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    bag = tmp_path / 'bag'
    write_sim_bag(bag, sim_frames(1, image_size='tiny', beams=(8, 64)))
    base = ['pseudo-label', str(bag), '--out', str(tmp_path / 'out'), '--teacher', 'synthetic',
            '--vocabulary', 'sim']
    assert main(base + ['--method-set', 'affinity3d.nope=1']) == 2
    assert "unknown config key(s) ['affinity3d.nope']" in capsys.readouterr().err
    assert main(base + ['--methods', 'dense,magic']) == 2
    assert "['magic'] not in" in capsys.readouterr().err
    assert main(base + ['--scene-sweeps', '3']) == 2                     # scenes need poses
    assert '--fixed-frame' in capsys.readouterr().err
    assert main(base + ['--setting', 'gzs']) == 2                        # sim has no truck / motorcycle ...
    assert 'unseen classes' in capsys.readouterr().err


def write_lidar_bag(path, bad: int, labels: bool = True) -> None:
    """Three LiDAR-only clouds (with ground truth: label 0); cloud ``bad`` has no x field."""
    good = xyz_fields([('intensity', FLOAT32), ('label', FLOAT32)][:2 if labels else 1])
    broken = [('y', 0, FLOAT32, 1), ('z', 4, FLOAT32, 1)]
    rng = np.random.default_rng(0)
    with BagWriter(path) as bag:
        for i in range(3):
            pts = np.concatenate([rng.uniform(-10, 10, (500, 3)), np.ones((500, 1)), np.zeros((500, 1))], 1)
            pts = pts if labels else pts[:, :4]
            fields, data = (broken, pts[:, 1:3]) if i == bad else (good, pts)
            bag.write('/points', 'sensor_msgs/msg/PointCloud2',
                      create_cloud(header('lidar', i * 100_000_000), fields, data), i * 100_000_000)


def test_failing_frames_are_skipped_with_their_reasons(tmp_path, capsys):
    from training.store.dataset import PseudoLabelDataset
    write_lidar_bag(tmp_path / 'bag', bad=1)
    out = tmp_path / 'out'
    args = ['pseudo-label', str(tmp_path / 'bag'), '--out', str(out), '--teacher', 'synthetic', '--quiet',
            '--vocabulary', 'road,car,building', '--methods', 'dense,affinity3d,pop3d', '--setting', 'af']
    assert main(args) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['units'] == 2 and summary['skip_counts'] == {'bad_cloud': 1}
    assert summary['skipped'][0]['where'] == 'bag cloud 1' and 'x' in summary['skipped'][0]['why']
    ds = PseudoLabelDataset(out)
    assert [ds.key(i) for i in range(len(ds))] == ['bag:000000', 'bag:000002']
    s = ds[0]
    assert (s['labels'] == -1).all() and not s['visible'].any()          # no camera: nothing labelled
    assert (s['gt_labels'] == 0).all() and 'images' not in s and s['occupancy_target'].sum() > 0
    # the GZS setting without ground truth (no label field in the clouds): every frame skipped, exit 2
    write_lidar_bag(tmp_path / 'plain', bad=-1, labels=False)
    code = main(['pseudo-label', str(tmp_path / 'plain'), '--out', str(tmp_path / 'gzs'), '--quiet',
                 '--teacher', 'synthetic', '--vocabulary', 'road,car,building,pole', '--setting', 'gzs',
                 '--method-set', 'affinity3d.unseen=pole'])
    err = capsys.readouterr().err
    assert code == 2 and 'frame_failed x3' in err and 'ground-truth labels' in err
    # the synthetic teacher on a bag without truth rasters says what it misses
    write_sim_bag(tmp_path / 'norasters', sim_frames(1, image_size='tiny', beams=(8, 64)), truth=False)
    code = main(['pseudo-label', str(tmp_path / 'norasters'), '--out', str(tmp_path / 'nr'), '--quiet',
                 '--teacher', 'synthetic', '--vocabulary', 'sim'])
    err = capsys.readouterr().err
    assert code == 2 and 'has no ground-truth raster' in err and 'synthetic bags only' in err
