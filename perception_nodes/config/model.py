"""The configuration model: every key of the package, declared once (type, default, unit, description).

The same dataclasses configure ``ovp replay`` / ``ovp eval`` / ``ovp pseudo-label`` (a YAML file) and the
ROS 2 nodes (each key is a parameter under its dotted name, e.g. ``labeller.kind``; a ROS params file nests
them the same way). ``config/perception.yaml`` and the parameter tables in docs/ros.md are generated from /
checked against these declarations by the tests. Units: metres, seconds, pixels; never milliseconds.

Sizes are bounded by what they cost: :meth:`PerceptionConfig.__post_init__` refuses, before any work,
grids and images whose memory would exceed :data:`MEMORY_LIMITS` and says the number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from perception_nodes.config.schema import key

LABELLERS = ('teacher', 'student', 'ensemble', 'none')
TEACHER_SOURCES = ('clip', 'synthetic')
TEXT_SOURCES = ('clip', 'student')
BACKENDS = ('auto', 'onnxruntime', 'tensorrt', 'torch')
VISIBILITY_VARIANTS = ('depth_buffer', 'superpixel', 'none')
VOTING_MODES = ('majority', 'mean_feature')
OCCUPANCY_SOURCES = ('auto', 'geometry', 'student')
STORAGES = ('mcap', 'sqlite3')
QOS = ('sensor_data', 'reliable')
_DEVICE = re.compile(r'^(cpu|cuda(:\d+)?)$')

# The largest allocations a setting may imply (bytes, per frame); beyond them a config is refused.
MEMORY_LIMITS = {
    'nav_grid': 256 * 2**20,        # cells x ~16 B of ray-casting state
    'voxel_grid': 512 * 2**20,      # dense voxel grid cells x 8 B (int64 index)
    'teacher_input': 64 * 2**20,    # pixels x 3 channels x 4 B per camera
}


@dataclass
class InputsConfig:
    """Which messages make a frame (the frame assembler's inputs, for bags and nodes alike)."""

    lidar_topic: str = key('', 'sensor_msgs/PointCloud2 topic. Empty: the bag\'s only PointCloud2 topic '
                           '(offline); a node needs it set')
    camera_topics: list[str] = key([], 'Image topic per camera; a topic ending in /compressed is a '
                                   'sensor_msgs/CompressedImage. Empty: offline, every image topic with a '
                                   'sibling camera_info topic; in a node, no cameras (LiDAR only)')
    camera_info_topics: list[str] = key([], 'CameraInfo topic per camera. Empty: <image '
                                            'namespace>/camera_info')
    camera_names: list[str] = key([], 'Name per camera (overlay topic overlay/<name>). Empty: derived from '
                                      'the '
                                  'image topic namespace')
    camera_time_offsets: list[float] = key([], 'Per camera, image stamp minus the LiDAR stamp of the same '
                                           'instant; subtracted before synchronization. Empty: 0 for all',
                                           unit='s', min=-10.0, max=10.0)
    sync_slop: float = key(0.05, 'Largest |image stamp - LiDAR stamp| for an image to join a frame', unit='s',
                           min=0.0, max=10.0, exclusive_min=True)
    lidar_frame: str = key('', 'Frame id to use for the clouds instead of their header frame_id (empty: the '
                           'header\'s)')
    fixed_frame: str = key('', 'A world-fixed frame (odom, map) through which each camera is located at its '
                           'own image stamp and the LiDAR at the cloud stamp, compensating ego motion '
                           'between the two (tf2 lookups through a fixed frame). Empty: one lookup at the '
                           'cloud stamp')
    depth_topic: str = key('', 'A rectified depth image topic (sensor_msgs/Image 16UC1 in mm or 32FC1 in m) '
                           'to use instead of a PointCloud2: each depth image with its CameraInfo (<image '
                           'namespace>/camera_info) becomes the frame\'s cloud in the depth camera\'s '
                           'optical frame (depth_image_proc convention) and is the time reference. Empty: a '
                           'PointCloud2 is the cloud', scope='offline')
    depth_max_range: float = key(0.0, 'Depth image pixels farther than this are dropped (0: keep every valid '
                                 'pixel)', unit='m', min=0.0, max=1000.0, scope='offline')

    def __post_init__(self) -> None:
        n = len(self.camera_topics)
        for name in ('camera_info_topics', 'camera_names', 'camera_time_offsets'):
            values = getattr(self, name)
            if values and len(values) != n:
                raise ValueError(f'inputs.{name} has {len(values)} entries for {n} camera_topics')
        if self.depth_topic and self.lidar_topic:
            raise ValueError(f'inputs.depth_topic ({self.depth_topic}) and inputs.lidar_topic '
                             f'({self.lidar_topic}) are both set: the cloud comes from one of them')
        if self.depth_topic and self.depth_topic in self.camera_topics:
            raise ValueError(f'inputs.depth_topic {self.depth_topic} is also listed as a camera')
        topics = [self.lidar_topic, self.depth_topic, *self.camera_topics, *self.camera_info_topics]
        for topic in topics:
            if topic and not _valid_topic(topic):
                raise ValueError(f'{topic!r} is not a valid ROS topic name (letters, digits, _ and /; no '
                                 'leading digit in a token)')
        for name in self.camera_names:
            if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', name):
                raise ValueError(f'inputs.camera_names: {name!r} is not a valid topic token '
                                 '(letters, digits and _, not starting with a digit)')
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f'inputs.camera_names repeat: {self.camera_names}')


