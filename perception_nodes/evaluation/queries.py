"""Retrieval queries for ``ovp eval`` (POP-3D Sec. 4.1): free text plus the ground-truth point mask it means.

A query YAML (``--queries FILE``, or ``queries.yaml`` inside a bag folder / ``<bag>.queries.yaml`` beside
it) lists queries, each with its positives given by classes of the label map's vocabulary and / or raw
instance ids of the bag's ``instance`` field::

    queries:
      - query: a parked car
        classes: [car]
      - query: the tall lamp post
        instances: [12, 15]

Without a file there is one query per class of the vocabulary: its name, positives = the points of that
class. Every point of a frame that is not a positive is a negative (POP-3D: "all non-relevant points of
that scene"), ignored ground truth included; one AP per query pooled over the bag's frames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from perception_nodes.frame import Frame

QUERY_FILE = 'queries.yaml'


@dataclass
class Query:
    """One free-text query and the ground truth that defines its positives."""

    text: str
    classes: list[int] = field(default_factory=list)      # class indices
    instances: list[int] = field(default_factory=list)    # raw instance ids of the bag
    derived: bool = False                                  # made from a class name (no file)

    def positives(self, gt: np.ndarray, frame: Frame) -> np.ndarray:
        """(N,) bool positive mask in one frame."""
        pos = np.isin(gt, np.asarray(self.classes, dtype=np.int64))
        if self.instances:
            if frame.instances is None:
                raise ValueError(f'query {self.text!r} names instances but the bag has no "instance" field')
            pos |= np.isin(np.asarray(frame.instances).astype(np.int64), np.asarray(self.instances))
        return pos

    def to_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        """JSON-able form (classes by name)."""
        return {'query': self.text, 'classes': [class_names[k] for k in self.classes],
                'instances': list(self.instances), 'derived': self.derived}


def find_query_file(bag: str | os.PathLike) -> Path | None:
    """``queries.yaml`` inside a bag folder, else ``<bag>.queries.yaml`` beside it, else None."""
    p = Path(bag)
    for candidate in (p / QUERY_FILE, p.with_name(f'{p.name}.queries.yaml')):
        if candidate.is_file():
            return candidate
    return None


def load_queries(path: str | os.PathLike, class_names: Sequence[str]) -> list[Query]:
    """Parse and validate a query YAML (module docstring)."""
    with open(path, encoding='utf-8') as f:
        data = yaml.safe_load(f)
    items = data.get('queries') if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ValueError(f'{path}: expected a non-empty list of queries (under "queries:")')
    out, seen = [], set()
    names = list(class_names)
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not str(item.get('query', '')).strip():
            raise ValueError(f'{path}: query {i} needs a "query" text')
        text = str(item['query']).strip()
        if text in seen:
            raise ValueError(f'{path}: query {text!r} is listed twice')
        seen.add(text)
        classes = item.get('classes') or []
        bad = [c for c in classes if c not in names]
        if bad:
            raise ValueError(f'{path}: query {text!r}: {bad} are not classes of the vocabulary ({names})')
        instances = item.get('instances') or []
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in instances):
            raise ValueError(f'{path}: query {text!r}: instances must be integer ids')
        if not classes and not instances:
            raise ValueError(f'{path}: query {text!r} has no "classes" or "instances" (no ground truth)')
        out.append(Query(text, [names.index(c) for c in classes], [int(v) for v in instances]))
    return out


def class_queries(class_names: Sequence[str]) -> list[Query]:
    """One query per class: its name, positives = its points."""
    return [Query(name, [k], derived=True) for k, name in enumerate(class_names)]


__all__ = ['QUERY_FILE', 'Query', 'class_queries', 'find_query_file', 'load_queries']
