"""Several depth nodes in one process sharing one model (needs launch_ros).

    ros2 launch bore_depth_ros container.launch.py [params_file:=.../six_mono.yaml] [use_sim_time:=true]

rclpy nodes cannot be loaded into an rclcpp component container; bore-depth-container is the
Python equivalent (see bore_depth_ros/ros/container.py). Without launch:
``bore-depth-container --ros-args --params-file config/six_mono.yaml``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("bore_depth_ros")
    arg = LaunchConfiguration
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file", default_value=os.path.join(share, "config", "six_mono.yaml")
            ),
            DeclareLaunchArgument("use_sim_time", default_value="false"),
            DeclareLaunchArgument(
                "fastdds_profile", default_value=os.path.join(share, "config", "fastdds_profile.xml")
            ),
            SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", arg("fastdds_profile")),
            Node(
                package="bore_depth_ros",
                executable="container",
                name="bore_depth_container",
                output="screen",
                parameters=[arg("params_file"), {"use_sim_time": arg("use_sim_time")}],
            ),
        ]
    )
