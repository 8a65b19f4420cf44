"""Street bag -> ``ovp pseudo-label --teacher synthetic`` -> store -> Dataset, against the methods directly.

Also: resuming after a kill, a corrupted shard, disjoint ranks, worker processes.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from perception_nodes.cli.main import main
from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.geometry.sim.street import STREET_CLASSES
from perception_nodes.geometry.visibility import VisibilityConfig
from perception_nodes.io.bag_source import BagSource
from perception_nodes.pipeline import Pipeline
from perception_nodes.teacher.oracle import ClipLikeNoise, ClipLikeTeacher, clip_like_text_embeddings
from training.pseudo.affinity import AffinityConfig
from training.pseudo.affinity3d import Affinity3DConfig, Affinity3DLabeler, dense_frame_labels
from training.pseudo.instance_labels import TeacherCropEncoder
from training.pseudo.quality import label_quality
from training.pseudo.visibility import point_visibility
from training.store.build import build_store
from training.store.config import pseudo_label_config
from training.store.dataset import PseudoLabelDataset
from training.store.shards import StoreCorruptError

from .conftest import UNSEEN


def perception() -> PerceptionConfig:
    return with_overrides(PerceptionConfig(), {'vocabulary.classes': STREET_CLASSES,
                                               'fusion.visibility_block': 2, 'teacher.source': 'synthetic'})


def method(**changes):
    base = {'setting': None, 'affinity3d.setting': 'gzs', 'store.shard_units': 2,
            'affinity3d.unseen': ','.join(UNSEEN), 'affinity3d.affinity.queue_size': 10,
            'methods': 'dense,affinity3d,cns,pop3d'}
    base.pop('setting')
    base.update(changes)
    return pseudo_label_config(base)


@pytest.fixture(scope='module')
def direct(street):
    """The methods of training.pseudo run directly on the bag's frames (no store, no pipeline)."""
    cfg = perception()
    frames = list(BagSource(street['bag'], cfg.inputs).frames())
    emb = clip_like_text_embeddings(STREET_CLASSES, 64, seed=0)
    teacher = ClipLikeTeacher(emb, STREET_CLASSES, ClipLikeNoise(seed=1), downsample=8)
    f = cfg.fusion
    vis_cfg = VisibilityConfig(variant=f.visibility, threshold=f.visibility_threshold,
                               block=f.visibility_block, dilation=f.visibility_dilation,
                               relative_threshold=f.visibility_relative_threshold)
    a3d = Affinity3DConfig(setting='gzs', unseen=UNSEEN, affinity=AffinityConfig(queue_size=10))
    split = a3d.split(STREET_CLASSES)
    affinity, dense, visible = [], [], []
    for chunk in (frames[:2], frames[2:]):          # the queue spans one shard (2 frames)
        labeler = Affinity3DLabeler(a3d, STREET_CLASSES, emb, TeacherCropEncoder(teacher), vis_cfg)
        done = []
        for fr in chunk:
            done += labeler.push(fr, key=fr.index)
        done += labeler.flush()
        affinity += [d.point_labels.labels for d in sorted(done, key=lambda d: d.key)]
    for fr in frames:
        vis = point_visibility(fr, vis_cfg)
        dense.append(dense_frame_labels(fr, teacher.dense_features(fr.cameras), emb, split, vis)[0].labels)
        visible.append(vis.any_visible)
    pipeline = Pipeline(with_overrides(cfg, {'outputs.embeddings': True}), teacher=teacher)
    pipeline.set_vocabulary(STREET_CLASSES, embeddings=emb)
    fused = [pipeline.process(fr).embeddings for fr in frames]
    return {'frames': frames, 'affinity': affinity, 'dense': dense, 'visible': visible, 'fused': fused,
            'split': split}


def test_store_samples_equal_the_methods_run_directly(street_store, direct):
    ds = PseudoLabelDataset(street_store)
    assert len(ds) == 4 and ds.info.label_source == 'affinity3d'
    unseen = np.flatnonzero(direct['split'].unseen_mask)
    pooled = {'store': [], 'direct': []}
    for i, frame in enumerate(direct['frames']):
        s = ds[i]
        assert s['frame_key'] == f'bag:{i:06d}'
        np.testing.assert_array_equal(s['points'][:, :3].numpy(), frame.points)
        np.testing.assert_array_equal(s['gt_labels'].numpy(), frame.labels)          # carried through
        np.testing.assert_array_equal(s['visible'].numpy(), direct['visible'][i])
        np.testing.assert_array_equal(s['labels'].numpy(), direct['affinity'][i])
        np.testing.assert_array_equal(ds.arrays(i)['labels/dense'], direct['dense'][i])
        for name, labels in (('store', s['labels'].numpy()), ('direct', direct['affinity'][i])):
            pooled[name].append((labels, frame.labels, s['visible'].numpy(), s['visible'].numpy()))
    # pseudo-label accuracy on visible points of the unseen classes (the ones the pseudo labels are for)
    q = {name: label_quality(*[np.concatenate(x) for x in zip(*rows)],
                             evaluate=np.isin(np.concatenate([r[1] for r in rows]), unseen))
         for name, rows in pooled.items()}
    keys = ('points', 'labelled', 'accuracy', 'mean_class_accuracy', 'ignored_fraction')
    assert q['store']['labelled'] > 100 and all(q['store'][k] == q['direct'][k] for k in keys)
    assert 0.3 < q['store']['accuracy'] < 1.0                       # CLIP-like mistakes, most right


