"""Convert a reconstructed ScanNet scene (points, labels, posed RGB frames) into a ROS 2 bag.

Input, ``SRC`` = the scene folder:

- points: ``<scene>_vert*.npy`` (N, >= 6) x, y, z, r, g, b (colours 0-255), as mmdet3d exports them;
- labels (optional): ``<scene>_sem_label*.npy`` (N,) semantic ids and ``<scene>_ins_label*.npy`` (N,)
  instance ids; ``semantic`` overrides the semantic file (e.g. ScanNet200 raw category ids);
- posed frames under ``posed_images/`` (or ``posed_images/<scene>/``), either
  ``camera_params.json`` (``intrinsics_4x4``, ``img_paths``, ``extrinsics_cam2world_4x4``,
  ``axis_align_matrix``: mmdet3d's info exported to JSON), or ScanNet's export: ``NNNNN.jpg`` with a
  ``NNNNN.txt`` camera-to-world 4x4 each, ``intrinsic.txt`` (color intrinsics, 3x3 or 4x4), and the axis
  alignment from ``<scene>.txt`` (``axisAlignment = ...``) or ``<scene>_axis_align_matrix.npy``.
  Frames with a non-finite pose (ScanNet marks lost tracking with ``-inf``) are skipped and counted.

The points are axis-aligned (``points_frame='aligned'``, mmdet3d's exports) while the camera poses are in
the scan's original frame, so the camera pose in the ``map`` frame of the points is
``T_map_camera = axis_align · cam2world`` (``points_frame='scan'``: points in the scan frame, no axis
alignment, ``T_map_camera = cam2world``).

Output; frame ``k`` is stamped ``index_k / rate_hz`` (``index_k`` = the image's frame number, ScanNet
records at 30 Hz), header stamp = log time:

- ``/scene/points`` sensor_msgs/PointCloud2, frame ``map``: x, y, z (float32), rgb (float32 holding
  0x00RRGGBB, as PCL / RViz and ``io.outputs.pack_rgb``), and with labels ``label`` (uint16, the id space
  in ``label_space``: 'nyu40' (0 = unannotated) or 'scannet200' (raw ScanNet category ids)) and
  ``instance`` (uint32). Published at every frame's stamp, so each frame pairs the scene with one
  image (``once=True``: only at the first frame's stamp);
- ``/camera/image_raw/compressed`` sensor_msgs/CompressedImage (the JPEG file's bytes) or, with
  ``image_format='rgb8'``, ``/camera/image_raw`` sensor_msgs/Image rgb8; ``/camera/camera_info``
  (K from the intrinsics, P = [K | 0], D = 0, size from the JPEG), frame ``camera``;
- ``/tf``: ``map -> camera`` carrying ``T_map_camera`` at every frame's stamp, so
  ``lookup('camera', 'map', t_k)`` at the cloud stamp is frame k's pose (one moving ``camera`` frame);
- ``/scene/label_space`` std_msgs/String: the ``label`` id space, once (with labels only).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception_nodes.frame import CameraModel
from perception_nodes.io.bags import BagWriter
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.image import rgb_to_image_msg
from perception_nodes.io.jpeg import jpeg_size
from perception_nodes.io.pointcloud2 import FLOAT32, UINT16, UINT32, create_cloud, xyz_fields
from perception_nodes.io.stamps import header
from perception_nodes.io.tf_buffer import tf_message, transform_stamped_msg

__all__ = ['CLOUD_TOPIC', 'IMAGE_TOPIC', 'COMPRESSED_TOPIC', 'CAMERA_INFO_TOPIC', 'LABEL_SPACE_TOPIC',
           'MAP_FRAME', 'CAMERA_FRAME', 'LABEL_SPACES', 'ScanNetFrame', 'ScanNetScene', 'ScanNetBagInfo',
           'pack_rgb', 'load_scannet_scene', 'scannet_to_bag']

CLOUD_TOPIC = '/scene/points'
IMAGE_TOPIC = '/camera/image_raw'
COMPRESSED_TOPIC = '/camera/image_raw/compressed'
CAMERA_INFO_TOPIC = '/camera/camera_info'
LABEL_SPACE_TOPIC = '/scene/label_space'
MAP_FRAME = 'map'
CAMERA_FRAME = 'camera'
LABEL_SPACES = {'nyu40': 40, 'scannet200': 65535}      # id space -> largest valid id
COLOUR_FIELDS = xyz_fields([('rgb', FLOAT32)])
LABELLED_FIELDS = xyz_fields([('rgb', FLOAT32), ('label', UINT16), ('instance', UINT32)])


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) float32 whose bits are 0x00RRGGBB (the bits of ``io.outputs.pack_rgb``)."""
    c = np.asarray(colors, dtype=np.uint32).reshape(-1, 3)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).astype(np.uint32).view(np.float32)


