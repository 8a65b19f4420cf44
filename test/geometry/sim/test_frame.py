"""make_sim_frame: a Frame whose LiDAR and camera truths agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.geometry.projection import pixel_indices, project_frame
from perception_nodes.geometry.sim import SIM_CLASSES, SMALL_BEAM_MODEL, make_sim_frame


@pytest.fixture(scope='module')
def frame():
    return make_sim_frame(4, num_cameras=3, image_size='tiny', beam_model=SMALL_BEAM_MODEL)


def test_frame_contents(frame):
    n = frame.num_points
    assert n > 5000 and frame.points.dtype == np.float32 and frame.frame_id == 'velodyne'
    assert frame.labels.shape == (n,) and frame.instances.shape == (n,) and frame.intensity.shape == (n,)
    assert set(np.unique(frame.labels)) <= set(range(len(SIM_CLASSES)))
    # LiDAR frame: the ground (class 0) is 1.73 m below the sensor
    assert abs(np.median(frame.points[frame.labels == 0, 2]) + 1.73) < 0.02
    assert [v.name for v in frame.cameras] == ['camera_0', 'camera_1', 'camera_2']
    for view in frame.cameras:
        assert view.image.shape == (94, 311, 3) and view.model.width == 311
        assert view.truth['class'].shape == (94, 311) and view.truth['visible'].shape == (n,)
    # camera 0 is 0.27 m ahead of and 0.08 m below the LiDAR, looking forward
    T_lidar_cam = np.linalg.inv(frame.cameras[0].T_cam_lidar)
    np.testing.assert_allclose(T_lidar_cam[:3, 3], [0.27, 0.06, -0.08], atol=1e-12)
    np.testing.assert_allclose(T_lidar_cam[:3, 2], [1.0, 0.0, 0.0], atol=1e-12)


def test_truth_agrees_with_rasters(frame):
    proj = project_frame(frame)
    for m, view in enumerate(frame.cameras):
        vis = view.truth['visible']
        inside = proj.in_image[m].numpy()
        assert not (vis & ~inside).any() and vis.sum() > 0.8 * inside.sum()
        rows, cols = pixel_indices(proj.uv[m], view.image.shape[:2])
        r, c = rows.numpy()[vis], cols.numpy()[vis]
        # visible points see their own surface: same class / instance and depth in the rasters
        assert (view.truth['class'][r, c] == frame.labels[vis]).mean() > 0.9
        assert (view.truth['instance'][r, c] == frame.instances[vis]).mean() > 0.9
        depth_err = np.abs(view.truth['depth'][r, c] - proj.depth[m].numpy()[vis])
        assert np.median(depth_err) < 0.1


def test_deterministic_and_options():
    a = make_sim_frame(1, image_size=(30, 90), beam_model=SMALL_BEAM_MODEL)
    b = make_sim_frame(1, image_size=(30, 90), beam_model=SMALL_BEAM_MODEL)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.cameras[0].image, b.cameras[0].image)
    six = make_sim_frame(1, num_cameras=6, image_size=(30, 90), beam_model=SMALL_BEAM_MODEL)
    proj = project_frame(six)
    seen = proj.in_image.any(dim=0).numpy()
    # the ring sees all around (vertical field of view ~29 deg, so the lowest beams stay unseen)
    assert seen.mean() > 0.5
    azimuth = np.degrees(np.arctan2(six.points[:, 1], six.points[:, 0]))
    for lo in range(-180, 180, 45):
        sector = (azimuth >= lo) & (azimuth < lo + 45) & (np.abs(six.points[:, 2] + 1.0) < 1.0)
        assert seen[sector].mean() > 0.5, lo
    with pytest.raises(ValueError, match='image_size'):
        make_sim_frame(1, image_size='huge')
    assert torch.equal(torch.as_tensor(a.labels), torch.as_tensor(b.labels))
