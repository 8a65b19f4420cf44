"""ROS-free geometry in torch (one code path for CPU and CUDA).

- :mod:`.projection`  LiDAR points -> pixels in many cameras (pinhole, plumb_bob, rational, equidistant)
- :mod:`.sampling`    dense feature maps sampled at projected points (nearest / bilinear)
- :mod:`.visibility`  camera visibility of LiDAR points (Affinity3D Eq. 9-10 and a depth-buffer variant)
- :mod:`.voxels`      grid specs, voxelization, POP-3D occupancy targets
- :mod:`.occupancy`   POP-3D ray-cast evaluation labels and a 2D navigation grid
- :mod:`.draw`        overlay pictures (points by depth, hidden points marked)
- :mod:`.sim`         a primitives world with ground truth (LiDAR, cameras, visibility)
"""
