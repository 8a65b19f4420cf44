"""``ovp replay`` end to end: synthetic and KITTI bags in, an output bag read back with rosbags out."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from perception_nodes.cli.main import main
from perception_nodes.geometry.sim import SIM_CLASSES
from perception_nodes.io.bags import iter_messages
from perception_nodes.io.outputs import unpack_rgb
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.io.sample_bags import PERIOD_NS, START_NS, sim_frames, write_sim_bag

TINY = ['--clip-model', 'ovp-tiny', '--clip-pretrained', 'none', '--quiet', '--config', 'CONFIG']
EXPECTED_TOPICS = {'/tf_static', '/ovp/labeled_points', '/ovp/occupancy', '/ovp/semantic_voxels',
                   '/ovp/overlay/camera_0', '/ovp/overlay/camera_1', '/ovp/label_info'}
ONCE = {'/tf_static', '/ovp/label_info'}


@pytest.fixture(scope='module')
def frames():
    return sim_frames(2, num_cameras=2, image_size='tiny', beams=(16, 384))


@pytest.fixture(scope='module')
def sim_bag(tmp_path_factory, frames):
    path = tmp_path_factory.mktemp('sim') / 'sim_bag'
    write_sim_bag(path, frames)
    return path


@pytest.fixture(autouse=True)
def _isolated_cache_and_short_prompts(tmp_path, monkeypatch):
    """Own text-embedding cache; one prompt template (80 would only cost time with the tiny model)."""
    monkeypatch.setenv('OVP_CLIP_CACHE', str(tmp_path / 'clip-cache'))
    config = tmp_path / 'fast.yaml'
    config.write_text("vocabulary:\n  templates: ['a photo of a {}.']\n")
    TINY[-1] = str(config)


def _read(bag):
    out: dict[str, list] = {}
    for m in iter_messages(bag):
        out.setdefault(m.topic, []).append(m)
    return out


def test_replay_synthetic_bag(sim_bag, frames, tmp_path, capsys):
    out = tmp_path / 'out'
    assert main(['replay', '--bag', str(sim_bag), '--out', str(out), '--vocabulary', 'sim', *TINY]) == 0
    printed = json.loads(capsys.readouterr().out.split('\nNOTE')[0])
    assert printed['frames'] == 2
    msgs = _read(out)
    assert set(msgs) == EXPECTED_TOPICS
    assert {t: len(v) for t, v in msgs.items()} == {t: 1 if t in ONCE else 2 for t in EXPECTED_TOPICS}
    stamps = [START_NS, START_NS + PERIOD_NS]
    for i, m in enumerate(msgs['/ovp/labeled_points']):
        cloud = m.msg
        assert cloud.header.frame_id == 'velodyne' and stamp_to_ns(cloud.header.stamp) == stamps[i]
        assert m.log_time_ns == stamps[i]
        pts = read_points(cloud)
        assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'intensity', 'label', 'score', 'instance',
                                                  'rgb']
        np.testing.assert_array_equal(np.stack([pts['x'], pts['y'], pts['z']], 1), frames[i].points)
        np.testing.assert_allclose(pts['intensity'], frames[i].intensity)
        labels = pts['label']
        assert set(np.unique(labels)) <= set(range(len(SIM_CLASSES))) | {UNKNOWN_LABEL}
        assert (labels != UNKNOWN_LABEL).any() and (labels == UNKNOWN_LABEL).any()   # behind-camera points
        assert (pts['score'][labels == UNKNOWN_LABEL] == 0).all()
        assert (pts['instance'] > 0).any()
        colours = unpack_rgb(np.ascontiguousarray(pts['rgb']))
        assert (colours[labels == UNKNOWN_LABEL] == 128).all()
    for cam in (0, 1):
        for i, m in enumerate(msgs[f'/ovp/overlay/camera_{cam}']):
            img = m.msg
            assert img.header.frame_id == f'camera_{cam}' and stamp_to_ns(img.header.stamp) == stamps[i]
            assert (img.height, img.width, img.encoding) == (94, 311, 'rgb8')
    grid = msgs['/ovp/occupancy'][0].msg
    assert grid.header.frame_id == 'velodyne' and grid.info.width == grid.info.height == 500
    markers = msgs['/ovp/semantic_voxels'][0].msg.markers
    assert markers[0].action == 3 and all(mk.type == 6 for mk in markers[1:])
    tf = msgs['/tf_static'][0].msg.transforms
    assert sorted(t.child_frame_id for t in tf) == ['camera_0', 'camera_1']

    info = msgs['/ovp/label_info'][0].msg
    assert [(c.class_id, c.class_name) for c in info.class_map] == \
        [*enumerate(SIM_CLASSES), (UNKNOWN_LABEL, 'unknown')]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames'] == 2 and summary['error'] is None and summary['skipped'] == []
    assert summary['labels_meaningful'] is False
    assert any('NO meaning' in n for n in summary['notes'])
    assert [c['name'] for c in summary['classes']] == SIM_CLASSES
    assert summary['classes'][1]['rgb'] == [100, 150, 245]
    assert set(summary['latency_ms']['total']) == {'p50', 'p90', 'p99', 'mean', 'max'}
    assert summary['topics']['/ovp/labeled_points'] == 2
    assert (out / 'legend.png').is_file()
    assert len(list((out / 'overlays').glob('*.png'))) == 4
    assert summary['labeller']['labeller'] == 'teacher' and summary['labeller']['clip']['random_weights']


def test_replay_kitti_bag(kitti_raw_dir, tmp_path):
    from perception_nodes.io.sample_bags import write_kitti_sample_bag
    bag = tmp_path / 'kitti'
    write_kitti_sample_bag(kitti_raw_dir, bag, max_frames=2)
    out = tmp_path / 'kitti_out'
    assert main(['replay', '--bag', str(bag), '--out', str(out), '--vocabulary', 'semantickitti',
                 '--storage', 'sqlite3', *TINY]) == 0
    inputs = _read(bag)
    msgs = _read(out)
    assert set(msgs) == {'/tf_static', '/ovp/labeled_points', '/ovp/occupancy', '/ovp/semantic_voxels',
                         '/ovp/overlay/camera_2', '/ovp/label_info'}
    assert all(len(msgs[t]) == 2 for t in msgs if t not in ONCE)
    assert any(p.suffix == '.db3' for p in out.iterdir())
    for src, dst in zip(inputs['/velodyne_points'], msgs['/ovp/labeled_points']):
        assert dst.msg.header.frame_id == src.msg.header.frame_id
        assert stamp_to_ns(dst.msg.header.stamp) == stamp_to_ns(src.msg.header.stamp)
        assert dst.msg.width == src.msg.width
        labels = read_points(dst.msg)['label']
        # only the front camera's field of view gets labels (KITTI camera 2 sees ~1/5 of the sweep)
        assert 0.05 < (labels != UNKNOWN_LABEL).mean() < 0.6
    cam = inputs['/camera_2/image_raw'][0].msg
    ov = msgs['/ovp/overlay/camera_2'][0].msg
    assert (ov.width, ov.height, ov.header.frame_id) == (cam.width, cam.height, cam.header.frame_id)


def test_camera_missing_from_a_frame_is_degraded_not_dropped(sim_bag, tmp_path):
    from perception_nodes.io.bags import BagWriter
    bag = tmp_path / 'partial'
    with BagWriter(bag) as writer:                                # frame 1 lacks camera_1's image
        for m in iter_messages(sim_bag, deserialize=False):
            if not (m.topic == '/camera_1/image_raw' and m.log_time_ns == START_NS + PERIOD_NS):
                writer.write_raw(m.topic, m.msgtype, m.msg, m.log_time_ns)
    out = tmp_path / 'out'
    assert main(['replay', '--bag', str(bag), '--out', str(out), '--vocabulary', 'sim', *TINY]) == 0
    msgs = _read(out)
    assert len(msgs['/ovp/labeled_points']) == 2
    assert len(msgs['/ovp/overlay/camera_0']) == 2 and len(msgs['/ovp/overlay/camera_1']) == 1
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['degraded_views'] == {'camera_missing': 1}
    assert summary['counts'] == {'camera/no_image': 1}
    (skip,) = summary['skipped']
    assert skip['what'] == 'camera/no_image' and skip['where'] == 'partial cloud 1'
    assert skip['why'].startswith('camera_1: no image on /camera_1/image_raw')
    assert any("camera 'camera_1' missing" in n for n in summary['notes'])


def test_malformed_cloud_is_skipped_and_truncated_bag_reported(frames, sim_bag, tmp_path):
    from perception_nodes.io.bags import BagWriter
    bag = tmp_path / 'malformed'
    with BagWriter(bag) as writer:
        for m in iter_messages(sim_bag):
            if m.topic == '/velodyne_points' and m.log_time_ns == START_NS:
                m.msg.data = m.msg.data[:-3]                      # frame 0's cloud is garbage
            writer.write(m.topic, m.msgtype, m.msg, m.log_time_ns)
    out = tmp_path / 'out'
    assert main(['replay', '--bag', str(bag), '--out', str(out), '--vocabulary', 'sim', *TINY]) == 0
    msgs = _read(out)
    assert [stamp_to_ns(m.msg.header.stamp) for m in msgs['/ovp/labeled_points']] == [START_NS + PERIOD_NS]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames'] == 1 and summary['counts'] == {'bad_cloud': 1}
    skip = summary['skipped'][0]
    assert skip['where'] == 'malformed cloud 0' and 'ValueError' in skip['why']

    cut = tmp_path / 'cut'
    shutil.copytree(sim_bag, cut)
    mcap = next(cut.glob('*.mcap'))
    data = mcap.read_bytes()
    mcap.write_bytes(data[:int(len(data) * 0.6)])                 # cut inside frame 1
    rc = main(['replay', '--bag', str(cut), '--out', str(tmp_path / 'cut_out'), '--vocabulary', 'sim', *TINY])
    if rc == 0:
        summary = json.loads((tmp_path / 'cut_out' / 'summary.json').read_text())
        assert 'truncated' in summary['error'] and summary['frames'] == 1
        # a valid output bag holding exactly the frames processed before the cut
        assert len(_read(tmp_path / 'cut_out')['/ovp/labeled_points']) == 1
    else:                                  # nothing readable before the cut: nothing is published
        assert rc == 2 and not (tmp_path / 'cut_out').exists()


@pytest.mark.parametrize('extra, message', [
    (['--vocabulary', ''], 'empty vocabulary'),
    (['--vocabulary', 'no_such_vocab'], 'unknown vocabulary'),
    (['--lidar-topic', '/nope'], "topic(s) ['/nope'] not in the bag"),
    (['--clip-model', 'no-such-model'], 'unknown CLIP model'),
    (['--clip-pretrained', 'laion400m_e32', '--clip-model', 'ViT-B-32'], 'ViT-B-32'),
])
def test_bad_input_is_a_clear_error(sim_bag, tmp_path, capsys, extra, message):
    args = ['replay', '--bag', str(sim_bag), '--out', str(tmp_path / 'o'), *TINY, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert 'ovp replay: error:' in err and message in err
    assert not (tmp_path / 'o').exists()


def test_weights_not_matching_and_missing_paths(sim_bag, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file
    bad = tmp_path / 'w.safetensors'
    save_file({'visual.proj': torch.zeros(2, 2)}, str(bad))
    assert main(['replay', '--bag', str(sim_bag), '--out', str(tmp_path / 'o'), '--quiet',
                 '--clip-model', 'ovp-tiny', '--clip-pretrained', str(bad)]) == 2
    assert 'do not match the CLIP model' in capsys.readouterr().err
    assert main(['replay', '--bag', str(tmp_path / 'none'), '--out', str(tmp_path / 'o'), *TINY]) == 2
    assert 'input bag not found' in capsys.readouterr().err
    (tmp_path / 'exists').mkdir()
    assert main(['replay', '--bag', str(sim_bag), '--out', str(tmp_path / 'exists'), *TINY]) == 2
    assert 'exists already' in capsys.readouterr().err
    cfg = tmp_path / 'c.yaml'
    cfg.write_text('fusion:\n  visiblity: none\n')
    assert main(['replay', '--bag', str(sim_bag), '--out', str(tmp_path / 'o'), '--config', str(cfg)]) == 2
    assert "unknown key(s) ['visiblity']" in capsys.readouterr().err
