"""3D student networks (LiDAR only) and their inference backends."""
