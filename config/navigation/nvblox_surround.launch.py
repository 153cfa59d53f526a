"""nvblox on four of the surround node's six depth views (needs launch_ros and Isaac ROS nvblox 4.x).

    ros2 launch <path to>/config/navigation/nvblox_surround.launch.py

Starts the surround node with surround_for_nvblox.yaml in /cameras and an nvblox_ros component
with nvblox_surround_4views.yaml. nvblox subscribes at most four depth cameras (camera_0 ..
camera_3); VIEWS picks which of the rig's cameras fill those slots. This file is an example: it
is not installed with the package, so copy it (and the two YAML files beside it) into your own
launch package or run it from this directory.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.actions import ComposableNodeContainer
from launch_ros.descriptions import ComposableNode

from launch import LaunchDescription

RIG_NAMESPACE = "/cameras"
# nvblox slot -> surround camera. Forward-biased; the two rear-side views are left to the Nav2
# obstacle layer reading the fused cloud (nav2_costmap_surround.yaml).
VIEWS = {
    "camera_0": "front",
    "camera_1": "front_left",
    "camera_2": "front_right",
    "camera_3": "back",
}


def nvblox_remappings(views: dict, namespace: str) -> list[tuple[str, str]]:
    """nvblox's depth inputs of each slot -> that camera's depth outputs of the surround node."""
    remaps = []
    for slot, camera in views.items():
        for suffix in ("depth/image", "depth/camera_info"):
            remaps.append((f"{slot}/{suffix}", f"{namespace}/{camera}/{suffix}"))
    return remaps


def generate_launch_description():
    here = os.path.dirname(os.path.abspath(__file__))
    surround = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("bore_depth_ros"), "launch", "surround.launch.py")
        ),
        launch_arguments={
            "namespace": RIG_NAMESPACE,
            "params_file": os.path.join(here, "surround_for_nvblox.yaml"),
        }.items(),
    )
    nvblox = ComposableNode(
        package="nvblox_ros",
        plugin="nvblox::NvbloxNode",
        name="nvblox_node",
        parameters=[os.path.join(here, "nvblox_surround_4views.yaml")],
        remappings=nvblox_remappings(VIEWS, RIG_NAMESPACE),
    )
    container = ComposableNodeContainer(
        name="nvblox_container",
        namespace="",
        package="rclcpp_components",
        executable="component_container_mt",
        composable_node_descriptions=[nvblox],
        output="screen",
    )
    return LaunchDescription([surround, container])
