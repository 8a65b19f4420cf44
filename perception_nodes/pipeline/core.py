"""The ROS-free fusion pipeline.

One :class:`~perception_nodes.frame.Frame` in, one :class:`~perception_nodes.outputs.Outputs` out.
The ROS nodes and ``ovp replay`` call the same object.

Stages (``Outputs.timings_ms`` keys):
``projection`` (Affinity3D Eq. 1) → ``visibility`` (Eq. 9–10, or the depth-buffer variant) →
``teacher`` (dense 2D features per camera) → ``sampling`` (features at the visible projections) →
``fusion`` (mean over the views that see a point, renormalised; cosine softmax against the vocabulary,
Eq. 2–3; "unknown" below a threshold) → ``instances`` (class-agnostic segments; optional voting) →
``occupancy`` (2D navigation grid) → ``voxels`` (semantic voxels, majority label) → ``overlay``.

Degraded input, never a crash: a camera listed in ``Frame.missing_cameras`` or whose image is not an
(H, W, 3) uint8 array of the CameraInfo size is left out of the fusion (counted in ``counters`` and
said in ``Outputs.notes``); points no usable camera sees keep ``UNKNOWN_LABEL`` and score 0.
"""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from perception_nodes.config import PipelineConfig
from perception_nodes.frame import CameraView, Frame
from perception_nodes.geometry.occupancy import NavGridSpec, navigation_grid
from perception_nodes.geometry.projection import project_points
from perception_nodes.geometry.sampling import sample_features
from perception_nodes.geometry.visibility import VisibilityConfig, visible_mask
from perception_nodes.geometry.voxels import GridSpec, majority_label, voxelize
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs, SemanticVoxels
from perception_nodes.overlay import default_palette, draw_label_overlay
from perception_nodes.pipeline.fusion import FeatureAccumulator, classify, vote_segments
from perception_nodes.vocabulary import Vocabulary, load_templates, load_vocabulary

RANDOM_WEIGHTS_NOTE = ('labels come from a randomly initialised CLIP ({model}, pretrained={pretrained}): '
                       'they carry NO meaning; supply real weights (--clip-pretrained TAG|PATH) for semantic '
                       'labels')
NO_TEACHER_NOTE = ('no 2D teacher (teacher.kind=none): geometry only; every label is "unknown" '
                   '(visibility, instances and grids are real)')


def _timed(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - start) * 1e3


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


def _nav_spec(options: dict[str, Any]) -> NavGridSpec:
    opts = dict(options)
    for key in ('size_xy', 'origin_xy'):
        if isinstance(opts.get(key), list):
            opts[key] = tuple(opts[key])
    try:
        return NavGridSpec(**opts)
    except TypeError as exc:
        raise ValueError(f'grids.nav_grid: {exc}') from exc


