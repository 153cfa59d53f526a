"""Test-session set-up: isolate ROS 2 traffic before rclpy is imported anywhere.

Every process started by the tests inherits these variables: DDS discovery stays on this machine
(LOCALHOST: the node processes and the test process talk over loopback / shared memory), each
test session gets its own ROS_DOMAIN_ID, logs go to a temporary folder, and the project's Fast DDS
profile is used for large messages.

Markers (registered in pyproject.toml): every test that talks ROS 2 is marked ``ros``
automatically, so ``tools/test -m "not ros"`` runs the pure-Python tests (see
pytest_collection_modifyitems below for the rule).
"""

import inspect
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST_DIR = Path(__file__).resolve().parent

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
# pytest-xdist (tools/test runs the suite on several workers): each worker gets a domain of its
# own next to the session's, so one worker's nodes never see another's topics. Domains 0-101 are
# the ones every Linux host can use with the default port mapping.
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw"):
    _worker = int(os.environ["PYTEST_XDIST_WORKER"][2:])
    os.environ["ROS_DOMAIN_ID"] = str((int(os.environ["ROS_DOMAIN_ID"]) + 1 + _worker) % 102)
os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="bore_depth_ros_test_logs_")
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_profile.xml"))
os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"
os.environ["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
os.environ.setdefault("BORE_DEPTH_CACHE", tempfile.mkdtemp(prefix="bore_depth_ros_test_cache_"))

sys.path.insert(0, str(TEST_DIR))


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


# --- the ``ros`` marker -------------------------------------------------------------------------
# A test is marked ``ros`` when
#   1. it uses the ``ros`` fixture (rclpy initialised in the test process: client nodes, DDS),
#      directly or through any fixture it uses; or
#   2. its code starts one of the package's console scripts, i.e. reaches harness.entry_point or
#      harness.NodeProcess (node processes, ``bore-depth demo`` / ``play``: they talk DDS). "Its
#      code" is the test function, every fixture it uses and, transitively, the functions and
#      classes of the test/ modules that these call.
# So a new test gets the marker by using the ``ros`` fixture or the harness to start processes;
# start package processes only through harness.entry_point. Importing rclpy alone (message types,
# rclpy.serialization) needs no DDS and does not make a test ``ros``.
STARTS_PROCESSES = {("harness", "entry_point"), ("harness", "NodeProcess")}


def _in_test_dir(obj) -> bool:
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:
        return False
    return source is not None and Path(source).resolve().parent == TEST_DIR


def _code_objects(code):
    yield code
    for const in code.co_consts:
        if inspect.iscode(const):
            yield from _code_objects(const)


def _reaches_processes(obj, seen: set) -> bool:
    """Whether a test-side function or class (or what it calls in test/) starts a package process."""
    obj = inspect.unwrap(obj)
    obj = getattr(getattr(obj, "hypothesis", None), "inner_test", obj)  # @given wraps the test
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if inspect.isclass(obj):
        return any(
            _reaches_processes(member, seen)
            for member in vars(obj).values()
            if inspect.isfunction(member) and _in_test_dir(member)
        )
    if not inspect.isfunction(obj):
        return False
    for code in _code_objects(obj.__code__):
        for name in code.co_names:
            target = obj.__globals__.get(name)
            if target is None:
                continue
            if (getattr(target, "__module__", None), getattr(target, "__name__", None)) in STARTS_PROCESSES:
                return True
            if (inspect.isfunction(target) or inspect.isclass(target)) and _in_test_dir(target):
                if _reaches_processes(target, seen):
                    return True
    return False


def _uses_ros(item) -> bool:
    if "ros" in getattr(item, "fixturenames", ()):
        return True
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info is not None else ():
        functions.extend(fixturedef.func for fixturedef in defs if _in_test_dir(fixturedef.func))
    seen: set = set()
    return any(f is not None and _reaches_processes(f, seen) for f in functions)


# --- the ``slow`` marker ------------------------------------------------------------------------
# Tests that take more than about five seconds on the two-core CI machine carry @pytest.mark.slow
# themselves. A module fixture whose set-up alone is that slow is named here instead: every test
# using it (directly or through another fixture) is ``slow``, so ``-m "not slow"`` skips the set-up.
SLOW_FIXTURES = {
    "exported",  # test_deploy.py: exports every registered model to ONNX (about 30 s)
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _uses_ros(item):
            item.add_marker(pytest.mark.ros)
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
