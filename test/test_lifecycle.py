"""Lifecycle transitions of a real node process, driven by a client node over the standard
lifecycle services (lifecycle_msgs ChangeState/GetState) and rcl_interfaces SetParameters."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor

from harness import NodeProcess, entry_point, make_test_image, spin_until, write_params
from ros_clients import DepthProbe, camera_info, encode_image, image_msg

NS = "/lifecycle_cam"
NODE = f"{NS}/bore_depth_mono"
W, H = 80, 60


class LifecycleClient:
    """What a lifecycle manager does: call the node's services and wait for the answers."""

    def __init__(self, probe, ex, node: str):
        self.ex = ex
        self.change = probe.create_client(ChangeState, f"{node}/change_state")
        self.get = probe.create_client(GetState, f"{node}/get_state")
        self.transitions = probe.create_client(GetAvailableTransitions, f"{node}/get_available_transitions")
        self.params = probe.create_client(SetParameters, f"{node}/set_parameters")
        for c in (self.change, self.get, self.transitions, self.params):
            assert spin_until(ex, c.service_is_ready, 30), c.srv_name

    def call(self, client, request, timeout=180.0):
        future = client.call_async(request)
        assert spin_until(self.ex, future.done, timeout), f"{client.srv_name} did not answer"
        return future.result()

    def state(self) -> str:
        return self.call(self.get, GetState.Request()).current_state.label

    def transition(self, tid: int) -> bool:
        return self.call(self.change, ChangeState.Request(transition=Transition(id=tid))).success

    def available(self) -> set[str]:
        res = self.call(self.transitions, GetAvailableTransitions.Request())
        return {t.transition.label for t in res.available_transitions}

    def set(self, **values):
        params = []
        for k, v in values.items():
            pv = (
                ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)
                if isinstance(v, str)
                else ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=v)
            )
            params.append(Parameter(name=k, value=pv))
        return self.call(self.params, SetParameters.Request(parameters=params)).results


def test_lifecycle_over_services_with_failing_configures(ros, tmp_path, structured_weights):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(open(structured_weights, "rb").read()[:50_000])
    pfile = write_params(
        tmp_path / "params.yaml",
        dict(autostart=False, weights=str(corrupt), input_height=64, input_width=96, diagnostics_period=0.2),
    )
    node = NodeProcess(
        [entry_point("bore-depth-mono-node"), "--ros-args", "--params-file", str(pfile), "-r", f"__ns:={NS}"],
        tmp_path / "node.log",
    )
    probe = DepthProbe(NS, name="lifecycle_manager")
    ex = SingleThreadedExecutor()
    ex.add_node(probe)
    try:
        assert node.wait_for_output("autostart is false", 60), node.output()
        lc = LifecycleClient(probe, ex, NODE)
        assert lc.state() == "unconfigured"
        assert lc.available() == {"configure", "shutdown"}

        def diag(expect: str):
            def ok():
                arr = [s for a in probe.diagnostics for s in a.status if NODE in s.name]
                return bool(arr) and expect in arr[-1].message

            return spin_until(ex, ok, 10)

        assert diag("unconfigured: waiting for configure")
        # inputs do not exist before activation: nothing subscribes to the camera
        assert probe.pub_image.get_subscription_count() == 0

        # 1. corrupt checkpoint: configure fails, the node stays unconfigured and says why
        assert lc.transition(Transition.TRANSITION_CONFIGURE) is False
        assert lc.state() == "unconfigured"
        assert "configure failed" in node.output() and str(corrupt) in node.output()
        assert diag("unconfigured: ")
        # 2. fixed checkpoint, wrong input size
        assert all(r.successful for r in lc.set(weights=structured_weights, input_height=250))
        assert lc.transition(Transition.TRANSITION_CONFIGURE) is False
        assert "input height 250 is not a multiple of 32" in node.output()
        # 3. right size, a backend this machine does not have
        assert all(r.successful for r in lc.set(input_height=64, backend="tensorrt"))
        assert lc.transition(Transition.TRANSITION_CONFIGURE) is False
        assert node.output().count("configure failed") == 3
        assert "tensorrt" in node.output().split("configure failed")[-1].lower()
        # 4. all fixed: configure succeeds; inactive has the model but no topics
        assert all(r.successful for r in lc.set(backend="onnxruntime"))
        assert lc.transition(Transition.TRANSITION_CONFIGURE) is True
        assert lc.state() == "inactive"
        assert diag("inactive: configured, waiting for activate")
        assert probe.pub_image.get_subscription_count() == 0
        # engine parameters are frozen once configured
        res = lc.set(input_width=128)
        assert not res[0].successful and "unconfigured" in res[0].reason

        # 5. activate: subscriptions and publishers appear, frames are served
        assert lc.transition(Transition.TRANSITION_ACTIVATE) is True
        assert lc.state() == "active"
        assert spin_until(ex, probe.connected, 30)
        assert diag(f"no messages yet on {NS}/image (1 publisher)")
        rgb = make_test_image(H, W, seed=2)
        data, step = encode_image(rgb, "rgb8")
        stamp = Time(sec=7)

        def sent_and_served():
            probe.publish(
                image_msg(data, W, H, step, "rgb8", "cam_optical_frame", stamp),
                camera_info(W, H, "cam_optical_frame", 70.0, 70.0, 39.5, 29.5, stamp),
            )
            return spin_until(ex, lambda: probe.complete(stamp), 5)

        assert any(sent_and_served() for _ in range(6)), node.output()
        assert diag("ok")

        # 6. deactivate: topics go away, the model stays; activate again works
        assert lc.transition(Transition.TRANSITION_DEACTIVATE) is True
        assert spin_until(ex, lambda: probe.pub_image.get_subscription_count() == 0, 10)
        assert spin_until(ex, lambda: probe.count_publishers(f"{NS}/depth/image") == 0, 10)
        assert lc.state() == "inactive"
        assert lc.transition(Transition.TRANSITION_ACTIVATE) is True
        assert spin_until(ex, probe.connected, 30)
        assert lc.transition(Transition.TRANSITION_DEACTIVATE) is True
        # 7. cleanup releases the model; shutdown finalizes; the process is still healthy
        assert lc.transition(Transition.TRANSITION_CLEANUP) is True
        assert lc.state() == "unconfigured"
        assert all(r.successful for r in lc.set(input_width=128))  # allowed again
        assert lc.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN) is True
        assert lc.state() == "finalized"
        assert node.alive()
        log = node.output()
        for text in ("configured:", "ready:", "deactivated:", "cleaned up:"):
            assert text in log, (text, log)
        assert "Traceback" not in log
    finally:
        ex.remove_node(probe)
        probe.destroy_node()
        assert node.stop() == 0


def test_autostart_false_in_the_launch_files():
    """The launch argument reaches the node's parameter (launch_ros is not on PyPI: text check)."""
    from harness import REPO

    for name in ("mono.launch.py", "surround.launch.py"):
        text = (REPO / "launch" / name).read_text()
        assert 'DeclareLaunchArgument("autostart"' in text and '"autostart": arg("autostart")' in text
