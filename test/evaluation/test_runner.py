"""evaluate_bags end to end on a synthetic bag with known truth and the oracle teacher, resumability."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception_nodes.evaluation import EvalOptions, MissingTruthError, evaluate_bags
from perception_nodes.evaluation.summary import SummaryContext, headline
from perception_nodes.geometry.projection import project_frame
from perception_nodes.geometry.sim import SIM_CLASSES
from perception_nodes.metrics import InstanceAccumulator, average_precision
from perception_nodes.metrics.instances import masks_from_ids
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.runtime.query import similarity_scores

K = len(SIM_CLASSES)


def _hand_miou(pairs):
    """mIoU from (truth, prediction, mask) triples by loops over points (unknown = miss)."""
    tp, fp, fn = np.zeros(K), np.zeros(K), np.zeros(K)
    for truth, pred, mask in pairs:
        for t, p, m in zip(truth, pred, mask):
            if not m or t < 0:
                continue
            if p == t:
                tp[t] += 1
            else:
                fn[t] += 1
                if p != UNKNOWN_LABEL:
                    fp[p] += 1
    present = (tp + fn) > 0
    return float(np.mean(tp[present] / (tp + fp + fn)[present]))


@pytest.fixture(scope='module')
def oracle_run(tmp_path_factory, sim_truth_bag, oracle_pipeline):
    """One evaluation of the sim bag with the noisy oracle, keeping every frame's outputs."""
    pipeline = oracle_pipeline(flip_prob=0.2, **{'outputs.embeddings': True})
    seen = []
    out = tmp_path_factory.mktemp('oracle_report')
    report = evaluate_bags([sim_truth_bag], pipeline, out, EvalOptions(progress=False, bev_frames=1),
                           on_frame=lambda f, o, t: seen.append((f, o, t)))
    return report, seen, out, pipeline


def test_semantic_numbers_equal_hand_scoring_of_the_same_outputs(oracle_run, sim_truth_frames):
    report, seen, _, _ = oracle_run
    assert len(seen) == len(sim_truth_frames) == report['headline']['frames']
    for (frame, outputs, truth), sim in zip(seen, sim_truth_frames):
        np.testing.assert_array_equal(frame.labels, sim.labels)           # the bag carried the truth
        np.testing.assert_array_equal(truth.gt, sim.labels)                # sim vocabulary ids = indices
        fov = project_frame(sim).in_image.any(0).numpy()
        np.testing.assert_array_equal(truth.fov, fov)
    every = [(t.gt, o.labels, np.ones(len(t.gt), bool)) for _, o, t in seen]
    front = [(t.gt, o.labels, t.fov) for _, o, t in seen]
    visible = [(t.gt, o.labels, o.visible) for _, o, t in seen]
    hidden = [(t.gt, o.labels, ~o.visible) for _, o, t in seen]
    h = report['headline']
    assert h['miou_all_points'] == pytest.approx(_hand_miou(every), abs=1e-12)
    assert h['miou_front_view'] == pytest.approx(_hand_miou(front), abs=1e-12)
    assert h['lidar_miou'] == h['miou_front_view']
    assert h['miou_visible'] == pytest.approx(_hand_miou(visible), abs=1e-12)
    assert h['miou_invisible'] == pytest.approx(_hand_miou(hidden), abs=1e-12)
    assert h['miou_invisible'] < 0.5 * h['miou_visible']         # a 2D teacher has little evidence there
    # the oracle labels the camera views well, points behind the cameras stay unknown
    assert h['miou_front_view'] > 0.4 > h['miou_all_points']
    n = sum(len(t.gt) for _, _, t in seen)
    unknown = sum(int((o.labels == UNKNOWN_LABEL).sum()) for _, o, _ in seen)
    assert h['fraction_unknown'] == pytest.approx(unknown / n, abs=1e-6)
    in_fov = sum(int(t.fov.sum()) for _, _, t in seen)
    assert report['overall']['points']['fraction_in_front_view'] == pytest.approx(in_fov / n, abs=1e-6)
    assert report['header']['labels_meaningful'] and report['header']['meaningless'] is None
    front = headline(report['overall'], SummaryContext(list(SIM_CLASSES), front_view=True))
    assert front['protocol'] == 'front_view' and front['miou'] == h['miou_front_view']
    assert front['fraction_evaluated'] == report['overall']['points']['fraction_evaluated_front_view']