class Pipeline:
    """Frame -> Outputs. ``teacher=None`` builds the configured CLIP (MaskCLIP) teacher.

    A teacher passed in without a CLIP (e.g. the synthetic-world oracle) needs the class text embeddings
    given to :meth:`set_vocabulary` (``embeddings=``). ``teacher.kind: none`` gives geometry-only outputs.
    """

    def __init__(self, config: PipelineConfig | None = None, teacher: Any | None = None,
                 device: str | torch.device | None = None, clip: Any | None = None) -> None:
        self.config = config or PipelineConfig()
        cfg = self.config
        self.device = torch.device(device if device is not None else cfg.device)
        try:
            self.visibility = VisibilityConfig(variant=cfg.fusion.visibility, **cfg.fusion.visibility_options)
        except TypeError as exc:
            raise ValueError(f'fusion.visibility_options: {exc}') from exc
        self.nav_spec = _nav_spec(cfg.grids.nav_grid)
        self.voxel_grid = GridSpec(cfg.grids.voxel_lower, cfg.grids.voxel_upper, cfg.grids.voxel_shape)
        self.clip = clip
        self.teacher = teacher
        self.counters: Counter[str] = Counter()
        self._pool: ThreadPoolExecutor | None = None
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        if self.teacher is None and cfg.teacher.kind == 'clip':
            from perception_nodes.teacher.clip_models import ClipSpec, load_clip
            from perception_nodes.teacher.maskclip import MaskClipTeacher
            if self.clip is None:
                spec = ClipSpec(model=cfg.teacher.clip_model, pretrained=cfg.teacher.clip_pretrained,
                                cache_dir=cfg.teacher.cache_dir or None, offline=cfg.teacher.offline,
                                device=str(self.device))
                self.clip = load_clip(spec)
            self.teacher = MaskClipTeacher(self.clip, input_size=cfg.teacher.input_size)
        self._embedder = None
        if self.clip is not None:
            from perception_nodes.vocabulary import TextEmbedder
            self._embedder = TextEmbedder(self.clip, cfg.teacher.cache_dir or None)
        self.vocabulary: Vocabulary | None = None
        self.text_embeddings: torch.Tensor | None = None
        self.palette = np.zeros((0, 3), dtype=np.uint8)
        if self._embedder is not None or self.teacher is None:
            self.set_vocabulary(cfg.vocabulary.name, cfg.vocabulary.templates)

    # -- vocabulary ---------------------------------------------------------------------------
    @property
    def meaningful(self) -> bool:
        """True when the labels carry semantics (a pretrained CLIP or an oracle), False for random weights."""
        return self.teacher is not None and bool(getattr(self.teacher, 'meaningful', True))

    @property
    def class_names(self) -> list[str]:
        return [] if self.vocabulary is None else self.vocabulary.names

    def set_vocabulary(self, vocabulary: Vocabulary | str | Path | Sequence[str],
                       templates: str | Sequence[str] | None = None,
                       embeddings: torch.Tensor | None = None) -> None:
        """Change the classes (live). Text embeddings come from the cache (only new classes are encoded).

        ``templates`` None: the configured ones (``vocabulary.templates``).

        ``embeddings`` (K, C) replaces the CLIP text encoder (oracle teachers, precomputed vocabularies).
        """
        vocab = load_vocabulary(vocabulary)
        if embeddings is not None:
            emb = torch.as_tensor(embeddings, dtype=torch.float32)
            if emb.ndim != 2 or emb.shape[0] != len(vocab):
                raise ValueError(f'embeddings must be ({len(vocab)}, C) for vocabulary {vocab.name!r}, '
                                 f'got {tuple(emb.shape)}')
            emb = F.normalize(emb.to(self.device), dim=1)
        elif self._embedder is not None:
            temps = load_templates(self.config.vocabulary.templates if templates is None else templates)
            emb = self._embedder.embed(vocab, temps).to(self.device).float()
        elif self.teacher is None:
            emb = None                                      # geometry only: names for the legend
        else:
            raise ValueError('this teacher has no CLIP text encoder: pass the class text embeddings '
                             '(set_vocabulary(..., embeddings=...))')
        if emb is not None and self.teacher is not None:
            dim = getattr(self.teacher, 'embed_dim', emb.shape[1])
            if emb.shape[1] != dim:
                raise ValueError(f'text embeddings have width {emb.shape[1]}, the teacher {dim}')
        self.vocabulary, self.text_embeddings = vocab, emb
        colors = np.asarray(vocab.colors, dtype=np.uint8).reshape(-1, 3)
        self.palette = colors if len(colors) == len(vocab) else default_palette(len(vocab))

    def text_embedding(self, query: str) -> torch.Tensor:
        """(C,) unit CLIP text embedding of a free-form query (prompt ensemble of the templates)."""
        if self._embedder is None:
            raise ValueError('text queries need a CLIP text encoder (teacher.kind: clip)')
        query = str(query).strip()
        if not query:
            raise ValueError('empty text query')
        return self._embedder.embed([query], load_templates(self.config.vocabulary.templates))[0].float()

    def similarity(self, outputs: Outputs, query: str | torch.Tensor) -> np.ndarray:
        """(N,) cosine similarity of each point's fused feature with a query; NaN where no camera saw it.

        Needs ``fusion.keep_embeddings: true`` (Outputs.embeddings).
        """
        if outputs.embeddings is None:
            raise ValueError('outputs carry no embeddings: set fusion.keep_embeddings: true')
        q = self.text_embedding(query) if isinstance(query, str) else torch.as_tensor(query).float()
        emb = torch.from_numpy(outputs.embeddings)
        sim = (emb @ F.normalize(q.cpu(), dim=0)).numpy().astype(np.float32)
        seen = outputs.visible
        if seen is None:
            seen = np.linalg.norm(outputs.embeddings, axis=1) > 0
        sim[~seen] = np.nan
        return sim

    # -- per frame ------------------------------------------------------------------------------
    def _usable_views(self, frame: Frame, notes: list[str]) -> list[CameraView]:
        for name in frame.missing_cameras:
            self.counters['camera_missing'] += 1
            notes.append(f'camera {name!r} missing from this frame: fused without it')
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

    def _navigation_grid(self, points: torch.Tensor, labels: torch.Tensor) -> Any:
        """2D navigation grid; with ``grids.dedupe_rays`` one ray per (grid cell, height band, obstacle) key.

        Rays ending in the same grid cell on the same side of the obstacle height band cross the same cells
        up to the end cell, so casting one of them loses (almost) nothing: occupied cells are identical
        (every occupied cell keeps an in-band representative), free cells a subset of the full cast
        (>99.9% of them on the synthetic world, see the tests), at a fraction of the rays.
        """
        cfg = self.config.grids
        obstacle = None
        if cfg.obstacle_classes and self.text_embeddings is not None:
            obstacle = [self.vocabulary.index(c) for c in cfg.obstacle_classes]
        origin = torch.zeros(3, device=self.device)
        if cfg.dedupe_rays and points.shape[0]:
            finite = torch.isfinite(points).all(dim=1)
            pts = points[finite]
            lab = labels[finite]
            grid = self.nav_spec.grid(origin)
            lower = torch.tensor(grid.lower[:2], dtype=pts.dtype, device=pts.device)
            cell = torch.floor((pts[:, :2] - lower) / self.nav_spec.resolution).long()
            cell = cell.clamp(-(1 << 20), 1 << 20)
            band = torch.bucketize(pts[:, 2].contiguous(),
                                   torch.tensor([grid.lower[2], grid.upper[2]], dtype=pts.dtype,
                                                device=pts.device), right=True)
            is_obstacle = torch.zeros_like(band) if obstacle is None else \
                torch.isin(lab, torch.as_tensor(obstacle, device=lab.device)).long()
            key = (((cell[:, 0] + (1 << 20)) << 21) + cell[:, 1] + (1 << 20)) * 8 + band * 2 + is_obstacle
            _, inverse = torch.unique(key, return_inverse=True)
            first = torch.full((int(inverse.max()) + 1,), pts.shape[0], dtype=torch.long, device=pts.device)
            first = first.scatter_reduce(0, inverse, torch.arange(pts.shape[0], device=pts.device), 'amin')
            points, labels = pts[first], lab[first]
        return navigation_grid(points, origin, self.nav_spec, labels if obstacle is not None else None,
                               obstacle)

    def _dense_features(self, views: list[CameraView]) -> tuple[list[torch.Tensor], float]:
        start = time.perf_counter()
        maps = self.teacher.dense_features(views)
        if len(maps) != len(views):
            raise ValueError(f'teacher returned {len(maps)} feature maps for {len(views)} views')
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return maps, (time.perf_counter() - start) * 1e3

    def _segments(self, frame: Frame) -> torch.Tensor:
        from perception_nodes.teacher.instances import segment_scan
        try:
            segment_ids = segment_scan(frame.points, **self.config.fusion.segment_options)
        except TypeError as exc:
            raise ValueError(f'fusion.segment_options: {exc}') from exc
        segments = torch.as_tensor(np.asarray(segment_ids), device=self.device).long()
        if segments.shape != (frame.num_points,):
            raise ValueError(f'segment_scan returned {tuple(segments.shape)} ids for {frame.num_points} '
                             f'points')
        return segments

    def process(self, frame: Frame) -> Outputs:
        """Run every stage on one frame (see the module docstring).

        With ``concurrent_teacher`` the 2D teacher and the occupancy grid (when it needs no labels) run in
        worker threads while projection, visibility, segments and voxelization run here; ``timings_ms``
        then holds each stage's own duration, ``teacher_wait`` the time spent waiting for the workers, and
        ``total`` the wall-clock time of the call.
        """
        cfg = self.config
        wall = time.perf_counter()
        timer = _Timer(self.device)
        notes: list[str] = []
        if self.teacher is None:
            notes.append(NO_TEACHER_NOTE)
        elif not self.meaningful:
            notes.append(RANDOM_WEIGHTS_NOTE.format(model=cfg.teacher.clip_model,
                                                    pretrained=cfg.teacher.clip_pretrained))
        if self.teacher is not None and self.text_embeddings is None:
            raise ValueError('no vocabulary: call set_vocabulary() before process()')
        n = frame.num_points
        points = torch.as_tensor(frame.points, device=self.device)
        views = self._usable_views(frame, notes)
        run_teacher = self.teacher is not None and bool(views) and n > 0
        future = occupancy_future = None
        obstacle_labels = bool(cfg.grids.obstacle_classes) and self.text_embeddings is not None
        if run_teacher and cfg.concurrent_teacher:
            future = self._executor().submit(self._dense_features, views)
            if cfg.grids.occupancy and not obstacle_labels:     # the grid needs no labels: overlap it too
                no_labels = torch.full((n,), UNKNOWN_LABEL, device=self.device)
                occupancy_future = self._executor().submit(_timed, self._navigation_grid, points, no_labels)

        # projection + visibility
        models = [v.model for v in views]
        T = np.stack([v.T_cam_lidar for v in views]) if views else np.zeros((0, 4, 4))
        proj = project_points(points, models, T)
        timer.lap('projection')
        visible = visible_mask(proj, [v.image for v in views], self.visibility) if views else proj.in_image
        timer.lap('visibility')

        # label-independent 3D work (overlaps the teacher when it runs concurrently)
        segments = self._segments(frame)
        timer.lap('instances')
        occupancy = None
        if cfg.grids.occupancy and not obstacle_labels and occupancy_future is None:
            occupancy = self._navigation_grid(points, torch.full((n,), UNKNOWN_LABEL, device=self.device))
            timer.lap('occupancy')
        vox = voxelize(points, self.voxel_grid) if cfg.grids.voxels else None
        timer.lap('voxels')

        labels = torch.full((n,), UNKNOWN_LABEL, dtype=torch.int64, device=self.device)
        scores = torch.zeros(n, dtype=torch.float32, device=self.device)
        acc = FeatureAccumulator(n, self.device)
        fused_index = torch.zeros(0, dtype=torch.int64, device=self.device)
        fused = torch.zeros(0, 0, device=self.device)
        if run_teacher:
            if future is not None:
                maps, teacher_ms = future.result()
                if occupancy_future is not None:
                    occupancy, timer.times['occupancy'] = occupancy_future.result()
                timer.lap('teacher_wait')
            else:
                maps, teacher_ms = self._dense_features(views)
                timer.lap('teacher_wait')
            timer.times['teacher'] = teacher_ms
            for m, fmap in enumerate(maps):
                idx = torch.nonzero(visible[m]).reshape(-1)
                if idx.numel() == 0:
                    continue
                feats = sample_features(fmap.to(self.device), proj.uv[m, idx], proj.image_sizes[m],
                                        cfg.teacher.sampling).float()
                feats = feats.div_(feats.norm(dim=1, keepdim=True).clamp_min_(1e-12))   # in place: no copy
                acc.add(idx, feats, unit=True)
            timer.lap('sampling')
            fused_index, fused = acc.fused()
            if fused_index.numel():
                result = classify(fused, self.text_embeddings, cfg.fusion.logit_scale,
                                  cfg.fusion.unknown_threshold, normalized=True)
                labels[fused_index], scores[fused_index] = result.labels, result.scores
            timer.lap('fusion')
        else:
            for m in range(len(views)):
                acc.count += visible[m].int()
        seen = acc.seen

        if cfg.fusion.instance_voting and self.text_embeddings is not None:
            features = (fused_index, fused) if cfg.fusion.voting == 'mean_feature' else None
            labels, scores = vote_segments(segments, labels, scores, len(self.class_names), cfg.fusion.voting,
                                           features, self.text_embeddings, cfg.fusion.logit_scale,
                                           cfg.fusion.unknown_threshold)
        instances = torch.where(segments >= 0, segments + 1, torch.zeros_like(segments))
        timer.lap('instances')

        if cfg.grids.occupancy and obstacle_labels:
            occupancy = self._navigation_grid(points, labels)
        if occupancy is not None:
            occupancy.frame_id = occupancy.frame_id or frame.frame_id
        timer.lap('occupancy')

        voxels = None
        if vox is not None:
            known = (labels != UNKNOWN_LABEL) & (vox.point_to_voxel >= 0)
            vox_labels = majority_label(vox.point_to_voxel[known], labels[known], vox.num_voxels)
            vox_labels = torch.where(vox_labels < 0, torch.full_like(vox_labels, UNKNOWN_LABEL), vox_labels)
            voxels = SemanticVoxels(centers=self.voxel_grid.voxel_centers(vox.coords).cpu().numpy(),
                                    labels=vox_labels.cpu().numpy(),
                                    voxel_size=np.asarray(self.voxel_grid.voxel_size))
        timer.lap('voxels')

        labels_np = labels.cpu().numpy().astype(np.uint16)
        overlays: dict[str, np.ndarray] = {}
        if cfg.overlay.enabled:
            # without a teacher there are no labels to draw: points show their class-agnostic instance
            # (ground / noise grey) so the overlay still shows projection and segmentation
            drawn, palette = labels_np, self.palette
            if self.text_embeddings is None:
                seg = segments.cpu().numpy()
                drawn = np.where(seg >= 0, seg % 20, UNKNOWN_LABEL)
                palette = default_palette(20)
            for m, view in enumerate(views):
                overlays[view.name] = draw_label_overlay(
                    view.image, proj.uv[m], proj.depth[m], proj.in_image[m], drawn, palette,
                    cfg.overlay.point_radius, cfg.overlay.max_points, cfg.overlay.unknown_color)
        timer.lap('overlay')

        embeddings = None
        if cfg.fusion.keep_embeddings and fused.numel():
            emb = torch.zeros(n, fused.shape[1], dtype=torch.float32, device=self.device)
            emb[fused_index] = fused
            embeddings = emb.cpu().numpy()
        timings = dict(timer.times)
        timings['total'] = (time.perf_counter() - wall) * 1e3
        return Outputs(stamp_ns=frame.stamp_ns, frame_id=frame.frame_id, points=frame.points,
                       intensity=frame.intensity, labels=labels_np, scores=scores.cpu().numpy(),
                       instances=instances.cpu().numpy().astype(np.uint32), class_names=self.class_names,
                       embeddings=embeddings, visible=seen.cpu().numpy(), occupancy=occupancy, voxels=voxels,
                       overlays=overlays, timings_ms=timings, notes=notes)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix='ovp-worker')
        return self._pool

    def close(self) -> None:
        """Stop the teacher worker thread (also done at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
