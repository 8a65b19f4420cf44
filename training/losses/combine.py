"""Weighted sum of named loss terms declared in a config (Pointcept style), with a NaN check per term.

A recipe lists its terms as :class:`LossSpec` (or plain dicts from YAML)::

    - {name: lovasz, type: lovasz_softmax, weight: 2.0, inputs: {logits: logits_3d, labels: labels}}
    - {name: ce, type: cross_entropy, weight: 1.0, params: {class_counts: [...]},
       inputs: {logits: logits_3d, labels: labels}}

``type`` picks a module from :data:`LOSS_TYPES`, ``params`` are its constructor arguments, and ``inputs``
maps each forward argument to a key of the batch dict the trainer assembles (an argument not listed is
looked up under its own name; optional arguments absent from the batch keep their defaults).
:class:`WeightedSumLoss` returns the total Σ weight · value and every term's unweighted value for
logging; a term returning a dict logs its parts as ``name/part`` and contributes its ``'total'``.
A non-finite term raises :class:`NonFiniteLossError` naming it. Terms with weight 0 are skipped (not
computed), which is how an ablation switches a component off.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from training.losses import modules
from training.losses.distill import CosineDistanceLoss


class NonFiniteLossError(FloatingPointError):
    """A loss term evaluated to NaN or inf; ``term`` names it, ``value`` holds the number."""

    def __init__(self, term: str, value: float) -> None:
        super().__init__(f'loss term {term!r} is not finite ({value})')
        self.term = term
        self.value = value


LOSS_TYPES: dict[str, type[nn.Module]] = {
    'lovasz_softmax': modules.LovaszSoftmaxLoss,
    'cross_entropy': modules.CrossEntropyLoss,
    'visible_kl': modules.VisibleKLLoss,
    'occupancy': modules.OccupancyLoss,
    'feature_mse': modules.FeatureMSELoss,
    'prediction_consistency': modules.PredictionConsistencyLoss,
    'latent_consistency': modules.LatentConsistencyLoss,
    'text_contrastive': modules.TextContrastiveLoss,
    'focal': modules.FocalLoss,
    'instance': modules.InstanceLoss,
    'cosine_distance': CosineDistanceLoss,
}


@dataclass
class LossSpec:
    """One term of a recipe's loss: its log name, module type, weight, batch inputs, constructor params."""

    name: str
    type: str
    weight: float = 1.0
    inputs: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossSpec:
        unknown = sorted(set(data) - {'name', 'type', 'weight', 'inputs', 'params'})
        if unknown:
            raise ValueError(f'loss spec {data.get("name", "?")!r}: unknown keys {unknown}')
        if 'name' not in data or 'type' not in data:
            raise ValueError(f'loss spec needs a name and a type, got {dict(data)}')
        return cls(name=str(data['name']), type=str(data['type']), weight=float(data.get('weight', 1.0)),
                   inputs=dict(data.get('inputs') or {}), params=dict(data.get('params') or {}))


@dataclass
class LossOutput:
    """Total loss (with graph) and per-term unweighted values (detached) for logging."""

    total: Tensor
    terms: dict[str, Tensor]
    weights: dict[str, float]

    def scalars(self) -> dict[str, float]:
        """Python floats of the total and every term (for CSV / JSONL logs)."""
        out = {'loss': float(self.total.detach())}
        out.update({k: float(v) for k, v in self.terms.items()})
        return out


def build_loss_module(spec: LossSpec) -> nn.Module:
    """Instantiate the module of one spec; unknown types or parameters are errors naming the term."""
    if spec.type not in LOSS_TYPES:
        raise ValueError(f'loss term {spec.name!r}: unknown type {spec.type!r}; known: {sorted(LOSS_TYPES)}')
    try:
        return LOSS_TYPES[spec.type](**spec.params)
    except TypeError as exc:
        raise ValueError(f'loss term {spec.name!r} ({spec.type}): bad params {spec.params}: {exc}') from exc


class WeightedSumLoss(nn.Module):
    """Σ_i weight_i · term_i over the configured terms; forward(batch dict) -> :class:`LossOutput`."""

    def __init__(self, specs: Sequence[LossSpec | Mapping[str, Any]]) -> None:
        super().__init__()
        self.specs = [s if isinstance(s, LossSpec) else LossSpec.from_dict(s) for s in specs]
        if not self.specs:
            raise ValueError('WeightedSumLoss needs at least one term')
        names = [s.name for s in self.specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f'duplicate loss term names {dup}')
        for s in self.specs:
            if not (s.weight >= 0 and s.weight == s.weight and s.weight != float('inf')):
                raise ValueError(f'loss term {s.name!r}: weight must be finite and >= 0, got {s.weight}')
        self.terms = nn.ModuleDict({s.name: build_loss_module(s) for s in self.specs})
        self._signatures = {s.name: inspect.signature(self.terms[s.name].forward) for s in self.specs}
        for s in self.specs:
            extra = sorted(set(s.inputs) - set(self._signatures[s.name].parameters))
            if extra:
                raise ValueError(f'loss term {s.name!r} ({s.type}) has no argument(s) {extra}; arguments: '
                                 f'{list(self._signatures[s.name].parameters)}')

    def _arguments(self, spec: LossSpec, batch: Mapping[str, Any]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for arg, param in self._signatures[spec.name].parameters.items():
            key = spec.inputs.get(arg, arg)
            if key in batch:
                args[arg] = batch[key]
            elif param.default is inspect.Parameter.empty:
                raise KeyError(f'loss term {spec.name!r} ({spec.type}) needs batch key {key!r} for argument '
                               f'{arg!r}; batch has {sorted(batch)}')
        return args

    def forward(self, batch: Mapping[str, Any]) -> LossOutput:
        total: Tensor | None = None
        terms: dict[str, Tensor] = {}
        weights: dict[str, float] = {}
        for spec in self.specs:
            if spec.weight == 0:
                continue
            value = self.terms[spec.name](**self._arguments(spec, batch))
            if isinstance(value, dict):
                for part, v in value.items():
                    if part != 'total':
                        _check_finite(f'{spec.name}/{part}', v)
                        terms[f'{spec.name}/{part}'] = v.detach()
                value = value['total']
            _check_finite(spec.name, value)
            terms[spec.name] = value.detach()
            weights[spec.name] = spec.weight
            total = spec.weight * value if total is None else total + spec.weight * value
        if total is None:
            raise ValueError('every loss term has weight 0: nothing to optimise')
        return LossOutput(total=total, terms=terms, weights=weights)


def _check_finite(name: str, value: Tensor) -> None:
    if not torch.is_tensor(value) or value.numel() != 1:
        raise ValueError(f'loss term {name!r} must return a scalar tensor, got {value!r}')
    if not bool(torch.isfinite(value.detach())):
        raise NonFiniteLossError(name, float(value.detach()))