def test_retrieval_and_instances_equal_direct_computation(oracle_run):
    report, seen, _, pipeline = oracle_run
    ret = report['overall']['retrieval']
    for k, name in enumerate(SIM_CLASSES):
        q = pipeline.clip_text[k].numpy()
        scores = np.concatenate([np.round(similarity_scores(o.embeddings, q).astype(np.float64), 4)
                                 for _, o, _ in seen])
        positive = np.concatenate([t.gt == k for _, _, t in seen])
        expected = average_precision(scores, positive)
        assert ret['queries'][name]['ap'] == pytest.approx(expected, abs=1e-12)
        assert ret['queries'][name]['positives'] == int(positive.sum())
    assert 0.0 < ret['map'] <= 1.0
    acc = InstanceAccumulator()
    for _, o, t in seen:
        masks, _ = masks_from_ids(o.instances.astype(np.int64) - 1)
        acc.update(t.instances, masks, masks.sum(1) / masks.shape[1])
    expected = acc.compute()
    inst = report['overall']['instances']
    assert (inst['ap'], inst['ap50'], inst['ap25']) == \
        pytest.approx((expected.ap, expected.ap50, expected.ap25))
    assert inst['num_gt'] == expected.num_gt > 0


def test_occupancy_of_the_geometric_prediction(oracle_run):
    report, _, _, _ = oracle_run
    occ = report['overall']['occupancy']
    assert occ['frames']['geometry'] == 2 and 'geometry' in occ['source']
    assert occ['iou'] > 0.99                       # the voxels holding returns are the prediction itself
    assert 0 < occ['miou'] < 1
    assert occ['observed_voxels'] > occ['occupied_voxels'] > 0


def test_report_files(oracle_run):
    report, _, out, _ = oracle_run
    on_disk = json.loads((out / 'report.json').read_text())
    assert on_disk['headline'] == report['headline']
    md = (out / 'report.md').read_text()
    assert '# ovp eval report' in md and 'MEANINGLESS' not in md and '| road |' in md
    for name in ('confusion', 'class_iou', 'retrieval_pr', 'instances_pr'):
        assert (out / report['figures'][name]).stat().st_size > 1000
    (bag,) = report['bags'].values()
    assert len(bag['bev_pngs']) == 1 and (out / bag['bev_pngs'][0]).is_file()
    assert report['label_map']['name'] == 'sim (vocabulary ids)'
    assert report['labeller']['labeller'] == 'teacher' and report['labeller']['teacher'] == 'BagOracle'
    assert report['overall']['speed']['latency_ms']['total']['p50'] > 0


def test_resume_redoes_only_unfinished_bags(tmp_path, sim_truth_bag, sim_plain_bag, oracle_pipeline):
    import shutil
    second = tmp_path / 'second_bag'
    shutil.copytree(sim_truth_bag, second)
    out = tmp_path / 'report'
    calls = []

    def killed(frame, outputs, truth):
        calls.append(frame.index)
        if len(calls) == 3:                           # dies in the second bag
            raise KeyboardInterrupt

    options = EvalOptions(progress=False, bev_frames=0, metrics=('semantic',))
    pipeline = oracle_pipeline(flip_prob=0.0)
    with pytest.raises(KeyboardInterrupt):
        evaluate_bags([sim_truth_bag, second], pipeline, out, options, on_frame=killed)
    assert not (out / 'report.json').exists()
    calls.clear()
    report = evaluate_bags([sim_truth_bag, second], pipeline, out, options,
                           on_frame=lambda *a: calls.append(1))
    assert len(calls) == 2                              # only the second bag's two frames ran again
    resumed = [b['resumed'] for b in report['bags'].values()]
    assert resumed == [True, False]
    first, again = (b['headline'] for b in report['bags'].values())
    assert first['miou'] == again['miou']               # the same bag, resumed vs computed
    calls.clear()
    changed = EvalOptions(progress=False, bev_frames=0, metrics=('semantic',), instance_score='uniform')
    evaluate_bags([sim_truth_bag], pipeline, out, changed, on_frame=lambda *a: calls.append(1))
    assert len(calls) == 2                              # other options: the saved state is not reused
    with pytest.raises(MissingTruthError, match='label'):
        evaluate_bags([sim_plain_bag], pipeline, tmp_path / 'plain', options)


