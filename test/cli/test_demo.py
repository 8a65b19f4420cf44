"""``ovp demo``: runs without CLIP weights (geometry only, never inventing labels) and with the tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception_nodes.cli.main import main
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


def test_demo_without_weights_is_geometry_only(tmp_path, fast_config, capsys, kitti_raw_dir):
    out = tmp_path / 'demo'
    assert main(['demo', '--out', str(out), '--config', str(fast_config), '--sim-frames', '1',
                 '--sim-cameras', '1', '--kitti-frames', '1', '--quiet']) == 0
    printed = capsys.readouterr().out
    assert 'geometry only' in printed and 'ViT-B-32-openai.safetensors' in printed   # where to put weights
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['mode'] == 'geometry-only'
    assert 'not available offline' in summary['weights_help']
    assert set(summary['runs']) == {'sim_teacher', 'kitti_teacher', 'sim_student', 'kitti_student'}
    for name in ('sim_teacher', 'kitti_teacher'):
        info = summary['runs'][name]
        assert info['frames'] == 1
        clouds = _labels(info['output'])
        assert len(clouds) == 1
        pts = clouds[0]
        assert (pts['label'] == UNKNOWN_LABEL).all() and (pts['score'] == 0).all()   # no invented labels
        assert (pts['instance'] > 0).any()                                           # instances are real
        assert len(info['overlay_pngs']) >= 1
        grid = next(iter(iter_messages(info['output'], ['/ovp/occupancy']))).msg
        data = np.asarray(grid.data)
        assert (data == 100).any() and (data == 0).any()
        bag_summary = json.loads(open(info['summary_json']).read())
        assert bag_summary['labels_meaningful'] is False
        assert any('geometry only' in n for n in bag_summary['notes'])
    # the untrained student labels every point, and every summary says the labels mean nothing
    for name in ('sim_student', 'kitti_student'):
        info = summary['runs'][name]
        assert info['labeller'] == 'student' and info['labels_meaningful'] is False
        pts = _labels(info['output'])[0]
        assert (pts['label'] != UNKNOWN_LABEL).all()
        assert any('not trained' in n and 'NO meaning' in n for n in info['notes'])
    assert 'UNTRAINED student' in printed
    # rerunning into the same folder replaces the outputs
    assert main(['demo', '--out', str(out), '--config', str(fast_config), '--sim-frames', '1',
                 '--sim-cameras', '1', '--kitti-frames', '0', '--quiet', '--no-student']) == 0
    assert set(json.loads((out / 'summary.json').read_text())['runs']) == {'sim_teacher'}


def test_demo_with_tiny_random_clip_is_flagged(tmp_path, fast_config, capsys):
    out = tmp_path / 'demo'
    assert main(['demo', '--out', str(out), '--config', str(fast_config), '--sim-frames', '1',
                 '--sim-cameras', '1', '--kitti-frames', '0', '--quiet', '--no-student',
                 '--clip-model', 'ovp-tiny', '--clip-pretrained', 'none']) == 0
    assert 'RANDOM CLIP weights' in capsys.readouterr().out
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['mode'] == 'random' and summary['weights_help'] is None
    pts = _labels(summary['runs']['sim_teacher']['output'])[0]
    assert (pts['label'] != UNKNOWN_LABEL).any()
    assert any('NO meaning' in n for n in summary['runs']['sim_teacher']['notes'])


def test_demo_bad_vocabulary(tmp_path, fast_config, capsys):
    assert main(['demo', '--out', str(tmp_path / 'd'), '--config', str(fast_config), '--sim-frames', '1',
                 '--sim-cameras', '1', '--kitti-frames', '0', '--quiet', '--clip-model', 'ovp-tiny',
                 '--clip-pretrained', 'none', '--vocabulary', 'x.yaml']) == 2
    assert 'vocabulary file not found' in capsys.readouterr().err
