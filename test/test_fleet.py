"""Fleet evaluation (bore-depth eval over several bags): bag lists, JSON Lines, fleet report,
failing bags, resume, and the same results on a real local Ray bound to 127.0.0.1.

The bags are real rosbag2 files from test_replay_eval's writer (two cameras, three frames, depth
and LiDAR ground truth), tiny so that the whole file stays short on two cores.
"""

import json
import shutil

import pytest

from bore_depth_ros.cli import main
from bore_depth_ros.replay import EvalConfig, fleet
from test_replay_eval import write_test_bag


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    """A folder with three bags (two folders, one bare .mcap) and a text file listing them."""
    root = tmp_path_factory.mktemp("fleet")
    bags = root / "bags"
    bags.mkdir()
    write_test_bag(bags / "a")
    shutil.copytree(bags / "a", bags / "b")
    write_test_bag(root / "c_src")
    mcap = next((root / "c_src").glob("*.mcap"))
    shutil.copy(mcap, bags / "c.mcap")
    (bags / "notes.txt").write_text("not a bag")
    return bags


def _config(weights, out):
    return EvalConfig(
        bag="",
        weights=str(weights),
        input_height=64,
        input_width=96,
        report_dir=str(out),
        panels_per_camera=1,
    )


def test_expand_bags_from_folder_list_and_paths(fleet_dir, tmp_path):
    names = [p.split("/")[-1] for p in fleet.expand_bags([fleet_dir])]
    assert names == ["a", "b", "c.mcap"]
    listing = tmp_path / "bags.txt"
    listing.write_text(f"# fleet\n{fleet_dir / 'b'}\n\n{fleet_dir / 'a'}  # second\n{fleet_dir / 'b'}\n")
    assert [p.split("/")[-1] for p in fleet.expand_bags([listing])] == ["b", "a"]
    with pytest.raises(FileNotFoundError):
        fleet.expand_bags([tmp_path / "missing"])
    assert fleet.bag_ids(["x/a", "y/a", "z/c.mcap"]) == ["a", "a_2", "c"]


@pytest.mark.slow
def test_fleet_eval_lines_report_and_a_corrupt_bag(fleet_dir, structured_weights, tmp_path):
    bags = fleet.expand_bags([fleet_dir])
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n" + b"\0" * 200)
    out = tmp_path / "out"
    s = fleet.evaluate_fleet(
        _config(structured_weights, out), [*bags[:1], str(bad), *bags[1:]], out, progress=False
    )
    assert s["bags"] == 4 and s["ok"] == 3 and s["unfinished"] == []
    assert [f["bag"] for f in s["failed"]] == [str(bad)] and s["failed"][0]["reason"]
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2 * 3  # three bags, two cameras, three scored frames each
    first = json.loads(lines[0])
    assert set(first) >= {"bag", "topic", "stamp_ns", "metrics", "drops"} and first["bag"] == bags[0]
    # identical bags give identical frame metrics
    assert [json.loads(x)["metrics"] for x in lines[:6]] == [json.loads(x)["metrics"] for x in lines[6:12]]
    md = (out / "fleet.md").read_text()
    assert "bad" in md and "Worst cameras" in md and (out / "fleet.html").is_file()
    assert (out / "fleet_metrics.png").is_file() and json.loads((out / "summary.json").read_text())["ok"] == 3
    assert (out / "bags" / "a" / "report.html").is_file()


