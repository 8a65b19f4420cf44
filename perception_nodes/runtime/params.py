"""Node parameters: one table of specs, parsing, validation and live updates (ROS-free).

The rclpy nodes declare exactly the parameters listed in ``PARAMETERS`` (with the description
as the ParameterDescriptor text), read them back into a plain dict and call ``NodeParams.from_dict``.
Live changes arrive through the node's set-parameters callback, which asks ``validate_update``
before accepting them (``None`` = accept, otherwise the reason it is refused).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QOS_CHOICES = ('sensor_data', 'reliable')
TRANSPORTS = ('raw', 'compressed')
BACKENDS = ('auto', 'tensorrt', 'onnxruntime', 'torch')
DEVICES = ('auto', 'cpu', 'cuda')
DEFAULT_VOCABULARY = ['semantickitti']


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: name, default (its type fixes the ROS type), meaning, who declares it."""

    name: str
    default: Any
    kind: str                 # 'string' | 'integer' | 'double' | 'bool' | 'string_array' | 'double_array'
    description: str
    live: bool = False        # changeable while running (otherwise read-only after start)
    nodes: tuple[str, ...] = ('fusion_node', 'student_node')


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec('lidar_topic', '/lidar/points', 'string', 'sensor_msgs/PointCloud2 input topic.'),
    ParamSpec('camera_names', [], 'string_array',
              'Camera names (one per camera; used for overlay topics ~/overlay/<name>). Empty: LiDAR only.'),
    ParamSpec('camera_image_topics', [], 'string_array',
              'Image topic per camera (sensor_msgs/Image, or sensor_msgs/CompressedImage when the '
              'transport is compressed).'),
    ParamSpec('camera_info_topics', [], 'string_array', 'sensor_msgs/CameraInfo topic per camera.'),
    ParamSpec('camera_transports', [], 'string_array',
              "'raw' or 'compressed' per camera; empty means raw for all."),
    ParamSpec('camera_time_offsets', [], 'double_array',
              'Seconds per camera by which image stamps lead the LiDAR stamp (camera - lidar); '
              'subtracted before synchronization. Empty means 0 for all.'),
    ParamSpec('input_qos', 'sensor_data', 'string',
              "'sensor_data' (best effort, robot) or 'reliable' (bag playback). A QoS mismatch drops "
              'messages silently: watch the silent-topic warning.'),
    ParamSpec('queue_size', 10, 'integer',
              'message_filters ApproximateTimeSynchronizer queue size per topic.'),
    ParamSpec('slop', 0.05, 'double',
              'Synchronizer slop in seconds: the largest stamp spread accepted within one set.'),
    ParamSpec('max_frame_age', 0.5, 'double',
              'Drop a synchronized set (counted as stale) when it is older than this many seconds '
              'when the worker gets to it. 0 disables the age check (only the newest set is kept anyway).',
              live=True),
    ParamSpec('silent_topic_timeout', 5.0, 'double',
              'Warn (log + diagnostics) when no synchronized set arrived for this many seconds, naming the '
              'silent input topics.', live=True),
    ParamSpec('diagnostics_period', 1.0, 'double', 'Seconds between /diagnostics messages.'),
    ParamSpec('tf_timeout', 0.05, 'double',
              'Seconds the worker thread waits for a LiDAR->camera transform at the cloud stamp.'),
    ParamSpec('static_extrinsics', True, 'bool',
              'Cache each LiDAR->camera transform after its first successful lookup (rigid mounts).'),
    ParamSpec('pipeline_config', '', 'string',
              'YAML file with the pipeline configuration (PipelineConfig); empty: built-in defaults.'),
    ParamSpec('vocabulary', list(DEFAULT_VOCABULARY), 'string_array',
              'Class names, or one entry naming a built-in vocabulary (semantickitti, nuscenes, scannet20, '
              'scannet200, sim) or a vocabulary YAML file (absolute, or relative to the package share '
              'folder). Changeable live: the next frame uses the new classes.', live=True),
    ParamSpec('prompt_templates', [], 'string_array',
              "CLIP prompt templates containing '{}' (e.g. 'a photo of a {}.'); empty: the pipeline's "
              'defaults. Changeable live.', live=True),
    ParamSpec('publish_overlays', True, 'bool', 'Publish per-camera label overlay images.', live=True,
              nodes=('fusion_node', 'student_node')),
    ParamSpec('backend', 'auto', 'string',
              "Student inference backend: 'auto' (TensorRT on GPU when available, else ONNX Runtime), "
              "'tensorrt', 'onnxruntime' or 'torch'.", nodes=('student_node',)),
    ParamSpec('model_path', '', 'string',
              'Student model: .engine (TensorRT), .onnx (ONNX Runtime) or .safetensors checkpoint (torch).',
              nodes=('student_node',)),
    ParamSpec('device', 'auto', 'string', "'auto', 'cpu' or 'cuda'.", nodes=('student_node',)),
    ParamSpec('ensemble', False, 'bool',
              'With cameras configured: per point, keep the more confident of the fused 2D and the 3D '
              'prediction (OpenScene 2D-3D ensemble).', nodes=('student_node',)),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


