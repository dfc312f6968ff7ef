"""What a normal user can do: ``vdrm run`` through a user namespace and ``vdrm mount``
through fusermount3 where /dev/fuse is usable (0666, as Debian and Ubuntu ship it), and
one clear error where it is not.

Each test sets up its own /dev/fuse in a private mount namespace (``unshare -m`` with a
node bound over /dev/fuse: 0666 for "usable", 0600 for "not"), so the result does not
depend on this machine's node, and then becomes uid 65534 with ``setpriv``. The user
keeps CAP_DAC_READ_SEARCH only so that it can read this interpreter where it is installed
under root's home; it gives no right to mount, to open /dev/fuse or to make namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.cli.conftest import ROOT
from vdrm.fs import daemon

NOBODY = 65534
can_switch_user = pytest.mark.skipif(
    os.getuid() != 0 or not all(shutil.which(t) for t in ("unshare", "setpriv", "mknod")) or not os.path.exists("/dev/fuse"),
    reason="needs root, /dev/fuse and util-linux's unshare and setpriv to play a normal user")


def as_nobody(fuse_mode: str, script: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """``script`` (sh) as uid 65534, in a mount namespace whose /dev/fuse has ``fuse_mode``;
    ``$VDRM`` runs the vdrm command, ``$MNT`` is a directory owned by that user."""
    setup = f"""
        set -e
        dev=$(mktemp -d /tmp/vdrm-fuse-XXXXXX); trap 'rm -rf "$dev"' EXIT
        mknod -m {fuse_mode} "$dev/fuse" c 10 229
        mount --bind "$dev/fuse" /dev/fuse
        mkdir "$dev/mnt"; chown {NOBODY}:{NOBODY} "$dev/mnt"; chmod 755 "$dev"
        export MNT="$dev/mnt" VDRM="{sys.executable} -m vdrm"
        setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups --inh-caps=+dac_read_search \\
            --ambient-caps=+dac_read_search sh -c '{script}'
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": "/tmp"}
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", setup], cwd="/", env=env,
                          text=True, capture_output=True, timeout=timeout)


@can_switch_user
def test_a_normal_user_runs_a_command_through_a_user_namespace() -> None:
    """With a usable /dev/fuse, uid 65534's ``vdrm run`` shows the scenario, maps it to root inside, and steps the clock."""
    result = as_nobody("0666", "$VDRM run --scenario busy-game -- sh -c \"cat /proc/self/uid_map; "
                               "cat /proc/4196305/comm; stat -c %t:%T /dev/dri/renderD128; "
                               "echo 1s > /sys/kernel/debug/dri/128/vdrm-clock; "
                               "grep -c utilisation /sys/kernel/debug/dri/128/vdrm-clients/1/truth.json\"")
    assert result.returncode == 0, result.stderr
    uid_map, comm, rdev, count = result.stdout.split("\n")[:4]
    assert uid_map.split() == ["0", str(NOBODY), "1"]
    assert (comm, rdev, count) == ("supertuxkart", "e2:80", "2")


@can_switch_user
def test_a_normal_user_mounts_and_unmounts_with_fusermount3() -> None:
    """uid 65534's ``vdrm mount --daemon`` serves the tree to that user (its clock writable), and fusermount3 -u ends it."""
    result = as_nobody("0666", "$VDRM mount \"$MNT\" --daemon --scenario busy-game >/dev/null && "
                               "echo 1s > \"$MNT/sys/kernel/debug/dri/128/vdrm-clock\" && "
                               "grep engine-fragment \"$MNT/proc/4196305/fdinfo/7\" && "
                               "stat -c %u \"$MNT/sys/kernel/debug/dri/128/vdrm-clock\"; fusermount3 -u \"$MNT\"")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"drm-engine-fragment:\t649000000 ns\n{NOBODY}\n"


@can_switch_user
@pytest.mark.parametrize("command,status", [("run -- true", 125), ("mount \"$MNT\"", 1)])
def test_an_unusable_dev_fuse_is_one_clear_error(command: str, status: int) -> None:
    """Where /dev/fuse is 0600 root's, a normal user gets one line saying so and what to do, not a traceback."""
    result = as_nobody("0600", f"$VDRM {command}")
    assert result.returncode == status
    [line] = result.stderr.splitlines()
    assert "/dev/fuse is not usable by uid 65534 (mode 0600, owner uid 0)" in line
    assert "0666" in line and "root" in line


def test_what_is_missing_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No device, no fusermount3, user namespaces off: each gets its own sentence; root needs only the device."""
    assert "there is no /nonexistent/fuse" in daemon.fuse_problem(device="/nonexistent/fuse")
    assert "--device /dev/fuse" in daemon.fuse_problem(device="/nonexistent/fuse")
    dev = tmp_path / "fuse"
    dev.write_text("")
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "fusermount3 (Debian package fuse3)" in daemon.fuse_problem(device=str(dev))
    fusermount = tmp_path / "fusermount3"
    fusermount.write_text("")
    fusermount.chmod(0o4755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fusermount))
    knob = tmp_path / "max_user_namespaces"
    knob.write_text("0\n")
    monkeypatch.setattr(daemon, "_USERNS_KNOBS", ((str(knob), "0", "user.max_user_namespaces is 0"),))
    assert daemon.fuse_problem(device=str(dev)) is None
    assert "user.max_user_namespaces is 0" in daemon.fuse_problem(device=str(dev), namespaces=True)


def test_a_normal_users_mount_options(tmp_path) -> None:
    """allow_other only with user_allow_other in fuse.conf; root keeps it always."""
    conf = tmp_path / "fuse.conf"
    conf.write_text("# user_allow_other\n")
    assert "allow_other" not in daemon.mount_options(1000, str(conf))
    conf.write_text("user_allow_other\n")
    assert "allow_other" in daemon.mount_options(1000, str(conf))
    assert daemon.mount_options(0, str(tmp_path / "none")) == daemon.MOUNT_OPTIONS