@dataclass
class LabellerConfig:
    """Who labels the points: the fused 2D teacher, the 3D student, both, or nobody (geometry only)."""

    kind: str = key('teacher', 'teacher: CLIP features of the cameras fused onto the points; student: the '
                    'LiDAR-only 3D student; ensemble: per point the more confident of the two; none: '
                    'geometry '
                    'only, every label unknown', choices=LABELLERS)
    student: str = key('', 'Student model for student / ensemble: .onnx (ONNX Runtime), .engine (TensorRT) '
                           'or '
                       'a .safetensors checkpoint (torch; file or folder)')
    backend: str = key('auto', 'Student inference backend; auto: TensorRT on a CUDA machine with tensorrt '
                       'installed, else ONNX Runtime (a checkpoint runs on torch)', choices=BACKENDS)
    logit_scale: float = key(100.0, 'Temperature on the cosine similarities before the softmax (CLIP uses '
                                    '100)',
                             min=0.0, max=1000.0, exclusive_min=True, live=True)
    unknown_threshold: float = key(0.0, 'A point whose winning class probability is below this is labelled '
                                   'unknown (65535)', min=0.0, max=1.0, live=True)
    text_source: str = key('clip', 'Where the student gets its class text embeddings: clip: the teacher\'s '
                           'text encoder (the configured CLIP, or the synthetic one with teacher.source '
                           'synthetic), which must be the one the student was trained against (its '
                           'provenance names it); student: the embeddings the student was trained with, '
                           'stored in its file (no CLIP is loaded; vocabulary.classes must be a subset of '
                           'the trained classes, or the default for all of them; queries: trained class '
                           'names only)',
                           choices=TEXT_SOURCES)


@dataclass
class TeacherConfig:
    """The 2D teacher: an open_clip model read offline (MaskCLIP dense features), or the synthetic teacher."""

    source: str = key('clip', 'clip: MaskCLIP dense features of the open_clip model below; synthetic: the '
                      'CLIP-like synthetic teacher on the ground-truth rasters that synthetic bags carry '
                      '(write_sim_bag(..., truth=True)): synthetic data only, its labels are not CLIP\'s',
                      choices=TEACHER_SOURCES, scope='offline')
    clip_model: str = key('ViT-B-32', 'open_clip model name (ovp-tiny: a tiny random model for tests)')
    clip_pretrained: str = key('openai', "Pretrained tag (looked up offline in cache_dir), a weights file, "
                                         "or "
                               "'none' (random weights: labels meaningless)")
    cache_dir: str = key('', 'Weights and text-embedding cache folder. Empty: ~/.cache/ovp')
    offline: bool = key(True, 'Never download; missing weights are an error naming the file to place')
    input_size: tuple[int, int] = key((224, 416), 'Height and width every camera image is resized to before '
                                      'CLIP', unit='px', min=16, max=4096)
    sampling: str = key('bilinear', 'Feature-map sampling at projected points', choices=('bilinear',
                                                                                         'nearest'))
    synthetic_embed_dim: int = key(64, 'teacher.source synthetic: width of its text / image embeddings (at '
                                   'least 2 K + 2 for K classes)', min=4, max=4096, scope='offline')
    synthetic_text_seed: int = key(0, 'teacher.source synthetic: seed of its CLIP-like class text embeddings',
                                   min=0, max=2**31 - 1, scope='offline')
    synthetic_noise_seed: int = key(1, 'teacher.source synthetic: seed of its CLIP-like mistakes', min=0,
                                    max=2**31 - 1, scope='offline')
    synthetic_downsample: int = key(8, 'teacher.source synthetic: dense feature map resolution = image size '
                                    '/ this', min=1, max=64, scope='offline')