def specs_for(node: str) -> list[ParamSpec]:
    """Return the parameters a node declares."""
    return [spec for spec in PARAMETERS if node in spec.nodes]


@dataclass(frozen=True)
class CameraInput:
    """One configured camera."""

    name: str
    image_topic: str
    info_topic: str
    transport: str = 'raw'
    time_offset_ns: int = 0

    @property
    def image_type(self) -> str:
        compressed = self.transport == 'compressed'
        return 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'


@dataclass(frozen=True)
class VocabularyRequest:
    """What the ``vocabulary``/``prompt_templates`` parameters ask for."""

    names: tuple[str, ...]
    source: str | None = None          # built-in vocabulary name or YAML path, if the names came from one
    templates: tuple[str, ...] = ()    # () = the pipeline's default prompt ensemble
    colors: tuple[tuple[int, int, int], ...] = ()

    def argument(self) -> list[str] | str:
        """Return what ``Pipeline.set_vocabulary`` gets.

        The vocabulary name/path when given, else the names.
        """
        return self.source if self.source else list(self.names)


@dataclass(frozen=True)
class NodeParams:
    """All node parameters, validated."""

    lidar_topic: str = '/lidar/points'
    cameras: tuple[CameraInput, ...] = ()
    input_qos: str = 'sensor_data'
    queue_size: int = 10
    slop: float = 0.05
    max_frame_age: float = 0.5
    silent_topic_timeout: float = 5.0
    diagnostics_period: float = 1.0
    tf_timeout: float = 0.05
    static_extrinsics: bool = True
    pipeline_config: str = ''
    vocabulary: VocabularyRequest = field(default_factory=lambda: parse_vocabulary(list(DEFAULT_VOCABULARY)))
    publish_overlays: bool = True
    backend: str = 'auto'
    model_path: str = ''
    device: str = 'auto'
    ensemble: bool = False

    @property
    def input_topics(self) -> list[str]:
        """Topics fed to the synchronizer: the cloud, then each camera's image."""
        return [self.lidar_topic] + [cam.image_topic for cam in self.cameras]

    @classmethod
    def from_dict(cls, values: dict[str, Any], share_dir: str | os.PathLike | None = None) -> NodeParams:
        """Validate raw parameter values (missing names take their defaults); ValueError names the problem."""
        unknown = sorted(set(values) - set(SPECS))
        if unknown:
            raise ValueError(f'unknown parameters {unknown}; known: {sorted(SPECS)}')
        v = {spec.name: spec.default for spec in PARAMETERS}
        v.update(values)
        for name in v:
            v[name] = _coerce(SPECS[name], v[name])
        cameras = _cameras(v)
        _choice('input_qos', v['input_qos'], QOS_CHOICES)
        _choice('backend', v['backend'], BACKENDS)
        _choice('device', v['device'], DEVICES)
        if not v['lidar_topic']:
            raise ValueError('lidar_topic must not be empty')
        if v['queue_size'] < 1:
            raise ValueError(f"queue_size must be >= 1, got {v['queue_size']}")
        _positive('slop', v['slop'])
        _positive('diagnostics_period', v['diagnostics_period'])
        _positive('silent_topic_timeout', v['silent_topic_timeout'])
        _non_negative('max_frame_age', v['max_frame_age'])
        _non_negative('tf_timeout', v['tf_timeout'])
        vocabulary = parse_vocabulary(v['vocabulary'], v['prompt_templates'], share_dir)
        return cls(lidar_topic=v['lidar_topic'], cameras=cameras, input_qos=v['input_qos'],
                   queue_size=v['queue_size'], slop=v['slop'], max_frame_age=v['max_frame_age'],
                   silent_topic_timeout=v['silent_topic_timeout'],
                   diagnostics_period=v['diagnostics_period'], tf_timeout=v['tf_timeout'],
                   static_extrinsics=v['static_extrinsics'], pipeline_config=v['pipeline_config'],
                   vocabulary=vocabulary, publish_overlays=v['publish_overlays'], backend=v['backend'],
                   model_path=v['model_path'], device=v['device'], ensemble=v['ensemble'])

    def to_dict(self) -> dict[str, Any]:
        """Back to raw parameter values (inverse of ``from_dict``)."""
        return {
            'lidar_topic': self.lidar_topic,
            'camera_names': [c.name for c in self.cameras],
            'camera_image_topics': [c.image_topic for c in self.cameras],
            'camera_info_topics': [c.info_topic for c in self.cameras],
            'camera_transports': [c.transport for c in self.cameras],
            'camera_time_offsets': [c.time_offset_ns / 1e9 for c in self.cameras],
            'input_qos': self.input_qos, 'queue_size': self.queue_size, 'slop': self.slop,
            'max_frame_age': self.max_frame_age, 'silent_topic_timeout': self.silent_topic_timeout,
            'diagnostics_period': self.diagnostics_period, 'tf_timeout': self.tf_timeout,
            'static_extrinsics': self.static_extrinsics, 'pipeline_config': self.pipeline_config,
            'vocabulary': [self.vocabulary.source] if self.vocabulary.source else list(self.vocabulary.names),
            'prompt_templates': list(self.vocabulary.templates),
            'publish_overlays': self.publish_overlays, 'backend': self.backend,
            'model_path': self.model_path, 'device': self.device, 'ensemble': self.ensemble,
        }

    def updated(self, changes: dict[str, Any], share_dir: str | os.PathLike | None = None) -> NodeParams:
        """Return a copy with live parameter changes applied; ValueError for read-only or invalid ones."""
        for name in changes:
            spec = SPECS.get(name)
            if spec is None:
                raise ValueError(f'unknown parameter {name!r}')
            if not spec.live:
                raise ValueError(f'parameter {name!r} is read-only while the node runs (restart to change)')
        raw = self.to_dict()
        raw.update(changes)
        return NodeParams.from_dict(raw, share_dir)