@dataclass
class ScanNetFrame:
    image: Path
    index: int                   # frame number (stamp = index / rate)
    T_scan_camera: np.ndarray    # (4, 4) ScanNet camera-to-world (the scan's original frame)


@dataclass
class ScanNetScene:
    name: str
    points: np.ndarray                   # (N, 3) float32, in the points' frame
    colors: np.ndarray                   # (N, 3) uint8
    semantic: np.ndarray | None          # (N,) label ids
    instance: np.ndarray | None          # (N,) instance ids
    K: np.ndarray                        # (3, 3) colour camera intrinsics
    axis_align: np.ndarray | None        # (4, 4), None when not found
    axis_align_source: str
    frames: list[ScanNetFrame] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)     # images whose pose is not finite


@dataclass
class ScanNetBagInfo:
    path: Path
    scene: str
    storage: str
    points: int
    frames: int
    skipped_frames: int
    label_space: str | None          # None: no labels
    image_format: str
    once: bool
    points_frame: str
    axis_align_source: str
    topics: dict[str, int] = field(default_factory=dict)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f'{path}: cannot read: {exc}') from None


def _matrix(values: Any, what: str, shapes: tuple[tuple[int, int], ...] = ((4, 4),)) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{what}: not a matrix: {exc}') from None
    if arr.shape not in shapes:
        raise ValueError(f'{what}: shape {arr.shape}, expected one of {list(shapes)}')
    return arr


def _read_txt_matrix(path: Path, shapes: tuple[tuple[int, int], ...] = ((4, 4),)) -> np.ndarray:
    try:
        return _matrix(np.loadtxt(path, dtype=np.float64, ndmin=2), str(path), shapes)
    except OSError as exc:
        raise ValueError(f'{path}: cannot read: {exc}') from None


def _axis_alignment_from_meta(path: Path) -> np.ndarray | None:
    """Read the ``axisAlignment = m00 m01 ...`` line (row-major 4x4) of ScanNet's ``<scene>.txt``."""
    for line in path.read_text(encoding='utf-8', errors='replace').splitlines():
        key, _, value = line.partition('=')
        if key.strip() == 'axisAlignment':
            return _matrix([float(v) for v in value.split()], f'{path} axisAlignment', ((16,),)).reshape(4, 4)
    return None


def _frame_index(path: Path, position: int) -> int:
    return int(path.stem) if re.fullmatch(r'\d+', path.stem) else position


def _resolve_image(src: Path, posed: Path, scene: str, listed: str) -> Path:
    name = Path(listed).name
    for candidate in (src / listed, posed / listed, posed / name, posed / scene / name, src / name):
        if candidate.is_file():
            return candidate
    raise ValueError(f'{posed / "camera_params.json"} lists image {listed!r}, not found under {src} '
                     f'or {posed}')


