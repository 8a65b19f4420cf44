"""What ``ovp eval`` measures and how: :class:`EvalOptions` and the parsers of its command-line forms."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from perception_nodes.metrics.instances import SCANNET_MIN_REGION_SIZE
from perception_nodes.metrics.semantic import AFFINITY3D_UNSEEN

#: Metric families ``ovp eval`` can compute (``--metrics``).
METRICS = ('semantic', 'occupancy', 'retrieval', 'instances')
#: How a pipeline segment (``Outputs.instances``) is scored for instance AP (segments carry no confidence).
INSTANCE_SCORES = ('size', 'uniform', 'label_score')
#: The seen / unseen split used by default per label map (Affinity3D Sec. 4.1 for SemanticKITTI).
DEFAULT_UNSEEN = {'semantickitti': AFFINITY3D_UNSEEN}


@dataclass
class EvalOptions:
    """Options of one evaluation (every field is recorded in ``report.json``).

    - ``label_map``: built-in name (``metrics.BUILTIN_LABEL_MAPS``) or YAML file; None: the one named like the
      pipeline's vocabulary, else the vocabulary's own ``ids`` (the synthetic world).
    - ``unseen``: unseen classes of the seen / unseen / hIoU split (Affinity3D Eq. 21); None: the label map's
      default (:data:`DEFAULT_UNSEEN`), ``()``: no split.
    - ``class_counts``: head / common / tail from class counts (ScanNet200 Sec. 4) when the label map carries
      no official split: a YAML / JSON file ``{class: count}``, or ``'gt'`` (the evaluated ground truth's
      own counts: a stand-in for training counts, said so in the report).
    - ``front_view``: the headline numbers use the front-view protocol (points inside a camera's field of
      view, Affinity3D Sec. 4.1); both protocols are always computed.
    - ``metrics``: subset of :data:`METRICS`; ``retrieval`` needs ``outputs.embeddings: true``.
    - ``queries``: retrieval query YAML (None: ``queries.yaml`` beside / inside the bag, else one query per
      class, its name); ``masks``: an ``.npz`` of extra class-agnostic instance predictions to score
      (``masks`` (M, N) bool, ``scores`` (M,)), e.g. UnScene3D pseudo masks.
    - ``instance_score``: confidence of a pipeline segment: ``size`` (its share of the points), ``uniform``
      (all 1: one precision-recall point) or ``label_score`` (mean winning-class probability of its points).
    - ``bev_frames`` / ``bev_stride``: bird's-eye renders of frames 0, stride, 2 stride, ... per bag.
    - ``retrieval_decimals``: similarities are rounded to this many decimals before ranking (bounds memory;
      AP is then exact for the rounded scores).
    - ``resume``: reuse a completed bag's saved state when its fingerprint matches.
    """

    label_map: str | None = None
    unseen: tuple[str, ...] | None = None
    class_counts: str | None = None
    front_view: bool = False
    metrics: tuple[str, ...] = METRICS
    queries: str | None = None
    masks: str | None = None
    instance_score: str = 'size'
    min_region_size: int = SCANNET_MIN_REGION_SIZE
    bev_frames: int = 2
    bev_stride: int = 10
    retrieval_decimals: int = 4
    resume: bool = True
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = tuple(dict.fromkeys(self.metrics))
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ValueError(f'unknown metrics {bad}; choose from {list(METRICS)}')
        if self.instance_score not in INSTANCE_SCORES:
            raise ValueError(f'instance_score must be one of {INSTANCE_SCORES}, got {self.instance_score!r}')
        if self.unseen is not None:
            self.unseen = tuple(str(u) for u in self.unseen)
        if self.bev_frames < 0 or self.bev_stride < 1:
            raise ValueError('bev_frames must be >= 0 and bev_stride >= 1')
        if not 0 <= self.retrieval_decimals <= 8:
            raise ValueError('retrieval_decimals must be in 0..8')

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = asdict(self)
        out['metrics'] = list(self.metrics)
        out['unseen'] = None if self.unseen is None else list(self.unseen)
        return out

    def fingerprint_dict(self) -> dict[str, Any]:
        """Return the fields that change the numbers (not progress, resume or figures)."""
        out = self.to_dict()
        for k in ('resume', 'progress', 'bev_frames', 'bev_stride', 'front_view'):
            out.pop(k)
        return out


def parse_split(spec: str | None) -> tuple[str, ...] | None:
    """Parse ``--split`` into the unseen classes.

    None / '' -> the label map's default; 'none' -> no split; 'affinity3d' -> Affinity3D's SemanticKITTI
    unseen classes; 'unseen=a,b' or 'a,b' -> those unseen classes.
    """
    if spec is None or not spec.strip():
        return None
    text = spec.strip()
    if text.lower() == 'none':
        return ()
    if text.lower() == 'affinity3d':
        return AFFINITY3D_UNSEEN
    if text.lower().startswith('unseen='):
        text = text[len('unseen='):]
    names = tuple(n.strip() for n in text.split(',') if n.strip())
    if not names:
        raise ValueError(f'--split {spec!r}: no class names')
    return names


def parse_metrics(spec: str | None) -> tuple[str, ...]:
    """``--metrics semantic,instances`` -> the tuple (all when None)."""
    if spec is None:
        return METRICS
    names = tuple(n.strip() for n in spec.split(',') if n.strip())
    bad = [n for n in names if n not in METRICS]
    if bad or not names:
        raise ValueError(f'--metrics {spec!r}: choose from {", ".join(METRICS)}')
    return names


__all__ = ['DEFAULT_UNSEEN', 'EvalOptions', 'INSTANCE_SCORES', 'METRICS', 'parse_metrics', 'parse_split']
