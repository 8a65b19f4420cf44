"""``labeller.text_source``: a trained student classifies with its own stored text embeddings, no CLIP."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.geometry.sim import SIM_CLASSES, make_sim_frame
from perception_nodes.geometry.sim.lidar import LidarBeamModel
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.pipeline import Pipeline
from perception_nodes.student.config import StudentConfig
from perception_nodes.student.export import export_onnx, read_onnx_metadata
from perception_nodes.teacher.synthetic import SyntheticSpec, synthetic_text_embeddings
from training.data import open_source
from training.data.synthetic import InMemoryDataset
from training.engine.config import apply_overrides, config_dir, config_from_tree, load_yaml_tree
from training.engine.trainer import Trainer

SIM = 'sim:frames=2,beams=8,azimuth=128,image=32x96,embed_dim=64'
STUDENT = {'preset': 'none', 'arch': 'range_unet', 'range_height': 16, 'range_width': 128, 'widths': [8, 16],
           'depths': [1, 1], 'point_width': 16, 'head_hidden': 16, 'voxel_width': 4, 'proj_dim': 8,
           'max_points': 4096, 'grid': {'lower': [-40.0, -40.0, -3.0], 'upper': [40.0, 40.0, 3.0],
                                        'shape': [16, 16, 4]}}


def _train(out, data) -> StudentConfig:
    tree = load_yaml_tree(config_dir() / 'affinity3d.yaml')
    tree['student'] = dict(STUDENT)
    tree['phases'] = [{'name': 'train', 'steps': 2}]
    tree['train'].update(progress=False, plots=False, batch_size=1, device='cpu')
    tree['data']['num_workers'] = 0
    tree = apply_overrides(tree, ['recipe.knowledge_transfer=false'])
    Trainer(config_from_tree(tree), data, out, log_to_stdout=False).fit()
    from perception_nodes.student.checkpoint import load_checkpoint
    return load_checkpoint(out / 'student')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A student trained (2 steps) on a 'store' made by the synthetic teacher's identity and text, as ONNX."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('student_text')
    data = open_source(SIM)
    spec = SyntheticSpec()
    text = synthetic_text_embeddings(SIM_CLASSES, spec)          # the synthetic teacher's space
    info = replace(data.info, text_embeddings=text, teacher=dict(spec.identity()))
    model, cfg = _train(root / 'run', InMemoryDataset(data.samples, info))
    onnx = export_onnx(model, root / 'student.onnx', max_points=4096)
    return {'onnx': onnx, 'config': cfg, 'text': text, 'root': root}


@pytest.fixture(scope='module')
def frame():
    return make_sim_frame(2, num_cameras=1, image_size=(48, 160), beam_model=LidarBeamModel(8, n_azimuth=128))


def _config(trained, **changes):
    base = {'labeller.kind': 'student', 'labeller.student': str(trained['onnx']),
            'labeller.backend': 'onnxruntime', 'labeller.text_source': 'student'}
    base.update(changes)
    return with_overrides(PerceptionConfig(), base)


def test_the_trained_text_embeddings_travel_with_the_checkpoint_and_the_onnx(trained):
    names, emb = trained['config'].trained_text()
    assert names == SIM_CLASSES
    torch.testing.assert_close(emb, trained['text'])               # exactly the store's rows, float32
    onnx_cfg, _, _ = read_onnx_metadata(trained['onnx'])
    onnx_names, onnx_emb = onnx_cfg.trained_text()
    assert onnx_names == SIM_CLASSES and torch.equal(onnx_emb, emb)


def test_text_source_student_needs_no_clip_and_selects_trained_rows(trained, frame):
    full = Pipeline(_config(trained))                                  # default vocabulary: all trained
    assert full.clip is None and full.class_names == SIM_CLASSES
    assert full.provenance()['student']['text_source'].startswith('student')
    out = full.process(frame)
    assert (out.labels != UNKNOWN_LABEL).all()                         # 360 degrees, every point
    # a subset selects rows: wherever the full argmax is in the subset, the subset agrees with it
    full_nv = Pipeline(_config(trained, **{'fusion.instance_voting': False}))
    a = full_nv.process(frame).labels
    top = SIM_CLASSES[int(np.bincount(a).argmax())]
    subset = [c for c in ('building', 'road', 'car', 'person') if c != top][:2] + [top]   # rows reordered
    sub = Pipeline(_config(trained, **{'vocabulary.classes': subset, 'fusion.instance_voting': False}))
    b = sub.process(frame).labels
    torch.testing.assert_close(sub.clip_text, trained['text'][[SIM_CLASSES.index(c) for c in subset]])
    names_a = np.array(SIM_CLASSES)[a]
    inside = np.isin(names_a, subset)
    assert inside.sum() > 50 and set(np.unique(b)) <= {0, 1, 2}
    assert (np.array(subset)[b[inside]] == names_a[inside]).all()
    # queries: trained class names only
    projected = torch.nn.functional.normalize(sub.labeller.text[2], dim=0)
    torch.testing.assert_close(sub.text_embedding(top), projected)
    with pytest.raises(ValueError, match='a query must be a class name'):
        sub.text_embedding('a parked car')


def test_a_vocabulary_outside_the_trained_classes_is_a_one_line_error(trained):
    with pytest.raises(ValueError, match=r'knows only the classes the student was trained for \(road, car.*'
                                         r'bicycle, tram are not among them'):
        Pipeline(_config(trained, **{'vocabulary.classes': ['road', 'bicycle', 'tram']}))


def test_text_source_clip_must_be_the_teacher_the_student_was_trained_against(trained, frame, tmp_path):
    # the synthetic teacher it was trained against: accepted, the same text space
    same = Pipeline(_config(trained, **{'labeller.text_source': 'clip', 'teacher.source': 'synthetic',
                                        'vocabulary.classes': ['sim']}))
    torch.testing.assert_close(same.clip_text, trained['text'])
    own = Pipeline(_config(trained)).process(frame).labels
    np.testing.assert_array_equal(same.process(frame).labels, own)
    # a CLIP instead: refused, naming both
    with pytest.raises(ValueError, match=r'trained against the ClipLikeTeacher teacher .* from CLIP '
                                         r'ovp-tiny'):
        Pipeline(_config(trained, **{'labeller.text_source': 'clip', 'teacher.clip_model': 'ovp-tiny',
                                     'teacher.clip_pretrained': 'none', 'teacher.cache_dir': str(tmp_path)}))
    # another synthetic text space (other seed): refused too
    with pytest.raises(ValueError, match='another space'):
        Pipeline(_config(trained, **{'labeller.text_source': 'clip', 'teacher.source': 'synthetic',
                                     'teacher.synthetic_text_seed': 5}))


def test_an_untrained_student_has_no_text_to_use(tmp_path):
    from perception_nodes.student.model import build_student
    torch.manual_seed(0)
    cfg = StudentConfig(**{k: v for k, v in STUDENT.items() if k != 'preset'}, embed_dim=16)
    onnx = export_onnx(build_student(cfg).eval(), tmp_path / 'fresh.onnx', max_points=4096)
    config = with_overrides(PerceptionConfig(), {'labeller.kind': 'student', 'labeller.student': str(onnx),
                                                 'labeller.text_source': 'student'})
    with pytest.raises(ValueError, match='carries no trained text embeddings'):
        Pipeline(config)


def test_ensemble_with_the_synthetic_teacher_and_the_students_own_text(trained, frame):
    pipeline = Pipeline(_config(trained, **{'labeller.kind': 'ensemble', 'teacher.source': 'synthetic',
                                            'fusion.visibility_block': 2}))
    assert pipeline.clip is None and pipeline.class_names == SIM_CLASSES
    student, teacher = pipeline.labeller.student, pipeline.labeller.teacher
    torch.testing.assert_close(teacher.text, trained['text'])                  # the teacher's own space
    torch.testing.assert_close(student.clip_text, trained['text'])             # the student's trained rows
    out = pipeline.process(frame)
    assert (out.labels != UNKNOWN_LABEL).all()
    assert any('synthetic CLIP-like teacher' in n for n in out.notes)