def _frames_from_json(src: Path, posed: Path, scene: str, params_path: Path) -> tuple[
        np.ndarray, np.ndarray | None, list[tuple[Path, np.ndarray]]]:
    try:
        params = json.loads(params_path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f'{params_path}: cannot read: {exc}') from None
    missing = [k for k in ('intrinsics_4x4', 'img_paths', 'extrinsics_cam2world_4x4') if k not in params]
    if missing:
        raise ValueError(f'{params_path}: missing {missing}')
    K = _matrix(params['intrinsics_4x4'], f'{params_path} intrinsics_4x4', ((4, 4), (3, 3)))[:3, :3]
    paths, poses = params['img_paths'], params['extrinsics_cam2world_4x4']
    if len(paths) != len(poses):
        raise ValueError(f'{params_path}: {len(paths)} img_paths but {len(poses)} extrinsics')
    align = params.get('axis_align_matrix')
    align = None if align is None else _matrix(align, f'{params_path} axis_align_matrix')
    frames = [(_resolve_image(src, posed, scene, p), _matrix(T, f'{params_path} extrinsics {i}'))
              for i, (p, T) in enumerate(zip(paths, poses))]
    return K, align, frames


def _frames_from_txt(posed: Path, src: Path) -> tuple[np.ndarray, list[tuple[Path, np.ndarray]]]:
    images = sorted(p for p in posed.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg'))
    if not images:
        raise ValueError(f'{posed}: no camera_params.json and no .jpg frames')
    intrinsic = next((p for p in (posed / 'intrinsic.txt', src / 'intrinsic' / 'intrinsic_color.txt',
                                  src / 'intrinsic_color.txt') if p.is_file()), None)
    if intrinsic is None:
        raise ValueError(f'{posed}: no camera_params.json, and no intrinsic.txt for the .jpg frames')
    K = _read_txt_matrix(intrinsic, ((4, 4), (3, 3)))[:3, :3]
    frames = []
    for image in images:
        pose = image.with_suffix('.txt')
        if not pose.is_file():
            raise ValueError(f'{image}: no camera pose {pose.name} next to it')
        frames.append((image, _read_txt_matrix(pose)))
    return K, frames


def load_scannet_scene(src: str | os.PathLike, semantic: str | os.PathLike | None = None) -> ScanNetScene:
    """Read a scene folder (see the module docstring); ValueError naming what is missing."""
    src = Path(src)
    if not src.is_dir():
        raise ValueError(f'{src}: not a folder')
    verts = sorted(src.glob('*_vert*.npy'))
    if not verts:
        raise ValueError(f'{src}: not a ScanNet scene folder: no <scene>_vert*.npy '
                         '(x, y, z, r, g, b per vertex)')
    if len(verts) > 1:
        raise ValueError(f'{src}: several point files {[p.name for p in verts]}; '
                         'expected one <scene>_vert*.npy')
    scene = verts[0].name.split('_vert')[0]
    vert = _load_npy(verts[0])
    if vert.ndim != 2 or vert.shape[1] < 6 or not np.issubdtype(vert.dtype, np.number):
        raise ValueError(f'{verts[0]}: shape {vert.shape} {vert.dtype}, expected (N, >= 6) x, y, z, r, g, b')
    if not np.all(np.isfinite(vert[:, :6])):
        raise ValueError(f'{verts[0]}: non-finite coordinates or colours')
    rgb = vert[:, 3:6]
    if rgb.size and (rgb.min() < 0 or rgb.max() > 255):
        raise ValueError(f'{verts[0]}: colours outside 0-255 ({rgb.min()}..{rgb.max()})')
    n = len(vert)

    def labels(pattern: str, override: str | os.PathLike | None, what: str) -> np.ndarray | None:
        found = [Path(override)] if override is not None else sorted(src.glob(pattern))
        if not found:
            return None
        if not found[0].is_file():
            raise ValueError(f'{found[0]}: no such {what} file')
        arr = _load_npy(found[0])
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f'{found[0]}: {what} of shape {arr.shape} {arr.dtype}, expected ({n},) integers')
        if arr.size and arr.min() < 0:
            raise ValueError(f'{found[0]}: negative {what} ids')
        return arr

    sem = labels(f'{scene}_sem_label*.npy', semantic, 'semantic label')
    ins = labels(f'{scene}_ins_label*.npy', None, 'instance label')
    if (sem is None) != (ins is None):
        raise ValueError(f'{src}: {"semantic" if ins is None else "instance"} labels without '
                         f'{"instance" if ins is None else "semantic"} labels')
    posed = src / 'posed_images'
    if not posed.is_dir():
        raise ValueError(f'{src}: no posed_images/ folder (the posed RGB frames)')
    params_path = posed / 'camera_params.json'
    if not params_path.is_file() and (posed / scene).is_dir():
        posed = posed / scene
        params_path = posed / 'camera_params.json'
    align: np.ndarray | None = None
    source = 'none'
    if params_path.is_file():
        K, align, frames = _frames_from_json(src, posed, scene, params_path)
        source = f'{params_path.name} axis_align_matrix' if align is not None else source
    else:
        K, frames = _frames_from_txt(posed, src)
    if align is None and (src / f'{scene}.txt').is_file():
        align = _axis_alignment_from_meta(src / f'{scene}.txt')
        source = f'{scene}.txt axisAlignment' if align is not None else source
    if align is None and (src / f'{scene}_axis_align_matrix.npy').is_file():
        align = _matrix(_load_npy(src / f'{scene}_axis_align_matrix.npy'), f'{scene}_axis_align_matrix.npy')
        source = f'{scene}_axis_align_matrix.npy'
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.all(np.isfinite(K)):
        raise ValueError(f'{src}: camera intrinsics have no focal length: {K.tolist()}')
    out = ScanNetScene(scene, np.ascontiguousarray(vert[:, :3], dtype=np.float32),
                       np.round(rgb).astype(np.uint8), sem, ins, K, align, source)
    for position, (image, T) in enumerate(frames):
        if np.all(np.isfinite(T)):
            out.frames.append(ScanNetFrame(image, _frame_index(image, position), T))
        else:
            out.skipped.append(image.name)
    if not out.frames:
        raise ValueError(f'{src}: no posed frame with a finite camera pose')
    return out


