"""Sample bags: synthetic frames (with their ground truth and poses) and RGB-D rooms read back as frames."""
from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.config import InputsConfig
from perception_nodes.io.bag_source import BagSource
from perception_nodes.io.sample_bags import sim_frames, truth_raster, write_rgbd_room_bag, write_sim_bag


def test_sim_bag_carries_ground_truth_rasters_and_poses(tmp_path):
    frames = sim_frames(2, num_cameras=2, image_size='tiny', beams=(16, 256))
    poses = [np.eye(4) for _ in frames]
    poses[1][:3, 3] = [2.0, 0.5, 0.0]
    counts = write_sim_bag(tmp_path / 'bag', frames, poses=poses, truth=True)
    assert counts['/camera_1/truth/class'] == counts['/camera_1/truth/instance'] == 2 and counts['/tf'] == 2
    with BagSource(tmp_path / 'bag', InputsConfig(fixed_frame='odom')) as source:
        assert sorted(source.truth) == ['/camera_0/truth/class', '/camera_0/truth/instance',
                                        '/camera_1/truth/class', '/camera_1/truth/instance']
        assert [c.image_topic for c in source.cameras] == ['/camera_0/image_raw', '/camera_1/image_raw']
        read = list(source.frames())
        assert np.allclose(source.lookup('odom', 'velodyne', read[1].stamp_ns), poses[1])
    for got, want in zip(read, frames):
        assert np.array_equal(got.labels, want.labels) and np.array_equal(got.instances, want.instances)
        for v, w in zip(got.cameras, want.cameras):
            assert np.array_equal(v.truth['class'], w.truth['class'])
            assert np.array_equal(v.truth['instance'], w.truth['instance'])
            assert (w.truth['class'] == -1).any()                          # sky survives as -1
            assert np.allclose(v.T_cam_lidar, w.T_cam_lidar)             # ego motion compensated exactly
    write_sim_bag(tmp_path / 'plain', frames, truth=False)
    with BagSource(tmp_path / 'plain') as source:
        plain = next(source.frames())
        assert plain.labels is None and all(v.truth == {} for v in plain.cameras) and not source.truth
    with pytest.raises(ValueError, match='below 65535'):
        truth_raster(np.array([[70000]]))


def test_rgbd_room_bag_gives_depth_clouds_in_the_map(tmp_path):
    from perception_nodes.geometry.sim.room import make_room
    room = make_room(0, n_objects=4, rays=(180, 90))
    write_rgbd_room_bag(tmp_path / 'rgbd', room, num_views=2, image_size=(60, 80))
    inputs = InputsConfig(depth_topic='/camera/depth/image_rect', fixed_frame='map')
    with BagSource(tmp_path / 'rgbd', inputs) as source:
        assert source.lidar_topic == '/camera/depth/image_rect'
        assert [c.image_topic for c in source.cameras] == ['/camera/rgb/image_raw']   # never the depth
        frames = list(source.frames())
        poses = [source.lookup('map', f.frame_id, f.stamp_ns) for f in frames]
    assert len(frames) == 2 and all(f.frame_id == 'camera' and f.num_points > 2000 for f in frames)
    for f, T in zip(frames, poses):
        world = f.points @ T[:3, :3].T + T[:3, 3]
        lx, ly = room.size
        inside = (world[:, 0] > -0.1) & (world[:, 0] < lx + 0.1) & (world[:, 1] > -0.1) & \
            (world[:, 1] < ly + 0.1) & (world[:, 2] > -0.1) & (world[:, 2] < 2.6)
        assert inside.mean() > 0.99                                        # the depth lands in the room
        assert np.allclose(f.cameras[0].T_cam_lidar, np.eye(4), atol=1e-9)   # registered RGB
        assert f.cameras[0].truth['class'].shape == (60, 80)
    with pytest.raises(ValueError, match='depth topic'):
        BagSource(tmp_path / 'rgbd', InputsConfig(depth_topic='/nope/image_rect'))
