"""fusion_node and student_node on real KITTI frames through the real rclpy / message_filters / tf2_ros.

Every labeller mode, two cameras (KITTI camera_2 under two namespaces), /tf_static through tf2's Buffer and
TransformListener, the real ApproximateTimeSynchronizer: the node route gives the Frame the bag route
assembles and the labels ``Pipeline.process`` gives on it; every output and the diagnostics are checked.
"""
from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.outputs import UNKNOWN_LABEL

FIELDS = ['x', 'y', 'z', 'intensity', 'label', 'score', 'instance', 'rgb']
OUTPUTS = ('labeled_points', 'occupancy', 'semantic_voxels', 'similarity', 'label_info')


def _listen_outputs(rig, name: str, cameras: list[str]) -> dict[str, list]:
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import Image, PointCloud2
    from visualization_msgs.msg import MarkerArray
    out = {'labeled_points': rig.listen(f'/{name}/labeled_points', PointCloud2),
           'occupancy': rig.listen(f'/{name}/occupancy', OccupancyGrid),
           'semantic_voxels': rig.listen(f'/{name}/semantic_voxels', MarkerArray),
           'diagnostics': rig.listen('/diagnostics', DiagnosticArray)}
    for cam in cameras:
        out[f'overlay/{cam}'] = rig.listen(f'/{name}/overlay/{cam}', Image)
    return out


# labeller -> (node, uses the cameras, publishes overlays)
MODES = {'teacher': ('fusion', True), 'ensemble': ('student', True), 'student': ('student', False),
         'none': ('fusion', False)}


@pytest.mark.parametrize('labeller', list(MODES))
def test_every_labeller_mode_gives_the_bag_route_frames_labels_and_outputs(
        rig, kit, base_params, student_onnx, kitti, labeller, frames_equal):
    from vision_msgs.msg import LabelInfo

    from perception_nodes.nodes.fusion_node import FusionNode
    from perception_nodes.nodes.student_node import StudentNode
    kind, uses_cameras = MODES[labeller]
    name = f'{kind}_node'
    params = {**base_params, 'labeller.kind': labeller}
    if labeller in ('student', 'ensemble'):
        params['labeller.student'] = str(student_onnx)
    r = rig()
    node = r.start(FusionNode if kind == 'fusion' else StudentNode, params)
    cams = ['cam_a', 'cam_b'] if uses_cameras else []

    # the ROS face: declared parameters, inputs (no image for a LiDAR-only labeller), outputs
    assert node.get_parameter('labeller.kind').value == labeller
    subs = {t for t, _ in node.get_subscriber_names_and_types_by_node(name, '/')}
    images = set(kit.CAMERAS) | {'/cam_a/camera_info', '/cam_b/camera_info'}
    assert kit.LIDAR in subs and '/tf_static' in subs and f'/{name}/query' in subs
    assert (images <= subs) if uses_cameras else not (images & subs)
    pubs = {t for t, _ in node.get_publisher_names_and_types_by_node(name, '/')}
    expected = {f'/{name}/{k}' for k in OUTPUTS} | {f'/{name}/overlay/{c}' for c in cams}
    assert expected | {'/diagnostics'} <= pubs

    out = _listen_outputs(r, name, cams)
    for i in range(2):
        # a LiDAR-only node never waits for an image: send it none
        r.send(i, cameras=None if uses_cameras else [])
        assert r.spin_until(lambda: len(out['labeled_points']) > i), r.harness.log_messages(30)
    assert r.spin_until(lambda: all(len(out[k]) >= 2 for k in out if k != 'diagnostics'))

    pipeline = node.ovp_core.pipeline
    assert len(pipeline.frames) == 2
    for i, cloud in enumerate(out['labeled_points']):
        stamp = kit.stamp_of(i)
        ref = kit.reference_frame(kitti[i], stamp, list(kit.CAMERAS) if uses_cameras else [], index=i)
        frames_equal(pipeline.frames[i], ref)
        assert cloud.header.frame_id == kit.LIDAR_FRAME and stamp_to_ns(cloud.header.stamp) == stamp
        assert [f.name for f in cloud.fields] == FIELDS
        points = read_points(cloud)
        assert np.array_equal(points['x'], kitti[i].points[:, 0]) and len(points) == len(kitti[i].points)
        expected = pipeline.inner.process(ref)           # the same pipeline on the bag route's Frame
        assert np.array_equal(points['label'], expected.labels)
        assert np.array_equal(points['score'], expected.scores)
        assert np.array_equal(points['instance'], expected.instances)
        labelled = points['label'] != UNKNOWN_LABEL
        if labeller == 'none':
            assert not labelled.any()
        elif labeller == 'teacher':
            assert 0.1 < labelled.mean() < 0.9        # the cameras see the front of the sweep only
        else:
            assert labelled.all()                     # the student labels all around
        assert set(np.unique(points['label'][labelled])) <= set(range(len(kit.CLASSES)))

    grid = out['occupancy'][-1]
    assert stamp_to_ns(grid.header.stamp) == kit.stamp_of(1) and grid.header.frame_id == kit.LIDAR_FRAME
    assert len(grid.data) == grid.info.width * grid.info.height > 0
    assert set(np.unique(np.asarray(grid.data))) <= {-1, 0, 100} and 100 in set(grid.data)
    markers = out['semantic_voxels'][-1].markers
    assert markers[0].action == 3                              # DELETEALL, then one CUBE_LIST per class
    assert all(m.type == 6 and m.header.frame_id == kit.LIDAR_FRAME for m in markers[1:]) and len(markers) > 1
    for cam in cams:
        overlay = out[f'overlay/{cam}'][-1]
        assert overlay.header.frame_id == kit.CAMERA_FRAME
        assert stamp_to_ns(overlay.header.stamp) == kit.stamp_of(1)
        assert (overlay.height, overlay.width, overlay.encoding) == (*kitti[1].rgb.shape[:2], 'rgb8')
        assert not np.array_equal(np.asarray(overlay.data).reshape(kitti[1].rgb.shape), kitti[1].rgb)

    # LabelInfo is latched: a subscriber that comes late still gets it
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    late = r.listen(f'/{name}/label_info', LabelInfo,
                    QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                               reliability=ReliabilityPolicy.RELIABLE))
    assert r.spin_until(lambda: late, timeout=5)
    assert [(c.class_id, c.class_name) for c in late[-1].class_map] == \
        [*enumerate(kit.CLASSES), (UNKNOWN_LABEL, 'unknown')]

    def processed() -> str:
        return kit.statuses(out['diagnostics'][-1])[f'{name}: processing'][2]['frames processed']
    assert r.spin_until(lambda: out['diagnostics'] and processed() == '2', timeout=5)
    diag = kit.statuses(out['diagnostics'][-1])
    level, _, inputs = diag[f'{name}: inputs']
    assert level == 0 and inputs['synchronized sets'] == '2'
    assert inputs['synchronizer resets (time jumped back)'] == '0'
    level, _, processing = diag[f'{name}: processing']
    assert level == 0 and processing['frames processed'] == '2' and processing['frames failed'] == '0'
    assert processing['outputs skipped (no subscriber)'] == 'none'
    assert 'latency total (ms, mean/max)' in processing
    assert diag[f'{name}: input errors'][0] == 0


