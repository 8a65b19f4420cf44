"""Parameters through the real rclpy machinery: declarations, every live key, ``ros2 param set`` forms.

Changes go through ``Node.set_parameters`` (pre-set callback, descriptor checks, on-set callback) or the
``~/set_parameters`` service that ``ros2 param set`` calls; accepted ones apply from the next frame, refused
ones say why and keep the previous state.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from perception_nodes.config import keys
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.outputs import UNKNOWN_LABEL

LIVE = {k.name for k in keys('node') if k.live}
TYPE_NAMES = {1: 'bool', 2: 'integer', 3: 'double', 4: 'string', 6: 'bool_array', 7: 'integer_array',
              8: 'double_array', 9: 'string_array'}


@pytest.fixture
def fusion(rig, base_params):
    """A running fusion_node on a rig that listens to its cloud, LabelInfo, overlays and diagnostics."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import Image, PointCloud2
    from vision_msgs.msg import LabelInfo

    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    node = r.start(FusionNode, base_params)
    r.clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
    r.overlays = r.listen('/fusion_node/overlay/cam_a', Image)
    r.label_info = r.listen('/fusion_node/label_info', LabelInfo,
                            QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    r.diagnostics = r.listen('/diagnostics', DiagnosticArray)

    def frame(i: int) -> None:
        n = len(r.clouds)
        r.send(i)
        assert r.spin_until(lambda: len(r.clouds) > n)
    r.frame = frame
    return r, node


def test_every_key_is_declared_with_its_type_description_range_and_read_only_flag(fusion, base_params):
    r, node = fusion
    for info in keys('node'):
        d = node.describe_parameter(info.name)
        assert TYPE_NAMES[d.type] == info.kind and d.description == info.describe()
        assert d.read_only == (not info.live) and not d.dynamic_typing
        if info.kind == 'double' and info.min is not None and info.max is not None:
            assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == \
                (info.min, info.max)
        value = node.get_parameter_or(info.name, None)
        expected = base_params.get(info.name, 'teacher' if info.name == 'labeller.kind' else info.default)
        if value.type_.value == 0:                        # declared typed, no value: the empty default
            assert expected == [] or expected == ()
        else:
            got = value.value
            assert (list(got) if isinstance(got, (list, tuple)) or hasattr(got, 'tolist') else got) == \
                (list(expected) if isinstance(expected, tuple) else expected), info.name
    assert node.has_parameter('use_sim_time')                  # rclpy's own, untouched


def test_every_live_parameter_is_accepted_and_applied_from_the_next_frame(fusion, kit):
    from rclpy.parameter import Parameter
    r, node = fusion
    core = node.ovp_core
    r.frame(0)
    assert r.spin_until(lambda: r.label_info and r.overlays, timeout=5)
    # logit scale 1: no class probability comes near 1, so the threshold 1 makes every point unknown
    changes = {'labeller.logit_scale': 1.0, 'labeller.unknown_threshold': 1.0,
               'vocabulary.classes': ['person', 'bicycle', 'tree'], 'vocabulary.templates': ['a {} outside.'],
               'overlay.enabled': False, 'node.max_frame_age': 2.0, 'node.max_processing_time': 5.0,
               'node.silent_topic_timeout': 7.0}
    assert set(changes) == LIVE, 'a live key without a test here'
    results = node.set_parameters([Parameter(k, value=v) for k, v in changes.items()])
    assert all(res.successful for res in results), [res.reason for res in results]
    for k, v in changes.items():
        assert node.get_parameter(k).value == v
    # worker and watchdog settings at once; the rest waits for the next frame (never under a running one)
    assert core.worker.max_age_s == 2.0 and core.watchdog.timeout_s == 7.0
    assert core.pipeline.inner.config.labeller.logit_scale == 100.0
    assert core.config.labeller.logit_scale == 100.0 and core.pipeline.class_names == kit.CLASSES
    r.frame(1)
    cfg = core.config
    assert (cfg.labeller.logit_scale, cfg.labeller.unknown_threshold) == (1.0, 1.0)
    assert (cfg.vocabulary.classes, cfg.vocabulary.templates) == (['person', 'bicycle', 'tree'],
                                                                  ['a {} outside.'])
    assert core.pipeline.inner.config.labeller.unknown_threshold == 1.0
    assert core.pipeline.class_names == ['person', 'bicycle', 'tree']
    labels = read_points(r.clouds[-1])['label']
    assert np.all(labels == UNKNOWN_LABEL)
    assert r.spin_until(lambda: [c.class_name for c in r.label_info[-1].class_map] ==
                        ['person', 'bicycle', 'tree', 'unknown'], timeout=5)     # republished, latched
    assert r.label_info[-1].threshold == 1.0
    r.spin(0.1)
    assert len(r.overlays) == 1 and core.pipeline.outputs[-1].overlays == {}
    assert r.spin_until(lambda: kit.statuses(r.diagnostics[-1])['fusion_node: processing'][2]
                        ['max processing time (s)'] == '5.000', timeout=5)


def test_the_forms_ros2_param_set_sends_through_the_set_parameters_service(fusion):
    """``ros2 param set /fusion_node KEY TEXT`` guesses a type from TEXT and calls ~/set_parameters."""
    from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import get_parameter_value
    r, node = fusion
    client = r.node.create_client(SetParameters, '/fusion_node/set_parameters')
    assert client.wait_for_service(timeout_sec=2.0)

    def ros2_param_set(name: str, text: str):
        value = get_parameter_value(text)                 # what ros2param does with the command line
        future = client.call_async(SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)]))
        assert r.spin_until(future.done, timeout=5)
        return value.type, future.result().results[0]

    sent = {'vocabulary.classes': ('nuscenes', ParameterType.PARAMETER_STRING, ['nuscenes']),
            'vocabulary.templates': ('[]', ParameterType.PARAMETER_BOOL_ARRAY, []),
            'node.max_frame_age': ('2', ParameterType.PARAMETER_INTEGER, 2.0),
            'labeller.logit_scale': ('50', ParameterType.PARAMETER_INTEGER, 50.0),
            'overlay.enabled': ('false', ParameterType.PARAMETER_BOOL, False)}
    for name, (text, kind, canonical) in sent.items():
        sent_type, result = ros2_param_set(name, text)
        assert sent_type == kind and result.successful, (name, result.reason)
        param = node.get_parameter(name)
        assert param.value == canonical and node.describe_parameter(name).type == param.type_.value
    r.frame(0)
    from perception_nodes.vocabulary import load_vocabulary
    assert node.ovp_core.pipeline.class_names == load_vocabulary('nuscenes').names
    assert node.ovp_core.config.vocabulary.templates == [] and node.ovp_core.config.labeller.logit_scale == 50
    # a comma-separated string is a list too; a text that is no number is refused by rclpy's type check
    assert ros2_param_set('vocabulary.classes', 'car, road')[1].successful
    assert node.get_parameter('vocabulary.classes').value == ['car', 'road']
    _, refused = ros2_param_set('node.max_frame_age', 'soon')
    assert not refused.successful and 'type' in refused.reason and node.get_parameter(
        'node.max_frame_age').value == 2.0


