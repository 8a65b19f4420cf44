"""``ovp eval`` end to end: a synthetic bag, bad inputs (exit 2), --compare, real SemanticKITTI / ScanNet."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception_nodes.cli.main import main
from perception_nodes.io.sample_bags import sim_frames, write_sim_bag


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('eval_cli')
    frames = sim_frames(2, num_cameras=1, image_size='tiny', beams=(16, 256))
    write_sim_bag(root / 'truth', frames, truth=True)
    write_sim_bag(root / 'plain', frames[:1])
    return root


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Flags for the tiny random CLIP: own text-embedding cache, one prompt template (80 only cost time)."""
    monkeypatch.setenv('OVP_CLIP_CACHE', str(tmp_path / 'clip-cache'))
    config = tmp_path / 'fast.yaml'
    config.write_text("vocabulary:\n  templates: ['a photo of a {}.']\n")
    return ['--clip-model', 'ovp-tiny', '--clip-pretrained', 'none', '--quiet', '--config', str(config)]


def _report(folder):
    return json.loads((folder / 'report.json').read_text())


def test_sim_bag_with_random_clip_rerun_and_compare(bags, tmp_path, capsys, tiny):
    a, b = tmp_path / 'a', tmp_path / 'b'
    assert main(['eval', str(bags / 'truth'), '--out', str(a), '--vocabulary', 'sim', '--retrieval',
                 '--bev-frames', '1', *tiny]) == 0
    printed = capsys.readouterr().out
    assert 'labels MEANINGLESS' in printed and 'randomly initialised CLIP' in printed
    report = _report(a)
    assert report['header']['labels_meaningful'] is False
    assert report['labeller']['clip']['random_weights'] is True
    assert report['headline']['frames'] == 2 and report['overall']['frames_with_camera'] == 2
    assert set(report['overall']['retrieval']['queries']) == {'road', 'car', 'building', 'pole', 'vegetation',
                                                              'trunk', 'person'}
    assert report['config']['outputs']['embeddings'] is True
    assert (a / 'report.md').read_text().startswith('# ovp eval report\n\n> **LABELS MEANINGLESS**')
    assert main(['eval', str(bags / 'truth'), '--out', str(a), '--vocabulary', 'sim', '--retrieval',
                 *tiny]) == 0
    assert 'reused the saved state of 1 completed bag' in capsys.readouterr().out
    assert main(['eval', str(bags / 'truth'), '--out', str(b), '--vocabulary', 'sim', '--labeller', 'none',
                 '--metrics', 'semantic', '--quiet']) == 0
    assert _report(b)['headline']['miou'] == 0.0 and _report(b)['headline']['fraction_unknown'] == 1.0
    capsys.readouterr()
    assert main(['eval', '--compare', str(a / 'report.json'), str(b), '--out', str(tmp_path / 'cmp')]) == 0
    text = capsys.readouterr().out
    miou_a = report['headline']['miou']
    assert f'| mIoU (headline protocol) | {100 * miou_a:.1f} | 0.0 | {-100 * miou_a:+.1f} |' in text
    assert (tmp_path / 'cmp' / 'compare_class_iou.png').is_file()


def test_sim_bag_with_the_synthetic_teacher_on_the_one_path(bags, tmp_path, capsys):
    """``--set teacher.source=synthetic``: no CLIP, meaningful labels from the truth rasters, said so."""
    out = tmp_path / 'synthetic'
    assert main(['eval', str(bags / 'truth'), '--out', str(out), '--vocabulary', 'sim', '--labeller',
                 'teacher', '--set', 'teacher.source=synthetic', '--set', 'teacher.synthetic_downsample=2',
                 '--retrieval', '--quiet']) == 0
    report = _report(out)
    assert report['header']['labels_meaningful'] is True and 'clip' not in report['labeller']
    assert report['labeller']['synthetic_teacher']['model'] == 'ClipLikeTeacher'
    h = report['headline']
    assert h['miou_visible'] > h['miou_invisible'] >= 0 and h['fraction_unknown'] < 1
    assert h['retrieval_map'] > 0                                    # class-name queries, no text encoder
    assert any('synthetic CLIP-like teacher' in n for n in report['overall']['notes'])
    replay = tmp_path / 'replay'
    assert main(['replay', '--bag', str(bags / 'truth'), '--out', str(replay), '--vocabulary', 'sim',
                 '--set', 'teacher.source=synthetic', '--quiet']) == 0
    assert json.loads((replay / 'summary.json').read_text())['labels_meaningful'] is True
    # a bag without truth rasters: one line saying what the synthetic teacher needs
    capsys.readouterr()
    assert main(['replay', '--bag', str(bags / 'plain'), '--out', str(tmp_path / 'plain'), '--vocabulary',
                 'sim', '--set', 'teacher.source=synthetic', '--quiet']) == 2
    assert 'synthetic bags only' in capsys.readouterr().err


