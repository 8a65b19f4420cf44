"""The perception pipeline: one :class:`~perception_nodes.frame.Frame` in, one :class:`Outputs` out.

The ROS nodes, ``ovp replay``, ``ovp eval`` and ``ovp pseudo-label`` all call :meth:`Pipeline.process`;
which labeller runs (``labeller.kind``: the fused 2D teacher, the 3D student, their ensemble or none) is
configuration, not a different code path. Stages (``Outputs.timings_ms`` keys):

``projection`` (Affinity3D Eq. 1) → ``visibility`` (Eq. 9–10 or the depth-buffer variant) → the labeller's
network (``teacher`` dense features / ``student`` embeddings, in a worker thread overlapping the 3D stages)
→ ``sampling`` (teacher features at the visible projections, fused over views) → ``classify`` (the one
classifier, ``perception_nodes.classify``) → ``instances`` (class-agnostic segments; optional voting) →
``occupancy`` (2D navigation grid: LiDAR rays, or the student's occupancy head) → ``voxels`` (3D semantic
voxels) → ``overlay``.
What needs no label (the ray-cast grid without obstacle classes, the voxelization, the overlays' layout
of painted pixels) is computed before waiting for the network, so it overlaps it.

Degraded input never crashes a frame: cameras missing from the frame, or whose image is not (H, W, 3) uint8
of the CameraInfo size, are left out and said in ``Outputs.notes``; points nobody labels are unknown.
"""
from __future__ import annotations

import gc
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from perception_nodes.classify import classify
from perception_nodes.config import PerceptionConfig
from perception_nodes.frame import CameraView, Frame
from perception_nodes.geometry.projection import project_points
from perception_nodes.geometry.visibility import VisibilityConfig, visible_mask
from perception_nodes.hashing import file_sha256
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs, Projections
from perception_nodes.geometry.voxels import voxelize
from perception_nodes.overlay import default_palette, label_overlay_layout, paint_labels
from perception_nodes.pipeline import grids, threads
from perception_nodes.pipeline.fusion import vote_segments
from perception_nodes.teacher.instances import segment_scan
from perception_nodes.pipeline.labellers import (EnsembleLabeller, PointFeatures, StudentLabeller,
                                                 TeacherLabeller)
from perception_nodes.vocabulary import Vocabulary, load_templates, load_vocabulary

RANDOM_WEIGHTS_NOTE = ('labels come from a randomly initialised CLIP ({model}, pretrained={pretrained}): '
                       'they carry NO meaning; supply real weights (--clip-pretrained TAG|PATH) for semantic '
                       'labels')
UNTRAINED_STUDENT_NOTE = ('labels come from a student that was not trained from meaningful pseudo-labels '
                          '({model}): they carry NO meaning')
NO_LABELLER_NOTE = ('no labeller (labeller.kind: none): geometry only; every label is "unknown" '
                    '(visibility, instances and grids are real)')
NO_CAMERA_NOTE = 'no usable camera in this frame: the teacher labelled no point (all unknown)'


class _Timer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + (now - self._t) * 1e3
        self._t = now


def _sha256(path: str | Path) -> str:
    """sha256 of a weights file, or of a checkpoint folder's ``model.safetensors``."""
    p = Path(path)
    return file_sha256(p / 'model.safetensors' if p.is_dir() else p)


