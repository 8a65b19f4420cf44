"""A synthetic primitives world with ground truth (scenes, LiDAR sweeps, cameras, visibility)."""
from perception_nodes.geometry.sim.camera import CameraRender, first_surface_visible, render_camera
from perception_nodes.geometry.sim.frame import (KITTI_IMAGE_SIZE, SMALL_IMAGE_SIZE, camera_yaws,
                                                 kitti_like_camera, make_sim_frame, mount)
from perception_nodes.geometry.sim.lidar import SMALL_BEAM_MODEL, LidarBeamModel, LidarScan, render_lidar
from perception_nodes.geometry.sim.scene import (SIM_CLASSES, SIM_COLORS, Hit, Scene, make_scene)

__all__ = ['SIM_CLASSES', 'SIM_COLORS', 'KITTI_IMAGE_SIZE', 'SMALL_IMAGE_SIZE', 'SMALL_BEAM_MODEL',
           'CameraRender',
           'Hit', 'LidarBeamModel', 'LidarScan', 'Scene', 'camera_yaws', 'first_surface_visible',
           'kitti_like_camera', 'make_scene', 'make_sim_frame', 'mount', 'render_camera', 'render_lidar']
