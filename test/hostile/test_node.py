"""Issue 15, item 22: the node path refuses the decompression bomb from its header too (one assembler).

A NodeCore (what each ROS node runs, ROS-free) gets the real KITTI frames as CompressedImage PNGs; the
second frame's image is the 124 KB 32000x32000 bomb. Its camera is dropped with the reason, the frame is
still published, and the peak RSS of the bomb frame stays at the clean frame's.
"""
from __future__ import annotations

import pytest

from perception_nodes.assembly import SyncedSet
from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.io.bags import iter_messages
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.tf_buffer import TransformBuffer


def test_item22_node_core_drops_the_bomb_camera_with_flat_memory(kitti_bag, hostile, tmp_path):
    from perception_nodes.pipeline import Pipeline
    from perception_nodes.runtime.core import NodeCore

    config = with_overrides(PerceptionConfig(), {
        'inputs.lidar_topic': hostile.CLOUD, 'inputs.camera_topics': [hostile.COMPRESSED],
        'inputs.camera_info_topics': [hostile.INFO], 'teacher.clip_model': 'ovp-tiny',
        'teacher.clip_pretrained': 'none', 'teacher.cache_dir': str(tmp_path / 'cache'),
        'vocabulary.classes': ['road', 'car'], 'vocabulary.templates': ['a photo of a {}.']})
    tf = TransformBuffer()
    frames: dict[int, dict[str, object]] = {}
    for m in iter_messages(kitti_bag):
        if m.topic == hostile.TF_STATIC:
            tf.add_tf_message(m.msg, static=True)
        else:
            frames.setdefault(m.log_time_ns, {})[m.topic] = m
    published: list[str] = []
    pipeline = Pipeline(config)
    core = NodeCore(config, pipeline, default_message_types(),
                    lambda target, source, ns: tf.lookup(target, source, ns, 50_000_000),
                    publish=lambda key, msgtype, msg: published.append(key))
    core.start(threaded=False)
    camera = core.cameras[0].name
    peaks = []
    try:
        for k, stamp in enumerate(sorted(frames)[:2]):
            group = frames[stamp]
            image = group[hostile.IMAGE]
            payload = hostile.png_bomb() if k == 1 else hostile.encode(image, '.png')
            compressed = hostile.to_compressed(image, payload, 'png').msg
            core.on_camera_info(camera, group[hostile.INFO].msg)
            published.clear()
            if not hostile.reset_peak_rss():
                pytest.skip('this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)')
            core.process(SyncedSet(group[hostile.CLOUD].msg, [compressed], {camera: group[hostile.INFO].msg}))
            peaks.append(hostile.peak_rss_mib())
            assert 'labeled_points' in published, k
            assert (f'overlay/{camera}' in published) == (k == 0), k
    finally:
        core.stop()
    counts = core.stats.counts()
    assert counts['camera/bad_image'] == 1 and counts['frames_published'] == 2
    assert '32000x32000' in core.stats.last_problem['camera/bad_image']
    assert peaks[1] < peaks[0] + 200, peaks      # decoding the bomb would add >= 1000 MiB
