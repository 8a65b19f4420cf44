"""YAML for files a user hands us: ``yaml.safe_load`` without anchors/aliases and with a size bound.

``yaml.safe_load`` already refuses ``!!python`` tags, but expands aliases: a few hundred bytes of nested
``&a [*b, *b, ...]`` anchors (a "billion laughs" bomb) cost seconds and gigabytes. No configuration,
vocabulary or template file of this package needs anchors, so :func:`load_yaml` refuses them (and merge
keys ``<<: *x``, which are aliases) at the first one, before anything is expanded, and refuses input
larger than ``max_bytes`` before parsing. Every failure is a one-line ``ValueError`` naming the source.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ['MAX_YAML_BYTES', 'NoAliasSafeLoader', 'load_yaml']

MAX_YAML_BYTES = 1 << 20   # 1 MiB: the largest shipped file (scannet200.yaml) is 17 KB


class NoAliasSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises ``yaml.YAMLError`` on the first anchor (``&a``) or alias (``*a``)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Refuse an anchor or alias before PyYAML composes the node."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, 'anchor', None) is not None:
            what = 'alias' if isinstance(event, yaml.AliasEvent) else 'anchor'
            raise yaml.composer.ComposerError(None, None, f'YAML {what} {event.anchor!r} is not allowed '
                                              '(anchors and aliases are refused)', event.start_mark)
        return super().compose_node(parent, index)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f' (line {mark.line + 1}, column {mark.column + 1})' if mark is not None else ''
        return f'{exc.problem or exc.context}{where}'
    return ' '.join(str(exc).split())


def load_yaml(source: str | bytes | os.PathLike, *, max_bytes: int = MAX_YAML_BYTES,
              name: str | None = None) -> Any:
    """Parse YAML like ``yaml.safe_load``, refusing anchors/aliases and input over ``max_bytes``.

    ``source``: a path (``pathlib.Path`` or any ``os.PathLike``) to read, or the YAML text itself
    (``str`` / ``bytes``; a ``str`` is never taken for a file name). ``name`` labels the source in
    error messages (default: the path, or ``<text>``). Raises ``ValueError`` (one line) for a missing
    or unreadable file, oversized input, invalid YAML, an anchor or alias, or nesting too deep.
    """
    if isinstance(source, os.PathLike):
        path = Path(source)
        label = name or str(path)
        try:
            if not path.is_file():
                raise ValueError(f'{label}: not a file' if path.exists() else f'{label}: no such file')
            size = path.stat().st_size
            if size > max_bytes:
                raise ValueError(f'{label}: {size} bytes is larger than the {max_bytes}-byte limit for YAML '
                                 'files')
            with open(path, 'rb') as f:
                data = f.read(max_bytes + 1)       # the file may grow after stat()
        except OSError as exc:
            raise ValueError(f'{label}: cannot read: {exc.strerror or exc}') from None
    elif isinstance(source, (str, bytes, bytearray)):
        label = name or '<text>'
        data = source.encode('utf-8') if isinstance(source, str) else bytes(source)
    else:
        raise ValueError(f'load_yaml needs a path or YAML text, got {type(source).__name__}')
    if len(data) > max_bytes:
        raise ValueError(f'{label}: more than the {max_bytes}-byte limit for YAML input')
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise ValueError(f'{label}: not UTF-8 text (byte {exc.start})') from None
    try:
        return yaml.load(text, Loader=NoAliasSafeLoader)    # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f'{label}: invalid YAML: {_one_line(exc)}') from None
    except RecursionError:
        raise ValueError(f'{label}: YAML nested too deeply') from None
