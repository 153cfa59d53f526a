"""Mono depth node on a robot (needs launch_ros, i.e. a ROS 2 Jazzy install).

    ros2 launch bore_depth_ros mono.launch.py image:=/camera/image_rect camera_info:=/camera/camera_info
        [params_file:=...] [namespace:=front] [use_sim_time:=true] [rviz:=true] [autostart:=false]

Everything here is also reachable without launch: ``bore-depth-mono-node --ros-args
--params-file config/mono.yaml -r image:=... -r camera_info:=...`` (what the tests run).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("bore_depth_ros")
    arg = LaunchConfiguration
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "mono.yaml")),
            DeclareLaunchArgument("namespace", default_value=""),
            DeclareLaunchArgument("image", default_value="image"),
            DeclareLaunchArgument("camera_info", default_value="camera_info"),
            DeclareLaunchArgument("use_sim_time", default_value="false"),
            # autostart false: the node waits for a lifecycle manager on ~/change_state
            DeclareLaunchArgument("autostart", default_value="true", description="false: lifecycle manager"),
            DeclareLaunchArgument("rviz", default_value="false"),
            DeclareLaunchArgument(
                "fastdds_profile", default_value=os.path.join(share, "config", "fastdds_profile.xml")
            ),
            SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", arg("fastdds_profile")),
            Node(
                package="bore_depth_ros",
                executable="mono_node",
                name="bore_depth_mono",
                namespace=arg("namespace"),
                output="screen",
                parameters=[
                    arg("params_file"),
                    {"use_sim_time": arg("use_sim_time"), "autostart": arg("autostart")},
                ],
                remappings=[("image", arg("image")), ("camera_info", arg("camera_info"))],
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                condition=IfCondition(arg("rviz")),
                arguments=["-d", os.path.join(share, "config", "mono.rviz")],
                parameters=[{"use_sim_time": arg("use_sim_time")}],
            ),
        ]
    )
