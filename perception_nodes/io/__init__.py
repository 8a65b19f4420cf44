"""ROS-free sensor I/O: message <-> numpy conversions, transforms, bags, KITTI."""
