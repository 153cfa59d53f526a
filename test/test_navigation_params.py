"""The navigation hand-off examples (config/navigation/, docs/navigation.md) stay consistent with the
nodes: every parameter they give our nodes is declared, of the declared type and passes the nodes'
checks; the Nav2 and nvblox files are valid YAML, use only the parameter names of the releases the
page names, and read only topics our nodes publish in the namespaces the page uses.

Fast: the nodes are built with ``autostart: false``, so no model is loaded."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from rclpy.parameter import Parameter

from bore_depth_ros.ros import params as P
from bore_depth_ros.ros.mono_node import MonoDepthNode
from bore_depth_ros.ros.surround_node import SurroundDepthNode

REPO = Path(__file__).resolve().parent.parent
NAV = REPO / "config" / "navigation"
DOC = REPO / "docs" / "navigation.md"

# The namespaces docs/navigation.md launches the nodes in.
MONO_NS = "/front_camera"
RIG_NS = "/cameras"

# File name prefix -> what the file configures.
OUR_NODES = {"mono": (MonoDepthNode, P.MONO), "surround": (SurroundDepthNode, P.SURROUND)}
THIRD_PARTY = ("nav2", "nvblox")

# nav2_costmap_2d (Jazzy) parameter names, per observation source and per layer plugin.
SOURCE_KEYS = {
    "topic",
    "sensor_frame",
    "observation_persistence",
    "expected_update_rate",
    "data_type",
    "min_obstacle_height",
    "max_obstacle_height",
    "inf_is_valid",
    "marking",
    "clearing",
    "obstacle_max_range",
    "obstacle_min_range",
    "raytrace_max_range",
    "raytrace_min_range",
}
OBSTACLE_KEYS = {
    "plugin",
    "enabled",
    "footprint_clearing_enabled",
    "min_obstacle_height",
    "max_obstacle_height",
    "combination_method",
    "observation_sources",
}
LAYER_KEYS = {
    "nav2_costmap_2d::ObstacleLayer": OBSTACLE_KEYS,
    "nav2_costmap_2d::VoxelLayer": OBSTACLE_KEYS
    | {"publish_voxel_map", "origin_z", "z_resolution", "z_voxels", "unknown_threshold", "mark_threshold"},
    "nav2_costmap_2d::InflationLayer": {
        "plugin",
        "enabled",
        "inflation_radius",
        "cost_scaling_factor",
        "inflate_unknown",
        "inflate_around_unknown",
    },
    # nvblox_nav2's layer (Isaac ROS)
    "nvblox::nav2::NvbloxCostmapLayer": {
        "plugin",
        "enabled",
        "nvblox_map_slice_topic",
        "convert_to_binary_costmap",
        "max_obstacle_distance",
        "inflation_distance",
        "max_cost_value",
    },
}
COSTMAP_KEYS = {
    "global_frame",
    "robot_base_frame",
    "rolling_window",
    "width",
    "height",
    "resolution",
    "update_frequency",
    "publish_frequency",
    "transform_tolerance",
    "plugins",
    "robot_radius",
    "footprint",
    "footprint_padding",
    "track_unknown_space",
    "always_send_full_costmap",
    "use_sim_time",
}


def kind(path: Path) -> str:
    return path.name.split("_", 1)[0]


def files(*kinds: str, ext: str = ".yaml") -> list[Path]:
    return sorted(p for p in NAV.iterdir() if p.name.endswith(ext) and kind(p) in kinds)


def flatten(tree: dict, prefix: str = "") -> dict:
    """ROS parameter-file semantics: nested mappings are dotted names, lists are values."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def ros_parameters(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert list(data) == ["/**"], f"{path.name}: one /** section expected"
    return flatten(data["/**"]["ros__parameters"])


def documented_outputs() -> tuple[set[str], set[str]]:
    """Per-view outputs (the mono node's output table in docs/nodes.md) and the rig's own."""
    text = (REPO / "docs" / "nodes.md").read_text()
    view = {t for t in re.findall(r"^\| out \| `([^`]+)`", text, re.M) if not t.startswith("/")}
    assert {"depth/image", "depth/camera_info", "points"} <= view, view
    rig = {"points", "rig_confidence"}
    assert "`rig_confidence`" in text and "fused in `target_frame`" in text
    return view, rig


def surround_cameras() -> list[str]:
    cams = [ros_parameters(p).get("cameras") for p in files("surround")]
    return next((c for c in cams if c), P.DEFAULT_CAMERAS)


def our_topics() -> set[str]:
    view, rig = documented_outputs()
    topics = {f"{MONO_NS}/{t}" for t in view}
    topics |= {f"{RIG_NS}/{cam}/{t}" for cam in surround_cameras() for t in view}
    topics |= {f"{RIG_NS}/{t}" for t in rig}
    return topics


def costmaps(data: dict):
    for key, section in data.items():
        assert key in ("local_costmap", "global_costmap"), key
        yield key, section[key]["ros__parameters"]


def test_every_file_is_known_and_documented():
    doc = DOC.read_text()
    names = sorted(p.name for p in NAV.iterdir() if p.is_file())
    assert names, "config/navigation is empty"
    for name in names:
        assert name.endswith((".yaml", ".launch.py")), name
        assert name.split("_", 1)[0] in (*OUR_NODES, *THIRD_PARTY), f"{name}: unknown kind (file prefix)"
        assert f"config/navigation/{name}" in doc, f"docs/navigation.md does not mention {name}"
    assert files(*OUR_NODES) and files("nav2") and files("nvblox")


@pytest.mark.parametrize("path", files(*OUR_NODES), ids=lambda p: p.name)
def test_our_node_files_are_declared_typed_and_valid(ros, path):
    cls, table = OUR_NODES[kind(path)]
    values = ros_parameters(path)
    assert values, path.name
    # the file's values as overrides: rclpy refuses one of another type than the declared default
    overrides = [Parameter(k, value=v) for k, v in values.items()] + [Parameter("autostart", value=False)]
    node = cls(f"nav_{path.stem}", parameter_overrides=overrides)
    try:
        declared = set(node._parameters)
        undeclared = sorted(set(values) - declared)
        assert not undeclared, f"{path.name}: parameters the node does not declare: {undeclared}"
        for k, v in values.items():
            assert node.get_parameter(k).value == v, (path.name, k)
        if cls is SurroundDepthNode:
            per_camera = {f"time_offset.{c}" for c in node.cameras}
            assert {k for k in values if k.startswith("time_offset.")} <= per_camera
        # the file merged over the declared defaults passes the node's own checks (configure time)
        merged = {name: node.get_parameter(name).value for name in table}
        P.check_values(table, merged)
        # navigation needs metres: a relative model must be given a scale
        if merged["model"] == "bore_depth":
            assert (merged["scale_mode"] == "ground_plane" and merged["camera_height"] > 0) or (
                merged["scale_mode"] == "fixed" and merged["depth_scale"] != 1.0
            ), f"{path.name}: relative depth without a metric scale"
    finally:
        node.destroy_node()


@pytest.mark.parametrize("path", files("nav2"), ids=lambda p: p.name)
def test_nav2_costmaps_use_jazzy_names_and_read_our_outputs(path):
    data = yaml.safe_load(path.read_text())
    topics = our_topics()
    mono = ros_parameters(next(iter(files("mono"))))
    rig = ros_parameters(next(iter(files("surround"))))
    for name, costmap in costmaps(data):
        layers = costmap["plugins"]
        assert set(costmap) <= COSTMAP_KEYS | set(layers), (path.name, set(costmap) - COSTMAP_KEYS)
        for layer in layers:
            section = costmap[layer]
            plugin = section["plugin"]
            assert plugin in LAYER_KEYS, (path.name, plugin)
            sources = section.get("observation_sources", "").split()
            unknown = set(section) - LAYER_KEYS[plugin] - set(sources)
            assert not unknown, f"{path.name} {name}.{layer}: not {plugin} parameters: {unknown}"
            if "nvblox_map_slice_topic" in section:
                assert section["nvblox_map_slice_topic"].startswith("/nvblox_node/")
            for source in sources:
                src = section[source]
                assert set(src) <= SOURCE_KEYS, (path.name, source, set(src) - SOURCE_KEYS)
                assert src["data_type"] == "PointCloud2"
                assert src["topic"] in topics, f"{path.name}: {src['topic']} is none of our outputs"
                assert src["topic"].endswith("/points")
                assert not src.get("inf_is_valid", False), "inf_is_valid is for LaserScan"
                assert src["min_obstacle_height"] < src["max_obstacle_height"]
                assert src["obstacle_max_range"] <= src["raytrace_max_range"]
                # the node's range clip must not end the cloud before Nav2's raytracing does
                if src["topic"] == f"{MONO_NS}/points":
                    assert mono.get("publish_points", True)
                    assert mono["max_depth"] >= src["raytrace_max_range"], "max_depth < raytrace_max_range"
                if src["topic"] == f"{RIG_NS}/points":
                    assert rig["fused_max_range"] >= src["raytrace_max_range"]
                elif src["topic"].startswith(f"{RIG_NS}/"):
                    assert rig.get("publish_points", True), "per-view clouds are off in the surround file"


def load_launch_constants(path: Path) -> dict:
    """VIEWS, RIG_NAMESPACE and nvblox_remappings from the launch example, without launch_ros."""
    tree = ast.parse(path.read_text())
    keep = [
        n
        for n in tree.body
        if (isinstance(n, ast.Assign) and n.targets[0].id in ("VIEWS", "RIG_NAMESPACE"))
        or (isinstance(n, ast.FunctionDef) and n.name == "nvblox_remappings")
    ]
    namespace: dict = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def test_nvblox_takes_four_surround_views_by_remapping():
    (launch,) = files("nvblox", ext=".launch.py")
    (params,) = files("nvblox")
    nv = ros_parameters(params)
    assert nv["use_depth"] is True and 1 <= nv["num_cameras"] <= 4
    assert nv["input_qos"] in ("SENSOR_DATA", "SYSTEM_DEFAULT")
    consts = load_launch_constants(launch)
    views, ns = consts["VIEWS"], consts["RIG_NAMESPACE"]
    assert ns == RIG_NS
    assert list(views) == [f"camera_{i}" for i in range(nv["num_cameras"])]
    assert len(set(views.values())) == len(views) and set(views.values()) <= set(surround_cameras())
    remaps = consts["nvblox_remappings"](views, ns)
    topics = our_topics()
    for source, target in remaps:
        assert re.fullmatch(r"camera_[0-3]/depth/(image|camera_info)", source), source
        assert target in topics, f"{target} is none of our outputs"
        assert target.rsplit("/", 2)[-2:] == source.split("/")[1:], (source, target)
    assert len(remaps) == 2 * len(views)
    # nvblox's slice is in its global_frame; the nvblox costmap layer must share that frame
    for path in files("nav2"):
        for _, costmap in costmaps(yaml.safe_load(path.read_text())):
            if any(costmap[layer]["plugin"].startswith("nvblox::") for layer in costmap["plugins"]):
                assert costmap["global_frame"] == nv["global_frame"], path.name