def test_bad_values_are_refused_with_a_reason_and_nothing_changes(fusion, kit):
    from rclpy.parameter import Parameter
    r, node = fusion
    core = node.ovp_core
    bad = [('vocabulary.classes', ['/no/such/vocabulary.yaml'], 'vocabulary file not found'),
           ('vocabulary.templates', ['no braces'], 'must contain exactly one'),
           ('labeller.unknown_threshold', 3.0, 'labeller.unknown_threshold'),
           ('labeller.logit_scale', math.nan, 'labeller.logit_scale'),
           ('labeller.logit_scale', 0.0, 'must be > 0'),
           ('node.max_processing_time', 'fast', 'Wrong parameter type'),
           ('overlay.enabled', 'maybe', 'Wrong parameter type'),
           ('node.silent_topic_timeout', -1.0, 'node.silent_topic_timeout')]
    before = {name: node.get_parameter_or(name, None).value for name in LIVE}
    for name, value, reason in bad:
        (result,) = node.set_parameters([Parameter(name, value=value)])
        assert not result.successful and reason in result.reason, (name, result.reason)
    assert {name: node.get_parameter_or(name, None).value for name in LIVE} == before
    r.frame(0)
    assert core.config.vocabulary.classes == kit.CLASSES and core.pipeline.class_names == kit.CLASSES
    assert core.config.labeller.logit_scale == 100.0 and core.watchdog.timeout_s == 60.0
    # a refused change in a batch does not take the accepted ones with it (set_parameters: one by one)
    results = node.set_parameters([Parameter('node.max_frame_age', value=1.5),
                                   Parameter('labeller.unknown_threshold', value=-1.0)])
    assert [res.successful for res in results] == [True, False] and core.worker.max_age_s == 1.5


def test_read_only_keys_are_refused(fusion):
    from rclpy.parameter import Parameter
    r, node = fusion
    for name, value in [('inputs.lidar_topic', '/other'), ('labeller.kind', 'student'),
                        ('node.input_qos', 'reliable'), ('teacher.input_size', [32, 32])]:
        before = node.get_parameter(name).value
        (result,) = node.set_parameters([Parameter(name, value=value)])
        assert not result.successful and result.reason == f'Trying to set a read-only parameter: {name}.'
        after = node.get_parameter(name).value
        assert (list(after) if hasattr(after, 'tolist') else after) == \
            (list(before) if hasattr(before, 'tolist') else before)
