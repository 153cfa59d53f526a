"""Shipped parameter files, launch files and rviz configs stay consistent with the nodes."""

import ast
import re
from pathlib import Path

import pytest
import yaml
from rclpy.parameter import Parameter

from bore_depth_ros.ros.mono_node import MonoDepthNode
from bore_depth_ros.ros.surround_node import SurroundDepthNode

REPO = Path(__file__).resolve().parent.parent


def yaml_params(name: str, section: str = "/**") -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())[section]["ros__parameters"]


@pytest.mark.parametrize(
    "cls,cfg,section",
    [
        (MonoDepthNode, "mono.yaml", "/**"),
        (SurroundDepthNode, "surround.yaml", "/**"),
        (MonoDepthNode, "six_mono.yaml", "/**/bore_depth_mono"),
    ],
)
def test_every_shipped_parameter_is_declared_by_the_node(ros, cls, cfg, section, structured_weights):
    values = yaml_params(cfg, section)
    # small model input so the test is quick; everything else exactly as shipped
    over = {**values, "input_height": 64, "input_width": 96, "input_preset": ""}
    if cls is MonoDepthNode:
        over["weights"] = structured_weights
    node = cls(parameter_overrides=[Parameter(k, value=v) for k, v in over.items()])
    try:
        undeclared = sorted(k for k in values if not node.has_parameter(k))
        assert not undeclared, f"{cfg}: parameters the node ignores: {undeclared}"
        for k, v in values.items():
            if k not in ("input_height", "input_width", "input_preset", "weights"):
                assert node.get_parameter(k).value == v, k
    finally:
        node.destroy_node()


def test_launch_files_name_shipped_files_and_installed_executables():
    setup = (REPO / "setup.py").read_text()  # ament_python: console scripts go to lib/<pkg>
    for launch in (REPO / "launch").glob("*.launch.py"):
        src = launch.read_text()
        ast.parse(src)  # valid Python
        for exe in re.findall(r'executable="(\w+)"', src):
            if exe != "rviz2":
                assert f'"{exe} = bore_depth_ros.' in setup, (launch.name, exe)
        for cfg in re.findall(r'"config", "([\w.]+)"', src):
            assert (REPO / "config" / cfg).is_file(), (launch.name, cfg)


def test_rviz_configs_parse_and_show_the_outputs():
    mono = yaml.safe_load((REPO / "config" / "mono.rviz").read_text())
    topics = [d.get("Topic", {}).get("Value") for d in mono["Visualization Manager"]["Displays"]]
    assert {"depth/image", "confidence/image", "points"} <= set(topics)
    sur = yaml.safe_load((REPO / "config" / "surround.rviz").read_text())
    topics = [d.get("Topic", {}).get("Value") for d in sur["Visualization Manager"]["Displays"]]
    assert "/cameras/points" in topics
    assert sum(t.endswith("depth/image") for t in topics if t) == 6
    assert sur["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"
