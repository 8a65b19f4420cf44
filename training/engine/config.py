"""Training configs: YAML files that inherit a base with ``extends:``, read into dataclasses.

A recipe file (``config/training/<recipe>.yaml``) names its base with ``extends: base.yaml`` (a path relative
to the file; chains allowed). Mappings merge key by key, anything else (lists, scalars) replaces the base
value. ``--set key.sub=value`` overrides (``phases.0.steps=5`` indexes lists) are applied after the merge;
values are parsed as YAML. Everything is read with ``perception_nodes.safe_yaml.load_yaml`` (safe_load
without anchors / aliases, size-bounded).
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from perception_nodes.safe_yaml import load_yaml
from training.data import DEFAULT_STORE_READER


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the file and key."""


def config_dir() -> Path:
    """Return the repository's ``config/training`` folder (recipe names resolve there)."""
    return Path(__file__).resolve().parents[2] / 'config' / 'training'


def resolve_config_path(name: str | Path) -> Path:
    """Resolve a path, or a recipe name such as ``affinity3d`` (-> config/training/affinity3d.yaml)."""
    p = Path(name)
    if p.is_file():
        return p
    candidate = config_dir() / f'{name}.yaml'
    if p.suffix == '' and candidate.is_file():
        return candidate
    raise ConfigError(f'training config {name!r} not found (a YAML path, or one of '
                      f'{sorted(q.stem for q in config_dir().glob("*.yaml"))})')


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``over``: mappings merge recursively, other values replace."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a config file and everything it ``extends`` into one merged mapping."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f'config {path} extends itself (cycle {" -> ".join(str(p) for p in _seen)})')
    try:
        data = load_yaml(path)
    except ValueError as exc:
        raise ConfigError(f'training config: {exc}') from exc
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: a training config must be a mapping, got {type(data).__name__}')
    parent = data.pop('extends', None)
    if parent is None:
        return data
    base = load_yaml_tree(path.parent / str(parent), _seen + (path,))
    return deep_merge(base, data)


