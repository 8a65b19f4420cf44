"""ROS-free geometry in torch: projection, visibility, voxels, occupancy and a synthetic world."""
