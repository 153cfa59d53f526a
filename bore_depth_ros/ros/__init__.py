"""ROS 2 edge of the package: the only place that imports rclpy and message types."""
