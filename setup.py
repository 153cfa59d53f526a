"""pip / editable install of the bore_depth_ros Python package.

On a robot the package is built with colcon (ament_cmake, see CMakeLists.txt), which also generates
the messages in msg/. This file serves the development venv (tools/bootstrap.sh) and plain pip users.
"""
from setuptools import find_packages, setup

setup(
    name="bore_depth_ros",
    version="0.1.0",
    description="Dense metric depth from one or six cameras for ROS 2 (BoRe-Depth, SVR-, Semi-SMD-style)",
    packages=find_packages(include=["bore_depth_ros", "bore_depth_ros.*"]),
    package_data={"bore_depth_ros": ["data/*"]},
    python_requires=">=3.10",
    install_requires=["numpy"],
    entry_points={
        "console_scripts": [
            "bore-depth = bore_depth_ros.cli:main",
            "bore-depth-mono-node = bore_depth_ros.ros.mono_node:main",
            "bore-depth-surround-node = bore_depth_ros.ros.surround_node:main",
            "bore-depth-container = bore_depth_ros.ros.container:main",
        ]
    },
)