def validate_update(params: NodeParams, changes: dict[str, Any],
                    share_dir: str | os.PathLike | None = None) -> str | None:
    """None when ``changes`` may be applied live, else the reason they are refused."""
    try:
        params.updated(changes, share_dir)
    except ValueError as exc:
        return str(exc)
    return None


def parse_vocabulary(vocabulary: list[str], templates: list[str] | tuple[str, ...] = (),
                     share_dir: str | os.PathLike | None = None) -> VocabularyRequest:
    """Class names, or one entry naming a built-in vocabulary (``semantickitti``, ...) or a YAML file.

    The vocabulary is loaded here (``perception_nodes.vocabulary.load_vocabulary``) so that a bad value
    is refused before a node accepts it.
    """
    from perception_nodes.vocabulary import BUILTIN_VOCABULARIES, load_vocabulary, validate_templates

    entries = [str(v).strip() for v in vocabulary]
    if not entries or any(not e for e in entries):
        raise ValueError(f'vocabulary must list class names or name one vocabulary, got {list(vocabulary)!r}')
    try:
        validated = validate_templates(list(templates)) if templates else ()
    except ValueError as exc:
        raise ValueError(f'prompt_templates: {exc}') from None
    source: str | None = None
    if len(entries) == 1 and (entries[0].lower() in BUILTIN_VOCABULARIES
                              or entries[0].lower().endswith(('.yaml', '.yml'))):
        source = entries[0] if entries[0].lower() in BUILTIN_VOCABULARIES else \
            str(resolve_path(entries[0], share_dir))
    try:
        vocab = load_vocabulary(source if source is not None else entries)
    except (OSError, ValueError) as exc:
        raise ValueError(f'vocabulary {entries!r}: {exc}') from None
    return VocabularyRequest(tuple(vocab.names), source, tuple(validated),
                             tuple(tuple(c) for c in vocab.colors))


