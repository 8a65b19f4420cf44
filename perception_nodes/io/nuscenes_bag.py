"""Convert a nuScenes dataset in the devkit layout into a ROS 2 bag (json + numpy, no nuscenes-devkit).

Input, ``SRC`` = the dataroot (or its table folder, with ``samples/`` next to it)::

    SRC/<version>/{sample,sample_data,calibrated_sensor,ego_pose,sensor,scene,log}.json   required
    SRC/<version>/{lidarseg,category}.json, SRC/lidarseg/<version>/<token>_lidarseg.bin  optional
    SRC/samples/<CHANNEL>/...    keyframes;    SRC/sweeps/<CHANNEL>/...    the rest (with ``sweeps``)

Output, one message per camera / LiDAR ``sample_data`` record (keyframes; also the sweeps with
``sweeps=True``), stamped with its own microsecond timestamp (header stamp = bag log time):

- ``/lidar_top/points`` sensor_msgs/PointCloud2, frame ``lidar_top``: x, y, z, intensity (float32),
  ring (uint16), and ``label`` (uint16) on keyframes with lidarseg labels;
- ``/cam_front/image_raw/compressed`` sensor_msgs/CompressedImage, frame ``cam_front``: the JPEG file's
  bytes, not re-encoded; ``/cam_front/camera_info`` sensor_msgs/CameraInfo (K, P = [K | 0], D = 0);
  the same for the other five cameras;
- ``/tf``: ``odom -> base_link`` (the ego pose of each record's own timestamp);
- ``/tf_static``: ``base_link -> lidar_top`` and ``base_link -> cam_*`` (calibrated_sensor).

- Frame ids are the lower-case channel names; ``base_link`` is nuScenes' ego frame and ``odom`` its
  global (per-log map) frame. Quaternions: nuScenes stores (w, x, y, z), ROS (x, y, z, w); the tables
  are turned into matrices with transforms3d and written through ``transform_stamped_msg``.
- ``label`` holds the raw lidarseg category index (32 classes, 0 = noise, ``category.json`` ``index``);
  mapping to the 16 evaluation classes belongs to evaluation. Sweeps have no labels (field absent).
- nuScenes images are undistorted: CameraInfo has plumb_bob with zero coefficients.
- Each ``sample_data`` record gets the ego pose of its own timestamp on /tf, and the cameras fire tens of
  milliseconds away from the LiDAR. Project LiDAR points into a camera as the devkit does, through the
  fixed frame: ``T_cam_odom(t_cam) · T_odom_lidar(t_lidar)`` (tf2's lookupTransform with a fixed
  frame). A single-stamp ``lookup(cam, lidar, t)`` meets at ``base_link`` and ignores the ego motion
  (0.33 m on the test keyframe, driving at 9 m/s, 35 ms between LiDAR and front camera).
- Sensor extrinsics that never change over the converted scenes go once to /tf_static (log time = first
  stamp); when a channel's calibration differs between scenes, its ``base_link -> sensor`` edge is
  published on /tf with every one of its messages instead (as ``kitti_to_bag`` does).
- Radar channels are not converted. Several scenes go into one bag in time order; the ``odom`` frame is
  each log's map frame, so consumers should not accumulate across scenes from different logs.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transforms3d import quaternions as tq

from perception_nodes.frame import CameraModel
from perception_nodes.io.bags import BagWriter
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.jpeg import jpeg_size
from perception_nodes.io.pointcloud2 import FLOAT32, UINT16, create_cloud, xyz_fields
from perception_nodes.io.stamps import header
from perception_nodes.io.tf_buffer import tf_message, transform_stamped_msg

__all__ = ['REQUIRED_TABLES', 'ODOM_FRAME', 'BASE_FRAME', 'LIDAR_CHANNEL', 'CAMERA_CHANNELS',
           'NuScenesTables', 'NuScenesBagInfo', 'find_nuscenes', 'load_nuscenes_tables', 'pose_matrix',
           'read_lidar_top', 'read_lidarseg', 'frame_id', 'lidar_topic', 'image_topic', 'camera_info_topic',
           'nuscenes_to_bag']

REQUIRED_TABLES = ('sample', 'sample_data', 'calibrated_sensor', 'ego_pose', 'sensor', 'scene', 'log')
ODOM_FRAME = 'odom'
BASE_FRAME = 'base_link'
LIDAR_CHANNEL = 'LIDAR_TOP'
CAMERA_CHANNELS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT',
                   'CAM_BACK_RIGHT')
POINT_FEATURES = 5        # .pcd.bin: x, y, z, intensity, ring as float32
CLOUD_FIELDS = xyz_fields([('intensity', FLOAT32), ('ring', UINT16)])
LABELLED_FIELDS = xyz_fields([('intensity', FLOAT32), ('ring', UINT16), ('label', UINT16)])
TF = 'tf2_msgs/msg/TFMessage'


def frame_id(channel: str) -> str:
    """Frame id of a nuScenes channel: ``CAM_FRONT`` -> ``cam_front``."""
    return channel.lower()


def lidar_topic(channel: str = LIDAR_CHANNEL) -> str:
    """PointCloud2 topic of a LiDAR channel."""
    return f'/{frame_id(channel)}/points'


def image_topic(channel: str) -> str:
    """Return the CompressedImage topic of a camera channel (image_transport naming)."""
    return f'/{frame_id(channel)}/image_raw/compressed'


def camera_info_topic(channel: str) -> str:
    """Return the CameraInfo topic of a camera channel."""
    return f'/{frame_id(channel)}/camera_info'


def pose_matrix(translation: Any, rotation_wxyz: Any) -> np.ndarray:
    """(4, 4) from a nuScenes ``translation`` and ``rotation`` (quaternion w, x, y, z)."""
    t = np.asarray(translation, dtype=np.float64).reshape(3)
    q = np.asarray(rotation_wxyz, dtype=np.float64).reshape(4)
    norm = float(np.linalg.norm(q))
    if not np.all(np.isfinite(t)) or not np.isfinite(norm) or norm < 1e-6:
        raise ValueError(f'invalid pose: translation {t.tolist()}, rotation (w, x, y, z) {q.tolist()}')
    out = np.eye(4)
    out[:3, :3] = tq.quat2mat(q / norm)
    out[:3, 3] = t
    return out


def read_lidar_top(path: str | os.PathLike) -> np.ndarray:
    """Read a nuScenes ``.pcd.bin`` as (N, 5) float32: x, y, z, intensity, ring."""
    raw = np.fromfile(path, dtype='<f4')
    if raw.size % POINT_FEATURES:
        raise ValueError(f'{path}: {raw.size * 4} bytes is not a whole number of 20-byte points '
                         '(5 float32: x, y, z, intensity, ring)')
    return raw.reshape(-1, POINT_FEATURES)


def read_lidarseg(path: str | os.PathLike, num_points: int | None = None) -> np.ndarray:
    """Read a lidarseg ``.bin``: one uint8 category index per point."""
    labels = np.fromfile(path, dtype=np.uint8)
    if num_points is not None and labels.size != num_points:
        raise ValueError(f'{path}: {labels.size} labels for {num_points} points')
    return labels


def _read_table(path: Path) -> dict[str, dict[str, Any]]:
    try:
        records = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f'{path}: cannot read table: {exc}') from None
    if not isinstance(records, list):
        raise ValueError(f'{path}: expected a JSON list of records, got {type(records).__name__}')
    out: dict[str, dict[str, Any]] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict) or 'token' not in record:
            raise ValueError(f'{path}: record {i} has no token')
        out[record['token']] = record
    return out


def _get(table: dict[str, dict[str, Any]], name: str, token: str) -> dict[str, Any]:
    try:
        return table[token]
    except KeyError:
        raise ValueError(f'{name}.json has no record with token {token!r}') from None


def _field(record: dict[str, Any], key: str, name: str) -> Any:
    try:
        return record[key]
    except KeyError:
        raise ValueError(f'{name}.json record {record.get("token")!r} has no {key!r} field') from None


def find_nuscenes(src: str | os.PathLike, version: str | None = None) -> tuple[Path, Path]:
    """(dataroot, table folder) of a nuScenes devkit layout; ValueError naming what is missing."""
    src = Path(src)
    if not src.is_dir():
        raise ValueError(f'{src}: not a folder')
    if version is not None:
        table_dir = src / version
        if not table_dir.is_dir():
            raise ValueError(f'{src}: no table folder {version}/')
    elif (src / 'sample.json').is_file():
        table_dir = src
    else:
        found = sorted(p for p in src.iterdir() if p.is_dir() and (p / 'sample.json').is_file())
        if not found:
            raise ValueError(f'{src}: not a nuScenes dataroot: no sample.json in it or in a version folder '
                             '(expected <version>/{sample,sample_data,calibrated_sensor,ego_pose,...}.json '
                             'and samples/)')
        if len(found) > 1:
            raise ValueError(f'{src}: several table folders {[p.name for p in found]}; '
                             'choose one (--version)')
        table_dir = found[0]
    root = table_dir.parent if table_dir != src or not (src / 'samples').is_dir() else src
    missing = [f'{name}.json' for name in REQUIRED_TABLES if not (table_dir / f'{name}.json').is_file()]
    if missing:
        raise ValueError(f'{table_dir}: missing nuScenes table(s) {missing}')
    if not (root / 'samples').is_dir():
        raise ValueError(f'{root}: no samples/ folder (the keyframe sensor files)')
    return root, table_dir


@dataclass
class NuScenesTables:
    """The tables of one nuScenes version, each as token -> record."""

    root: Path
    table_dir: Path
    sample: dict[str, dict[str, Any]]
    sample_data: dict[str, dict[str, Any]]
    calibrated_sensor: dict[str, dict[str, Any]]
    ego_pose: dict[str, dict[str, Any]]
    sensor: dict[str, dict[str, Any]]
    scene: dict[str, dict[str, Any]]
    log: dict[str, dict[str, Any]]
    lidarseg: dict[str, dict[str, Any]] = field(default_factory=dict)   # by sample_data_token
    category_indices: set[int] | None = None     # lidarseg category indices, when category.json has them

    @property
    def version(self) -> str:
        return self.table_dir.name

    def channel(self, sample_data: dict[str, Any]) -> tuple[str, str]:
        """(channel, modality) of a sample_data record."""
        cs = _get(self.calibrated_sensor, 'calibrated_sensor',
                  _field(sample_data, 'calibrated_sensor_token', 'sample_data'))
        sensor = _get(self.sensor, 'sensor', _field(cs, 'sensor_token', 'calibrated_sensor'))
        return str(_field(sensor, 'channel', 'sensor')), str(sensor.get('modality', ''))

    def scene_samples(self, scene: dict[str, Any]) -> list[str]:
        """Sample tokens of a scene in order (first_sample_token, then ``next``)."""
        tokens: list[str] = []
        token = _field(scene, 'first_sample_token', 'scene')
        while token:
            if token in tokens or len(tokens) > len(self.sample):
                raise ValueError(f'sample.json: the next-chain of scene {scene.get("name")!r} loops')
            tokens.append(token)
            token = _field(_get(self.sample, 'sample', token), 'next', 'sample')
        return tokens


def load_nuscenes_tables(src: str | os.PathLike, version: str | None = None) -> NuScenesTables:
    """Read the JSON tables (see :func:`find_nuscenes` for where they are looked for)."""
    root, table_dir = find_nuscenes(src, version)
    tables = {name: _read_table(table_dir / f'{name}.json') for name in REQUIRED_TABLES}
    out = NuScenesTables(root, table_dir, **tables)
    if (table_dir / 'lidarseg.json').is_file():
        seg = _read_table(table_dir / 'lidarseg.json')
        out.lidarseg = {_field(r, 'sample_data_token', 'lidarseg'): r for r in seg.values()}
    if (table_dir / 'category.json').is_file():
        cats = _read_table(table_dir / 'category.json').values()
        if cats and all('index' in c for c in cats):
            out.category_indices = {int(c['index']) for c in cats}
    return out


@dataclass
class NuScenesBagInfo:
    path: Path
    version: str
    storage: str
    scenes: list[str] = field(default_factory=list)
    samples: int = 0                # keyframe samples converted
    sweeps: int = 0                 # non-keyframe sample_data records converted
    topics: dict[str, int] = field(default_factory=dict)
    tf_mode: str = 'static'         # 'static' (extrinsics on /tf_static) or 'per_frame' (on /tf)
    points: int = 0
    labelled_clouds: int = 0        # clouds with a lidarseg ``label`` field
    start_ns: int = 0
    end_ns: int = 0


@dataclass
class _Item:
    record: dict[str, Any]
    channel: str
    lidar: bool
    path: Path
    stamp_ns: int


def _select(t: NuScenesTables, scenes: list[str] | None, max_samples: int | None,
            sweeps: bool) -> tuple[list[str], list[str], list[_Item]]:
    by_name = {str(s.get('name', token)): s for token, s in t.scene.items()}
    if scenes:
        unknown = [name for name in scenes if name not in by_name]
        if unknown:
            raise ValueError(f'unknown scene(s) {unknown}; {t.table_dir.name} has {sorted(by_name)}')
        chosen = [by_name[name] for name in scenes]
    else:
        chosen = list(by_name.values())
    scene_samples = [(s, t.scene_samples(s)) for s in chosen]
    scene_samples.sort(key=lambda ss: int(_field(_get(t.sample, 'sample', ss[1][0]), 'timestamp', 'sample'))
                       if ss[1] else 0)
    names, sample_tokens = [], []
    for scene, tokens in scene_samples:
        if max_samples is not None:
            tokens = tokens[:max(0, max_samples - len(sample_tokens))]
        if tokens:
            names.append(str(scene.get('name', scene['token'])))
            sample_tokens += tokens
    wanted = set(sample_tokens)
    items: list[_Item] = []
    for sd in t.sample_data.values():
        if _field(sd, 'sample_token', 'sample_data') not in wanted:
            continue
        if not sd.get('is_key_frame', False) and not sweeps:
            continue
        channel, modality = t.channel(sd)
        if modality not in ('camera', 'lidar'):
            continue
        items.append(_Item(sd, channel, modality == 'lidar', t.root / _field(sd, 'filename', 'sample_data'),
                           int(_field(sd, 'timestamp', 'sample_data')) * 1000))
    items.sort(key=lambda it: (it.stamp_ns, it.channel))
    missing = [it for it in items if not it.path.is_file()]
    if missing:
        sweep = not missing[0].record.get('is_key_frame', False)
        raise ValueError(f'{len(missing)} sensor file(s) listed in sample_data.json are missing, e.g. '
                         f'{missing[0].path}' + (' (no sweeps/? convert without sweeps)' if sweep else ''))
    return names, sample_tokens, items


def _calibration(t: NuScenesTables, sd: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    cs = _get(t.calibrated_sensor, 'calibrated_sensor', sd['calibrated_sensor_token'])
    return pose_matrix(_field(cs, 'translation', 'calibrated_sensor'),
                       _field(cs, 'rotation', 'calibrated_sensor')), cs


def _camera_model(cs: dict[str, Any], channel: str, width: int, height: int) -> CameraModel:
    K = np.asarray(_field(cs, 'camera_intrinsic', 'calibrated_sensor'), dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f'calibrated_sensor.json record {cs.get("token")!r} ({channel}): camera_intrinsic '
                         f'is not a 3x3 pinhole matrix: {K.tolist()}')
    return CameraModel(frame_id=frame_id(channel), width=width, height=height, K=K, D=np.zeros(5),
                       distortion_model='plumb_bob')


def _cloud(t: NuScenesTables, item: _Item, msgs: Any) -> tuple[Any, int, bool]:
    scan = read_lidar_top(item.path)
    ring = scan[:, 4]
    if not np.array_equal(ring, np.round(ring)) or (ring.size and (ring.min() < 0 or ring.max() > 65535)):
        raise ValueError(f'{item.path}: ring column (5th float) is not a small non-negative integer')
    seg = t.lidarseg.get(item.record['token']) if item.record.get('is_key_frame', False) else None
    fields = CLOUD_FIELDS if seg is None else LABELLED_FIELDS
    points = np.zeros(len(scan), dtype=[(name, '<f4') for name in ('x', 'y', 'z', 'intensity')]
                      + [('ring', '<u2'), ('label', '<u2')])
    for j, name in enumerate(('x', 'y', 'z', 'intensity')):
        points[name] = scan[:, j]
    points['ring'] = ring.astype(np.uint16)
    if seg is not None:
        path = t.root / _field(seg, 'filename', 'lidarseg')
        if not path.is_file():
            raise ValueError(f'lidarseg.json lists {path}, which is missing')
        labels = read_lidarseg(path, len(scan))
        if t.category_indices is not None:
            unknown = sorted(set(np.unique(labels).tolist()) - t.category_indices)
            if unknown:
                raise ValueError(f'{path}: label(s) {unknown} are not category indices in category.json')
        points['label'] = labels
    cloud = create_cloud(header(frame_id(item.channel), item.stamp_ns, msgs), fields, points, msgs)
    return cloud, len(scan), seg is not None


def nuscenes_to_bag(src: str | os.PathLike, out: str | os.PathLike, version: str | None = None,
                    scenes: list[str] | None = None, max_samples: int | None = None, sweeps: bool = False,
                    storage: str = 'mcap', progress: bool = False,
                    overwrite: bool = False) -> NuScenesBagInfo:
    """Convert the nuScenes dataroot ``src`` into the ROS 2 bag ``out`` (written atomically).

    ``scenes``: scene names to convert (default all, in time order); ``max_samples``: the first N
    keyframe samples; ``sweeps``: also the non-keyframe camera and LiDAR records of those samples.
    """
    from tqdm import tqdm

    if max_samples is not None and max_samples < 1:
        raise ValueError(f'max_samples must be at least 1, got {max_samples}')
    t = load_nuscenes_tables(src, version)
    names, samples, items = _select(t, scenes, max_samples, sweeps)
    if not items:
        raise ValueError(f'{src}: no camera or LiDAR sample_data records in the selected scene(s)')
    info = NuScenesBagInfo(Path(out), t.version, storage, scenes=names, samples=len(samples),
                           sweeps=sum(not it.record.get('is_key_frame', False) for it in items),
                           start_ns=items[0].stamp_ns, end_ns=items[-1].stamp_ns)
    calibrations: dict[str, set[bytes]] = defaultdict(set)
    for it in items:
        calibrations[it.channel].add(_calibration(t, it.record)[0].tobytes())
    static = all(len(c) == 1 for c in calibrations.values())
    info.tf_mode = 'static' if static else 'per_frame'
    with BagWriter(out, storage=storage, overwrite=overwrite) as bag:
        msgs = bag.msgs
        if static:
            firsts = {}
            for it in items:
                firsts.setdefault(it.channel, it.record)
            edges = [transform_stamped_msg(BASE_FRAME, frame_id(ch), _calibration(t, sd)[0], info.start_ns,
                                           msgs) for ch, sd in sorted(firsts.items())]
            bag.write('/tf_static', TF, tf_message(edges, msgs), info.start_ns)
        ego_stamps: set[int] = set()
        for it in tqdm(items, desc='nuscenes-to-bag', unit='msg', disable=not progress):
            T_base_sensor, cs = _calibration(t, it.record)
            transforms = []
            if it.stamp_ns not in ego_stamps:
                ego = _get(t.ego_pose, 'ego_pose', _field(it.record, 'ego_pose_token', 'sample_data'))
                T_odom_base = pose_matrix(_field(ego, 'translation', 'ego_pose'),
                                          _field(ego, 'rotation', 'ego_pose'))
                transforms.append(transform_stamped_msg(ODOM_FRAME, BASE_FRAME, T_odom_base, it.stamp_ns,
                                                        msgs))
                ego_stamps.add(it.stamp_ns)
            if not static:
                transforms.append(transform_stamped_msg(BASE_FRAME, frame_id(it.channel), T_base_sensor,
                                                        it.stamp_ns, msgs))
            if transforms:
                bag.write('/tf', TF, tf_message(transforms, msgs), it.stamp_ns)
            if it.lidar:
                cloud, n, labelled = _cloud(t, it, msgs)
                info.points += n
                info.labelled_clouds += labelled
                bag.write(lidar_topic(it.channel), 'sensor_msgs/msg/PointCloud2', cloud, it.stamp_ns)
                continue
            data = it.path.read_bytes()
            try:
                width, height = jpeg_size(data)
            except ValueError as exc:
                raise ValueError(f'{it.path}: {exc}') from None
            listed = (int(it.record.get('width') or 0), int(it.record.get('height') or 0))
            if any(listed) and listed != (width, height):
                raise ValueError(f'{it.path}: image is {width}x{height} but sample_data.json says '
                                 f'{listed[0]}x{listed[1]}')
            model = _camera_model(cs, it.channel, width, height)
            bag.write(camera_info_topic(it.channel), 'sensor_msgs/msg/CameraInfo',
                      camera_info_msg(model, it.stamp_ns, msgs), it.stamp_ns)
            image = msgs.new('sensor_msgs/msg/CompressedImage',
                             header=header(model.frame_id, it.stamp_ns, msgs),
                             format='rgb8; jpeg compressed bgr8', data=np.frombuffer(data, dtype=np.uint8))
            bag.write(image_topic(it.channel), 'sensor_msgs/msg/CompressedImage', image, it.stamp_ns)
        info.topics = dict(bag.counts)
    return info
