"""Surround depth node for a six-camera rig (needs launch_ros, i.e. a ROS 2 Jazzy install).

    ros2 launch bore_depth_ros surround.launch.py [namespace:=/cameras] [params_file:=...]
        [use_sim_time:=true] [rviz:=true] [autostart:=false]

Cameras publish <namespace>/<name>/image and <namespace>/<name>/camera_info (names in the params
file, ring order); remap individual cameras in your own launch file if they differ. Everything here
is reachable without launch: ``bore-depth-surround-node --ros-args --params-file
config/surround.yaml -r __ns:=/cameras`` (what the tests run).
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
            DeclareLaunchArgument(
                "params_file", default_value=os.path.join(share, "config", "surround.yaml")
            ),
            DeclareLaunchArgument("namespace", default_value="/cameras"),
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
                executable="surround_node",
                name="bore_depth_surround",
                namespace=arg("namespace"),
                output="screen",
                parameters=[
                    arg("params_file"),
                    {"use_sim_time": arg("use_sim_time"), "autostart": arg("autostart")},
                ],
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                condition=IfCondition(arg("rviz")),
                arguments=["-d", os.path.join(share, "config", "surround.rviz")],
                parameters=[{"use_sim_time": arg("use_sim_time")}],
            ),
        ]
    )