def resolve_path(path: str, share_dir: str | os.PathLike | None = None) -> Path:
    """Resolve ``path`` to an absolute path.

    An absolute path, or one relative to the package share folder (then the working directory).
    """
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return p
    if share_dir is not None and (Path(share_dir) / p).exists():
        return Path(share_dir) / p
    return p.resolve()


def _cameras(v: dict[str, Any]) -> tuple[CameraInput, ...]:
    names = v['camera_names']
    images = v['camera_image_topics']
    infos = v['camera_info_topics']
    transports = v['camera_transports'] or ['raw'] * len(names)
    offsets = v['camera_time_offsets'] or [0.0] * len(names)
    lengths = {'camera_names': len(names), 'camera_image_topics': len(images),
               'camera_info_topics': len(infos), 'camera_transports': len(transports),
               'camera_time_offsets': len(offsets)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f'camera parameters need one entry per camera, got lengths {lengths}')
    if len(set(names)) != len(names):
        raise ValueError(f'camera_names repeat: {names}')
    cameras = []
    for name, image, info, transport, offset in zip(names, images, infos, transports, offsets):
        if not name or not image or not info:
            raise ValueError(f'camera {name!r}: name, image topic and info topic must not be empty')
        _choice(f'camera_transports[{name}]', transport, TRANSPORTS)
        if not math.isfinite(offset):
            raise ValueError(f'camera_time_offsets[{name}] must be finite, got {offset}')
        cameras.append(CameraInput(name, image, info, transport, int(round(offset * 1e9))))
    return tuple(cameras)


def _coerce(spec: ParamSpec, value: Any) -> Any:
    """Check a raw value against the spec's kind (ints are accepted for doubles)."""
    kind = spec.kind
    bad = ValueError(f'parameter {spec.name!r} must be {kind.replace("_", " ")}, got {value!r}')
    if kind == 'string':
        if not isinstance(value, str):
            raise bad
        return value
    if kind == 'bool':
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == 'integer':
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if kind == 'double':
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        return float(value)
    if isinstance(value, (str, bytes)) or not hasattr(value, '__iter__'):
        raise bad
    items = list(value)
    if kind == 'string_array':
        if not all(isinstance(x, str) for x in items):
            raise bad
        return items
    if kind == 'double_array':
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
            raise bad
        return [float(x) for x in items]
    raise AssertionError(f'unhandled kind {kind}')


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f'{name} must be one of {list(choices)}, got {value!r}')


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f'{name} must be > 0, got {value}')


def _non_negative(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f'{name} must be >= 0, got {value}')


def field_names() -> list[str]:
    """Return the NodeParams field names (for docs and tests)."""
    return [f.name for f in dataclasses.fields(NodeParams)]
