"""Read KITTI raw, KITTI object and SemanticKITTI folders (no ROS).

Layouts handled (see ``find_kitti_frames``):
- KITTI raw:      ROOT/image_02/data/*.png, ROOT/velodyne_points/data/*.bin, ROOT/calib.txt
- KITTI object:   ROOT/training/{velodyne,image_2,calib,label_2}/NNNNNN.*
- SemanticKITTI:  ROOT/sequences/NN/{velodyne,labels}/NNNNNN.* (+ optional image_2/, calib.txt)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception_nodes.frame import CameraModel, CameraView, Frame

DATA_ENV = 'OVP_DATA'


def shared_data_dir() -> Path:
    """Where the shared real data lives: $OVP_DATA, default ../shared/data next to the repo."""
    default = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'
    return Path(os.environ.get(DATA_ENV, str(default)))


@dataclass
class KittiCalib:
    """Calibration of KITTI camera 2 relative to the Velodyne."""

    P2: np.ndarray             # (3, 4) rectified projection of camera 2
    R0_rect: np.ndarray        # (3, 3)
    Tr_velo_to_cam: np.ndarray  # (3, 4)

    @property
    def T_cam_velo(self) -> np.ndarray:
        """(4, 4) Velodyne -> rectified reference camera frame (R0_rect · Tr_velo_to_cam)."""
        r0 = np.eye(4)
        r0[:3, :3] = self.R0_rect
        tr = np.eye(4)
        tr[:3, :4] = self.Tr_velo_to_cam
        return r0 @ tr

    def camera_model(self, width: int, height: int, frame_id: str = 'camera_2') -> CameraModel:
        """Camera 2 as a rectified pinhole: K = P2[:, :3], P = P2 (baseline term kept), no distortion."""
        return CameraModel(frame_id=frame_id, width=width, height=height, K=self.P2[:, :3],
                           D=np.zeros(5), distortion_model='plumb_bob', R=np.eye(3), P=self.P2)


def read_calib(path: str | os.PathLike) -> KittiCalib:
    """Parse a KITTI object-format calib.txt (``KEY: v1 v2 ...`` lines)."""
    values: dict[str, np.ndarray] = {}
    with open(path, encoding='ascii') as f:
        for line_no, line in enumerate(f, 1):
            if ':' not in line:
                continue
            key, _, rest = line.partition(':')
            try:
                values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
            except ValueError as exc:
                raise ValueError(f'{path}:{line_no}: cannot parse {key.strip()!r}: {exc}') from None
    # KITTI raw calib_cam_to_cam names, accepted as aliases.
    aliases = {'P2': ('P2', 'P_rect_02'), 'R0_rect': ('R0_rect', 'R_rect_00'),
               'Tr_velo_to_cam': ('Tr_velo_to_cam', 'Tr_velo_cam')}
    found: dict[str, np.ndarray] = {}
    for name, keys in aliases.items():
        for key in keys:
            if key in values:
                found[name] = values[key]
                break
        else:
            raise ValueError(f'{path}: missing {name} (have {sorted(values)})')
    sizes = {'P2': 12, 'R0_rect': 9, 'Tr_velo_to_cam': 12}
    for name, size in sizes.items():
        if found[name].size != size:
            raise ValueError(f'{path}: {name} has {found[name].size} values, expected {size}')
    return KittiCalib(P2=found['P2'].reshape(3, 4), R0_rect=found['R0_rect'].reshape(3, 3),
                      Tr_velo_to_cam=found['Tr_velo_to_cam'].reshape(3, 4))


def read_velodyne(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI .bin scan as an (N, 4) float32 array (x, y, z, intensity)."""
    raw = np.fromfile(path, dtype='<f4')
    if raw.size % 4:
        raise ValueError(f'{path}: {raw.size * 4} bytes is not a whole number of 16-byte points')
    return raw.reshape(-1, 4)


def read_semantic_labels(path: str | os.PathLike,
                         num_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a SemanticKITTI .label: (semantic id = low 16 bits, instance id = high 16 bits)."""
    raw = np.fromfile(path, dtype='<u4')
    if num_points is not None and raw.size != num_points:
        raise ValueError(f'{path}: {raw.size} labels for {num_points} points')
    return (raw & 0xFFFF).astype(np.uint16), (raw >> 16).astype(np.uint16)


@dataclass
class KittiFrameFiles:
    """Paths of one KITTI frame; missing parts are None."""

    name: str
    velodyne: Path
    image: Path | None = None
    calib: Path | None = None
    label: Path | None = None


def _stems(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix == suffix}


def find_kitti_frames(root: str | os.PathLike) -> list[KittiFrameFiles]:
    """Discover frames in any of the three layouts, sorted by name."""
    root = Path(root)
    if (root / 'velodyne_points' / 'data').is_dir():  # KITTI raw
        scans = _stems(root / 'velodyne_points' / 'data', '.bin')
        images = _stems(root / 'image_02' / 'data', '.png')
        calib = root / 'calib.txt'
        return [KittiFrameFiles(k, v, images.get(k), calib if calib.is_file() else None)
                for k, v in scans.items()]
    object_root = (root / 'velodyne').is_dir() and (root / 'calib').is_dir()
    if (root / 'training' / 'velodyne').is_dir() or object_root:
        base = root / 'training' if (root / 'training').is_dir() else root
        scans = _stems(base / 'velodyne', '.bin')
        images = _stems(base / 'image_2', '.png')
        calibs = _stems(base / 'calib', '.txt')
        return [KittiFrameFiles(k, v, images.get(k), calibs.get(k)) for k, v in scans.items()]
    seq_dirs: list[Path] = []
    if (root / 'sequences').is_dir():
        seq_dirs = sorted(p for p in (root / 'sequences').iterdir() if (p / 'velodyne').is_dir())
    elif (root / 'velodyne').is_dir():
        seq_dirs = [root]
    if seq_dirs:
        frames = []
        for seq in seq_dirs:
            scans = _stems(seq / 'velodyne', '.bin')
            labels = _stems(seq / 'labels', '.label')
            images = _stems(seq / 'image_2', '.png')
            calib = seq / 'calib.txt'
            prefix = f'{seq.name}/' if len(seq_dirs) > 1 else ''
            frames += [KittiFrameFiles(prefix + k, v, images.get(k), calib if calib.is_file() else None,
                                       labels.get(k)) for k, v in scans.items()]
        return frames
    raise ValueError(f'{root}: not a KITTI raw, KITTI object or SemanticKITTI folder '
                     '(expected velodyne_points/data, training/velodyne or sequences/NN/velodyne)')


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI .png as an (H, W, 3) uint8 RGB array; ValueError when it cannot be read."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'{path}: cannot read image')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_kitti_frame(files: KittiFrameFiles, index: int = 0) -> Frame:
    """One KITTI frame straight from its files: points + intensity, camera 2 when image and calib exist.

    SemanticKITTI labels (when present) go to ``Frame.labels`` / ``Frame.instances``.
    """
    scan = read_velodyne(files.velodyne)
    labels = instances = None
    if files.label is not None:
        labels, instances = read_semantic_labels(files.label, len(scan))
    cameras = []
    if files.image is not None and files.calib is not None:
        calib = read_calib(files.calib)
        image = read_image_rgb(files.image)
        h, w = image.shape[:2]
        cameras.append(CameraView(name='camera_2', image=image, model=calib.camera_model(w, h),
                                  T_cam_lidar=calib.T_cam_velo))
    return Frame(stamp_ns=0, frame_id='velodyne', points=scan[:, :3], intensity=scan[:, 3], cameras=cameras,
                 labels=labels, instances=instances, index=index)
