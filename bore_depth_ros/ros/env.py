"""Process environment for ROS 2 tools started by this package (set before rclpy starts)."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """The package's config/ folder: the source tree's, or share/bore_depth_ros/config when installed."""
    src = Path(__file__).resolve().parents[2] / "config"
    if src.is_dir():
        return src
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("bore_depth_ros")) / "config"
    except Exception:  # noqa: BLE001 - no ament index: fall back to the source layout
        return src


def ensure_local_ros_env() -> None:
    """Keep DDS discovery on this machine and use the large-message Fast DDS profile, unless the
    caller already chose otherwise (a robot sets its own values)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    profile = config_dir() / "fastdds_profile.xml"
    if profile.is_file():
        os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(profile))
