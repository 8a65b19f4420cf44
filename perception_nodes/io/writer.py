"""The one output writer: :class:`~perception_nodes.outputs.Outputs` -> ROS messages, keyed by output name.

``ovp replay`` writes each message to ``<outputs.topic_prefix>/<key>`` of an output bag; a node publishes it
on ``~/<key>``. The keys (topic names relative to the node / prefix) and types:

=====================  ================================  ===========================================
key                    type                              content
=====================  ================================  ===========================================
``labeled_points``     sensor_msgs/PointCloud2           x, y, z, intensity, label (uint16, 65535 =
                                                         unknown), score (float32 in [0, 1]),
                                                         instance (uint32), rgb (class colour)
``occupancy``          nav_msgs/OccupancyGrid            -1 unknown, 0 free, 100 occupied
``semantic_voxels``    visualization_msgs/MarkerArray    DELETEALL + one CUBE_LIST per class
``overlay/<camera>``   sensor_msgs/Image (rgb8)          labels drawn on the camera image
``similarity``         sensor_msgs/PointCloud2           x, y, z, similarity, rgb (free-text query)
``label_info``         vision_msgs/LabelInfo             class id -> name (65535 = UNLABELED)
=====================  ================================  ===========================================

Messages are stamped with the sweep's stamp and frame (overlays: the camera's stamp and frame). Which
outputs are built is up to the caller (``wanted``): a node skips outputs nobody subscribes to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from perception_nodes.io.messages import MessageTypes, default_message_types
from perception_nodes.io.outputs import (labeled_cloud, occupancy_grid_msg, overlay_image_msg,
                                         similarity_cloud, voxel_markers)
from perception_nodes.io.stamps import header
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs

__all__ = ['OUTPUT_TYPES', 'OutputMessage', 'OutputWriter', 'overlay_key', 'output_type']

LABELED_POINTS, OCCUPANCY, SEMANTIC_VOXELS = 'labeled_points', 'occupancy', 'semantic_voxels'
SIMILARITY, LABEL_INFO, OVERLAY = 'similarity', 'label_info', 'overlay'
OUTPUT_TYPES: dict[str, str] = {
    LABELED_POINTS: 'sensor_msgs/msg/PointCloud2',
    OCCUPANCY: 'nav_msgs/msg/OccupancyGrid',
    SEMANTIC_VOXELS: 'visualization_msgs/msg/MarkerArray',
    OVERLAY: 'sensor_msgs/msg/Image',
    SIMILARITY: 'sensor_msgs/msg/PointCloud2',
    LABEL_INFO: 'vision_msgs/msg/LabelInfo',
}


def overlay_key(camera: str) -> str:
    """Return the output key of a camera's overlay (names are topic tokens: ``assembly.camera_name``)."""
    return f'{OVERLAY}/{camera}'


def output_type(key: str) -> str:
    """Return the message type of an output key."""
    return OUTPUT_TYPES[key.split('/', 1)[0]]


@dataclass
class OutputMessage:
    key: str            # topic relative to the node / the bag's topic prefix
    msgtype: str
    msg: Any
    stamp_ns: int


class OutputWriter:
    """Builds the messages of one frame's outputs (module docstring) through a message factory."""

    def __init__(self, msgs: MessageTypes | None = None, unknown_color: Sequence[int] = (128, 128,
                                                                                         128)) -> None:
        self.msgs = msgs or default_message_types()
        self.unknown_color = tuple(int(c) for c in unknown_color)

    def frame_messages(self, outputs: Outputs, wanted: Callable[[str], bool] | None = None,
                       similarity: np.ndarray | None = None) -> list[OutputMessage]:
        """Every wanted message of one frame, built completely before any is written or published."""
        msgs, stamp = self.msgs, outputs.stamp_ns
        want = wanted or (lambda key: True)
        hdr = header(outputs.frame_id, stamp, msgs)
        out: list[OutputMessage] = []
        if want(LABELED_POINTS):
            cloud = labeled_cloud(outputs, hdr, outputs.palette, msgs, unknown_color=self.unknown_color)
            out.append(OutputMessage(LABELED_POINTS, OUTPUT_TYPES[LABELED_POINTS], cloud, stamp))
        if outputs.occupancy is not None and want(OCCUPANCY):
            grid = outputs.occupancy
            grid_hdr = header(grid.frame_id or outputs.frame_id, stamp, msgs)
            msg = occupancy_grid_msg(grid, grid_hdr, msgs)
            out.append(OutputMessage(OCCUPANCY, OUTPUT_TYPES[OCCUPANCY], msg, stamp))
        if outputs.voxels is not None and want(SEMANTIC_VOXELS):
            markers = voxel_markers(outputs.voxels, hdr, outputs.class_names, outputs.palette, msgs,
                                    unknown_color=self.unknown_color)
            out.append(OutputMessage(SEMANTIC_VOXELS, OUTPUT_TYPES[SEMANTIC_VOXELS], markers, stamp))
        for camera, image in outputs.overlays.items():
            key = overlay_key(camera)
            if not want(key):
                continue
            frame_id, cam_stamp = outputs.camera_frames.get(camera, (outputs.frame_id, stamp))
            msg = overlay_image_msg(image, header(frame_id, cam_stamp, msgs), msgs)
            out.append(OutputMessage(key, OUTPUT_TYPES[OVERLAY], msg, stamp))
        if similarity is not None and want(SIMILARITY):
            msg = similarity_cloud(outputs.points, similarity, hdr, msgs)
            out.append(OutputMessage(SIMILARITY, OUTPUT_TYPES[SIMILARITY], msg, stamp))
        return out

    def label_info(self, class_names: Sequence[str], stamp_ns: int, frame_id: str = '',
                   threshold: float = 0.0) -> OutputMessage:
        """vision_msgs/LabelInfo: class_id k -> class_names[k]; ``threshold``: the unknown threshold."""
        msgs = self.msgs
        classes = [msgs.new('vision_msgs/msg/VisionClass', class_id=k, class_name=str(name))
                   for k, name in enumerate(class_names)]
        classes.append(msgs.new('vision_msgs/msg/VisionClass', class_id=UNKNOWN_LABEL, class_name='unknown'))
        msg = msgs.new('vision_msgs/msg/LabelInfo', header=header(frame_id, stamp_ns, msgs),
                       class_map=classes, threshold=float(threshold))
        return OutputMessage(LABEL_INFO, OUTPUT_TYPES[LABEL_INFO], msg, stamp_ns)
