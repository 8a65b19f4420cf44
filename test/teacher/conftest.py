"""Fixtures shared by the teacher tests."""
from __future__ import annotations

import pytest

from perception_nodes.frame import Frame


@pytest.fixture(scope='session')
def sim_frame() -> Frame:
    """One small frame of the synthetic world (geometry.sim) with ground-truth rasters."""
    sim = pytest.importorskip('perception_nodes.geometry.sim')
    return sim.make_sim_frame(0, image_size='tiny', beam_model=sim.SMALL_BEAM_MODEL)
