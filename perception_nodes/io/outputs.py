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

import contextlib
import dataclasses
import functools
import gc
import itertools
from typing import Any, Iterator, Sequence

import numpy as np

from perception_nodes.io.messages import MessageTypes, default_message_types
from perception_nodes.io.pointcloud2 import (FLOAT32, UINT16, UINT32, create_cloud, dtype_from_fields,
                                             xyz_fields)
from perception_nodes.outputs import OccupancyGrid2D, Outputs, SemanticVoxels, UNKNOWN_LABEL
from perception_nodes.overlay import UNKNOWN_COLOR, label_colors

__all__ = ['LABELED_FIELDS', 'SIMILARITY_FIELDS', 'pack_rgb', 'unpack_rgb', 'labeled_cloud',
           'occupancy_grid_msg', 'voxel_markers', 'overlay_image_msg', 'similarity_cloud']

LABELED_FIELDS = xyz_fields([('intensity', FLOAT32), ('label', UINT16), ('score', FLOAT32),
                             ('instance', UINT32), ('rgb', FLOAT32)])
SIMILARITY_FIELDS = xyz_fields([('similarity', FLOAT32), ('rgb', FLOAT32)])
_LABELED_DTYPE = dtype_from_fields(LABELED_FIELDS)


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


def _packed_colors(labels: np.ndarray, palette: np.ndarray, unknown_color: Sequence[int]) -> np.ndarray:
    """(N,) float32 packed rgb of each label: a lookup table for uint8/uint16 labels, else label_colors."""
    if labels.dtype in (np.uint8, np.uint16):
        pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:UNKNOWN_LABEL]
        lut = np.full(256 if labels.dtype == np.uint8 else 65536,
                      pack_rgb(np.asarray(unknown_color, np.uint8)[None])[0].view(np.uint32), np.uint32)
        k = min(len(pal), len(lut))               # UNKNOWN_LABEL (65535) is never a palette index
        lut[:k] = pack_rgb(pal[:k]).view(np.uint32)
        return lut[labels].view(np.float32)
    return pack_rgb(label_colors(labels, palette, unknown_color))


def _column(cloud: np.ndarray, name: str, values: np.ndarray) -> None:
    """Write ``values`` into field ``name`` of ``cloud`` (range-checked like create_cloud)."""
    from perception_nodes.io.pointcloud2 import _checked
    cloud[name] = _checked(values, cloud.dtype.fields[name][0], False, name)


def labeled_cloud(outputs: Outputs, header: Any, palette: np.ndarray, msgs: MessageTypes | None = None,
                  unknown_color: Sequence[int] = UNKNOWN_COLOR) -> Any:
    """PointCloud2 of the labelled points (see the module docstring for the fields).

    Built in one structured array that becomes the message's data without another copy; ``is_dense``
    comes from NaN-propagating minima of the (contiguous) float inputs. Labels, instances outside their
    field's range raise ValueError (as in create_cloud).
    """
    n = len(outputs.points)
    for name in ('labels', 'scores', 'instances'):
        if len(getattr(outputs, name)) != n:
            raise ValueError(f'Outputs.{name} has {len(getattr(outputs, name))} entries for {n} points')
    pts = np.asarray(outputs.points, dtype=np.float32).reshape(-1, 3)
    labels = np.asarray(outputs.labels).reshape(-1)
    scores = np.asarray(outputs.scores, dtype=np.float32).reshape(-1)
    cloud = np.empty(n, dtype=_LABELED_DTYPE)
    if n:
        np.ndarray((n, 3), np.float32, buffer=cloud, strides=(_LABELED_DTYPE.itemsize, 4))[:] = pts
    if outputs.intensity is None:
        intensity = None
        cloud['intensity'] = 0.0
    else:
        intensity = np.asarray(outputs.intensity, np.float32).reshape(-1)
        cloud['intensity'] = intensity
    _column(cloud, 'label', labels)
    cloud['score'] = scores
    _column(cloud, 'instance', np.asarray(outputs.instances).reshape(-1))
    cloud['rgb'] = _packed_colors(labels, palette, unknown_color)
    is_dense = not n or not any(np.isnan(a.min()) for a in (pts, scores, intensity) if a is not None)
    return create_cloud(header, LABELED_FIELDS, cloud, msgs, copy=False, is_dense=is_dense)


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


