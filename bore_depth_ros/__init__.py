"""bore_depth_ros: dense metric depth from ordinary cameras for ROS 2.

Layout: ``core`` (ROS-free geometry, images, scale, pipeline), ``models`` (torch modules and registry),
``backends`` (PyTorch, ONNX Runtime, TensorRT), ``ros`` (rclpy nodes; the only place importing rclpy).
"""
# The generated interfaces (bore_depth_ros.msg) may be installed in a different directory than this
# source tree (editable development installs); let the package span every bore_depth_ros directory.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"
