"""The tree per kernel dialect (issue 12 rows 2 and 10): the profiling switch's place, and
who owns a client after its opener passed the fd on and exited."""

from __future__ import annotations

import os

import pytest

from vdrm.fs.tree import Caller, DrmOpen, Tree
from vdrm.panfrost.device import DeviceConfig, PanfrostDevice

from .conftest import FakeProcesses

ROOT = Caller(1, 0, 0)
SYSFS = "sys/devices/platform/fde60000.gpu/profiling"
DEBUGFS = "sys/kernel/debug/dri/128/profile"


def make(kernel: tuple[int, int]) -> tuple[Tree, PanfrostDevice, FakeProcesses]:
    device = PanfrostDevice(DeviceConfig(kernel=kernel, clock="virtual", ram_size=64 << 20))
    procs = FakeProcesses()
    tree = Tree(device, procs)  # type: ignore[arg-type]
    procs.is_open_ino = tree.is_open_ino
    return tree, device, procs


def resolve(tree: Tree, path: str) -> int:
    ino = 1
    for part in path.split("/"):
        ino = tree.lookup(ino, part).ino
    return ino


def exists(tree: Tree, path: str) -> bool:
    try:
        resolve(tree, path)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("kernel, sysfs, debugfs", [((6, 6), False, False), ((6, 7), False, True),
                                                    ((6, 9), False, True), ((6, 10), True, False),
                                                    ((7, 0), True, False)])
def test_profiling_switch_moves_from_debugfs_to_sysfs_in_6_10(kernel, sysfs, debugfs):
    """Row 2: debugfs profile exists in 6.7-6.9, sysfs profiling from 6.10, neither in 6.6."""
    tree, _, _ = make(kernel)
    assert exists(tree, SYSFS) is sysfs
    assert exists(tree, DEBUGFS) is debugfs


def test_debugfs_profile_is_an_atomic_t_that_switches_profiling():
    """Row 2: on 6.8 writing 2 to profile turns profiling on and reads back 2; garbage is EINVAL; mode 0600."""
    tree, device, _ = make((6, 8))
    ino = resolve(tree, DEBUGFS)
    assert tree.getattr(ino).mode & 0o777 == 0o600
    tree.open(ino, os.O_WRONLY, ROOT).write(0, b"2\n")
    assert device.profiling and tree.open(ino, os.O_RDONLY, ROOT).read(0, 100) == b"2\n"
    with pytest.raises(Exception) as err:
        tree.open(ino, os.O_WRONLY, ROOT).write(0, b"on\n")
    assert err.value.errno == 22


def test_owner_follows_the_fd_after_the_opener_exits():
    """Row 10: a parent opens, passes the fd to a child and exits; the child's next request makes it the owner."""
    tree, device, procs = make((6, 19))
    handle = tree.open(resolve(tree, "dev/dri/renderD128"), os.O_RDWR, Caller(500, 1000, 1000))
    assert isinstance(handle, DrmOpen)
    procs.hold(500, 3, handle.ino)
    procs.hold(501, 3, handle.ino)  # the child inherited it
    handle.write(0, b"VERSION\n")
    handle.answer()
    assert handle.file.pid == 500  # the opener still holds it
    procs.close(500, 3)  # the parent exits
    tree.flushed(handle)  # as FUSE's FLUSH tells, the moment its fd is closed
    clients = device.debugfs_files()["clients"]()
    assert "   500 128" in clients  # nothing has happened on the file yet
    handle.write(0, b"VERSION\n")
    handle.answer()
    assert (handle.file.pid, handle.file.comm) == (501, "proc501")
    assert "   501 128" in device.debugfs_files()["clients"]()
    assert "pid      501 command proc501:" in device.debugfs_files()["sched_ctxs"]()
    assert device.truth(handle.file)["pid"] == 501


def test_kernel_option_accepts_the_newest_and_help_names_it():
    """--kernel takes 6.19 and 7.0, refuses 6.5 and 7.1, and --help says 7.0 is the newest."""
    import argparse

    from vdrm.fs.daemon import build_parser, parse_kernel

    assert parse_kernel("6.19") == (6, 19) and parse_kernel("7.0") == (7, 0)
    for text in ("6.5", "7.1", "seven"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_kernel(text)
    assert "the newest is 7.0" in " ".join(build_parser().format_help().split())


def test_the_daemon_s_limits_and_owner_apply_to_a_scenario() -> None:
    """``--scenario`` with ``--max-clients``: the scenario's machine has the daemon's caps and owner
    (before, a scenario ignored them, so 10,000 scenario clients could not mount at all)."""
    from vdrm.fs.daemon import build_parser, make_device

    args = build_parser().parse_args(["/mnt", "--scenario", "busy-game", "--max-clients", "5000",
                                      "--max-bos", "77"])
    machine, scenario = make_device(args)
    assert scenario is not None
    assert machine.device.config.limits.clients == 5000 and machine.device.config.limits.bos == 77
    assert machine.device.config.owner_uid == os.getuid()
