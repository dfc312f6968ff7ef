"""Real-mount tests of ``mount.py --run``: unmodified programs in a private namespace see the device.

The subject is the project's own /proc-walking parser (``tests/tools/fdinfo_top.py``),
which reads /proc the way nvtop, igt gputop and qmassa do; its numbers are compared with
vdrm's ground truth (``truth.json``), read in the same namespace after the same clock step.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fs.conftest import mounted
from tests.tools.under_vdrm import MOUNT_PY, ROOT, sample_and_truth, under_vdrm

EMULATED = 4194304  # scenario pid N is shown as EMULATED + N


def check_against_truth(report: dict, truth: list[dict]) -> None:
    """Every client the parser found matches its truth: utilisation per engine and memory."""
    by_id = {t["drm-client-id"]: t for t in truth}
    assert sorted(c["client_id"] for c in report["clients"]) == sorted(by_id)
    for client in report["clients"]:
        expected = by_id[client["client_id"]]
        assert report["interval_ns"] == expected["clock"]["step_ns"]
        for engine, want in expected["engines"].items():
            got = client["engines"][engine]
            assert got["busy_ns"] == want["busy_ns"], engine
            assert got["utilisation"] == pytest.approx(max(0.0, want["utilisation"])), engine
        memory = client["memory"]["memory"]
        for category in ("total", "shared", "resident", "active"):
            assert memory.get(category, 0) == expected["memory"][category], category  # absent: 0


def test_busy_game_client_is_found_with_the_true_numbers() -> None:
    """fdinfo_top finds exactly supertuxkart's one client on renderD128 with truth.json's utilisation and memory."""
    report, truth = sample_and_truth("busy-game.toml", warm_up="2s", step="1s")
    [client] = report["clients"]
    assert (client["minor"], client["node"], client["device"]) == (128, "renderD128", "fde60000.gpu")
    assert client["pids"] == [EMULATED + 2001] and client["fds"] == [[EMULATED + 2001, 7]]
    assert client["comm"] == "supertuxkart" and client["client_name"] == "supertuxkart"
    assert client["profiling"] == "1"
    check_against_truth(report, truth)
    assert client["engines"]["fragment"]["utilisation"] > 0.6


def test_dup_and_two_opens_count_two_clients_not_three() -> None:
    """A dup'd fd joins its client: two clients, the first reached through fds 3 and 4."""
    report, truth = sample_and_truth("dup-and-two-opens.toml")
    pid = EMULATED + 5001
    assert [c["fds"] for c in report["clients"]] == [[[pid, 3], [pid, 4]], [[pid, 5]]]
    check_against_truth(report, truth)


def test_inherited_fd_is_one_client_seen_from_two_pids() -> None:
    """wayfire's render fd inherited by sleep is one client listed under both pids."""
    report, truth = sample_and_truth("bug-inherited-fd.toml")
    [client] = report["clients"]
    assert client["pids"] == [EMULATED + 11001, EMULATED + 11002]
    check_against_truth(report, truth)


def test_a_real_client_inside_the_namespace_is_found_under_its_own_pid() -> None:
    """A shell that opens $VDRM_MOUNT/dev/dri/renderD128 shows up in fdinfo_top with its real pid and BO."""
    result = under_vdrm(None, """
        exec 3<>"$VDRM_MOUNT/dev/dri/renderD128"
        echo 'CREATE_BO size=2M flags=NOEXEC' >&3; read -r reply <&3
        echo "pid=$$"
        "$PYTHON" "$TOOLS/fdinfo_top.py" --clock-step 10ms
    """, "--clock", "virtual")
    assert result.returncode == 0, result.stderr
    pid_line, report = result.stdout.splitlines()
    pid = int(pid_line.removeprefix("pid="))
    [client] = json.loads(report)["clients"]
    assert [pid, 3] in client["fds"]
    assert client["memory"]["memory"]["total"] == 2 << 20