class Pipeline:
    """Frame -> Outputs with the configured labeller (module docstring).

    Dependencies may be injected (tests, benches, the synthetic world): ``teacher`` (any object with
    ``dense_features(views)``, e.g. the oracle), ``student_backend`` (``infer(points) -> BackendResult``),
    ``clip`` (a loaded CLIP). Without a CLIP text encoder, :meth:`set_vocabulary` needs ``embeddings=``.
    """

    def __init__(self, config: PerceptionConfig | None = None, *, teacher: Any | None = None,
                 student_backend: Any | None = None, clip: Any | None = None,
                 warn: Any = None) -> None:
        self.config = config or PerceptionConfig()
        cfg = self.config
        self.device = torch.device(cfg.runtime.device)
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(f'runtime.device is {cfg.runtime.device} but torch sees no CUDA device')
        self.geometry_threads, self.network_threads = threads.resolve_threads(cfg.runtime.torch_threads,
                                                                              cfg.runtime.network_threads)
        threads.use_torch_threads(self.geometry_threads)
        threads.limit_blas_threads(self.geometry_threads)
        self._thread_ready = threading.local()
        self.visibility = VisibilityConfig(
            variant=cfg.fusion.visibility, threshold=cfg.fusion.visibility_threshold,
            block=cfg.fusion.visibility_block, dilation=cfg.fusion.visibility_dilation,
            relative_threshold=cfg.fusion.visibility_relative_threshold)
        self.nav_spec = grids.nav_spec(cfg.grids)
        self.voxel_grid = grids.voxel_spec(cfg.grids)
        self.counters: Counter[str] = Counter()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self.clip = clip
        kind = cfg.labeller.kind
        student_text = cfg.labeller.text_source == 'student' and kind in ('student', 'ensemble')
        # teacher.source synthetic: the synthetic teacher (image side) and text encoder (perception_nodes.
        # teacher.synthetic); its classes are set by set_vocabulary
        self.synthetic: Any = None
        if cfg.teacher.source == 'synthetic' and self.clip is None and (
                (kind in ('teacher', 'ensemble') and teacher is None) or
                (kind == 'student' and not student_text and student_backend is None)):
            from perception_nodes.teacher.synthetic import SyntheticSpec, SyntheticTeacher
            self.synthetic = SyntheticTeacher(SyntheticSpec.from_config(cfg.teacher))
        elif cfg.teacher.source == 'clip' and self.clip is None and (
                (kind in ('teacher', 'ensemble') and teacher is None) or
                (kind == 'student' and not student_text and student_backend is None)):
            self.clip = self._load_clip()
        teacher_l = student_l = None
        if kind in ('teacher', 'ensemble'):
            if teacher is None and self.synthetic is not None:
                teacher = self.synthetic
            elif teacher is None:
                from perception_nodes.teacher.maskclip import MaskClipTeacher
                teacher = MaskClipTeacher(self.clip, input_size=cfg.teacher.input_size)
            teacher_l = TeacherLabeller(teacher, cfg.teacher.sampling, self.device)
        if kind in ('student', 'ensemble'):
            name = ''
            if student_backend is None:
                from perception_nodes.student.backends.select import load_student_backend
                student_backend, name = load_student_backend(
                    cfg.labeller.student, cfg.labeller.backend, cfg.runtime.device,
                    threads=self.network_threads, warn=warn or (lambda text: None))
            threads.use_torch_threads(self.geometry_threads)   # the torch backend sets its count here
            student_l = StudentLabeller(student_backend, self.device, name)
        self.labeller: Any = {'teacher': teacher_l, 'student': student_l, 'none': None,
                              'ensemble': None if teacher_l is None or student_l is None
                              else EnsembleLabeller(teacher_l, student_l)}[kind]
        # labeller.text_source student: the student's own trained vocabulary and text embeddings
        self.trained_text: tuple[list[str], torch.Tensor] | None = None
        if student_l is not None and student_text:
            self.trained_text = self._trained_text(student_l)
        elif student_l is not None:
            self._check_text_space(student_l, warn)
        self.occupancy_source = cfg.grids.occupancy_source
        if self.occupancy_source == 'auto':
            self.occupancy_source = 'student' if student_l is not None else 'geometry'
        if self.occupancy_source == 'student' and student_l is None:
            raise ValueError('grids.occupancy_source: student needs labeller.kind student or ensemble')
        self._embedder = None
        if self.clip is not None:
            from perception_nodes.vocabulary import TextEmbedder
            self._embedder = TextEmbedder(self.clip, cfg.teacher.cache_dir or None)
        self.vocabulary: Vocabulary | None = None
        self.clip_text: torch.Tensor | None = None
        self.palette = np.zeros((0, 3), dtype=np.uint8)
        if self._embedder is not None or self.labeller is None or self.synthetic is not None or \
                self.trained_text is not None:
            self.set_vocabulary(cfg.vocabulary.classes)
        _freeze_startup_objects()

    def _trained_text(self, student: StudentLabeller) -> tuple[list[str], torch.Tensor]:
        """Return the student's trained (class names, text embeddings); a one-line error when it has none."""
        config = student.student_config
        trained = config.trained_text() if config is not None else None
        if trained is None:
            raise ValueError(f'labeller.text_source: student, but the student '
                             f'{self.config.labeller.student or "(injected)"} carries no trained text '
                             'embeddings (an untrained student, or one trained before they were stored): use '
                             'labeller.text_source: clip with the CLIP it was trained against')
        return trained

    def teacher_identity(self) -> dict[str, Any]:
        """Identity of the teacher whose space the class text embeddings are in ({} when injected)."""
        if self.synthetic is not None:
            return self.synthetic.spec.identity()
        if self.clip is not None:
            t = self.config.teacher
            return {'kind': 'clip', 'model': t.clip_model, 'pretrained': t.clip_pretrained,
                    'identity': str(getattr(self.clip, 'identity', '')),
                    'random_weights': not getattr(self.clip, 'pretrained_meaningful', True),
                    'embed_dim': int(getattr(self.clip, 'embed_dim', 0) or 0)}
        return {}

    def _check_text_space(self, student: StudentLabeller, warn: Any) -> None:
        """text_source clip: refuse a text encoder that is not the one the student was trained against."""
        trained = student.provenance.get('teacher')
        mine = self.teacher_identity()
        if not isinstance(trained, dict) or not trained.get('kind') or not mine:
            return

        def describe(t: dict[str, Any]) -> str:
            if t.get('kind') == 'clip':
                return f"CLIP {t.get('model')} ({t.get('pretrained')})"
            return f"the {t.get('model')} teacher ({t.get('identity') or t.get('pretrained')})"
        same_kind = trained.get('kind') == mine['kind'] and trained.get('model') == mine['model']
        dims = trained.get('embed_dim'), mine.get('embed_dim')
        if not same_kind or (all(dims) and dims[0] != dims[1]) or (
                mine['kind'] == 'oracle' and trained.get('identity') != mine['identity']):
            raise ValueError(f'the student was trained against {describe(trained)}, but '
                             f'labeller.text_source: clip would take the class text embeddings from '
                             f'{describe(mine)}: another '
                             'space. Use that teacher (teacher.source / teacher.clip_model / '
                             'clip_pretrained) or labeller.text_source: student')
        if trained.get('identity') and mine.get('identity') and trained['identity'] != mine['identity']:
            (warn or warnings.warn)(f'the student was trained against {trained["identity"]}; the text '
                                    f'encoder here is {mine["identity"]}: the same model, possibly other '
                                    'weights')

    def _load_clip(self) -> Any:
        from perception_nodes.teacher.clip_models import ClipSpec, load_clip
        t = self.config.teacher
        return load_clip(ClipSpec(model=t.clip_model, pretrained=t.clip_pretrained,
                                  cache_dir=t.cache_dir or None, offline=t.offline, device=str(self.device)))

    # -- identity ---------------------------------------------------------------------------------
    @property
    def labeller_name(self) -> str:
        return 'none' if self.labeller is None else self.labeller.name

    @property
    def meaningful(self) -> bool:
        """True when the labels carry semantics (pretrained CLIP, oracle, or a student trained from them)."""
        return self.labeller is not None and bool(self.labeller.meaningful)

    @property
    def class_names(self) -> list[str]:
        return [] if self.vocabulary is None else self.vocabulary.names

    def provenance(self) -> dict[str, Any]:
        """Who produced the labels: labeller, teacher weights identity, student file hash and training."""
        cfg = self.config
        out: dict[str, Any] = {'labeller': self.labeller_name, 'labels_meaningful': self.meaningful}
        if self.clip is not None:
            out['clip'] = {'model': cfg.teacher.clip_model, 'pretrained': cfg.teacher.clip_pretrained,
                           'identity': getattr(self.clip, 'identity', ''),
                           'random_weights': not getattr(self.clip, 'pretrained_meaningful', True)}
        if self.synthetic is not None:
            from perception_nodes.teacher.synthetic import SYNTHETIC_TEACHER_NOTE, SYNTHETIC_TEXT_NOTE
            teaches = self.labeller_name in ('teacher', 'ensemble')
            out['synthetic_teacher'] = dict(self.synthetic.spec.identity(),
                                            note=SYNTHETIC_TEACHER_NOTE if teaches else SYNTHETIC_TEXT_NOTE)
        teacher = getattr(self.labeller, 'teacher', None) if self.labeller_name == 'ensemble' else (
            self.labeller if self.labeller_name == 'teacher' else None)
        if teacher is not None and self.clip is None:
            out['teacher'] = type(teacher.teacher).__name__
        student = self.labeller if isinstance(self.labeller, StudentLabeller) else getattr(
            self.labeller, 'student', None)
        if student is not None:
            path = cfg.labeller.student
            out['student'] = {'model': path, 'backend': student.backend_name,
                              'sha256': _sha256(path) if path and Path(path).exists() else '',
                              'provenance': student.provenance,
                              'text_source': 'student (its trained text embeddings)'
                              if self.trained_text is not None else 'clip (the teacher\'s text encoder)'}
        return out

    # -- vocabulary ---------------------------------------------------------------------------------
    def set_vocabulary(self, vocabulary: Vocabulary | str | Path | Sequence[str],
                       templates: str | Sequence[str] | None = None,
                       embeddings: torch.Tensor | None = None) -> None:
        """Change the classes (live). Text embeddings come from the cache (only new classes are encoded).

        ``templates`` None: the configured ones. ``embeddings`` (K, C) replaces the CLIP text encoder
        (oracle teachers, precomputed vocabularies). With ``labeller.text_source: student`` the classes must
        be among the student's trained classes (their rows are selected), or the default vocabulary (then
        all of them); with ``teacher.source: synthetic`` the synthetic teacher is rebuilt for the classes.
        """
        vocab = load_vocabulary(vocabulary)
        student_rows = None
        if self.trained_text is not None and embeddings is None:
            vocab, student_rows = self._trained_rows(vocab, vocabulary)
        if self.synthetic is not None:
            synthetic_text = self.synthetic.set_classes(vocab.names)
        if embeddings is not None:
            emb = torch.as_tensor(embeddings, dtype=torch.float32)
            if emb.ndim != 2 or emb.shape[0] != len(vocab):
                raise ValueError(f'embeddings must be ({len(vocab)}, C) for vocabulary {vocab.name!r}, '
                                 f'got {tuple(emb.shape)}')
            if not torch.isfinite(emb).all():
                raise ValueError('class embeddings contain NaN or inf')
            emb = torch.nn.functional.normalize(emb, dim=1)
        elif self.synthetic is not None:
            emb = synthetic_text
        elif self._embedder is not None:
            emb = self._embedder.embed(vocab, self._templates(templates)).float().cpu()
        elif student_rows is not None:
            emb = student_rows
        elif self.labeller is None:
            emb = None                                      # geometry only: names for the legend
        else:
            raise ValueError('no CLIP text encoder here: pass the class text embeddings '
                             '(set_vocabulary(..., embeddings=...))')
        if emb is not None and self.labeller is not None:
            dim = self.labeller.embed_dim if self.labeller_name == 'teacher' else None
            if dim is not None and emb.shape[1] != dim:
                raise ValueError(f'text embeddings have width {emb.shape[1]}, the teacher {dim}')
            if student_rows is not None and isinstance(self.labeller, EnsembleLabeller):
                self.labeller.teacher.set_text(emb)
                self.labeller.student.set_text(student_rows)
            else:
                self.labeller.set_text(emb)
        self.vocabulary, self.clip_text = vocab, emb
        colors = np.asarray(vocab.colors, dtype=np.uint8).reshape(-1, 3)
        self.palette = colors if len(colors) == len(vocab) else default_palette(len(vocab))

    def _trained_rows(self, vocab: Vocabulary, requested: Any) -> tuple[Vocabulary, torch.Tensor]:
        """text_source student: (vocabulary, its rows of the trained text embeddings) (set_vocabulary)."""
        from perception_nodes.config import VocabularyConfig
        from perception_nodes.vocabulary import BUILTIN_VOCABULARIES, vocabulary_from_names
        assert self.trained_text is not None
        names, emb = self.trained_text
        missing = [n for n in vocab.names if n not in names]
        if not missing:
            return vocab, emb[[names.index(n) for n in vocab.names]]
        given = [str(requested)] if isinstance(requested, (str, Path)) else (
            None if isinstance(requested, Vocabulary) else [str(v) for v in requested])
        if given == VocabularyConfig().classes:        # the default: every trained class
            student = self.labeller if isinstance(self.labeller, StudentLabeller) else self.labeller.student
            name = str((student.student_config.vocabulary or {}).get('name') or 'trained')
            if name in BUILTIN_VOCABULARIES and load_vocabulary(name).names == names:
                return load_vocabulary(name), emb                 # its colours and dataset ids too
            return vocabulary_from_names(names, name=name), emb
        raise ValueError(f'labeller.text_source: student knows only the classes the student was trained for '
                         f'({", ".join(names)}); {", ".join(missing)} are not among them: give a subset '
                         f'(vocabulary.classes) or use text_source: clip')

    def _templates(self, templates: str | Sequence[str] | None) -> tuple[str, ...]:
        if templates is None:
            templates = self.config.vocabulary.templates or None
        return load_templates(templates)

    def text_embedding(self, query: str) -> torch.Tensor:
        """(D,) unit embedding of a free-text query in the space of ``Outputs.embeddings``.

        Without a CLIP text encoder (``labeller.text_source: student``, ``teacher.source: synthetic``) a query
        must be a class name of the vocabulary (its class embedding is used).
        """
        query = str(query).strip()
        if not query:
            raise ValueError('empty text query')
        if self._embedder is not None:
            clip = self._embedder.embed_class([query], self._templates(None)).float().cpu()[None]
        elif self.trained_text is not None and query in self.trained_text[0]:
            names, trained = self.trained_text
            clip = trained[names.index(query)][None]
        elif self.vocabulary is not None and self.clip_text is not None and query in self.vocabulary.names:
            clip = self.clip_text[self.vocabulary.names.index(query)][None].float().cpu()
        else:
            known = ', '.join(self.trained_text[0] if self.trained_text is not None else self.class_names)
            raise ValueError(f'text queries need a CLIP text encoder; without one (labeller.text_source: '
                             f'student, teacher.source: synthetic) a query must be a class name ({known})')
        emb = self.labeller.project_query(clip)[0] if self.labeller is not None else clip[0]
        return torch.nn.functional.normalize(emb, dim=0)

    def similarity(self, outputs: Outputs, query: str | torch.Tensor) -> np.ndarray:
        """(N,) cosine similarity of each point's feature with a query; NaN where a point has no feature.

        Needs ``outputs.embeddings`` (``outputs.embeddings: true``).
        """
        from perception_nodes.runtime.query import similarity_scores
        if outputs.embeddings is None:
            raise ValueError('outputs carry no embeddings: set outputs.embeddings: true')
        q = self.text_embedding(query) if isinstance(query, str) else torch.as_tensor(query).float()
        return similarity_scores(outputs.embeddings, q)

    # -- per frame ------------------------------------------------------------------------------------
    def _usable_views(self, frame: Frame, notes: list[str]) -> list[CameraView]:
        for name in frame.missing_cameras:
            self.counters['camera_missing'] += 1
            notes.append(f'camera {name!r} missing from this frame: labelled without it')
        usable = []
        for view in frame.cameras:
            image = np.asarray(view.image)
            expected = (view.model.height, view.model.width)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                self.counters['camera_bad_image'] += 1
                notes.append(f'camera {view.name!r}: image {image.shape} {image.dtype} is not (H, W, 3) '
                             f'uint8; view skipped')
            elif image.shape[:2] != expected:
                self.counters['camera_size_mismatch'] += 1
                notes.append(f'camera {view.name!r}: image is {image.shape[1]}x{image.shape[0]} but its '
                             f'CameraInfo says {expected[1]}x{expected[0]}; view skipped')
            else:
                usable.append(view)
        return usable

    def _segments(self, frame: Frame) -> torch.Tensor:
        s = self.config.segments
        ids = segment_scan(frame.points, ground=s.ground, ground_height=s.ground_height,
                           ground_threshold=s.ground_threshold, eps=s.eps, min_samples=s.min_voxels,
                           voxel_size=s.voxel_size, cluster=s.cluster)
        segments = torch.as_tensor(np.asarray(ids), device=self.device).long()
        if segments.shape != (frame.num_points,):
            raise ValueError(f'segment_scan returned {tuple(segments.shape)} ids for {frame.num_points} '
                             f'points')
        return segments

    def _labels(self, results: list[PointFeatures], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Classify each labeller's features with the one classifier; per point the most confident wins."""
        cfg = self.config.labeller
        labels = torch.full((n,), UNKNOWN_LABEL, dtype=torch.int64, device=self.device)
        scores = torch.zeros(n, dtype=torch.float32, device=self.device)
        for result in results:
            if result.index.numel() == 0:
                continue
            c = classify(result.features, result.text, cfg.logit_scale, cfg.unknown_threshold,
                         normalized=result.unit)
            better = c.scores > scores[result.index]
            idx = result.index[better]
            labels[idx], scores[idx] = c.labels[better], c.scores[better]
        return labels, scores

    def process(self, frame: Frame) -> Outputs:
        """Run every stage on one frame (module docstring)."""
        cfg = self.config
        wall = time.perf_counter()
        timer = _Timer(self.device)
        notes: list[str] = []
        labeller = self.labeller
        if labeller is None:
            notes.append(NO_LABELLER_NOTE)
        elif self.synthetic is not None:
            from perception_nodes.teacher.synthetic import SYNTHETIC_TEACHER_NOTE, SYNTHETIC_TEXT_NOTE
            notes.append(SYNTHETIC_TEXT_NOTE if self.labeller_name == 'student' else SYNTHETIC_TEACHER_NOTE)
        elif not labeller.meaningful:
            student = getattr(labeller, 'student', labeller)
            if self.clip is not None and not getattr(self.clip, 'pretrained_meaningful', True) and \
                    self.labeller_name in ('teacher', 'ensemble'):
                notes.append(RANDOM_WEIGHTS_NOTE.format(model=cfg.teacher.clip_model,
                                                        pretrained=cfg.teacher.clip_pretrained))
            if isinstance(student, StudentLabeller) and not student.meaningful:
                notes.append(UNTRAINED_STUDENT_NOTE.format(model=cfg.labeller.student or 'injected backend'))
        if labeller is not None and self.clip_text is None:
            raise ValueError('no vocabulary: call set_vocabulary() before process()')
        if not getattr(self._thread_ready, 'done', False):     # the thread calling process(): geometry
            threads.use_torch_threads(self.geometry_threads)
            self._thread_ready.done = True
        n = frame.num_points
        points = torch.as_tensor(frame.points, device=self.device)
        views = self._usable_views(frame, notes)
        if labeller is not None and labeller.needs_cameras and not views and n:
            self.counters['no_usable_camera'] += 1
            notes.append(NO_CAMERA_NOTE)
        run = self._executor().submit if cfg.runtime.concurrent_teacher else self._inline
        handle = labeller.submit(frame, views, run) if labeller is not None else None
        obstacle = None
        if cfg.grids.obstacle_classes and self.vocabulary is not None:
            obstacle = [self.vocabulary.index(c) for c in cfg.grids.obstacle_classes]
        # the geometric grid runs here, with the other 3D stages: in a third thread (beside this one and the
        # network's) it only contended for the cores and the GIL (measured on 2 shared cores: slower)
        geometric_nav = cfg.grids.nav_grid and self.occupancy_source == 'geometry'

        models = [v.model for v in views]
        T = np.stack([v.T_cam_lidar for v in views]) if views else np.zeros((0, 4, 4))
        proj = project_points(points, models, T)
        timer.lap('projection')
        visible = visible_mask(proj, [v.image for v in views], self.visibility) if views else proj.in_image
        timer.lap('visibility')
        segments = self._segments(frame) if cfg.segments.enabled and n else \
            torch.full((n,), -1, dtype=torch.int64, device=self.device)
        timer.lap('instances')

        # what needs no label is done now, while the network may still be running
        occupancy = None
        if geometric_nav and obstacle is None:
            occupancy = grids.geometric_nav_grid(points, None, self.nav_spec)
        timer.lap('occupancy')
        voxelized = None
        if cfg.grids.voxels and self.occupancy_source == 'geometry':
            voxelized = voxelize(points, self.voxel_grid)
        timer.lap('voxels')
        layouts = {}
        if cfg.overlay.enabled and views:
            layouts = {view.name: label_overlay_layout(view.image.shape[:2], proj.uv[m], proj.depth[m],
                                                       proj.in_image[m], cfg.overlay.point_radius,
                                                       cfg.overlay.max_points)
                       for m, view in enumerate(views)}
        timer.lap('overlay')

        results: list[PointFeatures] = []
        if labeller is not None:
            collected = labeller.collect(handle, frame, proj, visible)
            results = collected if isinstance(collected, list) else [collected]
            timer.lap('labeller_wait')
            for r in results:
                timer.times.update(r.timings_ms)
        labels, scores = self._labels(results, n)
        timer.lap('classify')
        primary = results[0] if results else None
        if cfg.fusion.instance_voting and primary is not None and n:
            features = (primary.index, primary.features) if cfg.fusion.voting == 'mean_feature' else None
            labels, scores = vote_segments(segments, labels, scores, len(self.class_names), cfg.fusion.voting,
                                           features, primary.text, cfg.labeller.logit_scale,
                                           cfg.labeller.unknown_threshold)
        instances = torch.where(segments >= 0, segments + 1, torch.zeros_like(segments))
        timer.lap('instances')

        occupancy_3d = None
        student = next((r for r in results if r.source == 'student'), None)
        if self.occupancy_source == 'student' and student is not None and \
                student.occupancy_logits is not None:
            occupancy_3d = grids.occupied_probability(student.occupancy_logits)
        if cfg.grids.nav_grid:
            if occupancy_3d is not None:
                occupancy = grids.student_nav_grid(occupancy_3d, student.grid, cfg.grids.nav_z_min,
                                                   cfg.grids.nav_z_max)
            elif geometric_nav and occupancy is None:
                occupancy = grids.geometric_nav_grid(points, labels, self.nav_spec, obstacle)
            if occupancy is not None:
                occupancy.frame_id = occupancy.frame_id or frame.frame_id
        timer.lap('occupancy')

        voxels = None
        if cfg.grids.voxels:
            if occupancy_3d is not None:
                voxels = grids.student_voxels(occupancy_3d, student.grid, points, labels,
                                              student.voxel_features, self.clip_text,
                                              cfg.labeller.logit_scale, cfg.labeller.unknown_threshold)
            else:
                voxels = grids.semantic_voxels(points, labels, self.voxel_grid, voxelized)
        timer.lap('voxels')

        labels_np = labels.cpu().numpy().astype(np.uint16)
        overlays: dict[str, np.ndarray] = {}
        if cfg.overlay.enabled and views:
            # without labels the overlay shows class-agnostic instances (ground / noise grey)
            drawn, palette = labels_np, self.palette
            if labeller is None:
                seg = segments.cpu().numpy()
                drawn = np.where(seg >= 0, seg % 20, UNKNOWN_LABEL)
                palette = default_palette(20)
            for view in views:
                overlays[view.name] = paint_labels(view.image, layouts[view.name], drawn, palette,
                                                   cfg.overlay.unknown_color)
        timer.lap('overlay')

        embeddings = None
        if cfg.outputs.embeddings and primary is not None and primary.features.numel():
            emb = torch.zeros(n, primary.features.shape[1], dtype=torch.float32, device=self.device)
            emb[primary.index] = torch.nan_to_num(primary.features.float())
            embeddings = emb.cpu().numpy()
        seen = visible.any(dim=0) if len(views) else torch.zeros(n, dtype=torch.bool)
        projections = None
        if cfg.outputs.projections:
            teacher = next((r for r in results if r.source == 'teacher'), None)
            projections = Projections(
                cameras=[v.name for v in views], image_sizes=[tuple(map(int, s)) for s in proj.image_sizes],
                uv=proj.uv.float().cpu().numpy(), in_image=proj.in_image.cpu().numpy(),
                visible=visible.cpu().numpy(),
                teacher_maps=None if teacher is None or teacher.maps is None
                else [m.float().cpu().numpy() for m in teacher.maps])
        timings = dict(timer.times)
        timings['total'] = (time.perf_counter() - wall) * 1e3
        return Outputs(stamp_ns=frame.stamp_ns, frame_id=frame.frame_id, points=frame.points,
                       intensity=frame.intensity, labels=labels_np, scores=scores.cpu().numpy(),
                       instances=instances.cpu().numpy().astype(np.uint32), class_names=self.class_names,
                       palette=self.palette, labeller=self.labeller_name, embeddings=embeddings,
                       visible=seen.cpu().numpy(), occupancy=occupancy, voxels=voxels,
                       occupancy_3d=occupancy_3d, projections=projections, overlays=overlays,
                       camera_frames={v.name: (v.model.frame_id,
                                               v.stamp_ns or frame.stamp_ns) for v in views},
                       timings_ms=timings, notes=notes)

    def _executor(self) -> ThreadPoolExecutor:
        """Return the network's worker threads (teacher / student, each with ``network_threads``)."""
        pool = self._pools.get('network')
        if pool is None:
            workers = 2 if isinstance(self.labeller, EnsembleLabeller) else 1
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix='ovp-network',
                                      initializer=threads.use_torch_threads, initargs=(self.network_threads,))
            self._pools['network'] = pool
        return pool

    def _inline(self, fn: Any, *args: Any) -> Future:
        """Run the network in the calling thread (``runtime.concurrent_teacher: false``) with its threads."""
        switch = self.geometry_threads > 0
        if switch:
            threads.use_torch_threads(self.network_threads)
        try:
            value = fn(*args)
        finally:
            if switch:
                threads.use_torch_threads(self.geometry_threads)
        done: Future = Future()
        done.set_result(value)
        return done

    def close(self) -> None:
        """Stop the worker threads (also done at interpreter exit)."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.shutdown(wait=True)


_FROZEN: list[bool] = []


def _freeze_startup_objects() -> None:
    """Move what exists after the first pipeline's start-up out of the cyclic collector's reach (once).

    torch, the models and the imported modules are ~200k tracked objects that live as long as the
    process; a full collection walks all of them (~100 ms on a small CPU), and the thousands of marker
    points a frame allocates trigger one every few frames. Frozen (``gc.freeze``), they are no longer
    walked: full collections then cost what the frames allocate. Objects frozen here are never collected
    as cyclic garbage, which is what start-up objects are for.
    """
    if not _FROZEN:
        _FROZEN.append(True)
        gc.freeze()
