"""``ovp demo``: the whole loop at test size (bags -> store -> trained student -> ONNX -> replay + eval)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception_nodes.cli.main import main
from perception_nodes.geometry.sim.street import STREET_CLASSES
from perception_nodes.io.bags import iter_messages
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.outputs import UNKNOWN_LABEL


@pytest.fixture
def fast_config(tmp_path, monkeypatch):
    monkeypatch.setenv('OVP_CLIP_CACHE', str(tmp_path / 'empty-cache'))     # no weights anywhere
    path = tmp_path / 'fast.yaml'
    path.write_text("vocabulary:\n  templates: ['a photo of a {}.']\n"
                    f"teacher:\n  cache_dir: {tmp_path / 'empty-cache'}\n")
    return path


def _labels(bag):
    return [read_points(m.msg) for m in iter_messages(bag, ['/ovp/labeled_points'])]


@pytest.fixture(scope='module')
def loop(tmp_path_factory):
    """One demo run at test size: 1 training and 1 held-out street of 2 sweeps, 3 training steps."""
    root = tmp_path_factory.mktemp('demo')
    cache = root / 'empty-cache'
    config = root / 'fast.yaml'
    config.write_text(f"vocabulary:\n  templates: ['a photo of a {{}}.']\nteacher:\n  cache_dir: {cache}\n")
    mp = pytest.MonkeyPatch()
    mp.setenv('OVP_CLIP_CACHE', str(cache))
    import io
    from contextlib import redirect_stdout
    printed = io.StringIO()
    try:
        with redirect_stdout(printed):
            code = main(['demo', '--out', str(root / 'demo'), '--config', str(config), '--train-seqs',
                         '1', '--heldout-seqs', '1', '--sim-frames', '2', '--train-steps', '3',
                         '--kitti-frames', '1', '--quiet'])
    finally:
        mp.undo()
    return {'code': code, 'out': root / 'demo', 'printed': printed.getvalue(),
            'summary': json.loads((root / 'demo' / 'summary.json').read_text())}


def test_the_loop_makes_every_artefact(loop):
    assert loop['code'] == 0
    out, summary = loop['out'], loop['summary']
    st = summary['stages']
    # the pseudo-label store is complete and holds the training frames
    index = json.loads((out / 'store' / 'index.json').read_text())
    assert index['complete'] is True and index['num_units'] == 2
    assert index['teacher']['model'] == 'ClipLikeTeacher' and index['vocabulary']['classes'] == STREET_CLASSES
    assert json.loads((out / 'store_heldout' / 'index.json').read_text())['num_units'] == 2
    # the trained student: checkpoint with its trained text embeddings, and the ONNX the robot runs
    from perception_nodes.student.checkpoint import load_checkpoint
    from perception_nodes.student.export import read_onnx_metadata
    _, cfg = load_checkpoint(st['train']['checkpoint'])
    names, emb = cfg.trained_text()
    assert names == STREET_CLASSES and emb.shape == (11, 64) and st['train']['steps'] == 3
    assert cfg.provenance['labels_meaningful'] is True and cfg.provenance['teacher']['synthetic'] is True
    onnx_cfg, _, _ = read_onnx_metadata(st['export']['onnx'])
    assert onnx_cfg.trained_text()[0] == STREET_CLASSES
    # the eval reports exist, with numbers, and the printed table is theirs
    train = json.loads((out / 'train' / 'summary.json').read_text())['validation']
    pseudo = {'all': 'teacher', 'visible': 'teacher_visible', 'invisible': 'teacher_invisible'}
    for row in summary['table']['rows']:
        key = row['key']
        assert row['pseudo_labels'] == train[pseudo[key]]['miou']
        for who in ('teacher', 'student'):
            report = json.loads((out / 'eval' / who / 'report.json').read_text())
            assert row[who] == report['headline'][f'miou_{key}' if key != 'all' else 'miou_all_points']
            assert report['headline']['frames'] == 2
    rows = {r['key']: r for r in summary['table']['rows']}
    for who in ('pseudo_labels', 'teacher', 'student'):
        assert 0 <= rows['all'][who] <= 1 and 0 < rows['visible'][who] <= 1
    assert rows['invisible']['pseudo_labels'] == 0.0        # the 2D teacher labels no point it cannot see
    printed = loop['printed']
    for row in summary['table']['rows']:
        line = next(ln for ln in printed.splitlines() if ln.strip().startswith(row['points']))
        expected = [round(100 * row[w], 1) for w in ('pseudo_labels', 'teacher', 'student')]
        assert [float(x) for x in line.split()[-3:]] == expected
    assert 'SYNTHETIC teacher' in printed and 'not from CLIP' in printed


def test_the_replays_say_who_labelled(loop):
    runs = loop['summary']['runs']
    assert {'heldout_teacher', 'heldout_student'} <= set(runs)
    teacher = runs['heldout_teacher']
    assert teacher['vocabulary'] == STREET_CLASSES
    assert any('synthetic CLIP-like teacher' in n and 'not from CLIP' in n for n in teacher['notes'])
    # the student labels every point (360 degrees) with its own text embeddings, no CLIP
    student = runs['heldout_student']
    assert student['labeller'] == 'student' and student['labels_meaningful'] is True
    pts = _labels(student['output'])[0]
    assert (pts['label'] != UNKNOWN_LABEL).all() and pts['label'].max() < len(STREET_CLASSES)
    bag_summary = json.loads(open(student['summary_json']).read())
    assert bag_summary['labeller']['student']['text_source'].startswith('student')
    assert 'clip' not in bag_summary['labeller']


def test_real_kitti_is_geometry_only_without_weights_and_the_student_is_flagged(loop, kitti_raw_dir):
    runs = loop['summary']['runs']
    assert set(runs) == {'heldout_teacher', 'heldout_student', 'kitti_geometry', 'kitti_student'}
    geometry = runs['kitti_geometry']
    pts = _labels(geometry['output'])[0]
    assert (pts['label'] == UNKNOWN_LABEL).all() and (pts['instance'] > 0).any()
    grid = next(iter(iter_messages(geometry['output'], ['/ovp/occupancy']))).msg
    data = np.asarray(grid.data)
    assert (data == 100).any() and (data == 0).any()
    kitti = runs['kitti_student']
    assert kitti['vocabulary'] == STREET_CLASSES and 'SYNTHETIC world only' in kitti['flag']
    assert (_labels(kitti['output'])[0]['label'] != UNKNOWN_LABEL).all()
    assert loop['summary']['mode'] == 'geometry-only'
    assert 'ViT-B-32-openai.safetensors' in loop['printed']             # where to put the weights


def test_demo_without_student_with_tiny_random_clip_is_flagged(tmp_path, fast_config, capsys):
    out = tmp_path / 'demo'
    assert main(['demo', '--out', str(out), '--config', str(fast_config), '--sim-frames', '1',
                 '--heldout-seqs', '1', '--sim-cameras', '1', '--kitti-frames', '1', '--quiet',
                 '--no-student',
                 '--clip-model', 'ovp-tiny', '--clip-pretrained', 'none']) == 0
    printed = capsys.readouterr().out
    assert 'RANDOM CLIP weights' in printed
    summary = json.loads((out / 'summary.json').read_text())
    if summary['inputs']['kitti_bag'] is None:
        pytest.skip('KITTI sample absent')
    assert summary['mode'] == 'random' and summary['weights_help'] is None
    assert set(summary['runs']) == {'heldout_teacher', 'kitti_teacher'} and 'train' not in summary['stages']
    pts = _labels(summary['runs']['kitti_teacher']['output'])[0]
    assert (pts['label'] != UNKNOWN_LABEL).any()
    assert any('NO meaning' in n for n in summary['runs']['kitti_teacher']['notes'])
    assert summary['table']['rows'][0]['student'] is None and summary['table']['rows'][0]['teacher'] > 0


def test_demo_bad_arguments(tmp_path, fast_config, capsys):
    assert main(['demo', '--out', str(tmp_path / 'd'), '--config', str(fast_config), '--sim-frames', '1',
                 '--kitti-frames', '1', '--quiet', '--no-student', '--clip-model', 'ovp-tiny',
                 '--clip-pretrained', 'none', '--vocabulary', 'x.yaml']) == 2
    assert 'vocabulary file not found' in capsys.readouterr().err
    assert main(['demo', '--out', str(tmp_path / 'd'), '--train-steps', '0', '--quiet']) == 2
    assert '--train-steps' in capsys.readouterr().err