def test_bad_inputs_exit_2(bags, tmp_path, capsys, tiny):
    out = str(tmp_path / 'r')
    assert main(['eval', str(bags / 'plain'), '--out', out, '--vocabulary', 'sim', *tiny]) == 2
    err = capsys.readouterr().err
    assert "no ground-truth field(s) ['label', 'instance']" in err and 'x, y, z, intensity' in err
    assert main(['eval', str(bags / 'truth'), '--out', str(tmp_path / 'r'), '--vocabulary', 'sim',
                 '--label-map', 'scannet20', '--labeller', 'none', '--quiet']) == 2
    err = capsys.readouterr().err
    assert "label map 'scannet20'" in err and "'wall'" in err and "'road'" in err
    assert main(['eval', str(bags / 'truth'), '--out', str(tmp_path / 'r'), '--vocabulary', 'sim',
                 '--split', 'car,sky', '--labeller', 'none', '--quiet']) == 2
    assert "unseen classes ['sky']" in capsys.readouterr().err
    assert main(['eval', str(bags / 'missing'), '--out', str(tmp_path / 'r'), '--quiet']) == 2
    assert 'input bag not found' in capsys.readouterr().err
    assert main(['eval', '--out', str(tmp_path / 'r')]) == 2
    assert main(['eval', '--compare', str(tmp_path / 'x'), str(tmp_path / 'y'), '--out', str(tmp_path)]) == 2
    assert 'report not found' in capsys.readouterr().err


def test_real_semantickitti(semantic_kitti_dir, tmp_path, tiny):
    """Camera-free SemanticKITTI: the teacher labels nothing; the label mapping and fractions are right."""
    from perception_nodes.io.kitti import read_semantic_labels
    from perception_nodes.metrics import load_label_map
    bag = tmp_path / 'sk'
    assert main(['kitti-to-bag', str(semantic_kitti_dir), str(bag)]) == 0
    out = tmp_path / 'teacher'
    assert main(['eval', str(bag), '--out', str(out), '--bev-frames', '1', *tiny]) == 0
    r = _report(out)
    label_map = load_label_map('semantickitti')
    files = sorted((semantic_kitti_dir / 'sequences' / '00' / 'labels').glob('*.label'))
    raw = np.concatenate([read_semantic_labels(f)[0] for f in files])
    mapped = label_map.apply(raw)
    per_class = r['overall']['semantic']['all']['per_class']
    for k, name in enumerate(label_map.class_names):
        assert per_class[name]['gt_points'] == int((mapped == k).sum())
    assert r['overall']['points']['total'] == raw.size
    assert r['headline']['fraction_evaluated'] == pytest.approx((mapped >= 0).mean(), abs=1e-6)
    assert r['headline']['fraction_unknown'] == 1.0 and r['headline']['miou'] == 0.0
    assert r['headline']['hiou'] == 0.0           # Affinity3D's split is the default for SemanticKITTI
    assert r['overall']['frames_with_camera'] == 0 and r['headline']['miou_front_view'] is None
    assert 'no frame had a usable camera' in r['header']['meaningless']
    assert r['overall']['occupancy']['iou'] > 0.99 and r['overall']['instances']['num_gt'] > 0
    assert 'No frame had a camera' in (out / 'report.md').read_text()
    none = tmp_path / 'none'
    assert main(['eval', str(bag), '--out', str(none), '--labeller', 'none', '--metrics', 'semantic',
                 '--quiet', '--bev-frames', '0']) == 0
    assert _report(none)['overall']['semantic']['all']['per_class'] == per_class


def test_real_scannet_instances(scannet_scene_dir, tmp_path):
    """Class-agnostic instance AP of the pipeline's segments and of a masks file on the real ScanNet scene."""
    from perception_nodes.metrics import SCANNET_INSTANCE_NYU40_IDS, class_agnostic_gt, masks_from_ids
    bag = tmp_path / 'scannet'
    assert main(['scannet-to-bag', str(scannet_scene_dir), str(bag)]) == 0
    sem = np.load(scannet_scene_dir / 'scene0000_00_sem_label_all.npy')
    ins = np.load(scannet_scene_dir / 'scene0000_00_ins_label_all.npy')
    gt = class_agnostic_gt(ins, sem, SCANNET_INSTANCE_NYU40_IDS)
    masks, _ = masks_from_ids(gt)
    np.savez(tmp_path / 'gt_masks.npz', masks=masks, scores=np.linspace(1, 0.5, len(masks)))
    out = tmp_path / 'report'
    assert main(['eval', str(bag), '--out', str(out), '--labeller', 'none', '--vocabulary', 'scannet20',
                 '--metrics', 'semantic,instances', '--max-frames', '1', '--masks',
                 str(tmp_path / 'gt_masks.npz'), '--quiet', '--bev-frames', '0']) == 0
    r = _report(out)
    expected_gt = int((np.bincount(gt[gt >= 0]) >= 100).sum())
    seg, perfect = r['overall']['instances'], r['overall']['instances_masks']
    assert seg['num_gt'] == perfect['num_gt'] == expected_gt > 10
    assert (perfect['ap'], perfect['ap50'], perfect['ap25']) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)
    assert 0.0 <= seg['ap25'] <= 1.0 and seg['num_pred'] >= 1
    assert r['overall']['occupancy']['skipped'].startswith('not requested')
    assert r['headline']['masks_ap'] == pytest.approx(1.0, abs=1e-12)
