"""Report header honesty, markdown, comparison of two reports, the BEV renderer."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from perception_nodes.evaluation import compare_reports, format_comparison, load_report, write_comparison
from perception_nodes.evaluation.bev import BACKGROUND_RGB, IGNORE_RGB, UNKNOWN_RGB, bev_raster, render_bev
from perception_nodes.evaluation.report import meaningless_reason


def test_meaningless_reasons():
    tiny = {'labeller': 'teacher', 'labels_meaningful': False,
            'clip': {'model': 'ovp-tiny', 'pretrained': 'none', 'random_weights': True}}
    reason = meaningless_reason(tiny, frames=3, frames_with_camera=0, needs_cameras=True)
    assert 'no frame had a usable camera' in reason and 'randomly initialised CLIP (ovp-tiny' in reason
    assert 'camera' not in meaningless_reason(tiny, 3, 3, True)
    assert 'no labeller' in meaningless_reason({'labeller': 'none'}, 3, 0, False)
    student = {'labeller': 'student', 'labels_meaningful': False}
    assert 'untrained student' in meaningless_reason(student, 3, 0, False)
    oracle = {'labeller': 'teacher', 'labels_meaningful': True, 'teacher': 'OracleTeacher'}
    assert meaningless_reason(oracle, 3, 3, True) is None


def test_bev_raster_shows_the_highest_point():
    palette = np.array([[255, 0, 0], [0, 255, 0]], np.uint8)
    points = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 2.0], [1.5, 0.5, 0.0], [0.5, 1.5, 0.0], [9, 9, 0]], float)
    labels = np.array([0, 1, 65535, -1, 0])
    image = bev_raster(points, labels, palette, (0.0, 2.0, 0.0, 2.0), pixels=2,
                       special={65535: UNKNOWN_RGB, -1: IGNORE_RGB})
    assert image[1, 0].tolist() == [0, 255, 0]       # x in [0, 1), y in [0, 1): the top point, class 1
    assert image[1, 1].tolist() == list(UNKNOWN_RGB)
    assert image[0, 0].tolist() == list(IGNORE_RGB)            # row 0 = larger y
    assert image[0, 1].tolist() == list(BACKGROUND_RGB)        # no point; the one at (9, 9) is outside


def test_render_bev_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.uniform(-20, 20, (500, 3))
    palette = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
    path = render_bev(tmp_path / 'b.png', points, rng.integers(0, 3, 500), rng.integers(-1, 3, 500),
                      ['road', 'car', 'tree'], palette, title='t')
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and not list(tmp_path.glob('.*'))


def _report(miou, car_iou, path, labeller='teacher', meaningless=None):
    per_class = {'road': {'iou': 0.5, 'gt_points': 10}, 'car': {'iou': car_iou, 'gt_points': 5},
                 'tree': {'iou': None, 'gt_points': 0}}
    report = {'tool': 'ovp eval',
              'headline': {'protocol': 'all', 'miou': miou, 'frames': 3, 'frames_per_s': 2.0, 'hiou': None},
              'overall': {'semantic': {'all': {'per_class': per_class}}},
              'label_map': {'name': 'x', 'classes': ['road', 'car', 'tree']},
              'labeller': {'labeller': labeller}, 'header': {'meaningless': meaningless},
              'bags': {'b': {'path': '/bags/b'}}}
    path.mkdir(parents=True, exist_ok=True)
    (path / 'report.json').write_text(json.dumps(report))
    return path


def test_compare_two_reports(tmp_path, capsys):
    a = load_report(_report(0.40, 0.30, tmp_path / 'A'))
    b = load_report(_report(0.46, 0.42, tmp_path / 'B', labeller='student', meaningless='untrained'))
    cmp = compare_reports(a, b)
    assert cmp['headline']['miou']['delta'] == pytest.approx(0.06)
    assert cmp['headline']['frames']['delta'] == 0 and 'hiou' not in cmp['headline']
    assert cmp['per_class_iou']['car']['delta'] == pytest.approx(0.12)
    assert cmp['per_class_iou']['tree']['delta'] is None
    assert any('B: labels MEANINGLESS' in w for w in cmp['warnings'])
    text = format_comparison(cmp)
    assert '| mIoU (headline protocol) | 40.0 | 46.0 | +6.0 |' in text
    assert '| car | 30.0 | 42.0 | +12.0 |' in text
    paths = write_comparison(tmp_path / 'cmp', cmp)
    assert json.loads((tmp_path / 'cmp' / 'compare.json').read_text())['per_class_iou']['car']['b'] == 0.42
    assert (tmp_path / 'cmp' / 'compare_class_iou.png').stat().st_size > 1000 and 'png' in paths
    other = copy.deepcopy(b)
    other['bags'] = {'c': {'path': '/bags/c'}}
    assert 'the reports scored different bags' in compare_reports(a, other)['warnings']
    (tmp_path / 'junk.json').write_text('{"tool": "other"}')
    with pytest.raises(ValueError, match='not an ovp eval report'):
        load_report(tmp_path / 'junk.json')
