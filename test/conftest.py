"""Test-session set-up: isolate ROS 2 traffic before rclpy is imported anywhere.

Every process started by the tests inherits these variables: DDS discovery stays on this machine
(LOCALHOST: the node processes and the test process talk over loopback / shared memory), each
test session gets its own ROS_DOMAIN_ID, logs go to a temporary folder, and the project's Fast DDS
profile is used for large messages.
"""
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="bore_depth_ros_test_logs_")
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_profile.xml"))
os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"
os.environ["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
os.environ.setdefault("BORE_DEPTH_CACHE", tempfile.mkdtemp(prefix="bore_depth_ros_test_cache_"))

sys.path.insert(0, str(Path(__file__).resolve().parent))


import pytest  # noqa: E402  (after the environment is set)


@pytest.fixture(scope="session")
def structured_weights(tmp_path_factory):
    """An official-layout Lightning checkpoint whose output varies strongly across the image.

    An untrained network predicts almost constant depth; amplifying the last convolution makes
    depth (and so confidence) vary, so thresholding and masking are really exercised. Loading it
    also exercises the node's strict checkpoint path.
    """
    import torch

    from bore_depth_ros.models import create_model
    from bore_depth_ros.models.checkpoint import save_lightning_checkpoint

    torch.manual_seed(0)
    model = create_model("bore_depth").eval()
    with torch.no_grad():
        model.decoder.dispconvs[0].conv.weight.mul_(40.0)
    path = tmp_path_factory.mktemp("weights") / "structured.ckpt"
    save_lightning_checkpoint(model, path)
    return str(path)


@pytest.fixture(scope="module")
def ros():
    """rclpy initialised for one test module (its client nodes); node processes have their own."""
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op PyTorch thread for a test module, restored after it: the CI machine's two
    cores are shared, and eager PyTorch with several OpenMP threads is slower and erratic there."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