def test_the_namespace_shows_what_proc_walking_tools_read() -> None:
    """Inside, /proc/self, fd links, 226:128 nodes, sysfs links, debugfs and /proc system files all answer as on a real board."""
    result = under_vdrm("busy-game.toml", """
        pid=$((4194304 + 2001))
        echo "self $(readlink /proc/self) $$ $(sh -c 'readlink /proc/self; echo $$' | tr '\\n' ' ')"
        echo "link $(readlink /proc/$pid/fd/7)"
        echo "node $(stat -L -c '%F %t:%T' /proc/$pid/fd/7)"
        echo "dev $(stat -c '%F %t:%T' /dev/dri/card0)"
        echo "drm $(stat -c '%F' /sys/class/drm/renderD128) $(basename "$(readlink /sys/class/drm/renderD128/device)")"
        echo "profiling $(cat /sys/class/drm/renderD128/device/profiling)"
        echo "char $(readlink /sys/dev/char/226:128)"
        echo "stat $(cut -d' ' -f1-3 /proc/$pid/stat)"
        echo "cmdline $(tr '\\0' ' ' < /proc/$pid/cmdline)"
        echo "clock $(grep now_ns /sys/kernel/debug/dri/128/vdrm-clock)"
        echo "has$(for f in stat meminfo uptime loadavg cpuinfo version; do [ -n "$(head -c1 /proc/$f)" ] && echo -n " $f"; done)"
        echo "mine $(cut -d' ' -f2 /proc/self/stat) $(cat /proc/thread-self/comm) $(readlink /proc/self/exe)"
        test -e /proc/sys/kernel/pid_max && echo "sys ok"
    """)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    readlink_self, shell, inner_self, inner_shell = lines["self"].split()
    assert readlink_self != shell and inner_self != inner_shell  # readlink's own pid, not the shell's
    assert lines["link"] == "/dev/dri/renderD128"
    assert lines["node"] == "character special file e2:80"
    assert lines["dev"] == "character special file e2:0"
    assert lines["drm"] == "symbolic link fde60000.gpu"
    assert lines["profiling"] == "1"
    assert lines["char"] == "../../devices/platform/fde60000.gpu/drm/renderD128"
    assert lines["stat"] == f"{4194304 + 2001} (supertuxkart) S"
    assert lines["cmdline"] == "supertuxkart --fullscreen "
    assert lines["clock"] == "now_ns 0"
    assert lines["has"] == "stat meminfo uptime loadavg cpuinfo version"
    assert lines["mine"] == "(cut) cat /usr/bin/readlink"
    assert lines["sys"] == "ok"


def test_proc_directory_entries_carry_their_types() -> None:
    """readdir of /proc gives DT_DIR for pids and DT_LNK for self; fd/ entries DT_LNK; fdinfo/ entries DT_REG."""
    script = """
import sys
sys.path.insert(0, sys.argv[1])
from fdinfo_top import readdir, DT_DIR, DT_LNK, DT_REG
proc = dict(readdir("/proc"))
pid = str(4194304 + 2001)
print(proc[pid] == DT_DIR, proc["self"] == DT_LNK, proc[str(__import__("os").getpid())] == DT_DIR,
      dict(readdir(f"/proc/{pid}/fd"))["7"] == DT_LNK, dict(readdir(f"/proc/{pid}/fdinfo"))["7"] == DT_REG,
      dict(readdir("/sys/class/drm"))["renderD128"] == DT_LNK)
"""
    result = under_vdrm("busy-game.toml", f'"$PYTHON" -c \'{script}\' "$TOOLS"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"] * 6


def test_exit_status_passes_through() -> None:
    """COMMAND's exit status is mount.py's, 128+N when a signal N killed it."""
    assert under_vdrm(None, "exit 7").returncode == 7
    assert under_vdrm(None, "true").returncode == 0
    assert under_vdrm(None, "kill -TERM $$").returncode == 128 + signal.SIGTERM


def run_raw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MOUNT_PY), *args], cwd=ROOT, text=True, capture_output=True,
                          timeout=60)


