"""Offline replay of rosbag2 recordings through the depth pipeline: evaluation against ground truth.

Importing this package loads no model, no ROS and no plotting library.
"""

from .config import EvalConfig
from .evaluate import evaluate
from .scoring import EvalResult, compare_frame

__all__ = ["EvalConfig", "EvalResult", "evaluate", "compare_frame"]
