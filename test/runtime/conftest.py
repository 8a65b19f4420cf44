"""Message sets for the node cores: real KITTI raw frames and the synthetic world, as rosbags messages."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image as PILImage

from perception_nodes.frame import Frame
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.image import rgb_to_image_msg
from perception_nodes.io.kitti import find_kitti_frames, read_calib, read_velodyne
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.pointcloud2 import FLOAT32, create_cloud, xyz_fields
from perception_nodes.io.stamps import header
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs

LIDAR_FRAME = 'velodyne'
CAMERA_FRAME = 'camera_2'
T0_NS = 1_317_000_000_000_000_000   # a 2011 stamp, like the KITTI recording
PERIOD_NS = 100_000_000             # 10 Hz


@dataclass
class MessageSet:
    """One frame's input messages plus what the frame should contain."""

    cloud: object
    image: object
    info: object
    points: np.ndarray          # (N, 4) the cloud's x, y, z, intensity
    rgb: np.ndarray             # (H, W, 3)
    T_cam_lidar: np.ndarray     # (4, 4)
    stamp_ns: int


def cloud_msg(points: np.ndarray, stamp_ns: int, frame_id: str = LIDAR_FRAME):
    msgs = default_message_types()
    return create_cloud(header(frame_id, stamp_ns, msgs), xyz_fields([('intensity', FLOAT32)]),
                        np.asarray(points, dtype=np.float32), msgs)


@pytest.fixture(scope='session')
def kitti_sets(kitti_raw_dir) -> list[MessageSet]:
    """Return the first 3 KITTI raw frames as PointCloud2 + Image + CameraInfo.

    Every 8th point only, to stay fast.
    """
    msgs = default_message_types()
    frames = find_kitti_frames(kitti_raw_dir)[:3]
    out = []
    for i, files in enumerate(frames):
        calib = read_calib(files.calib)
        points = read_velodyne(files.velodyne)[::8]
        rgb = np.asarray(PILImage.open(files.image).convert('RGB'))
        model = calib.camera_model(rgb.shape[1], rgb.shape[0], frame_id=CAMERA_FRAME)
        stamp = T0_NS + i * PERIOD_NS
        image = rgb_to_image_msg(rgb, header(CAMERA_FRAME, stamp, msgs), msgs)
        out.append(MessageSet(cloud=cloud_msg(points, stamp), image=image,
                              info=camera_info_msg(model, stamp, msgs), points=points, rgb=rgb,
                              T_cam_lidar=calib.T_cam_velo, stamp_ns=stamp))
    return out


def static_lookup(transforms: dict[tuple[str, str], np.ndarray], calls: list | None = None):
    """Build a tf-like lookup over fixed transforms (raises like tf2 when a pair is unknown)."""
    def lookup(target: str, source: str, stamp_ns: int) -> np.ndarray:
        if calls is not None:
            calls.append((target, source, stamp_ns))
        if (target, source) not in transforms:
            raise LookupError(f'"{target}" passed to lookupTransform argument target_frame does not exist')
        return transforms[(target, source)]
    return lookup


@dataclass
class FakeLabeller:
    needs_cameras: bool = True
    name: str = 'teacher'
    backend_name: str = 'fake'


@dataclass
class FakePipeline:
    """The Pipeline interface the node core uses, with transparent rules.

    A point's label is its class index k = floor(range / 10 m) mod K when it projects into a camera,
    UNKNOWN_LABEL otherwise; its embedding is the one-hot vector of that label (zeros when unknown), so
    a text query naming class k has similarity 1 exactly on the points labelled k.
    """

    names: list[str] = field(default_factory=lambda: ['near', 'middle', 'far'])
    delay_s: float = 0.0
    labeller: FakeLabeller = field(default_factory=FakeLabeller)
    config: object = None
    meaningful: bool = True
    closed: int = 0
    frames: list[Frame] = field(default_factory=list)
    vocab_calls: list[tuple[object, object]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def class_names(self) -> list[str]:
        return list(self.names)

    @property
    def labeller_name(self) -> str:
        return self.labeller.name

    def close(self) -> None:
        self.closed += 1

    def set_vocabulary(self, names_or_vocab, templates=None) -> None:
        from perception_nodes.vocabulary import load_vocabulary
        self.names = load_vocabulary(names_or_vocab).names
        self.vocab_calls.append((names_or_vocab, templates))

    def text_embedding(self, text: str) -> np.ndarray:
        if text not in self.names:
            raise ValueError(f'{text!r} is not a class of the fake pipeline')
        return np.eye(len(self.names), dtype=np.float32)[self.names.index(text)]

    def process(self, frame: Frame) -> Outputs:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self.lock:
            self.frames.append(frame)
        n, k = frame.num_points, len(self.names)
        visible = np.zeros(n, bool)
        overlays = {}
        for view in frame.cameras:
            cam = (view.T_cam_lidar @ np.c_[frame.points, np.ones(n)].T).T
            uvw = (view.model.P @ np.c_[cam[:, :3], np.ones(n)].T).T
            with np.errstate(divide='ignore', invalid='ignore'):
                u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
            inside = (u >= 0) & (u < view.model.width) & (v >= 0) & (v < view.model.height)
            visible |= (cam[:, 2] > 0) & inside
            overlays[view.name] = view.image.copy()
        rng = np.linalg.norm(frame.points, axis=1)
        labels = np.where(visible, (rng // 10).astype(np.int64) % k, UNKNOWN_LABEL).astype(np.uint16)
        emb = np.zeros((n, k), np.float32)
        emb[visible, labels[visible]] = 1.0
        return Outputs(stamp_ns=frame.stamp_ns, frame_id=frame.frame_id, points=frame.points,
                       intensity=frame.intensity, labels=labels, scores=visible.astype(np.float32),
                       instances=np.zeros(n, np.uint32), class_names=list(self.names), embeddings=emb,
                       visible=visible, overlays=overlays, timings_ms={'fake': 1.0},
                       camera_frames={v.name: (v.model.frame_id, v.stamp_ns) for v in frame.cameras})


class FakeClock:
    """A settable monotonic clock (seconds)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_pipeline():
    """Provide a FakePipeline factory (test modules cannot import conftest under --import-mode=importlib)."""
    return FakePipeline


@pytest.fixture
def make_cloud():
    return cloud_msg


@pytest.fixture
def make_lookup():
    return static_lookup