def test_teacher_features_regenerate_the_pipelines_fused_features(street_store, direct):
    ds = PseudoLabelDataset(street_store)
    for i in range(len(ds)):
        s = ds[i]
        fused = direct['fused'][i]
        np.testing.assert_array_equal(s['teacher_index'].numpy(), np.flatnonzero(np.abs(fused).sum(1) > 0))
        assert s['teacher_features'].dtype == torch.float16
        # float16 maps: equal up to their rounding (the features are unit vectors)
        np.testing.assert_allclose(s['teacher_features'].float().numpy(), fused[s['teacher_index'].numpy()],
                                   atol=2e-3)


def test_float32_maps_regenerate_the_features_exactly(street, direct, tmp_path):
    out = tmp_path / 'f32'
    build_store([street['bag']], out, perception(),
                method(**{'store.map_dtype': 'float32', 'methods': 'dense'}), progress=False)
    ds = PseudoLabelDataset(out, label_source='dense')
    for i in range(len(ds)):
        t = ds.dense_targets(i)
        idx = np.flatnonzero(t.seen)
        np.testing.assert_allclose(t.features(idx).numpy(), direct['fused'][i][idx], atol=1e-6)


def shard_digests(root):
    return [(s['file'], s['sha256']) for s in json.loads((root / 'index.json').read_text())['shards']]


class Killed(Exception):
    pass


def test_a_killed_run_resumes_and_gives_the_uninterrupted_result(street, street_store, tmp_path):
    out = tmp_path / 'killed'
    seen = []

    def kill_after_three(key):
        seen.append(key)
        if len(seen) == 3:
            raise Killed(key)

    with pytest.raises(Killed):
        build_store([street['bag']], out, perception(), method(), progress=False, on_unit=kill_after_three)
    assert not (out / 'index.json').exists()                          # nothing claims to be complete
    assert len(list(out.rglob('c*.safetensors'))) == 1                # chunk 0 done, chunk 1 not
    summary = build_store([street['bag']], out, perception(), method(), progress=False)
    assert summary['run']['chunks_reused'] == 1 and summary['run']['chunks_made'] == 1
    assert summary['run']['units_made'] == 2
    assert shard_digests(out) == shard_digests(street_store)          # byte-identical shards
    again = build_store([street['bag']], out, perception(), method(), progress=False)
    assert again['run']['chunks_reused'] == 2 and again['run']['units_made'] == 0


def test_a_corrupted_shard_is_detected_never_read_and_made_again(street, street_store, tmp_path):
    out = tmp_path / 'corrupt'
    shutil.copytree(street_store, out)
    shard = sorted(out.rglob('c000001.safetensors'))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    ds = PseudoLabelDataset(out)
    ds[0]                                                              # chunk 0 is fine
    with pytest.raises(StoreCorruptError, match='sha256'):
        ds[2]
    summary = build_store([street['bag']], out, perception(), method(), progress=False)
    assert summary['run']['regenerated'] == [{'bag': 'bag', 'chunk': 1, 'why': 'checksum mismatch'}]
    assert shard_digests(out) == shard_digests(street_store)
    PseudoLabelDataset(out)[2]


def test_ranks_make_disjoint_shares_and_the_last_writes_the_index(street, street_store, tmp_path):
    out = tmp_path / 'ranks'
    first = build_store([street['bag']], out, perception(), method(), rank=1, world=2, progress=False)
    assert first is None and not (out / 'index.json').exists()
    made = {p.name for p in out.rglob('c*.safetensors')}
    assert made == {'c000001.safetensors'}                             # rank 1 of 2 owns chunk 1 only
    summary = build_store([street['bag']], out, perception(), method(), rank=0, world=2, progress=False)
    assert summary is not None and shard_digests(out) == shard_digests(street_store)
    ranks = {r['rank']: r for r in summary['run']['ranks']}
    assert ranks[0]['chunks_made'] == ranks[1]['chunks_made'] == 1


@pytest.mark.slow
def test_two_worker_processes_make_the_same_store(street, street_store, tmp_path):
    from .conftest import street_args
    out = tmp_path / 'workers'
    assert main(street_args(street['bag'], out, '--workers', '2')) == 0
    assert shard_digests(out) == shard_digests(street_store)
    summary = json.loads((out / 'summary.json').read_text())
    assert sorted(r['rank'] for r in summary['run']['ranks']) == [0, 1]
    assert all(r['chunks_made'] == 1 and r['peak_rss_mb'] > 0 for r in summary['run']['ranks'])


def test_max_frames_takes_the_first_chunks_of_the_same_store(street, street_store, tmp_path):
    out = tmp_path / 'two'
    summary = build_store([street['bag']], out, with_overrides(perception(), {'replay.max_frames': 2}),
                          method(), progress=False)
    assert summary['units'] == 2 and summary['config_hash'] == json.loads(
        (street_store / 'index.json').read_text())['config_hash']       # max_frames is not part of the key
    assert shard_digests(out) == shard_digests(street_store)[:1]
