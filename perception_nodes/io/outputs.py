"""Pipeline :class:`~perception_nodes.outputs.Outputs` -> ROS messages, through a MessageTypes factory.

The same functions serve the output bag (rosbags message classes) and the ROS nodes (rclpy classes):
- :func:`labeled_cloud`: PointCloud2 with x, y, z, intensity (float32), label (uint16), score (float32),
  instance (uint32), rgb (float32 holding 0x00RRGGBB, RViz's packed colour) — class colour per point;
- :func:`occupancy_grid_msg`: nav_msgs/OccupancyGrid (row-major, -1 unknown / 0 free / 100 occupied);
- :func:`voxel_markers`: visualization_msgs/MarkerArray: a DELETEALL marker, then one CUBE_LIST per class
  (namespace ``<ns>/<class name>`` so RViz can toggle classes);
- :func:`overlay_image_msg`: sensor_msgs/Image (rgb8) of a label overlay;
- :func:`similarity_cloud`: PointCloud2 with x, y, z, similarity (float32) and a heat-map rgb, for
  language grounding queries (cosine similarity of each point's feature with a text embedding).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from perception_nodes.io.messages import MessageTypes, default_message_types
from perception_nodes.io.pointcloud2 import FLOAT32, UINT16, UINT32, create_cloud, xyz_fields
from perception_nodes.outputs import OccupancyGrid2D, Outputs, SemanticVoxels, UNKNOWN_LABEL
from perception_nodes.overlay import UNKNOWN_COLOR, label_colors

__all__ = ['LABELED_FIELDS', 'SIMILARITY_FIELDS', 'pack_rgb', 'unpack_rgb', 'labeled_cloud',
           'occupancy_grid_msg', 'voxel_markers', 'overlay_image_msg', 'similarity_cloud']

LABELED_FIELDS = xyz_fields([('intensity', FLOAT32), ('label', UINT16), ('score', FLOAT32),
                             ('instance', UINT32), ('rgb', FLOAT32)])
SIMILARITY_FIELDS = xyz_fields([('similarity', FLOAT32), ('rgb', FLOAT32)])


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) float32 whose bits are 0x00RRGGBB (PCL / RViz ``rgb`` field)."""
    c = np.asarray(colors, dtype=np.uint32).reshape(-1, 3)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).astype(np.uint32).view(np.float32)


