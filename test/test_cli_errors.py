"""``bore-depth`` errors: one line on stderr, ``bore-depth <cmd>: error: <cause>``, exit 2, no
traceback unless ``--debug``; interrupts exit 130 (SIGINT) and 143 (SIGTERM) with one line.

The commands run as real processes through the installed entry point (cli/errors.py has the
convention, docs/cli.md the table); the last tests drive ``errors.run_command`` in this process.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import time

import pytest

from harness import entry_point


def bore_depth(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([entry_point("bore-depth"), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_errors")
    (d / "a_file").write_text("not a folder\n")
    (d / "broken.yaml").write_text("train: [a.mcap, b.mcap\nsteps: 3\n")
    (d / "a_folder").mkdir()
    return d


# (arguments, words the one line must contain); {d} is the fixture's folder
CASES = [
    (["synth", "{d}/new_bag", "--frames", "-3"], ["argument --frames", "-3"]),
    (["synth", "{d}/a_file", "--frames", "2"], ["{d}/a_file exists"]),
    (["play", "{d}/no_such_bag"], ["bag not found", "{d}/no_such_bag"]),
    (["play", "{d}/no_such_bag", "--rate", "0"], ["argument --rate", "> 0"]),
    (["train", "{d}/broken.yaml"], ["invalid YAML", "line 2"]),
    (["train", "{d}/a_folder"], ["Is a directory", "{d}/a_folder"]),
    (["eval", "{d}/no_such_bag"], ["bag not found", "{d}/no_such_bag"]),
    (["eval", "{d}/no_such_bag", "--model", "nosuch"], ["unknown model 'nosuch'", "bore_depth"]),
    (["eval", "{d}/no_such_bag", "--max-frames", "-1"], ["argument --max-frames", "-1"]),
    (["eval", "{d}/no_such_bag", "--out", "{d}/a_file"], ["{d}/a_file is a file, not a folder"]),
    (["export", "--models", "bore_depth", "--out-dir", "{d}/a_file"], ["{d}/a_file is a file"]),
    (["export", "--models", "bore_depth", "--weights", "{d}/nope.ckpt"], ["not found", "{d}/nope.ckpt"]),
    (["bench", "--repeats", "-1"], ["argument --repeats", "-1"]),
    (["bench", "--sizes", "0x0"], ["argument --sizes", "0x0"]),
    (["demo", "--frames", "-1", "--out", "{d}/demo"], ["argument --frames"]),
    (["prebuild", "--model", "nosuch"], ["unknown model 'nosuch'"]),
]


@pytest.mark.parametrize("args,words", CASES, ids=[f"{i}-{a[0]}" for i, (a, _) in enumerate(CASES)])
def test_a_bad_argument_is_one_line_and_exit_2(files, args, words):
    args = [a.format(d=files) for a in args]
    proc = bore_depth(*args)
    err = proc.stderr
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not line.startswith("pybullet build time")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bore-depth {args[0]}: error: "), err
    for word in words:
        assert word.format(d=files) in lines[0], (word, err)
    assert not (files / "new_bag").exists() and not (files / "demo").exists()  # nothing was started


def test_an_unknown_command_is_one_line(files):
    proc = bore_depth("nosuch")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("bore-depth: error: ") and "nosuch" in proc.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_with_the_same_exit_code(files, where):
    args = ["eval", str(files / "no_such_bag")]
    proc = bore_depth(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr, proc.stderr
    assert f"FileNotFoundError: bag not found: {files / 'no_such_bag'}" in proc.stderr


@pytest.mark.parametrize(
    "signum,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_an_interrupted_command_is_one_line(tmp_path, signum, code, word):
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [entry_point("bore-depth"), "synth", str(tmp_path / "bag"), "--frames", "500"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            # SIGINT as a terminal delivers it (a shell may start background jobs ignoring it)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 120
        while "frame/s" not in err_path.read_text():  # rendering: the command is at work
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.05)
        proc.send_signal(signum)
        assert proc.wait(60) == code, err_path.read_text()
    text = err_path.read_text()
    assert f"bore-depth synth: {word}" in text and "Traceback" not in text, text


# --- the wrapper itself, in this process ---------------------------------------------------------


def test_run_command_codes_and_lines(capsys):
    from bore_depth_ros.cli import errors

    def raising(exc):
        def run(args):
            raise exc

        return run

    ns = argparse.Namespace()
    cases = [
        (
            raising(ValueError("bad value\n  on two lines")),
            errors.ERROR,
            "bore-depth x: error: bad value on two lines",
        ),
        (
            raising(FileNotFoundError(2, "No such file or directory", "/nope.yaml")),
            errors.ERROR,
            "bore-depth x: error: No such file or directory: /nope.yaml",
        ),
        (
            raising(KeyError("unknown model 'y'; registered models: a")),
            errors.ERROR,
            "bore-depth x: error: unknown model 'y'; registered models: a",
        ),
        (raising(KeyError("/a_key")), errors.FAILED, "bore-depth x: internal error: KeyError: /a_key"),
        (
            raising(ZeroDivisionError("division by zero")),
            errors.FAILED,
            "bore-depth x: internal error: ZeroDivisionError: division by zero (--debug",
        ),
        (raising(KeyboardInterrupt()), errors.INTERRUPTED, "bore-depth x: interrupted"),
        (raising(errors.Terminated()), errors.TERMINATED, "bore-depth x: terminated"),
        (lambda args: 0, errors.OK, ""),
    ]
    for run, code, line in cases:
        assert errors.run_command("x", run, ns) == code
        err = capsys.readouterr().err
        assert err.startswith(line) and err.count("\n") == (1 if line else 0), (line, err)
    # play: a signal is a requested stop, as for the nodes
    assert errors.run_command("play", raising(errors.Terminated()), ns, stop_is_success=True) == errors.OK
    assert capsys.readouterr().err == ""


def test_bench_never_replaces_a_users_table_unless_forced(tmp_path):
    mine = tmp_path / "table.md"
    mine.write_text("a user's table")
    out = bore_depth("bench", "--models", "bore_depth", "--md", str(mine))
    assert out.returncode == 2 and "table.md already exists" in out.stderr and "--force" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert mine.read_text() == "a user's table"
