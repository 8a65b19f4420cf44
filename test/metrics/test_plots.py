"""Report PNGs: written atomically, valid, of sensible size, not blank."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from perception_nodes.metrics.instances import InstanceAccumulator
from perception_nodes.metrics.plots import plot_class_iou, plot_confusion, plot_pr_curves
from perception_nodes.metrics.retrieval import RetrievalAccumulator
from perception_nodes.metrics.semantic import SemanticAccumulator

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _check_png(path, min_w=300, min_h=250):
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
        pixels = np.asarray(im.convert('L'))
    assert min_w <= w <= 4000 and min_h <= h <= 4000, (w, h)
    assert pixels.std() > 5                                          # something was drawn
    assert not list(path.parent.glob(f'.{path.name}.*'))            # no temporary file left behind
    return w, h


def test_confusion_png(tmp_path):
    rng = np.random.default_rng(0)
    acc = SemanticAccumulator(class_names=['car', 'road', 'building', 'vegetation'])
    truth = rng.integers(0, 4, 500)
    acc.update(np.where(rng.random(500) < 0.7, truth, 65535), truth)
    path = plot_confusion(acc.confusion, acc.class_names, tmp_path / 'report' / 'confusion.png', title='sim')
    assert path == tmp_path / 'report' / 'confusion.png'
    _check_png(path)
    # a large vocabulary (labels thinned to every 2nd class) stays within bounds
    big = plot_confusion(np.eye(90, dtype=np.int64) * 5, [f'c{i}' for i in range(90)], tmp_path / 'big.png',
                         dpi=40)
    _check_png(big)
    with pytest.raises(ValueError, match='does not fit'):
        plot_confusion(np.eye(3), ['a', 'b'], tmp_path / 'bad.png')


def test_class_iou_png_two_systems(tmp_path):
    names = ['car', 'road', 'building', 'pole']
    path = plot_class_iou({'teacher': [0.6, 0.9, np.nan, 0.2], 'student': [0.7, 0.85, 0.5, 0.3]}, names,
                          tmp_path / 'iou.png')
    w, h = _check_png(path)
    assert w > h
    _check_png(plot_class_iou([0.1, 0.2, 0.3, 0.4], names, tmp_path / 'one.png'))
    with pytest.raises(ValueError, match='3 IoU values for 4'):
        plot_class_iou({'x': [0.1, 0.2, 0.3]}, names, tmp_path / 'bad.png')


def test_pr_curves_png(tmp_path):
    rng = np.random.default_rng(1)
    ret = RetrievalAccumulator()
    for q in ('tire', 'building door'):
        s = rng.random(5000)
        ret.update(q, s, rng.random(5000) < s * 0.2)
    res = ret.compute()
    _check_png(plot_pr_curves({q: ret.curve(q) for q in ret.queries}, tmp_path / 'retrieval_pr.png',
                              ap=res.ap, title='retrieval'))
    gt = np.repeat([0, 1, -1], [120, 130, 50])
    inst = InstanceAccumulator()
    inst.update(gt, np.stack([gt == 0, gt == 1, gt == -1]), [0.9, 0.4, 0.7])
    _check_png(plot_pr_curves({'AP50': inst.curve(0.5), 'AP25': inst.curve(0.25)}, tmp_path / 'inst.png'))
    _check_png(plot_pr_curves({'raw pair': ([1.0, 0.5], [0.5, 1.0])}, tmp_path / 'pair.png'))
    with pytest.raises(ValueError, match='no curves'):
        plot_pr_curves({}, tmp_path / 'none.png')


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / 'iou.png'
    plot_class_iou([0.5], ['a'], path)
    before = path.read_bytes()
    from matplotlib.figure import Figure

    def boom(self, *args, **kwargs):
        raise RuntimeError('disk full')

    monkeypatch.setattr(Figure, 'savefig', boom)
    with pytest.raises(RuntimeError, match='disk full'):
        plot_class_iou([0.9], ['a'], path)
    assert path.read_bytes() == before and not list(tmp_path.glob('.iou.png.*'))