class _FakeStudent:
    """A student backend: random point features, an occupancy head occupying every voxel below z = -1 m."""

    name = 'fake'
    text_projection = None

    def __init__(self, grid):
        from types import SimpleNamespace
        self.student = SimpleNamespace(grid=grid, provenance={'labels_meaningful': False})
        lo, size = grid.lower[2], grid.voxel_size[2]
        below = (lo + size * (np.arange(grid.shape[2]) + 0.5)) < -1.0
        self.logits = np.zeros((*grid.shape, 2), np.float32)
        self.logits[..., 1] = np.where(below, 5.0, -5.0)[None, None, :]

    def infer(self, points):
        from types import SimpleNamespace
        rng = np.random.default_rng(len(points))
        emb = rng.normal(size=(len(points), 32)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        return SimpleNamespace(point_embeddings=emb, occupancy_logits=self.logits, voxel_features=None)


def test_student_occupancy_head_is_scored_on_its_grid(tmp_path, sim_truth_bag, class_embeddings):
    import torch

    from perception_nodes.config import PerceptionConfig, with_overrides
    from perception_nodes.evaluation.truth import ray_cast_truth
    from perception_nodes.geometry.voxels import GridSpec
    from perception_nodes.metrics.occupancy import OccupancyAccumulator
    from perception_nodes.pipeline import Pipeline
    from perception_nodes.pipeline.grids import student_voxels
    grid = GridSpec((-20.0, -20.0, -3.0), (20.0, 20.0, 1.0), (40, 40, 4))
    cfg = with_overrides(PerceptionConfig(), {'labeller.kind': 'student', 'labeller.student': 'fake.onnx',
                                              'vocabulary.classes': ['sim'],
                                              'overlay.enabled': False})
    pipeline = Pipeline(cfg, student_backend=_FakeStudent(grid))
    pipeline.set_vocabulary('sim', embeddings=class_embeddings)
    seen = []
    report = evaluate_bags([sim_truth_bag], pipeline, tmp_path, EvalOptions(progress=False, bev_frames=0),
                           on_frame=lambda f, o, t: seen.append((f, o, t)))
    pipeline.close()
    occ = report['overall']['occupancy']
    assert occ['frames'] == {'student': 2, 'geometry': 0, 'world_frame': 0, 'no_grid': 0}
    assert occ['source'].startswith('student')
    expected = OccupancyAccumulator(list(SIM_CLASSES))
    for frame, outputs, truth in seen:
        assert outputs.occupancy_3d.shape == grid.shape
        gt = ray_cast_truth(frame.points, truth.gt, grid, np.zeros(3))
        vox = student_voxels(outputs.occupancy_3d, grid, torch.as_tensor(frame.points),
                             torch.as_tensor(outputs.labels.astype(np.int64)))
        occupied = (outputs.occupancy_3d > 0.5).reshape(-1)
        labels = np.full(occupied.size, UNKNOWN_LABEL)
        idx = np.floor((vox.centers - np.array(grid.lower)) / np.array(grid.voxel_size)).astype(int)
        labels[(idx[:, 0] * 40 + idx[:, 1]) * 4 + idx[:, 2]] = vox.labels
        expected.update(gt, occupied, labels)
    r = expected.compute()
    assert (occ['iou'], occ['miou']) == pytest.approx((r.iou, r.miou), abs=1e-12)
    assert 0 < occ['iou'] < 1 and occ['observed_voxels'] == r.observed_voxels
    assert report['header']['meaningless'].startswith('the labeller is not meaningful')


def test_a_failing_frame_is_skipped_with_its_reason(tmp_path, sim_truth_bag, oracle_pipeline):
    from perception_nodes.io.sample_bags import PERIOD_NS, START_NS
    pipeline = oracle_pipeline(flip_prob=0.0)
    teacher = pipeline.labeller.teacher
    inner = teacher.dense_features

    def flaky(views):
        if any((v.stamp_ns - START_NS) // PERIOD_NS == 1 for v in views):
            raise RuntimeError('teacher out of memory')
        return inner(views)

    teacher.dense_features = flaky
    options = EvalOptions(progress=False, bev_frames=0, metrics=('semantic',))
    report = evaluate_bags([sim_truth_bag], pipeline, tmp_path, options)
    assert report['headline']['frames'] == 1
    (skip,) = report['overall']['skipped']
    assert skip['what'] == 'frame_failed' and 'teacher out of memory' in skip['why']
    assert skip['where'] == 'sim_truth_bag cloud 1' and skip['bag'] == 'sim_truth_bag'
    assert report['overall']['counts'] == {'frame_failed': 1}
    assert '- frame_failed at sim_truth_bag cloud 1: RuntimeError: teacher out of memory' in \
        (tmp_path / 'report.md').read_text()
