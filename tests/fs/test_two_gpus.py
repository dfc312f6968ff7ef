"""Two GPUs in one machine, and a third driver that touches nothing in vdrm/fs."""

from __future__ import annotations

import os

from vdrm import drivers
from vdrm.drm.device import Driver
from vdrm.drm.gpu import DeviceConfig, GpuDevice, SysfsAttribute
from vdrm.fs.tree import Tree

from .conftest import FakeProcesses
from .test_tree import ROOT, names, read_all, resolve


def two_gpu_tree() -> Tree:
    machine = drivers.build(DeviceConfig(clock="virtual", ram_size=256 << 20), ("panfrost", "panthor"))
    procs = FakeProcesses()
    tree = Tree(machine, procs)
    procs.is_open_ino = tree.is_open_ino
    return tree


def test_both_gpus_have_their_nodes_and_platform_devices() -> None:
    """card0/renderD128 lead to fde60000.gpu (panfrost), card1/renderD129 to fb000000.gpu (panthor)."""
    tree = two_gpu_tree()
    assert sorted(names(tree, "dev/dri")) == ["by-path", "card0", "card1", "renderD128", "renderD129"]
    assert sorted(names(tree, "sys/devices/platform")) == ["fb000000.gpu", "fde60000.gpu"]
    assert tree.readlink(resolve(tree, "sys/class/drm/renderD129")) == \
        "../../devices/platform/fb000000.gpu/drm/renderD129"
    assert tree.readlink(resolve(tree, "sys/dev/char/226:1")) == "../../devices/platform/fb000000.gpu/drm/card1"
    assert read_all(tree, "sys/devices/platform/fb000000.gpu/uevent").startswith(b"DRIVER=panthor\n")
    assert b"OF_COMPATIBLE_1=arm,mali-valhall-csf\n" in read_all(tree, "sys/devices/platform/fb000000.gpu/uevent")
    assert read_all(tree, "sys/devices/platform/fde60000.gpu/uevent").startswith(b"DRIVER=panfrost\n")
    assert read_all(tree, "sys/devices/platform/fb000000.gpu/drm/renderD129/dev") == b"226:129\n"
    assert sorted(names(tree, "sys/kernel/debug/dri")) == ["0", "1", "128", "129"]
    assert "vdrm-heaps" in names(tree, "sys/kernel/debug/dri/129")
    assert "gems" in names(tree, "sys/kernel/debug/dri/128")


def test_each_gpu_keeps_its_profiling_semantics() -> None:
    """Panfrost's knob is 0/1, Panthor's a mask: writing 3 works on one, fails on the other."""
    tree = two_gpu_tree()
    pt = tree.open(resolve(tree, "sys/devices/platform/fb000000.gpu/profiling"), os.O_WRONLY, ROOT)
    pt.write(0, b"3\n")
    assert read_all(tree, "sys/devices/platform/fb000000.gpu/profiling") == b"3\n"
    pf = tree.open(resolve(tree, "sys/devices/platform/fde60000.gpu/profiling"), os.O_WRONLY, ROOT)
    pf.write(0, b"1\n")
    assert read_all(tree, "sys/devices/platform/fde60000.gpu/profiling") == b"1\n"


def test_clients_of_both_gpus_share_one_id_counter_and_see_their_own_driver() -> None:
    """A client of each node gets a machine-wide drm-client-id and its driver's ioctl table."""
    tree = two_gpu_tree()
    a = tree.open(resolve(tree, "dev/dri/renderD128"), os.O_RDWR, ROOT)
    b = tree.open(resolve(tree, "dev/dri/renderD129"), os.O_RDWR, ROOT)
    assert (a.file.client_id, b.file.client_id) == (1, 2)
    b.write(0, b"DEV_QUERY type=GPU_INFO\n")
    b.answer()
    assert b.read(0, 4096).startswith(b"ok size=104 gpu_id=0xa8670000")
    a.write(0, b"DEV_QUERY type=GPU_INFO\n")
    a.answer()
    assert a.read(0, 4096).startswith(b"error EINVAL")  # Panfrost has no such request
    assert names(tree, "sys/kernel/debug/dri/129/vdrm-clients") == ["2"]
    fdinfo = read_all(tree, "sys/kernel/debug/dri/129/vdrm-clients/2/fdinfo")
    assert b"drm-driver:\tpanthor\ndrm-client-id:\t2\n" in fdinfo


class ToyDevice(GpuDevice):
    """A third driver: its own uevent, one sysfs knob, one debugfs file, nothing in vdrm/fs."""

    DRIVER = "toy"
    KERNEL_VERSIONS = ((6, 18),)
    ENGINES = ("toy",)
    PLATFORM_DEVICE = "12340000.gpu"

    def __init__(self, config, *, services=None, index=0):
        driver = Driver()
        driver.name = "toy"
        super().__init__(config, driver, (), services=services, index=index)
        self.knob = "0"

    def sysfs_attributes(self):
        return {"knob": SysfsAttribute(lambda: self.knob + "\n", lambda text: setattr(self, "knob", text.strip()))}

    def debugfs_files(self):
        return {"toy-state": lambda: f"knob {self.knob}\n"}


def test_a_third_driver_needs_no_change_in_fs(monkeypatch) -> None:
    """Registering a new GpuDevice is enough for the tree to serve its rows at card2/renderD130."""
    monkeypatch.setitem(drivers.DRIVERS, "toy", ToyDevice)
    machine = drivers.build(DeviceConfig(clock="virtual", ram_size=256 << 20), ("panfrost", "panthor", "toy"))
    procs = FakeProcesses()
    tree = Tree(machine, procs)
    assert read_all(tree, "sys/devices/platform/12340000.gpu/uevent") == b"DRIVER=toy\n"
    knob = tree.open(resolve(tree, "sys/devices/platform/12340000.gpu/knob"), os.O_WRONLY, ROOT)
    knob.write(0, b"on\n")
    assert read_all(tree, "sys/kernel/debug/dri/130/toy-state") == b"knob on\n"
    assert tree.readlink(resolve(tree, "sys/class/drm/card2")) == "../../devices/platform/12340000.gpu/drm/card2"