def unpack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`."""
    v = np.ascontiguousarray(rgb, dtype=np.float32).view(np.uint32)
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8)


def _structured(fields: Sequence[tuple[str, int, int, int]], n: int) -> np.ndarray:
    from perception_nodes.io.pointcloud2 import dtype_from_fields
    return np.zeros(n, dtype=dtype_from_fields(fields))


def labeled_cloud(outputs: Outputs, header: Any, palette: np.ndarray, msgs: MessageTypes | None = None,
                  unknown_color: Sequence[int] = UNKNOWN_COLOR) -> Any:
    """PointCloud2 of the labelled points (see the module docstring for the fields)."""
    n = len(outputs.points)
    for name in ('labels', 'scores', 'instances'):
        if len(getattr(outputs, name)) != n:
            raise ValueError(f'Outputs.{name} has {len(getattr(outputs, name))} entries for {n} points')
    cloud = _structured(LABELED_FIELDS, n)
    pts = np.asarray(outputs.points, dtype=np.float32).reshape(-1, 3)
    cloud['x'], cloud['y'], cloud['z'] = pts[:, 0], pts[:, 1], pts[:, 2]
    cloud['intensity'] = 0.0 if outputs.intensity is None else np.asarray(outputs.intensity, np.float32)
    cloud['label'] = np.asarray(outputs.labels).astype(np.uint16)
    cloud['score'] = np.asarray(outputs.scores, dtype=np.float32)
    cloud['instance'] = np.asarray(outputs.instances).astype(np.uint32)
    cloud['rgb'] = pack_rgb(label_colors(outputs.labels, palette, unknown_color))
    return create_cloud(header, LABELED_FIELDS, cloud, msgs)


def occupancy_grid_msg(grid: OccupancyGrid2D, header: Any, msgs: MessageTypes | None = None) -> Any:
    """nav_msgs/OccupancyGrid: cell (row y, col x) at ``origin + ((x, y) + 0.5) resolution``."""
    msgs = msgs or default_message_types()
    data = np.asarray(grid.data)
    if data.ndim != 2:
        raise ValueError(f'occupancy grid data must be (H, W), got {data.shape}')
    h, w = data.shape
    origin = msgs.new('geometry_msgs/msg/Pose',
                      position=msgs.new('geometry_msgs/msg/Point', x=float(grid.origin_xy[0]),
                                        y=float(grid.origin_xy[1]), z=0.0),
                      orientation=msgs.new('geometry_msgs/msg/Quaternion', x=0.0, y=0.0, z=0.0, w=1.0))
    info = msgs.new('nav_msgs/msg/MapMetaData', map_load_time=header.stamp, resolution=float(grid.resolution),
                    width=int(w), height=int(h), origin=origin)
    return msgs.new('nav_msgs/msg/OccupancyGrid', header=header, info=info,
                    data=np.ascontiguousarray(data, dtype=np.int8).reshape(-1))


def voxel_markers(voxels: SemanticVoxels, header: Any, class_names: Sequence[str], palette: np.ndarray,
                  msgs: MessageTypes | None = None, ns: str = 'semantic_voxels', alpha: float = 0.8,
                  unknown_color: Sequence[int] = UNKNOWN_COLOR) -> Any:
    """MarkerArray: DELETEALL, then one CUBE_LIST marker per class present (id = class index)."""
    msgs = msgs or default_message_types()
    marker = 'visualization_msgs/msg/Marker'
    identity = msgs.new('geometry_msgs/msg/Pose',
                        orientation=msgs.new('geometry_msgs/msg/Quaternion', x=0.0, y=0.0, z=0.0, w=1.0))
    markers = [msgs.new(marker, header=header, ns=ns, id=0, action=3)]          # DELETEALL
    centers = np.asarray(voxels.centers, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(voxels.labels).astype(np.int64).reshape(-1)
    if len(centers) != len(labels):
        raise ValueError(f'{len(centers)} voxel centres but {len(labels)} labels')
    size = np.broadcast_to(np.asarray(voxels.voxel_size, dtype=np.float64).reshape(-1), (3,))
    scale = msgs.new('geometry_msgs/msg/Vector3', x=float(size[0]), y=float(size[1]), z=float(size[2]))
    for cls in np.unique(labels):
        known = 0 <= cls < len(class_names) and cls != UNKNOWN_LABEL
        name = class_names[cls] if known else 'unknown'
        rgb = label_colors(np.array([cls]), palette, unknown_color)[0] / 255.0
        color = msgs.new('std_msgs/msg/ColorRGBA', r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]),
                         a=float(alpha))
        points = [msgs.new('geometry_msgs/msg/Point', x=float(x), y=float(y), z=float(z))
                  for x, y, z in centers[labels == cls]]
        markers.append(msgs.new(marker, header=header, ns=f'{ns}/{name}', id=int(cls) if known else 65535,
                                type=6, action=0, pose=identity, scale=scale, color=color, points=points))
    return msgs.new('visualization_msgs/msg/MarkerArray', markers=markers)


def overlay_image_msg(image: np.ndarray, header: Any, msgs: MessageTypes | None = None) -> Any:
    """sensor_msgs/Image, encoding rgb8, of an (H, W, 3) uint8 image."""
    msgs = msgs or default_message_types()
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'overlay image must be (H, W, 3) uint8, got {image.shape} {image.dtype}')
    h, w = image.shape[:2]
    return msgs.new('sensor_msgs/msg/Image', header=header, height=h, width=w, encoding='rgb8',
                    is_bigendian=0, step=3 * w, data=image.reshape(-1))


def similarity_cloud(points: np.ndarray, similarity: np.ndarray, header: Any,
                     msgs: MessageTypes | None = None) -> Any:
    """PointCloud2 (x, y, z, similarity, rgb) for a grounding query; rgb: viridis of the min-max scaled score.

    Points without a score (NaN similarity, e.g. seen by no camera) are kept with NaN and grey.
    """
    import matplotlib

    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    sim = np.asarray(similarity, dtype=np.float32).reshape(-1)
    if len(sim) != len(pts):
        raise ValueError(f'{len(sim)} similarity values for {len(pts)} points')
    cloud = _structured(SIMILARITY_FIELDS, len(pts))
    cloud['x'], cloud['y'], cloud['z'] = pts[:, 0], pts[:, 1], pts[:, 2]
    cloud['similarity'] = sim
    colors = np.empty((len(pts), 3), dtype=np.uint8)
    colors[:] = UNKNOWN_COLOR
    ok = np.isfinite(sim)
    if ok.any():
        lo, hi = float(sim[ok].min()), float(sim[ok].max())
        t = (sim[ok] - lo) / (hi - lo) if hi > lo else np.ones(int(ok.sum()), np.float32)
        colors[ok] = (matplotlib.colormaps['viridis'](t)[:, :3] * 255).round().astype(np.uint8)
    cloud['rgb'] = pack_rgb(colors)
    return create_cloud(header, SIMILARITY_FIELDS, cloud, msgs)
