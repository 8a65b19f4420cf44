"""Scenes: sweeps accumulated with their tf poses (known answers), scene stores, and an RGB-D room bag."""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from perception_nodes.cli.main import main
from perception_nodes.frame import CameraModel, CameraView, Frame
from perception_nodes.geometry.projection import project_points
from perception_nodes.geometry.sim.room import ROOM_CLASSES, make_room
from perception_nodes.geometry.sim.street import STREET_CLASSES
from perception_nodes.io.sample_bags import write_rgbd_room_bag
from training.store.dataset import PseudoLabelDataset
from training.store.scenes import accumulate, first_in_voxel

from .conftest import STEP


def test_accumulate_moves_sweeps_into_the_first_frame_and_keeps_first_points():
    model = CameraModel('cam', 40, 30, K=[[20, 0, 20], [0, 20, 15], [0, 0, 1]])
    T_cam = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    a = Frame(0, 'lidar', np.array([[1, 0, 0], [1.01, 0, 0], [5, 1, 0]], np.float32),
              labels=np.array([1, 2, 3]),
              cameras=[CameraView('cam', np.zeros((30, 40, 3), np.uint8), model, T_cam,
                                  truth={'visible': 1})])
    b = Frame(1, 'lidar', np.array([[0, 0, 0], [4, 1, 0]], np.float32), labels=np.array([4, 5]),
              cameras=[CameraView('cam', np.zeros((30, 40, 3), np.uint8), model, T_cam)])
    pose_b = np.eye(4)
    pose_b[0, 3] = 1.0                                   # sweep b was taken 1 m further along x
    scene = accumulate([a, b], [np.eye(4), pose_b], voxel_size=0.1)
    # a's (1, 0, 0) and (1.01, 0, 0) share a voxel with b's (0, 0, 0) moved to (1, 0, 0); a's (5, 1, 0)
    # with b's (4, 1, 0) moved to (5, 1, 0): the first point of each voxel stays
    np.testing.assert_allclose(scene.frame.points, [[1, 0, 0], [5, 1, 0]], atol=1e-6)
    np.testing.assert_array_equal(scene.frame.labels, [1, 3])
    np.testing.assert_array_equal(scene.sweep, [0, 0])
    np.testing.assert_array_equal(scene.source_index, [0, 2])
    assert [v.truth for v in scene.frame.cameras] == [{}, {}]          # per-sweep point truth dropped
    # b's camera sees the scene as b saw its own points: project b's (4, 1, 0) both ways
    world = torch.tensor([[5.0, 1.0, 0.0]])
    T = torch.from_numpy(np.stack([scene.frame.cameras[1].T_cam_lidar]))
    own = project_points(torch.tensor([[4.0, 1.0, 0.0]]), [model], torch.from_numpy(T_cam)[None])
    np.testing.assert_allclose(project_points(world, [model], T).uv, own.uv, atol=1e-5)
    np.testing.assert_array_equal(first_in_voxel(np.zeros((3, 3)), 0.0), [0, 1, 2])


def test_a_scene_store_of_the_street(street, tmp_path):
    out = tmp_path / 'scenes'
    args = ['pseudo-label', str(street['bag']), '--out', str(out), '--teacher', 'synthetic', '--quiet',
            '--vocabulary', ','.join(STREET_CLASSES), '--methods', 'dense,pop3d,unscene3d', '--setting', 'af',
            '--scene-sweeps', '2', '--fixed-frame', 'odom', '--scene-voxel', '0.1',
            '--method-set', 'unscene3d.segments.voxel_size=0.2',
            '--method-set', 'unscene3d.segments.min_size=10']
    assert main(args) == 0
    ds = PseudoLabelDataset(out)
    assert len(ds) == 2
    assert ds.info.unit == 'scene' and {'sweep', 'pseudo_masks', 'mask_scores'} <= ds.info.fields
    frames = street['frames']
    for s, (a, b) in zip((ds[0], ds[1]), ((0, 1), (2, 3))):
        assert s['frame_key'] == f'bag:s{a // 2:06d}'
        sweep = s['sweep'].numpy()
        pts = s['points'][:, :3].numpy()
        assert set(sweep) == {0, 1} and len(pts) < frames[a].num_points + frames[b].num_points
        # sweep 1's points, moved back by the odom pose difference, are sweep b's own points
        back = pts[sweep == 1] - np.array([STEP, 0, 0], np.float32)
        assert cKDTree(frames[b].points).query(back)[0].max() < 1e-4
        assert s['images'].shape[0] == 2                                # both sweeps' cameras
        masks, scores = s['pseudo_masks'].numpy(), s['mask_scores'].numpy()
        assert masks.shape == (len(scores), len(pts)) and s['occupancy_target'].sum() > 100
        assert 'raycast' not in ' '.join(ds.arrays(0))                  # one origin does not fit a scene


def test_an_rgbd_room_bag_becomes_scenes_with_pseudo_masks(tmp_path):
    room = make_room(1, n_objects=5, rays=(240, 120))
    write_rgbd_room_bag(tmp_path / 'rgbd', room, num_views=2, image_size=(60, 80))
    out = tmp_path / 'room'
    args = ['pseudo-label', str(tmp_path / 'rgbd'), '--out', str(out), '--teacher', 'synthetic', '--quiet',
            '--depth-topic', '/camera/depth/image_rect', '--fixed-frame', 'map', '--scene-sweeps', '2',
            '--scene-voxel', '0.03', '--vocabulary', ','.join(ROOM_CLASSES), '--methods', 'dense,unscene3d',
            '--set', 'teacher.synthetic_downsample=2', '--set', 'fusion.visibility_block=2',
            '--method-set', 'unscene3d.segments.voxel_size=0.05',
            '--method-set', 'unscene3d.segments.min_size=10',
            '--method-set', 'unscene3d.ncut.min_foreground_segments=3']          # a sparse, small scan
    assert main(args) == 0
    ds = PseudoLabelDataset(out, label_source='dense')
    s = ds[0]
    assert len(ds) == 1 and 'gt_labels' not in s and s['points'].shape[0] > 3000
    # a depth point lies on the ray of the pixel it came from: its first camera sees it at integer (u, v)
    first = (s['sweep'] == 0) & (s['camera_index'] == 0)
    uv = s['uv'][first].numpy()
    assert first.sum() > 1000 and np.abs(uv - np.round(uv)).max() < 1e-3
    assert (s['labels'][s['visible']] >= 0).float().mean() > 0.9
    masks, scores = s['pseudo_masks'].numpy(), s['mask_scores'].numpy()
    assert masks.shape == (len(scores), len(uv) + (~first).sum().item()) and len(scores) >= 1
    assert (masks.sum(0) <= 1).all() and (np.diff(scores) < 0).all()   # disjoint, in greedy order