@dataclass
class VocabularyConfig:
    """What the user can name."""

    classes: list[str] = key(['semantickitti'], 'Class names, or one entry naming a built-in vocabulary '
                             '(semantickitti, nuscenes, scannet20, scannet200, sim, street) or a vocabulary '
                             'YAML file', live=True)
    templates: list[str] = key([], "CLIP prompt templates containing '{}'. Empty: the CLIP zero-shot "
                               'ensemble', live=True)


@dataclass
class FusionConfig:
    """How the teacher's 2D features reach the points: visibility (Affinity3D Eq. 9-10) and voting."""

    visibility: str = key('depth_buffer', 'Occlusion test: depth_buffer (dilated min-depth buffer), '
                          'superpixel (Affinity3D Eq. 9-10, slow) or none', choices=VISIBILITY_VARIANTS)
    visibility_threshold: float = key(0.5, 'T_D: a point more than this behind the nearest surface of its '
                                      'cell / superpixel is hidden', unit='m', min=0.0, max=100.0,
                                      exclusive_min=True)
    visibility_relative_threshold: float = key(0.1, 'Depth buffer: extra tolerance per metre of depth '
                                               '(keeps grazing road points)', min=0.0, max=10.0)
    visibility_block: int = key(4, 'Depth buffer cell size (4 suits ~1242 px wide images, 2 ~600 px)',
                                unit='px', min=1, max=64)
    visibility_dilation: int = key(1, 'Depth buffer min-pool radius', unit='cells', min=0, max=16)
    instance_voting: bool = key(True, 'Points of one class-agnostic segment share one label')
    voting: str = key('majority', 'majority of the point labels, or the class of the segment\'s mean feature',
                      choices=VOTING_MODES)


@dataclass
class SegmentsConfig:
    """Class-agnostic segments (instances) of a sweep: ground removal + Euclidean clustering."""

    enabled: bool = key(True, 'Compute segments (the instance field; needed by instance voting)')
    voxel_size: float = key(0.2, 'Clustering runs on occupied voxels of this edge', unit='m', min=0.02,
                            max=5.0)
    eps: float = key(0.5, 'Voxels closer than this are linked', unit='m', min=0.0, max=10.0,
                     exclusive_min=True)
    min_voxels: int = key(5, 'Smaller clusters are noise (instance 0)', min=1, max=100000)
    cluster: str = key('connected_components', 'connected_components (Euclidean cluster extraction) or '
                       'dbscan', choices=('connected_components', 'dbscan'))
    ground: str = key('plane', 'Ground removal before clustering: a RANSAC plane, a height cut, or none',
                      choices=('plane', 'height', 'none'))
    ground_threshold: float = key(0.2, 'Points within this of the ground plane are ground', unit='m', min=0.0,
                                  max=5.0)
    ground_height: float = key(-1.5, 'ground: height: points below this z are ground', unit='m', min=-100.0,
                               max=100.0)


