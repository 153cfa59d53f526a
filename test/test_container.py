"""bore-depth-container: several nodes, one process, one executor, one loaded model."""

from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor

from harness import NodeProcess, entry_point, make_test_image, spin_until
from ros_clients import DepthProbe, camera_info, encode_image, image_msg

W, H = 80, 60


def test_two_mono_nodes_share_one_model(ros, tmp_path, structured_weights):
    yaml = tmp_path / "container.yaml"
    yaml.write_text(f"""
bore_depth_container:
  ros__parameters:
    nodes: ["mono /rig/left", "mono /rig/right right_depth"]
    share_engine: true
    threads: 2
/**:
  ros__parameters:
    weights: {structured_weights}
    input_height: 64
    input_width: 96
    diagnostics_period: 0.5
""")
    proc = NodeProcess(
        [entry_point("bore-depth-container"), "--ros-args", "--params-file", str(yaml)],
        tmp_path / "container.log",
    )
    probes = [DepthProbe("/rig/left", name="probe_left"), DepthProbe("/rig/right", name="probe_right")]
    ex = SingleThreadedExecutor()
    for p in probes:
        ex.add_node(p)
    try:
        assert proc.wait_for_output("shared by 2 node(s)", 180), proc.output()
        log = proc.output()
        assert "/rig/left/bore_depth_mono" in log and "/rig/right/right_depth" in log
        assert log.count("ready:") == 2
        assert spin_until(ex, lambda: all(p.connected() for p in probes), 30)
        rgb = make_test_image(H, W, seed=1)
        data, step = encode_image(rgb, "rgb8")
        for i, p in enumerate(probes):
            stamp = Time(sec=50 + i)
            p.publish(
                image_msg(data, W, H, step, "rgb8", f"cam{i}_optical_frame", stamp),
                camera_info(W, H, f"cam{i}_optical_frame", 70.0, 70.0, 39.5, 29.5, stamp),
            )
        assert spin_until(
            ex, lambda: probes[0].complete(Time(sec=50)) and probes[1].complete(Time(sec=51)), 60
        ), proc.output()
        assert probes[1].received[(51, 0)]["depth/image"].header.frame_id == "cam1_optical_frame"
    finally:
        for p in probes:
            ex.remove_node(p)
            p.destroy_node()
        proc.stop()


def test_container_refuses_a_bad_node_entry(tmp_path):
    yaml = tmp_path / "bad.yaml"
    yaml.write_text("""
bore_depth_container:
  ros__parameters:
    nodes: ["stereo /rig/left"]
""")
    proc = NodeProcess(
        [entry_point("bore-depth-container"), "--ros-args", "--params-file", str(yaml)], tmp_path / "bad.log"
    )
    proc.proc.wait(timeout=60)
    proc.stop()
    assert proc.proc.returncode == 2
    assert "node entry 'stereo /rig/left'" in proc.output()
