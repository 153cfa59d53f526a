"""One declarative parameter table per node: declaration, configure-time (YAML) checks and
run-time checks all come from it."""

from __future__ import annotations

import pytest
from rclpy.parameter import Parameter

from bore_depth_ros.ros import params as P
from bore_depth_ros.ros.managed import FAILURE
from bore_depth_ros.ros.mono_node import MonoDepthNode
from bore_depth_ros.ros.surround_node import SurroundDepthNode


@pytest.mark.parametrize("cls,table", [(MonoDepthNode, P.MONO), (SurroundDepthNode, P.SURROUND)])
def test_nodes_declare_exactly_their_table_and_check_changes_against_it(ros, cls, table):
    node = cls(f"params_{cls.__name__.lower()}", parameter_overrides=[Parameter("autostart", value=False)])
    try:
        rclpy_own = {"use_sim_time", "start_type_description_service"}
        declared = {n for n in node._parameters if n not in rclpy_own}
        # the surround node adds one time_offset.<camera> per camera of its `cameras` list
        per_camera = {f"time_offset.{c}" for c in getattr(node, "cameras", [])}
        assert declared == set(table) | per_camera
        for name, spec in table.items():
            d = node.describe_parameter(name)
            assert d.description == spec.description
            assert d.read_only == (spec.change == P.STARTUP), name
        # run time: the same checks as configure
        for bad, why in [
            ({"max_input_pixels": 0}, "max_input_pixels must be >= 1"),
            ({"points_decimation": 65}, "points_decimation must be in [1, 64]"),
            ({"min_depth": 5.0, "max_depth": 2.0}, "min_depth 5.0 > max_depth 2.0"),
        ]:
            res = node.set_parameters_atomically([Parameter(k, value=v) for k, v in bad.items()])
            assert not res.successful and why in res.reason, (bad, res.reason)
        assert node.set_parameters_atomically([Parameter("points_decimation", value=8)]).successful
        # engine parameters: changeable while unconfigured only
        assert node.set_parameters_atomically([Parameter("input_height", value=64)]).successful
        with pytest.raises(ValueError, match="input_height must be >= 0"):
            P.check_values(table, {**P.values_of(node, table), "input_height": -32})
    finally:
        node.destroy_node()


def test_yaml_values_are_checked_on_configure(ros):
    node = MonoDepthNode(
        "params_yaml",
        parameter_overrides=[
            Parameter("autostart", value=False),
            Parameter("min_depth", value=5.0),
            Parameter("max_depth", value=2.0),
        ],
    )
    try:
        assert node.trigger_configure() == FAILURE
        assert "min_depth 5.0 > max_depth 2.0" in node.last_error
    finally:
        node.destroy_node()