@dataclass
class GridsConfig:
    """The 2D navigation grid and the 3D semantic voxels."""

    nav_grid: bool = key(True, 'Publish a nav_msgs/OccupancyGrid')
    nav_resolution: float = key(0.2, 'Navigation grid cell edge', unit='m', min=0.01, max=10.0)
    nav_size: tuple[float, float] = key((100.0, 100.0), 'Navigation grid extent in x and y, centred on the '
                                        'sensor', unit='m', min=0.1, max=2000.0)
    nav_z_min: float = key(-1.4, 'Lowest height (LiDAR frame) of an obstacle return', unit='m', min=-100.0,
                           max=100.0)
    nav_z_max: float = key(0.5, 'Highest height (LiDAR frame) of an obstacle return', unit='m', min=-100.0,
                           max=100.0)
    obstacle_classes: list[str] = key([], 'Classes that block navigation. Empty: every in-band return')
    occupancy_source: str = key('auto', 'Where the grids come from: geometry (LiDAR rays), student (the '
                                "student's occupancy head, POP-3D Eq. 2), auto (student when the labeller "
                                'runs one)', choices=OCCUPANCY_SOURCES)
    voxels: bool = key(True, 'Publish semantic voxels (a MarkerArray of cubes)')
    voxel_lower: tuple[float, float, float] = key((-51.2, -51.2, -5.0), 'Lower corner of the voxel grid',
                                                  unit='m', min=-10000.0, max=10000.0)
    voxel_upper: tuple[float, float, float] = key((51.2, 51.2, 3.0), 'Upper corner of the voxel grid',
                                                  unit='m', min=-10000.0, max=10000.0)
    voxel_shape: tuple[int, int, int] = key((256, 256, 20), 'Voxels along x, y, z', min=1, max=100000)

    def __post_init__(self) -> None:
        if self.nav_z_max <= self.nav_z_min:
            raise ValueError(f'grids.nav_z_max ({self.nav_z_max}) must exceed grids.nav_z_min '
                             f'({self.nav_z_min})')
        if any(u <= lo for lo, u in zip(self.voxel_lower, self.voxel_upper)):
            raise ValueError(f'grids.voxel_upper {self.voxel_upper} must exceed voxel_lower '
                             f'{self.voxel_lower}')
        cells = (self.nav_size[0] / self.nav_resolution) * (self.nav_size[1] / self.nav_resolution)
        if self.nav_grid and cells * 16 > MEMORY_LIMITS['nav_grid']:
            raise ValueError(f'grids.nav_size {self.nav_size} at {self.nav_resolution} m is {cells:.3g} '
                             f'cells '
                             f'(~{cells * 16 / 2**20:.0f} MiB per frame); the limit is '
                             f'{MEMORY_LIMITS["nav_grid"] // 2**20} MiB: use coarser cells or a smaller grid')
        voxels = self.voxel_shape[0] * self.voxel_shape[1] * self.voxel_shape[2]
        if self.voxels and voxels * 8 > MEMORY_LIMITS['voxel_grid']:
            raise ValueError(f'grids.voxel_shape {self.voxel_shape} is {voxels:.3g} voxels '
                             f'(~{voxels * 8 / 2**20:.0f} MiB per frame); the limit is '
                             f'{MEMORY_LIMITS["voxel_grid"] // 2**20} MiB')


@dataclass
class OverlayConfig:
    """Projected labels drawn on the camera images."""

    enabled: bool = key(True, 'Draw and publish per-camera overlays', live=True)
    point_radius: int = key(2, 'Radius of a drawn point', unit='px', min=0, max=20)
    max_points: int = key(60000, 'Points drawn per camera (subsampled beyond)', min=1, max=10_000_000)
    unknown_color: tuple[int, int, int] = key((128, 128, 128), 'RGB of unknown points', min=0, max=255)


@dataclass
class OutputsConfig:
    """What is published / written besides the labeled cloud, grids and voxels."""

    topic_prefix: str = key('/ovp', 'Namespace of the output topics in an output bag (nodes publish under '
                            'their own name)', scope='offline')
    embeddings: bool = key(False, 'Keep each point\'s feature in the outputs (free-text queries need them; '
                           'nodes keep them when a query is set)')
    projections: bool = key(False, 'Keep the per-camera projections, visibility and the teacher\'s feature '
                            'maps in the outputs (what pseudo-labelling stores)', scope='offline')


@dataclass
class RuntimeConfig:
    """Where and how fast the computation runs."""

    device: str = key('cpu', 'torch device: cpu, cuda or cuda:N')
    torch_threads: int = key(1, 'Intra-op threads (torch, numpy BLAS) of the geometry stages, in the thread '
                             'that calls the pipeline: 1 avoids the collapse of OpenMP teams when another '
                             'process holds a core (0: torch\'s default)', min=0, max=256)
    network_threads: int = key(0, 'Intra-op threads of the teacher / student network (torch or ONNX '
                               'Runtime), in its own worker thread (0: the cores the geometry leaves, at '
                               'least 1)',
                               min=0, max=256)
    concurrent_teacher: bool = key(True, 'Run the 2D teacher in a worker thread while the 3D stages run')

    def __post_init__(self) -> None:
        if not _DEVICE.match(self.device):
            raise ValueError(f"runtime.device must be cpu, cuda or cuda:N, got {self.device!r}")