@pytest.mark.slow
def test_resume_reruns_only_unfinished_bags_and_refuses_another_config(
    fleet_dir, structured_weights, tmp_path
):
    bags = fleet.expand_bags([fleet_dir])
    out = tmp_path / "out"
    cfg = _config(structured_weights, out)
    calls = []

    def interrupted(todo, config, bags_dir, on_done):
        for task in todo:
            calls.append(task.bag_id)
            if len(calls) == 2:
                raise KeyboardInterrupt
            on_done(fleet.run_task(config, task, bags_dir))

    with pytest.raises(KeyboardInterrupt):
        fleet.evaluate_fleet(cfg, bags, out, progress=False, runner=interrupted)
    assert (out / "bags" / "a.json").is_file() and not (out / "bags" / "b.json").exists()
    # an incomplete bag's lines without its summary count as unfinished
    (out / "bags" / "c.jsonl").write_text("partial\n")
    calls.clear()
    s = fleet.evaluate_fleet(
        cfg, bags, out, progress=False, runner=lambda *a: (calls.append(a[0]), fleet.run_serial(*a))
    )
    assert [t.bag_id for t in calls[0]] == ["b", "c"] and s["resumed_bags"] == 1 and s["ok"] == 3
    assert len((out / "frames.jsonl").read_text().splitlines()) == 18
    with pytest.raises(FileExistsError, match="another config"):
        fleet.evaluate_fleet(
            _config(structured_weights, out).__class__(**{**vars(cfg), "max_depth": 50.0}),
            bags,
            out,
            progress=False,
        )


@pytest.mark.slow
def test_a_long_bag_split_into_segments_gives_the_whole_bag_lines(fleet_dir, structured_weights, tmp_path):
    bags = fleet.expand_bags([fleet_dir])[:2]
    whole = fleet.evaluate_fleet(
        _config(structured_weights, tmp_path / "w"), bags, tmp_path / "w", progress=False
    )
    # frames are logged 0.305, 0.405 and 0.505 s after each bag's first message: two segments each
    assert [t.n for t in fleet.plan_tasks(bags[0], "a", 0.35)] == [2, 2]
    split = fleet.evaluate_fleet(
        _config(structured_weights, tmp_path / "s"), bags, tmp_path / "s", progress=False, segment_s=0.35
    )
    # each segment carries the TF and camera_info before it: the same frames, metrics and drops
    assert (tmp_path / "s" / "frames.jsonl").read_text() == (tmp_path / "w" / "frames.jsonl").read_text()
    a = split["per_bag"][0]
    assert [(g["segment"], g["status"], g["frames_scored"]) for g in a["segments"]] == [
        (0, "ok", 2),
        (1, "ok", 4),
    ]
    w = whole["per_bag"][0]
    assert a["frames"]["evaluated"] == w["frames"]["evaluated"] == 6 and a["drops"] == w["drops"]
    for mode in ("metric", "median"):
        for k, v in w["overall"][mode].items():
            if k in a["overall"][mode] and v is not None:
                assert a["overall"][mode][k] == pytest.approx(v, rel=1e-5)
    assert not list((tmp_path / "s" / "bags").glob("*.seg*"))  # joined into the bag's files
    # the first line carries the image dropped before it (no camera_info yet, then no ground truth)
    first = json.loads((tmp_path / "s" / "frames.jsonl").read_text().splitlines()[0])
    assert sum(first["drops"].values()) == 1
    with pytest.raises(FileExistsError, match="segment_s"):  # a different split is another config
        fleet.evaluate_fleet(
            _config(structured_weights, tmp_path / "s"), bags, tmp_path / "s", progress=False, segment_s=0.2
        )


