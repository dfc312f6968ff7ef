"""The ``vdrm`` command: each subcommand's main path and its errors, with real mounts."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

from tests.cli.conftest import ROOT, needs_fuse, vdrm
from vdrm.scenario import bundled


def test_help_everywhere_exits_0() -> None:
    """``--help`` works for the command and every subcommand, with status 0."""
    top = vdrm("--help")
    assert top.returncode == 0 and "subcommands" in top.stdout
    for sub in ("mount", "run", "scenarios", "truth", "check", "record", "replay"):
        result = vdrm(sub, "--help")
        assert result.returncode == 0, (sub, result.stderr)
        assert f"vdrm {sub}" in result.stdout, sub


def test_no_or_unknown_subcommand_is_a_usage_error() -> None:
    """No subcommand, or an unknown one, exits 2 with a message."""
    assert vdrm().returncode == 2
    result = vdrm("frobnicate")
    assert result.returncode == 2 and "unknown subcommand 'frobnicate'" in result.stderr


def test_version_is_the_package_version() -> None:
    """``vdrm --version`` prints vdrm.__version__."""
    from vdrm import __version__

    assert vdrm("--version").stdout.strip() == f"vdrm {__version__}"


def test_scenarios_lists_every_bundled_scenario_on_one_line() -> None:
    """Each fixtures/scenarios/*.toml is one line: its name and its description's first sentence."""
    lines = vdrm("scenarios").stdout.splitlines()
    names = sorted(p.stem for p in (ROOT / "fixtures" / "scenarios").glob("*.toml"))
    assert [line.split()[0] for line in lines] == names
    assert any(line.startswith("busy-game ") and "60 fps" in line for line in lines)
    traces = [line.split()[0] for line in vdrm("scenarios", "--traces").stdout.splitlines()]
    assert traces == ["amdgpu", "i915", "msm", "panthor", "v3d", "xe"]
    paths = vdrm("scenarios", "--paths").stdout.splitlines()
    assert all(os.path.isfile(line.split()[1]) for line in paths)


def test_a_bundled_scenario_is_named_without_its_path() -> None:
    """``busy-game`` and ``busy-game.toml`` resolve to the bundled file; a real path stays as given."""
    path = str(ROOT / "fixtures" / "scenarios" / "busy-game.toml")
    assert bundled.resolve("busy-game") == bundled.resolve("busy-game.toml") == path
    assert bundled.resolve("./busy-game") == "./busy-game"


def test_truth_without_a_mount_steps_the_scenario_clock() -> None:
    """``vdrm truth --scenario busy-game --step 1s`` gives the first second's utilisation as one document."""
    result = vdrm("truth", "--scenario", "busy-game", "--step", "500ms", "--step", "500ms")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "vdrm-truth/1"
    assert doc["clock"]["now_ns"] == 1_000_000_000 and doc["clock"]["step_ns"] == 500_000_000
    [client] = doc["clients"]
    assert client["comm"] == "supertuxkart" and client["engines"]["fragment"]["delta_ns"] > 0


def test_truth_errors() -> None:
    """A missing scenario is 2, a bad step 2, --step without --scenario 2, a directory that is no vdrm tree 1."""
    assert vdrm("truth", "--scenario", "no-such-scenario").returncode == 2
    assert vdrm("truth", "--scenario", "busy-game", "--step", "soon").returncode == 2
    assert vdrm("truth", "--step", "1s").returncode == 2
    result = vdrm("truth", tempfile.gettempdir())
    assert result.returncode == 1 and "not a vdrm tree" in result.stderr
    assert vdrm("truth", env={"VDRM_MOUNT": ""}).returncode == 2


def test_mount_errors_keep_mount_py_statuses() -> None:
    """``vdrm mount`` without a mount point or with a bad option is 2; on a missing directory 1."""
    assert vdrm("mount").returncode == 2
    assert vdrm("mount", "/tmp", "--kernel", "5.0").returncode == 2
    result = vdrm("mount", "/nonexistent/vdrm-mnt")
    assert result.returncode == 1 and "not a directory" in result.stderr


def test_run_errors_keep_the_runner_statuses() -> None:
    """``vdrm run`` without a command or with a bad scenario is 125; a missing command 127."""
    assert vdrm("run").returncode == 125
    assert vdrm("run", "--scenario", "no-such-scenario", "--", "true").returncode == 125


@needs_fuse
def test_run_a_command_under_a_named_scenario() -> None:
    """``vdrm run --scenario busy-game -- CMD`` shows the scenario in /proc and returns CMD's status."""
    result = vdrm("run", "--scenario", "busy-game", "--", "sh", "-c",
                  "cat /proc/4196305/comm; test -c /dev/dri/renderD128; exit 3")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "supertuxkart\n"
    assert vdrm("run", "--", "no-such-command-here").returncode == 127


@needs_fuse
def test_truth_inside_run_and_of_a_mount_point() -> None:
    """``vdrm truth`` reads the live tree: inside ``vdrm run`` with no argument, and of a mount point."""
    inside = vdrm("run", "--scenario", "busy-game", "--", "sh", "-c",
                  "echo 1s > /sys/kernel/debug/dri/128/vdrm-clock && \"$PYTHON\" -m vdrm truth",
                  env={"PYTHON": __import__("sys").executable})
    assert inside.returncode == 0, inside.stderr
    offline = json.loads(vdrm("truth", "--scenario", "busy-game", "--step", "1s").stdout)
    assert json.loads(inside.stdout)["clients"] == offline["clients"]

    with tempfile.TemporaryDirectory(prefix="vdrm-cli-") as mnt:
        started = vdrm("mount", mnt, "--daemon", "--scenario", "busy-game")
        assert started.returncode == 0, started.stderr
        try:
            with open(f"{mnt}/sys/kernel/debug/dri/128/vdrm-clock", "w") as f:
                f.write("1s\n")
            live = vdrm("truth", mnt)
            assert live.returncode == 0, live.stderr
            assert json.loads(live.stdout)["clients"] == offline["clients"]
        finally:
            subprocess.run(["umount", mnt], check=True)
            for _ in range(100):
                if not os.path.ismount(mnt):
                    break
                time.sleep(0.05)


@needs_fuse
def test_mount_py_takes_a_bundled_scenario_name() -> None:
    """mount.py shares the daemon's code: ``--run --scenario demo`` finds the bundled file."""
    result = subprocess.run([__import__("sys").executable, str(ROOT / "mount.py"), "--run", "--scenario", "demo",
                             "--", "cat", "/proc/4196305/comm"], cwd="/", text=True, capture_output=True,
                            timeout=90, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "supertuxkart\n"
