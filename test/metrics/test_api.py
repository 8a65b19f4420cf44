"""The package's public API: every exported name resolves (lazy ones on first use); nothing imports ROS."""
from __future__ import annotations

import subprocess
import sys

import perception_nodes.metrics as metrics


def test_every_exported_name_resolves():
    missing = [name for name in metrics.__all__ if getattr(metrics, name, None) is None]
    assert missing == []
    assert set(metrics.__all__) <= set(dir(metrics))


def test_import_is_light():
    # torch (occupancy) and matplotlib (plots) load only when their names are used
    code = ('import sys, perception_nodes.metrics as m; '
            'print("torch" in sys.modules, "matplotlib" in sys.modules); '
            'm.plot_confusion; print("matplotlib" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['False', 'False', 'True']
