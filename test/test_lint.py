"""Lint tests mirroring ament_flake8 and ament_pep257 (run without ROS via flake8 and pydocstyle)."""

import importlib.util
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ['perception_nodes', 'training', 'test', 'bench', 'launch', 'setup.py']

# ament_pep257's default: the pep257 convention minus these codes.
PEP257_IGNORE = 'D100,D101,D102,D103,D104,D105,D106,D107,D203,D212,D404'


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f'{module} is not installed (pip install {module})')
    paths = [p for p in PATHS if (ROOT / p).exists()]
    return subprocess.run([sys.executable, '-m', module, *args, *paths], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_flake8():
    # Run from the repository root so that setup.cfg's [flake8] section applies.
    result = _run('flake8')
    reports = result.stdout.strip()
    assert result.returncode == 0 and not reports, (
        f'flake8 found {len(reports.splitlines())} problem(s):\n{reports}\n{result.stderr}')


def test_pep257():
    result = _run('pydocstyle', '--convention=pep257', f'--add-ignore={PEP257_IGNORE}')
    reports = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not reports, (
        f'pydocstyle found {len(reports.splitlines()) // 2} problem(s):\n{reports}')
