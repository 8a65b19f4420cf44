"""FusionCore on real KITTI messages: outputs, vocabulary changes, bad messages, queries, stale frames."""
from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

from perception_nodes.io.messages import default_message_types
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.runtime import stats as counters
from perception_nodes.runtime.fusion_core import FusionCore
from perception_nodes.runtime.params import NodeParams

RAW = {'lidar_topic': '/kitti/velo/pointcloud', 'camera_names': ['front'],
       'camera_image_topics': ['/kitti/camera_color_left/image_raw'],
       'camera_info_topics': ['/kitti/camera_color_left/camera_info'],
       'vocabulary': ['near', 'middle', 'far']}


@pytest.fixture
def core(kitti_sets, make_pipeline, make_lookup, clock):
    params = NodeParams.from_dict(RAW)
    published = []
    core = FusionCore(params, make_pipeline(), default_message_types(),
                      make_lookup({('camera_2', 'velodyne'): kitti_sets[0].T_cam_lidar}), clock=clock,
                      publish=lambda key, msg: published.append((key, msg)))
    core.published = published
    core.start(threaded=False)
    return core


def _feed(core, s, info=True):
    core.on_input('/kitti/velo/pointcloud')
    core.on_input('/kitti/camera_color_left/image_raw')
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
    assert set(out) == {'classes', 'labeled_points', 'overlay/front'}
    cloud = out['labeled_points']
    assert cloud.header.frame_id == 'velodyne' and stamp_to_ns(cloud.header.stamp) == s.stamp_ns
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'intensity', 'label', 'score', 'instance', 'rgb']
    pts = read_points(cloud)
    finite = np.isfinite(s.points[:, :3]).all(axis=1)
    assert np.array_equal(pts['x'], s.points[finite, 0])
    assert np.array_equal(pts['intensity'], s.points[finite, 3])
    # labels: the fake pipeline's rule, computed here independently
    (frame,) = core.pipeline.frames
    rng = np.linalg.norm(s.points[finite, :3], axis=1)
    visible = pts['score'] > 0
    assert 0.1 < visible.mean() < 0.6                    # the camera sees the front sector of the sweep only
    assert np.array_equal(pts['label'][visible], (rng[visible] // 10).astype(int) % 3)
    assert np.all(pts['label'][~visible] == UNKNOWN_LABEL)
    overlay = out['overlay/front']
    assert overlay.header.frame_id == 'camera_2' and stamp_to_ns(overlay.header.stamp) == s.stamp_ns
    assert (overlay.height, overlay.width, overlay.encoding) == (*s.rgb.shape[:2], 'rgb8')
    classes = json.loads(out['classes'].data)
    assert classes['classes'] == ['near', 'middle', 'far'] and len(classes['colors']) == 3
    assert core.stats.counts()[counters.FRAMES_PUBLISHED] == 1


def test_vocabulary_change_takes_effect_on_the_next_frame(core, kitti_sets):
    _feed(core, kitti_sets[0])
    assert core.request_parameters({'vocabulary': ['road', 'car']}) is None
    assert core.pipeline.names == ['near', 'middle', 'far']      # not switched under a running frame
    out = _feed(core, kitti_sets[1])
    assert core.pipeline.vocab_calls[-1] == (['road', 'car'], None)
    assert json.loads(out['classes'].data)['classes'] == ['road', 'car']
    labels = read_points(out['labeled_points'])['label']
    assert set(np.unique(labels)) <= {0, 1, UNKNOWN_LABEL}
    assert 'classes' not in _feed(core, kitti_sets[2])          # announced once per change
    # templates and a built-in vocabulary
    change = {'vocabulary': ['nuscenes'], 'prompt_templates': ['a photo of a {}.']}
    assert core.request_parameters(change) is None
    _feed(core, kitti_sets[0])
    assert core.pipeline.vocab_calls[-1] == ('nuscenes', ['a photo of a {}.'])


def test_invalid_or_read_only_changes_are_refused(core):
    assert 'read-only' in core.request_parameters({'slop': 0.2})
    assert 'vocabulary' in core.request_parameters({'vocabulary': ['/no/such/vocabulary.yaml']})
    assert core.params.vocabulary.names == ('near', 'middle', 'far')


def test_bad_messages_are_counted_not_fatal(core, kitti_sets):
    msgs = default_message_types()
    s = kitti_sets[0]
    c = s.cloud
    bad_cloud = msgs.new('sensor_msgs/msg/PointCloud2', header=c.header, height=1, width=c.width,
                         fields=c.fields, point_step=c.point_step, row_step=c.row_step, data=c.data[:-7])
    core.on_camera_info('front', s.info)
    core.on_synchronized(bad_cloud, s.image)
    core.worker.run_once()
    assert core.published == []
    bad_image = msgs.new('sensor_msgs/msg/Image', header=s.image.header, height=s.image.height,
                         width=s.image.width, encoding='yuv9000', step=s.image.step, data=s.image.data)
    out = _feed(core, dataclasses.replace(kitti_sets[1], image=bad_image))
    # the frame still goes out (LiDAR only: every point unknown), the camera is reported missing
    assert np.all(read_points(out['labeled_points'])['label'] == UNKNOWN_LABEL)
    assert core.pipeline.frames[-1].missing_cameras == ['front']
    out = _feed(core, kitti_sets[2])
    assert 'labeled_points' in out
    counts = core.stats.counts()
    assert counts[counters.BAD_CLOUD] == 1 and counts[counters.BAD_IMAGE] == 1
    assert counts[counters.FRAMES_SKIPPED] == 1
    diag = core.diagnostics(s.stamp_ns)
    errors = [st for st in diag.status if st.name == 'fusion_node: input errors'][0]
    assert errors.level == 1 and {v.key: v.value for v in errors.values}['bad_cloud'] == '1'


def test_pipeline_exception_is_counted_and_the_worker_goes_on(core, kitti_sets):
    original = core.pipeline.process
    core.pipeline.process = lambda frame: (_ for _ in ()).throw(RuntimeError('CUDA out of memory'))
    _feed(core, kitti_sets[0])
    core.pipeline.process = original
    assert 'labeled_points' in _feed(core, kitti_sets[1])
    assert core.worker.counts.errors == 1
    assert 'CUDA out of memory' in core.stats.last_problem[counters.PIPELINE_ERRORS]


def test_missing_transform_skips_the_frame_and_is_diagnosed(kitti_sets, make_pipeline, make_lookup):
    core = FusionCore(NodeParams.from_dict(RAW), make_pipeline(), default_message_types(), make_lookup({}))
    core.start(threaded=False)
    core.on_camera_info('front', kitti_sets[0].info)
    core.on_synchronized(kitti_sets[0].cloud, kitti_sets[0].image)
    core.worker.run_once()
    assert core.pipeline.frames == [] and core.stats.counts()[counters.TF_FAILURES] == 1
    status = {st.name: st for st in core.diagnostics(0).status}['fusion_node: input errors']
    assert 'tf_failures' in status.message and 'camera_2' in status.message


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
    assert 'similarity' not in out and core.stats.counts()[counters.BAD_QUERY] == 1
    core.on_query('near')
    assert 'similarity' in _feed(core, kitti_sets[2])
    core.on_query('')
    assert 'similarity' not in _feed(core, kitti_sets[0])


def test_silent_topics_are_named_after_the_timeout(core, kitti_sets, clock):
    core.on_input('/kitti/velo/pointcloud')
    clock.advance(2.0)
    assert core.check_inputs() is None
    core.on_input('/kitti/velo/pointcloud')
    clock.advance(3.5)
    warning = core.check_inputs()
    assert '/kitti/camera_color_left/image_raw' in warning and '/kitti/velo/pointcloud' not in warning
    inputs = {st.name: st for st in core.diagnostics(0).status}['fusion_node: inputs']
    assert inputs.level == 1 and 'silent topics' in inputs.message


def test_stale_sets_are_dropped_under_a_slow_pipeline(kitti_sets, make_pipeline, make_lookup):
    """Sets arrive at 100 Hz, the pipeline takes 60 ms: latency stays bounded, drops are counted."""
    pipeline = make_pipeline(delay_s=0.06)
    core = FusionCore(NodeParams.from_dict(RAW), pipeline, default_message_types(),
                      make_lookup({('camera_2', 'velodyne'): kitti_sets[0].T_cam_lidar}))
    stamps = []

    def publish(key, msg):
        if key == 'labeled_points':
            stamps.append(stamp_to_ns(msg.header.stamp))
    core.publish = publish
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
    proc = {st.name: st for st in core.diagnostics(0).status}['fusion_node: processing']
    assert {v.key: v.value for v in proc.values}['frames dropped (replaced by newer)'] == str(c.replaced)


def test_fusion_needs_a_camera(make_pipeline, make_lookup):
    with pytest.raises(ValueError, match='at least one camera'):
        FusionCore(NodeParams.from_dict({}), make_pipeline(), default_message_types(), make_lookup({}))


def test_a_failing_vocabulary_switch_keeps_the_previous_vocabulary(core, kitti_sets):
    def refuse(names_or_vocab, templates=None):
        raise RuntimeError('text encoder out of memory')
    core.pipeline.set_vocabulary = refuse
    assert core.request_parameters({'vocabulary': ['road', 'car']}) is None
    out = _feed(core, kitti_sets[0])
    assert 'labeled_points' in out and core.params.vocabulary.names == ('near', 'middle', 'far')
    assert core.vocabulary.names == ('near', 'middle', 'far')
    assert 'out of memory' in core.stats.last_problem[counters.PIPELINE_ERRORS]


def test_diagnostics_count_messages_the_synchronizer_never_matched(core, kitti_sets):
    for s in kitti_sets[:2]:
        _feed(core, s)                              # on_input for both topics + one set each
    core.on_input('/kitti/velo/pointcloud')         # a cloud whose image never came
    core.on_input('/kitti/velo/pointcloud')
    inputs = {st.name: st for st in core.diagnostics(0).status}['fusion_node: inputs']
    values = {v.key: v.value for v in inputs.values}
    assert values['synchronized sets'] == '2'
    assert values['synchronizer drops /kitti/velo/pointcloud'] == '2'
    assert values['synchronizer drops /kitti/camera_color_left/image_raw'] == '0'