def _rosidl_point_builder(cls: type) -> Any:
    """``build(xs, ys, zs)`` for a rosidl (rclpy) Point class, or None when ``cls`` is not shaped like one.

    rosidl classes keep each field ``f`` in the slot ``_f`` behind a property, plus ``_check_fields``;
    their keyword constructor costs ~1 us per field. Here each Point is made by ``cls.__new__`` and its
    slots are set from Python floats (what the property setters would store), ``_check_fields`` as the
    constructor sets it: ~6x faster. The shortcut is used only when a point built this way equals one
    built by the constructor (checked once per class); floats from ``tolist()`` always pass the setters'
    checks (type float, finite range).
    """
    if sorted(getattr(cls, '__slots__', ())) != ['_check_fields', '_x', '_y', '_z']:
        return None
    try:
        proto = cls(x=1.5, y=-2.0, z=0.25)
        check = proto._check_fields
        new = cls.__new__

        def build(xs: Sequence[float], ys: Sequence[float], zs: Sequence[float]) -> list:
            out = []
            append = out.append
            for x, y, z in zip(xs, ys, zs):
                p = new(cls)
                p._x, p._y, p._z, p._check_fields = x, y, z, check
                append(p)
            return out

        same = build([1.5], [-2.0], [0.25])[0] == proto
    except Exception:  # noqa: BLE001  (anything unexpected: the constructor path)
        return None
    return build if same else None


def _point_builder(msgs: MessageTypes) -> Any:
    """``build(xs, ys, zs) -> list`` of geometry_msgs/Point, as fast as the factory allows.

    A dataclass message class whose fields start x, y, z (rosbags) is called positionally; a rosidl
    class (rclpy) is filled slot by slot (:func:`_rosidl_point_builder`); another class with keywords;
    without ``message_class``, ``msgs.new`` per point.
    """
    get = getattr(msgs, 'message_class', None)
    cls = None
    if get is not None:
        try:
            cls = get('geometry_msgs/msg/Point')
        except (TypeError, ValueError, AttributeError):
            cls = None
    if cls is None:
        new = functools.partial(msgs.new, 'geometry_msgs/msg/Point')
        return lambda xs, ys, zs: [new(x=x, y=y, z=z) for x, y, z in zip(xs, ys, zs)]
    if dataclasses.is_dataclass(cls) and [f.name for f in dataclasses.fields(cls)][:3] == ['x', 'y', 'z']:
        return lambda xs, ys, zs: list(itertools.starmap(cls, zip(xs, ys, zs)))
    rosidl = _rosidl_point_builder(cls)
    if rosidl is not None:
        return rosidl
    return lambda xs, ys, zs: [cls(x=x, y=y, z=z) for x, y, z in zip(xs, ys, zs)]


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while thousands of (acyclic, kept) Point objects are made.

    Each 700 allocations would run a young-generation pass over objects that all survive, and every few
    frames a full pass over the whole heap (~100 ms with torch loaded, unless start-up objects are
    frozen, as :class:`~perception_nodes.pipeline.Pipeline` does); paused, the collector sees them once.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def voxel_markers(voxels: SemanticVoxels, header: Any, class_names: Sequence[str], palette: np.ndarray,
                  msgs: MessageTypes | None = None, ns: str = 'semantic_voxels', alpha: float = 0.8,
                  unknown_color: Sequence[int] = UNKNOWN_COLOR) -> Any:
    """MarkerArray: DELETEALL, then one CUBE_LIST marker per class present (id = class index).

    One ``geometry_msgs/Point`` per voxel is built by the message class directly (``message_class``
    of the factory, rclpy or rosbags; :func:`_point_builder`), from one stable sort of the labels.
    """
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
    build = _point_builder(msgs)
    order = np.argsort(labels, kind='stable')
    classes, starts = np.unique(labels[order], return_index=True)
    xs, ys, zs = centers[order].T.tolist()
    ends = starts[1:].tolist() + [len(xs)]
    colors = label_colors(classes, palette, unknown_color) / 255.0
    for cls, start, end, rgb in zip(classes.tolist(), starts.tolist(), ends, colors):
        known = 0 <= cls < len(class_names) and cls != UNKNOWN_LABEL
        name = class_names[cls] if known else 'unknown'
        color = msgs.new('std_msgs/msg/ColorRGBA', r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]),
                         a=float(alpha))
        with _no_cyclic_gc():
            points = build(xs[start:end], ys[start:end], zs[start:end])
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