def test_outputs_nobody_subscribes_to_are_not_built_and_diagnostics_say_which(rig, kit, base_params):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2

    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    node = r.start(FusionNode, base_params)
    clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
    diagnostics = r.listen('/diagnostics', DiagnosticArray)
    r.send(0)
    assert r.spin_until(lambda: clouds)
    outputs = node.ovp_core.pipeline.outputs[-1]
    assert outputs.overlays == {} and outputs.voxels is None and outputs.occupancy is None   # stages skipped
    skipped = 'occupancy, semantic_voxels, overlay/cam_a, overlay/cam_b'
    assert r.spin_until(lambda: diagnostics and kit.statuses(diagnostics[-1])['fusion_node: processing'][2]
                        ['outputs skipped (no subscriber)'] == skipped, timeout=5)
    overlays = r.listen('/fusion_node/overlay/cam_b', Image)           # RViz opens the overlay of cam_b
    r.send(1)
    assert r.spin_until(lambda: overlays and len(clouds) == 2)
    # the pipeline draws the overlays again (all cameras: one switch); only cam_b's message is built
    assert 'cam_b' in node.ovp_core.pipeline.outputs[-1].overlays
    assert node.ovp_core.skipped_outputs == ['occupancy', 'semantic_voxels', 'overlay/cam_a']


def test_one_camera_without_camera_info_is_dropped_from_the_frame_and_diagnosed(rig, kit, base_params,
                                                                                kitti):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import PointCloud2

    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    node = r.start(FusionNode, base_params)
    clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
    diagnostics = r.listen('/diagnostics', DiagnosticArray)
    r.send(0, infos=False)                     # images arrive, their CameraInfo never does
    r.info_pubs[0].publish(kit.info_of(kitti[0], kit.stamp_of(0), r.msgs))
    assert r.spin_until(lambda: clouds)
    frame = node.ovp_core.pipeline.frames[0]
    assert [v.name for v in frame.cameras] in (['cam_a'], []) and 'cam_b' in frame.missing_cameras
    assert r.spin_until(lambda: diagnostics and
                        kit.statuses(diagnostics[-1])['fusion_node: input errors'][0] == 1, timeout=5)
    level, message, values = kit.statuses(diagnostics[-1])['fusion_node: input errors']
    assert 'camera/no_camera_info' in message and 'cam_b' in message
    assert int(values['camera/no_camera_info']) >= 1