@dataclass
class NodeConfig:
    """Settings of the ROS 2 nodes only."""

    input_qos: str = key('sensor_data', "sensor_data (best effort: drivers) or reliable (bag playback); a "
                                        "QoS "
                         'mismatch drops messages silently', choices=QOS, scope='node')
    queue_size: int = key(10, 'Synchronizer queue per input topic', min=1, max=1000, scope='node')
    max_frame_age: float = key(0.5, 'A synchronized set older than this when the worker takes it is dropped '
                               '(0: no age limit; only the newest set waits anyway)', unit='s', min=0.0,
                               max=3600.0, live=True, scope='node')
    max_processing_time: float = key(0.1, 'Processing time per frame above which diagnostics warn (error '
                                     'after 5 consecutive overruns)', unit='s', min=0.0, max=3600.0,
                                     exclusive_min=True, live=True, scope='node')
    silent_topic_timeout: float = key(5.0, 'Warn when no synchronized set arrived for this long, naming the '
                                      'silent topics', unit='s', min=0.0, max=3600.0, exclusive_min=True,
                                      live=True, scope='node')
    diagnostics_period: float = key(1.0, 'Period of /diagnostics (wall clock)', unit='s', min=0.01,
                                    max=3600.0, scope='node')
    tf_timeout: float = key(0.05, 'How long the worker waits for a LiDAR-to-camera transform', unit='s',
                            min=0.0, max=10.0, scope='node')
    static_extrinsics: bool = key(True, 'Cache each LiDAR-to-camera transform after its first lookup (rigid '
                                  'mounts)', scope='node')


@dataclass
class ReplayConfig:
    """Settings of the offline commands only (ovp replay / eval / pseudo-label)."""

    max_frames: int = key(0, 'Stop after this many frames (0: all)', min=0, max=10**9, scope='offline')
    storage: str = key('mcap', 'Output bag storage', choices=STORAGES, scope='offline')
    overlay_pngs: int = key(3, 'Overlays of the first N frames also saved as PNG', min=0, max=10000,
                            scope='offline')


@dataclass
class PerceptionConfig:
    """Everything that configures the perception path (see the module docstring)."""

    inputs: InputsConfig = field(default_factory=InputsConfig)
    labeller: LabellerConfig = field(default_factory=LabellerConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    vocabulary: VocabularyConfig = field(default_factory=VocabularyConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    grids: GridsConfig = field(default_factory=GridsConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)

    def __post_init__(self) -> None:
        h, w = self.teacher.input_size
        if self.labeller.kind in ('teacher', 'ensemble') and h * w * 12 > MEMORY_LIMITS['teacher_input']:
            raise ValueError(f'teacher.input_size {h}x{w} needs ~{h * w * 12 / 2**20:.0f} MiB per camera; '
                             f'the '
                             f'limit is {MEMORY_LIMITS["teacher_input"] // 2**20} MiB')
        if self.labeller.kind in ('student', 'ensemble') and not self.labeller.student:
            raise ValueError(f'labeller.kind {self.labeller.kind} needs labeller.student (a .onnx, .engine '
                             f'or '
                             '.safetensors student)')

    @property
    def needs_clip(self) -> bool:
        """True when the labeller needs the CLIP model (image and/or text encoder)."""
        if self.labeller.kind == 'none' or self.teacher.source == 'synthetic':
            return False
        return self.labeller.kind != 'student' or self.labeller.text_source == 'clip'


def _valid_topic(topic: str) -> bool:
    """ROS 2 topic name rules (rcl's validation, relative and private names included)."""
    name = topic[2:] if topic.startswith('~/') else topic[1:] if topic.startswith('/') else topic
    if not name or name.endswith('/') or '//' in name:
        return False
    return all(re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', token) for token in name.split('/'))
