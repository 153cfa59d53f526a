"""bore_depth_ros: dense metric depth from ordinary cameras for ROS 2.

Layers, bottom up (docs/layout.md; checked by lint-imports): ``core`` (ROS- and torch-free: the
message layer, pairing, the per-frame step, geometry, post-processing), ``models`` and ``backends``
(torch networks; PyTorch, ONNX Runtime, TensorRT), the library (``engine``, ``bag``, ``sim``,
``replay``, ``train``, ``deploy``), ``ros`` (the rclpy nodes) and ``testing`` (drives nodes over
topics), with ``cli``, ``bench`` and ``demo`` on top.
"""

__version__ = "0.1.0"