def test_vdrm_failures_have_their_own_statuses_and_messages() -> None:
    """A missing command is 127, a non-executable one 126, a bad scenario or missing command 125, each with a message."""
    missing = run_raw("--run", "--", "no-such-command-vdrm")
    assert missing.returncode == 127 and "no-such-command-vdrm: command not found" in missing.stderr
    not_exec = run_raw("--run", "--", "/")
    assert not_exec.returncode == 126 and "cannot execute" in not_exec.stderr
    bad = run_raw("--run", "--scenario", "/nonexistent.toml", "--", "true")
    assert bad.returncode == 125 and "bad scenario" in bad.stderr
    no_command = run_raw("--run")
    assert no_command.returncode == 125 and "needs a command" in no_command.stderr


def test_nothing_stays_mounted_afterwards() -> None:
    """After the command exits, its private mount point is unmounted and removed, and the host never saw the binds."""
    result = under_vdrm(None, 'echo "$VDRM_MOUNT"; test -c /dev/dri/renderD128')
    assert result.returncode == 0, result.stderr
    mountpoint = Path(result.stdout.strip())
    assert mountpoint.name == "mnt" and mountpoint.parent.name.startswith("vdrm-run-")
    assert not mounted(mountpoint)
    assert not mountpoint.parent.exists()
    host_mount_points = [line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert not [p for p in host_mount_points if p.startswith(str(mountpoint.parent)) or p == "/dev/dri"]


def test_sigterm_reaches_the_command_and_the_mount_still_goes() -> None:
    """SIGTERM to mount.py --run is passed to COMMAND (status 143) and the private mount is removed."""
    runner = subprocess.Popen([sys.executable, str(MOUNT_PY), "--run", "--", "bash", "-c",
                               'echo "$VDRM_MOUNT"; exec sleep 60'],
                              cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        mountpoint = Path(runner.stdout.readline().strip())  # type: ignore[union-attr]
        assert mounted(mountpoint)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.communicate()
    assert not mounted(mountpoint) and not mountpoint.parent.exists()


def test_two_gpus_two_drivers_each_client_on_its_own_device() -> None:
    """With Panfrost at renderD128 and Panthor at renderD129, the parser finds one client on each
    device, with its own driver and platform device, and the truth agrees for both."""
    report, truth = sample_and_truth("two-gpus.toml", warm_up="1s", step="1s")
    by_minor = {c["minor"]: c for c in report["clients"]}
    assert sorted(by_minor) == [128, 129]
    assert (by_minor[128]["driver"], by_minor[128]["device"]) == ("panfrost", "fde60000.gpu")
    assert (by_minor[129]["driver"], by_minor[129]["device"]) == ("panthor", "fb000000.gpu")
    assert by_minor[129]["profiling"] == "3"  # Panthor's knob is a mask
    assert by_minor[129]["engines"]["panthor"]["utilisation"] == pytest.approx(12 / 16, abs=0.02)
    check_against_truth(report, truth)


def test_panthor_game_on_its_one_engine() -> None:
    """On a Panthor-only machine the parser finds the game's and the compositor's clients on one
    engine, "panthor", at their duty cycles, and agrees with the truth."""
    report, truth = sample_and_truth("panthor-busy-game.toml", warm_up="1s", step="1s")
    by_name = {c["client_name"]: c for c in report["clients"]}
    assert sorted(by_name) == ["vkquake3", "weston"]
    assert {c["driver"] for c in report["clients"]} == {"panthor"}
    assert list(by_name["vkquake3"]["engines"]) == ["panthor"]
    assert by_name["vkquake3"]["engines"]["panthor"]["utilisation"] == pytest.approx(14 / 16.666, abs=0.02)
    assert by_name["weston"]["engines"]["panthor"]["utilisation"] == pytest.approx(1 / 16.666, abs=0.01)
    check_against_truth(report, truth)
