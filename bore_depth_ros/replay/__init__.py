"""Offline replay of rosbag2 recordings through the depth pipeline: evaluation against ground truth.

Importing this package loads no model, no ROS and no plotting library.
"""
from .evaluate import (EvalConfig, EvalResult, add_eval_arguments, compare_frame, evaluate,
                       run_eval)

__all__ = ["EvalConfig", "EvalResult", "evaluate", "compare_frame", "add_eval_arguments", "run_eval"]
