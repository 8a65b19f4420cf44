"""rclpy nodes: the only place that imports ROS client libraries."""
