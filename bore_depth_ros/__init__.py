"""bore_depth_ros: dense metric depth from ordinary cameras for ROS 2.

Layout: ``core`` (ROS-free geometry, images, scale, pipeline), ``models`` (torch modules and registry),
``backends`` (PyTorch, ONNX Runtime, TensorRT), ``ros`` (rclpy nodes; the only place importing rclpy).
"""

__version__ = "0.1.0"