def _rigid(T: np.ndarray, what: str) -> np.ndarray:
    """Nearest rigid transform to ``T`` (poses are stored rounded); ValueError when far from one."""
    U, S, Vt = np.linalg.svd(T[:3, :3])
    if np.linalg.det(U @ Vt) < 0 or np.abs(S - 1).max() > 1e-3 or not np.allclose(T[3], [0, 0, 0, 1]):
        raise ValueError(f'{what} is not a rigid transform: {T.tolist()}')
    out = T.copy()
    out[:3, :3] = U @ Vt
    return out


def _cloud(scene: ScanNetScene, stamp: int, msgs: Any) -> Any:
    labelled = scene.semantic is not None
    fields = LABELLED_FIELDS if labelled else COLOUR_FIELDS
    dtype = [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('rgb', '<f4'), ('label', '<u2'), ('instance', '<u4')]
    points = np.zeros(len(scene.points), dtype=dtype)
    points['x'], points['y'], points['z'] = scene.points.T
    points['rgb'] = pack_rgb(scene.colors)
    if labelled:
        points['label'] = scene.semantic
        points['instance'] = scene.instance
    return create_cloud(header(MAP_FRAME, stamp, msgs), fields, points, msgs)


def scannet_to_bag(src: str | os.PathLike, out: str | os.PathLike, label_space: str = 'nyu40',
                   semantic: str | os.PathLike | None = None, image_format: str = 'jpeg', once: bool = False,
                   points_frame: str = 'aligned', rate_hz: float = 30.0, storage: str = 'mcap',
                   progress: bool = False, overwrite: bool = False) -> ScanNetBagInfo:
    """Convert the ScanNet scene folder ``src`` into the ROS 2 bag ``out`` (written atomically).

    ``label_space``: which ids the semantic labels hold ('nyu40', or 'scannet200' raw category ids, e.g.
    from ``semantic``, a per-vertex .npy); ``image_format``: 'jpeg' (CompressedImage, the file's bytes) or
    'rgb8' (Image); ``once``: publish the scene cloud once instead of with every frame; ``points_frame``:
    'aligned' (points axis-aligned, the default) or 'scan'.
    """
    from tqdm import tqdm

    if label_space not in LABEL_SPACES:
        raise ValueError(f'label space {label_space!r}: expected one of {sorted(LABEL_SPACES)}')
    if image_format not in ('jpeg', 'rgb8'):
        raise ValueError(f"image format {image_format!r}: expected 'jpeg' or 'rgb8'")
    if points_frame not in ('aligned', 'scan'):
        raise ValueError(f"points frame {points_frame!r}: expected 'aligned' or 'scan'")
    if not rate_hz > 0:
        raise ValueError(f'rate must be positive, got {rate_hz}')
    scene = load_scannet_scene(src, semantic)
    largest = LABEL_SPACES[label_space]
    if scene.semantic is not None and scene.semantic.size and scene.semantic.max() > largest:
        raise ValueError(f'semantic ids up to {scene.semantic.max()} do not fit label space {label_space!r} '
                         f'(largest id {LABEL_SPACES[label_space]})')
    if scene.instance is not None and scene.instance.size and scene.instance.max() >= 2**32:
        raise ValueError(f'instance ids up to {scene.instance.max()} do not fit uint32')
    align = np.eye(4)
    if points_frame == 'aligned':
        if scene.axis_align is None:
            raise ValueError(f'{src}: the points are said to be axis-aligned but no axis alignment was found '
                             f'(camera_params.json axis_align_matrix, {scene.name}.txt axisAlignment or '
                             f'{scene.name}_axis_align_matrix.npy); use points_frame="scan" if they are not')
        align = _rigid(scene.axis_align, 'axis alignment')
    frames = sorted(scene.frames, key=lambda f: f.index)
    stamps = [round(f.index * 1e9 / rate_hz) for f in frames]
    if len(set(stamps)) != len(stamps):
        raise ValueError(f'{src}: two posed images share a frame number')
    info = ScanNetBagInfo(Path(out), scene.name, storage, len(scene.points), len(frames), len(scene.skipped),
                          label_space if scene.semantic is not None else None, image_format, once,
                          points_frame, scene.axis_align_source if points_frame == 'aligned' else 'not used')
    with BagWriter(out, storage=storage, overwrite=overwrite) as bag:
        msgs = bag.msgs
        if scene.semantic is not None:
            bag.write(LABEL_SPACE_TOPIC, 'std_msgs/msg/String',
                      msgs.new('std_msgs/msg/String', data=label_space), stamps[0])
        for k, (frame, stamp) in enumerate(tqdm(list(zip(frames, stamps)), desc='scannet-to-bag',
                                                unit='frame', disable=not progress)):
            T_map_camera = align @ _rigid(frame.T_scan_camera, f'{frame.image.name} camera pose')
            edge = transform_stamped_msg(MAP_FRAME, CAMERA_FRAME, T_map_camera, stamp, msgs)
            bag.write('/tf', 'tf2_msgs/msg/TFMessage', tf_message([edge], msgs), stamp)
            data = frame.image.read_bytes()
            try:
                width, height = jpeg_size(data)
            except ValueError as exc:
                raise ValueError(f'{frame.image}: {exc}') from None
            model = CameraModel(frame_id=CAMERA_FRAME, width=width, height=height, K=scene.K,
                                D=np.zeros(5), distortion_model='plumb_bob')
            bag.write(CAMERA_INFO_TOPIC, 'sensor_msgs/msg/CameraInfo', camera_info_msg(model, stamp, msgs),
                      stamp)
            if image_format == 'jpeg':
                msg = msgs.new('sensor_msgs/msg/CompressedImage', header=header(CAMERA_FRAME, stamp, msgs),
                               format='rgb8; jpeg compressed bgr8', data=np.frombuffer(data, dtype=np.uint8))
                bag.write(COMPRESSED_TOPIC, 'sensor_msgs/msg/CompressedImage', msg, stamp)
            else:
                rgb = _decode_jpeg(frame.image, data)
                bag.write(IMAGE_TOPIC, 'sensor_msgs/msg/Image',
                          rgb_to_image_msg(rgb, header(CAMERA_FRAME, stamp, msgs), msgs), stamp)
            if k == 0 or not once:
                bag.write(CLOUD_TOPIC, 'sensor_msgs/msg/PointCloud2', _cloud(scene, stamp, msgs), stamp)
        info.topics = dict(bag.counts)
    return info


def _decode_jpeg(path: Path, data: bytes) -> np.ndarray:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'{path}: cannot decode image')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
