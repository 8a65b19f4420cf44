"""Every bench script imports only what exists: a module moved or renamed breaks the bench, not silently.

The bench scripts import most of the package lazily inside functions (so that start-up stays what is
measured), which no other test executes; this reads every import statement of bench/*.py, at any depth,
and resolves it (module, then each imported name).
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / 'bench'
OURS = ('perception_nodes', 'training')


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, name or None, line) of every import of our packages in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.split('.')[0] in OURS]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split('.')[0] in OURS:
            found += [(node.module, a.name, node.lineno) for a in node.names]
    return found


@pytest.mark.parametrize('script', sorted(BENCH.glob('*.py')), ids=lambda p: p.name)
def test_bench_script_imports_resolve(script: Path) -> None:
    missing = []
    for module, name, line in _imports(script):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            missing.append(f'{script.name}:{line}: {module} ({exc})')
            continue
        if name is not None and not hasattr(mod, name):
            try:
                importlib.import_module(f'{module}.{name}')
            except ModuleNotFoundError:
                missing.append(f'{script.name}:{line}: {module}.{name}')
    assert not missing, 'bench imports that do not resolve:\n' + '\n'.join(missing)


def test_the_scanner_sees_lazy_imports(tmp_path: Path) -> None:
    script = tmp_path / 'x.py'
    script.write_text('def f():\n    from perception_nodes.io.frames import iter_frames\n    import numpy\n')
    assert _imports(script) == [('perception_nodes.io.frames', 'iter_frames', 2)]
