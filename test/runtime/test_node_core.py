"""NodeCore on real KITTI messages: outputs, live parameters, bad messages, queries, stale frames, timing."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from perception_nodes import stats as reasons
from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.runtime.core import NodeCore

LIDAR, IMAGE = '/kitti/velo/pointcloud', '/kitti/camera_color_left/image_raw'
RAW = {'inputs.lidar_topic': LIDAR, 'inputs.camera_topics': [IMAGE], 'inputs.camera_names': ['front'],
       'vocabulary.classes': ['near', 'middle', 'far']}


def make_core(pipeline, lookup, clock=time.monotonic, **raw):
    config = with_overrides(PerceptionConfig(), {**RAW, **raw})
    published = []
    core = NodeCore(config, pipeline, default_message_types(), lookup, node_name='fusion_node', clock=clock,
                    publish=lambda key, msgtype, msg: published.append((key, msg)))
    core.published = published
    core.start(threaded=False)
    return core


@pytest.fixture
def core(kitti_sets, make_pipeline, make_lookup, clock):
    return make_core(make_pipeline(), make_lookup({('camera_2', 'velodyne'): kitti_sets[0].T_cam_lidar}),
                     clock)


def _feed(core, s, info=True):
    core.on_input(LIDAR)
    core.on_input(IMAGE)
    if info:
        core.on_camera_info('front', s.info)
    core.on_synchronized(s.cloud, s.image)
    core.worker.run_once()
    out = {k: m for k, m in core.published}
    core.published.clear()
    return out


def test_synchronized_kitti_set_gives_the_output_messages(core, kitti_sets):
    s = kitti_sets[0]
    out = _feed(core, s)
    assert set(out) == {'label_info', 'labeled_points', 'overlay/front'}
    cloud = out['labeled_points']
    assert cloud.header.frame_id == 'velodyne' and stamp_to_ns(cloud.header.stamp) == s.stamp_ns
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'intensity', 'label', 'score', 'instance', 'rgb']
    pts = read_points(cloud)
    finite = np.isfinite(s.points[:, :3]).all(axis=1)
    assert np.array_equal(pts['x'], s.points[finite, 0])
    assert np.array_equal(pts['intensity'], s.points[finite, 3])
    rng = np.linalg.norm(s.points[finite, :3], axis=1)
    visible = pts['score'] > 0
    assert 0.1 < visible.mean() < 0.6                    # the camera sees the front sector of the sweep only
    assert np.array_equal(pts['label'][visible], (rng[visible] // 10).astype(int) % 3)
    assert np.all(pts['label'][~visible] == UNKNOWN_LABEL)
    overlay = out['overlay/front']
    assert overlay.header.frame_id == 'camera_2' and stamp_to_ns(overlay.header.stamp) == s.stamp_ns
    assert (overlay.height, overlay.width, overlay.encoding) == (*s.rgb.shape[:2], 'rgb8')
    info = out['label_info']
    assert [(c.class_id, c.class_name) for c in info.class_map] == \
        [(0, 'near'), (1, 'middle'), (2, 'far'), (UNKNOWN_LABEL, 'unknown')]
    assert core.stats.counts()[reasons.FRAMES_PUBLISHED] == 1
    assert 'label_info' not in _feed(core, kitti_sets[1])       # announced once, then on each change


def test_vocabulary_change_takes_effect_on_the_next_frame(core, kitti_sets):
    _feed(core, kitti_sets[0])
    assert core.request_parameters({'vocabulary.classes': ['road', 'car']}) is None
    assert core.pipeline.names == ['near', 'middle', 'far']      # not switched under a running frame
    out = _feed(core, kitti_sets[1])
    assert core.pipeline.vocab_calls[-1] == (['road', 'car'], None)
    assert [c.class_name for c in out['label_info'].class_map] == ['road', 'car', 'unknown']
    assert set(np.unique(read_points(out['labeled_points'])['label'])) <= {0, 1, UNKNOWN_LABEL}
    # a ROS `param set` sends a single STRING for a string array
    assert core.request_parameters({'vocabulary.classes': 'nuscenes',
                                    'vocabulary.templates': ['a photo of a {}.']}) is None
    _feed(core, kitti_sets[0])
    assert core.pipeline.vocab_calls[-1] == (['nuscenes'], ['a photo of a {}.'])
    assert core.config.vocabulary.classes == ['nuscenes']


def test_invalid_or_read_only_changes_are_refused_and_nothing_changes(core):
    assert 'read-only' in core.request_parameters({'inputs.sync_slop': 0.2})
    assert 'unknown parameter' in core.request_parameters({'slop': 0.2})
    assert 'vocabulary file not found' in core.request_parameters({'vocabulary.classes': ['/no/such.yaml']})
    assert 'must contain exactly one' in core.request_parameters({'vocabulary.templates': ['no braces']})
    assert 'must be <= 1' in core.request_parameters({'labeller.unknown_threshold': 3.0})
    assert 'finite' in core.request_parameters({'labeller.logit_scale': float('nan')})
    assert core.request_parameters({'node.max_frame_age': 2.0}) is None
    assert core.worker.max_age_s == 2.0
    assert core.config.vocabulary.classes == ['near', 'middle', 'far']


def test_bad_messages_are_counted_not_fatal(core, kitti_sets):
    msgs = default_message_types()
    s = kitti_sets[0]
    c = s.cloud
    bad_cloud = msgs.new('sensor_msgs/msg/PointCloud2', header=c.header, height=1, width=c.width,
                         fields=c.fields, point_step=c.point_step, row_step=c.row_step, data=c.data[:-7])
    core.on_camera_info('front', s.info)
    core.on_synchronized(bad_cloud, s.image)
    core.worker.run_once()
    assert [k for k, _ in core.published] == ['label_info']        # no frame, nothing else
    core.published.clear()
    bad_image = msgs.new('sensor_msgs/msg/Image', header=s.image.header, height=s.image.height,
                         width=s.image.width, encoding='yuv9000', step=s.image.step, data=s.image.data)
    out = _feed(core, dataclasses.replace(kitti_sets[1], image=bad_image))
    # the frame still goes out (LiDAR only: every point unknown), the camera is reported missing
    assert np.all(read_points(out['labeled_points'])['label'] == UNKNOWN_LABEL)
    assert core.pipeline.frames[-1].missing_cameras == ['front']
    assert 'labeled_points' in _feed(core, kitti_sets[2])
    counts = core.stats.counts()
    assert counts[reasons.BAD_CLOUD] == 1 and counts[reasons.BAD_IMAGE] == 1
    errors = {st.name: st for st in core.diagnostics(s.stamp_ns).status}['fusion_node: input errors']
    assert errors.level == 1 and {v.key: v.value for v in errors.values}['bad_cloud'] == '1'


def test_pipeline_exception_is_counted_and_the_worker_goes_on(core, kitti_sets):
    original = core.pipeline.process
    core.pipeline.process = lambda frame: (_ for _ in ()).throw(RuntimeError('CUDA out of memory'))
    _feed(core, kitti_sets[0])
    core.pipeline.process = original
    assert 'labeled_points' in _feed(core, kitti_sets[1])
    assert core.worker.counts.errors == 1
    assert 'CUDA out of memory' in core.stats.last_problem[reasons.FRAME_FAILED]


def test_missing_transform_drops_the_camera_and_is_diagnosed(kitti_sets, make_pipeline, make_lookup):
    core = make_core(make_pipeline(), make_lookup({}))
    out = _feed(core, kitti_sets[0])
    assert core.pipeline.frames[0].missing_cameras == ['front'] and 'labeled_points' in out
    assert core.stats.counts()[reasons.NO_TRANSFORM] == 1
    status = {st.name: st for st in core.diagnostics(0).status}['fusion_node: input errors']
    assert 'camera/no_transform' in status.message and 'camera_2' in status.message


def test_query_publishes_a_similarity_cloud(core, kitti_sets):
    core.on_query('far')
    out = _feed(core, kitti_sets[0])
    sim = read_points(out['similarity'])
    labels = read_points(out['labeled_points'])['label']
    assert [f.name for f in out['similarity'].fields] == ['x', 'y', 'z', 'similarity', 'rgb']
    assert np.allclose(sim['similarity'][labels == 2], 1.0)
    assert np.allclose(sim['similarity'][(labels != 2) & (labels != UNKNOWN_LABEL)], 0.0)
    assert np.all(np.isnan(sim['similarity'][labels == UNKNOWN_LABEL]))
    core.on_query('a unicorn')        # the text encoder refuses it: counted, no similarity output
    out = _feed(core, kitti_sets[1])
    assert 'similarity' not in out and core.stats.counts()[reasons.BAD_QUERY] == 1
    core.on_query('near')
    assert 'similarity' in _feed(core, kitti_sets[2])
    core.on_query('')
    assert 'similarity' not in _feed(core, kitti_sets[0])


def test_outputs_nobody_wants_are_not_built(core, kitti_sets, monkeypatch):
    built = []
    import perception_nodes.io.writer as writer
    real = writer.overlay_image_msg
    monkeypatch.setattr(writer, 'overlay_image_msg', lambda *a, **k: built.append(1) or real(*a, **k))
    core.wanted = lambda key: key in ('labeled_points', 'label_info')
    out = _feed(core, kitti_sets[0])
    assert set(out) == {'label_info', 'labeled_points'} and built == []


def test_silent_topics_are_named_after_the_timeout(core, kitti_sets, clock):
    core.on_input(LIDAR)
    clock.advance(2.0)
    assert core.check_inputs() is None
    core.on_input(LIDAR)
    clock.advance(3.5)
    warning = core.check_inputs()
    assert IMAGE in warning and LIDAR not in warning
    inputs = {st.name: st for st in core.diagnostics(0).status}['fusion_node: inputs']
    assert inputs.level == 1 and 'silent topics' in inputs.message


def test_processing_time_warns_then_errors_after_consecutive_overruns(kitti_sets, make_pipeline, make_lookup):
    pipeline = make_pipeline(delay_s=0.02)
    core = make_core(pipeline, make_lookup({('camera_2', 'velodyne'): kitti_sets[0].T_cam_lidar}),
                     **{'node.max_processing_time': 0.001})

    def level():
        status = {st.name: st for st in core.diagnostics(0).status}['fusion_node: processing']
        return status.level, status.message
    _feed(core, kitti_sets[0])
    assert level()[0] == 1 and 'last frame took' in level()[1]
    for i in range(4):
        _feed(core, kitti_sets[i % 3])
    assert core.overruns == 5 and level()[0] == 2 and '5 consecutive frames' in level()[1]
    assert core.request_parameters({'node.max_processing_time': 10.0}) is None
    pipeline.delay_s = 0.0
    _feed(core, kitti_sets[0])
    assert core.overruns == 0 and level()[0] == 0


def test_a_clock_jump_drops_the_waiting_set_and_is_counted(core, kitti_sets):
    core.on_camera_info('front', kitti_sets[0].info)
    core.on_synchronized(kitti_sets[2].cloud, kitti_sets[2].image)
    core.on_clock_jump('cloud stamp went back 10 s')
    assert not core.worker.pending and core.stats.counts()[reasons.SYNC_RESETS] == 1
    inputs = {st.name: st for st in core.diagnostics(0).status}['fusion_node: inputs']
    assert {v.key: v.value for v in inputs.values}['synchronizer resets (time jumped back)'] == '1'


def test_stale_sets_are_dropped_under_a_slow_pipeline(kitti_sets, make_pipeline, make_lookup):
    """Sets arrive at 100 Hz, the pipeline takes 60 ms: latency stays bounded, drops are counted."""
    core = make_core(make_pipeline(delay_s=0.06), make_lookup({('camera_2',
                                                                'velodyne'): kitti_sets[0].T_cam_lidar}))
    core.worker.stop()
    stamps = []
    core.publish = lambda key, t, msg: (stamps.append(stamp_to_ns(msg.header.stamp))
                                        if key == 'labeled_points' else None)
    core.start(threaded=True)
    try:
        core.on_camera_info('front', kitti_sets[0].info)
        for i in range(30):
            s = kitti_sets[i % 3]
            core.on_synchronized(s.cloud, s.image)
            time.sleep(0.01)
        assert core.worker.wait_idle(10.0)
    finally:
        core.stop()
    c = core.worker.counts
    assert c.submitted == 30 and c.processed == len(stamps) and c.processed + c.dropped == 30
    assert c.replaced >= 15 and c.processed <= 15
    assert stamps[-1] == kitti_sets[29 % 3].stamp_ns     # the newest set is always processed
    assert core.pipeline.closed == 1


def test_a_student_node_is_lidar_only_even_with_cameras_configured(kitti_sets, make_pipeline, make_lookup):
    from dataclasses import replace
    pipeline = make_pipeline()
    pipeline.labeller = replace(pipeline.labeller, needs_cameras=False, name='student')
    core = make_core(pipeline, make_lookup({}))
    assert core.cameras == [] and core.input_topics == [LIDAR]
    core.on_synchronized(kitti_sets[0].cloud)
    core.worker.run_once()
    assert core.pipeline.frames[0].cameras == [] and core.pipeline.frames[0].missing_cameras == []


def test_configuration_errors(make_pipeline, make_lookup):
    with pytest.raises(ValueError, match='needs cameras'):
        make_core(make_pipeline(), make_lookup({}), **{'inputs.camera_topics': [], 'inputs.camera_names': []})
    with pytest.raises(ValueError, match='lidar_topic must name'):
        make_core(make_pipeline(), make_lookup({}), **{'inputs.lidar_topic': ''})


def test_a_failing_vocabulary_switch_keeps_the_previous_vocabulary(core, kitti_sets):
    def refuse(names_or_vocab, templates=None):
        raise RuntimeError('text encoder out of memory')
    core.pipeline.set_vocabulary = refuse
    assert core.request_parameters({'vocabulary.classes': ['road', 'car']}) is None
    out = _feed(core, kitti_sets[0])
    assert 'labeled_points' in out and core.config.vocabulary.classes == ['near', 'middle', 'far']
    assert 'out of memory' in core.stats.last_problem[reasons.FRAME_FAILED]


def test_diagnostics_count_messages_the_synchronizer_never_matched(core, kitti_sets):
    for s in kitti_sets[:2]:
        _feed(core, s)                              # on_input for both topics + one set each
    core.on_input(LIDAR)                            # a cloud whose image never came
    core.on_input(LIDAR)
    inputs = {st.name: st for st in core.diagnostics(0).status}['fusion_node: inputs']
    values = {v.key: v.value for v in inputs.values}
    assert values['synchronized sets'] == '2'
    assert values[f'synchronizer drops {LIDAR}'] == '2' and values[f'synchronizer drops {IMAGE}'] == '0'
