"""bore_depth_ros, the Python package: one setup.py for both ways it is installed.

- On a robot, colcon builds it as an ``ament_python`` package (package.xml): the console scripts go
  to lib/bore_depth_ros (setup.cfg), where ``ros2 run`` and the launch files find them, and
  launch/, config/ and package.xml go to share/bore_depth_ros. Its messages are the separate
  package bore_depth_ros_msgs/ (see docs/robot.md).
- The development venv (tools/bootstrap.sh) and plain pip users install it with pip (editable in
  the venv); the console scripts then land in the environment's bin/.
"""

from glob import glob

from setuptools import find_packages, setup

NAME = "bore_depth_ros"

setup(
    name=NAME,
    version="0.1.0",
    description="Dense metric depth from one or six cameras for ROS 2 (BoRe-Depth, SVR-, Semi-SMD-style)",
    packages=find_packages(include=[NAME, f"{NAME}.*"]),
    package_data={NAME: ["data/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{NAME}"]),
        (f"share/{NAME}", ["package.xml"]),
        (f"share/{NAME}/launch", sorted(glob("launch/*.launch.py"))),
        (
            f"share/{NAME}/config",
            sorted(f for f in glob("config/*") if f.endswith((".yaml", ".xml", ".rviz"))),
        ),
        (f"share/{NAME}/config/train", sorted(glob("config/train/*.yaml"))),
        (f"share/{NAME}/config/navigation", sorted(glob("config/navigation/*"))),
    ],
    python_requires=">=3.10",
    install_requires=["numpy"],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            # ros2 run / launch names (launch/*.launch.py)
            "mono_node = bore_depth_ros.ros.mono_node:main",
            "surround_node = bore_depth_ros.ros.surround_node:main",
            "container = bore_depth_ros.ros.container:main",
            # command line and the names the development venv and the tests use
            "bore-depth = bore_depth_ros.cli:main",
            "bore-depth-mono-node = bore_depth_ros.ros.mono_node:main",
            "bore-depth-surround-node = bore_depth_ros.ros.surround_node:main",
            "bore-depth-container = bore_depth_ros.ros.container:main",
        ]
    },
)