@pytest.mark.slow
def test_cli_fleet_and_single_bag(fleet_dir, structured_weights, tmp_path, capsys):
    common = [
        "--weights",
        str(structured_weights),
        "--input-height",
        "64",
        "--input-width",
        "96",
        "--no-progress",
    ]
    assert (
        main(["eval", str(fleet_dir / "a"), str(fleet_dir / "b"), "--out", str(tmp_path / "f"), *common]) == 0
    )
    assert "2 of 2 bags evaluated" in capsys.readouterr().out
    assert len((tmp_path / "f" / "frames.jsonl").read_text().splitlines()) == 12
    # one bag: today's report, no fleet files
    assert main(["eval", str(fleet_dir / "a"), "--out", str(tmp_path / "one"), *common]) == 0
    assert (tmp_path / "one" / "report.html").is_file() and not (tmp_path / "one" / "frames.jsonl").exists()
    # a time window of one bag: the frames logged 0.405 and 0.505 s after its first message
    assert main(["eval", str(fleet_dir / "a"), "--start", "0.35", "--out", str(tmp_path / "w"), *common]) == 0
    assert "frames: 4 evaluated" in capsys.readouterr().out
    bad = ["eval", str(fleet_dir / "a"), "--segment", "0.2", "--start", "0.1", "--out", str(tmp_path / "x")]
    assert main(bad) == 2 and "--segment" in capsys.readouterr().err


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray: 2 CPUs, bound to 127.0.0.1, no dashboard, no usage statistics."""
    import importlib.util
    import time

    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed")
    t0 = time.perf_counter()
    fleet.start_ray("local", num_cpus=2)  # before ray is imported here: its address stays loopback
    print(f"ray start-up {time.perf_counter() - t0:.2f} s")
    import ray

    assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_serial_lines_and_survives_a_killed_worker(
    fleet_dir, structured_weights, tmp_path, local_ray
):
    import os
    import signal

    bags = fleet.expand_bags([fleet_dir])
    serial = fleet.evaluate_fleet(
        _config(structured_weights, tmp_path / "s"), bags, tmp_path / "s", progress=False
    )
    killed = []

    def kill_one(actors):  # the first worker process dies while its first bag may be running
        pid = local_ray.get(actors[0].pid.remote())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    runner = fleet.ray_runner(fleet.RayPool(workers=2), on_actors=kill_one)
    on_ray = fleet.evaluate_fleet(
        _config(structured_weights, tmp_path / "r"), bags, tmp_path / "r", progress=False, runner=runner
    )
    assert killed and on_ray["ok"] == serial["ok"] == 3 and on_ray["unfinished"] == []
    assert (tmp_path / "r" / "frames.jsonl").read_text() == (tmp_path / "s" / "frames.jsonl").read_text()
    assert (tmp_path / "r" / "fleet.html").is_file()


@pytest.mark.slow
def test_label_over_two_bags_on_ray_equals_serial(tmp_path, local_ray):
    import numpy as np
    import torch

    from bore_depth_ros.models import create_model
    from bore_depth_ros.train.labels import label_bags, ray_label_runner
    from bore_depth_ros.train.recipes.teacher import open_labelling_teacher
    from test_label import _record

    torch.manual_seed(1)
    weights = tmp_path / "teacher.pt"
    torch.save({"state_dict": create_model("bore_depth").state_dict()}, weights)
    bags = [_record(tmp_path / "r1", 3), _record(tmp_path / "r2", 4)]
    listing = tmp_path / "bags.txt"
    listing.write_text("r1\nr2\n")
    assert fleet.expand_bags([listing]) == bags
    args = ("bore_depth", str(weights), (32, 64), "cpu")
    serial = label_bags(bags, open_labelling_teacher(*args), tmp_path / "s")
    # a corrupt bag among them is reported and left out; the others are labelled as before
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n" + b"\0" * 200)
    on_ray = label_bags(
        [bags[0], str(bad), bags[1]],
        open_labelling_teacher(*args),
        tmp_path / "r",
        runner=ray_label_runner(open_labelling_teacher, args, fleet.RayPool(workers=2)),
    )
    assert serial["failed"] == [] and [f["bag"] for f in on_ray["failed"]] == [str(bad)]
    assert on_ray["failed"][0]["reason"]
    for key in ("teacher", "recordings", "views", "input_size"):
        assert on_ray[key] == serial[key]
    # arrays are named after the bag's number in the list: r2 is the third bag on Ray
    assert len(on_ray["arrays"]) == len(serial["arrays"])
    for a, b in zip(serial["arrays"], on_ray["arrays"], strict=True):
        assert {k: v for k, v in a.items() if k not in ("file", "stamps")} == {
            k: v for k, v in b.items() if k not in ("file", "stamps")
        }
        for fa, fb in ((a["file"], b["file"]), (a["stamps"], b["stamps"])):
            np.testing.assert_array_equal(np.load(tmp_path / "r" / fb), np.load(tmp_path / "s" / fa))
