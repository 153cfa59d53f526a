"""ROS-free numeric core: image decoding, resizing, camera geometry, point clouds and metric scale."""
