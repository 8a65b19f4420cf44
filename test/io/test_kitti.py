"""KITTI readers: frames loaded straight from the shared real data."""
from __future__ import annotations

import numpy as np


def test_load_kitti_frame_matches_the_files(kitti_object_dir, semantic_kitti_dir):
    """One Frame straight from the files; its camera projects like P2 · R0_rect · Tr_velo_to_cam by hand."""
    from perception_nodes.geometry.projection import project_frame
    from perception_nodes.io.kitti import (find_kitti_frames, load_kitti_frame, read_calib,
                                           read_semantic_labels, read_velodyne)
    files = find_kitti_frames(kitti_object_dir)[0]
    frame = load_kitti_frame(files)
    scan = read_velodyne(files.velodyne)
    assert np.array_equal(frame.points, scan[:, :3]) and np.array_equal(frame.intensity, scan[:, 3])
    assert len(frame.cameras) == 1 and frame.cameras[0].image.shape == (370, 1224, 3)
    # Reference: homogeneous projection in numpy, depth > 0.1 m, pixel centres at integers.
    calib = read_calib(files.calib)
    cam = (calib.T_cam_velo @ np.c_[scan[:, :3], np.ones(len(scan))].T)
    uvw = calib.P2 @ cam
    u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
    expected = (cam[2] > 0.1) & (u >= -0.5) & (u < 1224 - 0.5) & (v >= -0.5) & (v < 370 - 0.5)
    assert 20000 < expected.sum() < 20285  # SOURCE.md counts 20,285 with depth > 0 and looser bounds
    assert np.array_equal(project_frame(frame).in_image[0].numpy(), expected)
    sem = find_kitti_frames(semantic_kitti_dir)[0]
    frame = load_kitti_frame(sem)
    assert frame.cameras == [] and np.array_equal(frame.labels, read_semantic_labels(sem.label)[0])