def apply_overrides(tree: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (YAML values; integer parts index lists)."""
    tree = copy.deepcopy(tree)
    for item in overrides:
        if '=' not in item:
            raise ConfigError(f'override {item!r}: expected key.path=value')
        key, raw = item.split('=', 1)
        try:
            value = load_yaml(raw, name=f'override {key}') if raw != '' else None
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        parts = key.strip().split('.')
        node: Any = tree
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f'override {item!r}: {".".join(parts[:i])} has {len(node)} entries')
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f'override {item!r}: {".".join(parts[:i])} is not a mapping or list')
    return tree


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f'{where} must be a mapping, got {data!r}')
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f'{where}: unknown key(s) {unknown}; known {sorted(known)}')
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'{where}: {exc}') from exc


@dataclass
class DataConfig:
    """Where the frames come from and what the store must be."""

    train: str | None = None               # a store folder or sim:...; ``--data`` overrides
    val: str | None = None                 # validation source (``--val``); None: no validation
    reader: str = DEFAULT_STORE_READER     # module:function opening a store folder
    expect: dict[str, Any] = field(default_factory=dict)   # StoreInfo.provenance() keys that must match
    num_workers: int = 0
    allow_partial: bool = False            # train on a store marked incomplete


@dataclass
class OptimConfig:
    """Optimizer (sgd, adam, adamw) and its constants; ``lr_scale`` multiplies the lr of named modules."""

    type: str = 'adamw'
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_scale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in ('sgd', 'adam', 'adamw'):
            raise ValueError(f'optim.type must be sgd, adam or adamw, got {self.type!r}')
        if not self.lr > 0:
            raise ValueError(f'optim.lr must be positive, got {self.lr}')
        self.betas = tuple(float(b) for b in self.betas)


@dataclass
class ScheduleConfig:
    """Learning-rate schedule as a function of the phase step (stateless: resumes exactly).

    ``type``: constant | cosine (to ``min_lr``) | multistep (× ``gamma`` at ``milestones``) | poly.
    Warm-up: linear from ``warmup_start_lr`` (absolute) to the base lr over ``warmup_steps``.
    ``milestones`` are in epochs (``milestone_unit: epoch``) or steps.
    """

    type: str = 'constant'
    warmup_steps: int = 0
    warmup_start_lr: float = 0.0
    min_lr: float = 0.0
    milestones: list[float] = field(default_factory=list)
    milestone_unit: str = 'epoch'
    gamma: float = 0.1
    power: float = 0.9

    def __post_init__(self) -> None:
        if self.type not in ('constant', 'cosine', 'multistep', 'poly'):
            raise ValueError(f'schedule.type must be constant, cosine, multistep or poly, got {self.type!r}')
        if self.milestone_unit not in ('epoch', 'step'):
            raise ValueError(f"schedule.milestone_unit must be 'epoch' or 'step', "
                             f"got {self.milestone_unit!r}")
        if self.warmup_steps < 0:
            raise ValueError('schedule.warmup_steps must be >= 0')


@dataclass
class PhaseConfig:
    """One training phase: its length, recipe / optim / schedule overrides and a start action.

    Each phase gets a fresh optimizer and schedule; the networks carry over (ScanNet200 pre-training ->
    fine-tuning; UnScene3D self-training cycles, ``action: mask_addition``).
    """

    name: str = 'train'
    epochs: float | None = None
    steps: int | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    optim: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    action: str | None = None

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(f'phase {self.name!r}: give exactly one of epochs or steps')
        if (self.steps is not None and self.steps < 1) or (self.epochs is not None and not self.epochs > 0):
            raise ValueError(f'phase {self.name!r}: its length must be positive')


@dataclass
class LoopConfig:
    """The loop: per-rank batch, clipping, AMP, logging / checkpoint / evaluation periods."""

    batch_size: int = 2                  # frames per rank per step (global batch = batch_size × world)
    grad_clip: float | None = 10.0       # max global gradient norm; None: no clipping
    amp: str = 'auto'                    # auto (fp16 on CUDA, off on CPU) | off | fp16 | bf16
    log_every: int = 10                  # steps between log lines
    checkpoint_every: int = 500          # steps between checkpoints (and one at every phase end)
    keep_checkpoints: int = 2
    eval_every: int = 1                  # epochs between validations (and one at the end)
    progress: bool = True                # tqdm bar on rank 0
    plots: bool = True                   # loss / validation PNG curves
    deterministic: bool = False          # torch.use_deterministic_algorithms
    device: str = 'auto'                 # auto | cpu | cuda

    def __post_init__(self) -> None:
        if self.amp is False:            # YAML 1.1 reads a bare `off` as false
            self.amp = 'off'
        if self.batch_size < 1 or self.log_every < 1 or self.checkpoint_every < 1 or self.eval_every < 1:
            raise ValueError('train.batch_size, log_every, checkpoint_every and eval_every must be >= 1')
        if self.amp not in ('auto', 'off', 'fp16', 'bf16'):
            raise ValueError(f'train.amp must be auto, off, fp16 or bf16, got {self.amp!r}')


@dataclass
class LimitsConfig:
    """Memory guard: refuse a batch whose estimated need exceeds what is available (bytes)."""

    memory_bytes: int | None = None      # None: free CUDA memory, or MemAvailable on CPU
    memory_fraction: float = 0.9         # of the available memory a step may plan to use


@dataclass
class TrainConfig:
    """A whole training run (one recipe); ``source`` is the file it was read from."""

    recipe: dict[str, Any]
    student: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    phases: list[PhaseConfig] = field(default_factory=lambda: [PhaseConfig(steps=100)])
    train: LoopConfig = field(default_factory=LoopConfig)
    augment: dict[str, Any] = field(default_factory=dict)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    seed: int = 0
    source: str = ''

    @property
    def recipe_name(self) -> str:
        return str(self.recipe.get('name', ''))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop('source')
        return out

    def hash(self) -> str:
        """sha256 (16 hex) of the resolved config (what makes two runs the same run)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_SECTIONS = {'data': DataConfig, 'optim': OptimConfig, 'schedule': ScheduleConfig, 'train': LoopConfig,
             'limits': LimitsConfig}


def config_from_tree(tree: dict[str, Any], source: str = '<dict>') -> TrainConfig:
    """Build a :class:`TrainConfig` from a merged mapping; unknown keys are errors naming the section."""
    tree = dict(tree)
    tree.pop('extends', None)
    known = {f.name for f in fields(TrainConfig)} - {'source'}
    unknown = sorted(set(tree) - known)
    if unknown:
        raise ConfigError(f'{source}: unknown section(s) {unknown}; known {sorted(known)}')
    recipe = tree.get('recipe')
    if not isinstance(recipe, dict) or not recipe.get('name'):
        raise ConfigError(f'{source}: recipe.name is required (one of the recipes in training.recipes)')
    kw: dict[str, Any] = {'recipe': dict(recipe), 'source': source}
    for name, cls in _SECTIONS.items():
        kw[name] = _build(cls, tree.get(name), f'{source}: {name}')
    phases = tree.get('phases')
    if phases is not None:
        if not isinstance(phases, list) or not phases:
            raise ConfigError(f'{source}: phases must be a non-empty list')
        kw['phases'] = [_build(PhaseConfig, p, f'{source}: phases[{i}]') for i, p in enumerate(phases)]
    for name in ('student', 'augment'):
        value = tree.get(name) or {}
        if not isinstance(value, dict):
            raise ConfigError(f'{source}: {name} must be a mapping')
        kw[name] = dict(value)
    kw['seed'] = int(tree.get('seed', 0))
    return TrainConfig(**kw)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a recipe config (path or recipe name), its ``extends`` chain and ``--set`` overrides."""
    p = resolve_config_path(path)
    return config_from_tree(apply_overrides(load_yaml_tree(p), overrides), str(p))
