"""Tests for vdrm.drm.ioctl: drm_ioctl's number, size and permission rules, the core ioctls, the table."""

from __future__ import annotations

import errno
import struct as pystruct

import pytest

from tests.drm.uapi_client import BinaryClient
from tests.panfrost.conftest import make_device
from vdrm.drm.ioctl import (CORE_IOCTLS, DRM_AUTH, DRM_RENDER_ALLOW, Arg, Ioctl, Request, build_table, dispatch,
                            drm_ioctl)
from vdrm.drm.uaccess import FakeUserMemory
from vdrm.drm.uapi import DRM_IOW, DRM_IOWR, Field, Struct, UserArray, ioc
from vdrm.errors import AccessDenied, InvalidArgument, WouldBlock
from vdrm.fs import protocol

MiB = 1 << 20


@pytest.fixture
def dev():
    return make_device()


@pytest.fixture
def client():
    return BinaryClient()


@pytest.fixture
def render(dev):
    return dev.open(128, pid=10, comm="app", uid=1000)


@pytest.fixture
def master(dev):
    return dev.open(0, pid=11, comm="compositor", uid=1000)


def text(dev, file, line: str) -> protocol.ParsedReply:
    return protocol.parse_reply(protocol.handle(dev.ioctls, file, line.encode()).line)


# -- numbers ------------------------------------------------------------------------------


def test_a_foreign_ioctl_type_is_enotty(dev, render, client):
    """A request whose type byte is not 'd' (a TTY ioctl, say) is ENOTTY, as drm_ioctl answers."""
    assert drm_ioctl(render, 0x5401, 0, client.mem) == -errno.ENOTTY  # TCGETS


@pytest.mark.parametrize("nr", [0x03, 0x2f, 0x3f, 0x4c, 0x4d, 0x5d, 0x9d, 0xa0, 0xcf, 0xd2, 0xff])
def test_unknown_numbers_are_einval(dev, render, client, nr):
    """Holes in the core table, numbers past it, and driver numbers past Panfrost's are EINVAL."""
    addr = client.mem.alloc(64)
    assert drm_ioctl(render, ioc(3, 0x64, nr, 16), addr, client.mem) == -errno.EINVAL


def test_since_gates_both_doors_with_einval(dev, render, client, monkeypatch):
    """An ioctl the emulated release lacks is EINVAL in binary and in text (since= in the driver table)."""
    table = build_table([Ioctl("NEWER", (Arg("handle", "u32"),), lambda f, handle: {}, "New.",
                               number=DRM_IOWR(0x40 + 0x30, Struct("s", (Field("handle", "u32"),))),
                               since="newer_feature")])
    monkeypatch.setattr(dev.drm, "ioctls", table)
    monkeypatch.setattr(type(dev.driver), "has", lambda self, feature: feature != "newer_feature")
    assert client.call(render, "NEWER", handle=1)[0] == -errno.EINVAL
    reply = text_on(table, render, "NEWER handle=1")
    assert reply.errname == "EINVAL" and "arrives with newer_feature" in reply.message


def text_on(table, file, line):
    return protocol.parse_reply(protocol.handle(table, file, line.encode()).line)


# -- sizes ---------------------------------------------------------------------------------


def test_bad_struct_pointer_is_efault_and_creates_nothing(dev, render, client):
    """CREATE_BO with its struct at an unmapped address is EFAULT; no BO, no page taken."""
    free = dev.pages.free_pages
    assert drm_ioctl(render, dev.ioctls["CREATE_BO"].cmd, 0xdead0000, client.mem) == -errno.EFAULT
    assert len(render.handles) == 0 and not list(dev.drm.iter_objects())
    assert dev.pages.free_pages == free


def test_a_shorter_struct_reads_zeros_for_the_new_fields(dev, render, client):
    """A 40-byte SUBMIT (before jm_ctx_handle) runs on the default context: the tail is zero-filled."""
    _, bo = client.call(render, "CREATE_BO", size=MiB)
    old = Struct("drm_panfrost_submit_1_4", tuple(f for f in dev.ioctls["SUBMIT"].struct if f.name not in
                                                  ("jm_ctx_handle", "pad")))
    assert old.size == 40
    handles = client.array([bo["handle"]])
    addr = client.mem.alloc(old.pack({"jc": 0x1000, "bo_handles": handles, "bo_handle_count": 1}))
    assert drm_ioctl(render, ioc(1, 0x64, 0x40, 40), addr, client.mem) == 0
    assert len(dev.driver.sched.jobs_in_flight()) == 1
    assert render.handles.lookup(bo["handle"]).is_active()


def test_a_longer_struct_gets_its_extra_bytes_back_unchanged(dev, render, client):
    """The kernel reads and writes the user's whole size; bytes past its struct come back as sent."""
    struct = dev.ioctls["GET_PARAM"].struct
    data = struct.pack({"param": 0}) + b"\xab" * 8
    addr = client.mem.alloc(data)
    assert drm_ioctl(render, ioc(3, 0x64, 0x44, 24), addr, client.mem) == 0
    out = client.mem.peek(addr, 24)
    assert struct.unpack(out[:16])["value"] == 0x7402 and out[16:] == b"\xab" * 8


def test_without_ioc_out_nothing_is_copied_back(dev, render, client):
    """A CREATE_BO sent as _IOW creates the BO but its handle and offset are not written back."""
    struct = dev.ioctls["CREATE_BO"].struct
    addr = client.mem.alloc(struct.pack({"size": MiB}))
    assert drm_ioctl(render, ioc(1, 0x64, 0x42, 24), addr, client.mem) == 0
    assert struct.unpack(client.mem.peek(addr, 24))["handle"] == 0
    assert len(render.handles) == 1


def test_without_ioc_in_the_kernel_reads_zeros(dev, render, client):
    """A CREATE_BO sent as _IOR reads nothing: size 0 is EINVAL, and nothing is created."""
    addr = client.mem.alloc(24)
    assert drm_ioctl(render, ioc(2, 0x64, 0x42, 24), addr, client.mem) == -errno.EINVAL
    assert len(render.handles) == 0


def test_a_failed_copy_out_is_efault_but_the_work_stands(dev, render, client):
    """Read-only struct memory: the BO is created (as in the kernel) and the answer is EFAULT."""
    struct = dev.ioctls["CREATE_BO"].struct
    addr = client.mem.alloc(struct.pack({"size": MiB}), writable=False)
    assert drm_ioctl(render, dev.ioctls["CREATE_BO"].cmd, addr, client.mem) == -errno.EFAULT
    assert len(render.handles) == 1
    dev.release(render)
    assert not list(dev.drm.iter_objects())  # released with the file: nothing leaks


# -- permissions ---------------------------------------------------------------------------


def test_flink_and_open_are_refused_on_render_nodes_in_both_doors(dev, render, client):
    """GEM_FLINK / GEM_OPEN have no DRM_RENDER_ALLOW: EACCES for render clients, text and binary."""
    _, bo = client.call(render, "CREATE_BO", size=MiB)
    assert client.call(render, "GEM_FLINK", handle=bo["handle"])[0] == -errno.EACCES
    assert client.call(render, "GEM_OPEN", name=1)[0] == -errno.EACCES
    assert text(dev, render, f"GEM_FLINK handle={bo['handle']}").errname == "EACCES"
    assert render.handles.lookup(bo["handle"]).name == 0


def test_unauthenticated_card0_clients_are_refused_until_authenticated(dev, master, client):
    """A second card0 client is unauthenticated: FLINK is EACCES until the master AUTH_MAGICs its token."""
    other = dev.open(0, pid=12, comm="app", uid=1000)
    _, bo = client.call(other, "CREATE_BO", size=MiB)
    assert client.call(other, "GEM_FLINK", handle=bo["handle"])[0] == -errno.EACCES
    assert text(dev, other, f"GEM_FLINK handle={bo['handle']}").errname == "EACCES"
    ret, magic = client.call(other, "GET_MAGIC")
    assert ret == 0 and magic["magic"] == 1
    assert client.call(other, "GET_MAGIC")[1]["magic"] == 1  # the same token every time
    assert client.call(other, "AUTH_MAGIC", magic=1)[0] == -errno.EACCES  # only the master may
    assert client.call(master, "AUTH_MAGIC", magic=1)[0] == 0
    assert client.call(master, "AUTH_MAGIC", magic=1)[0] == -errno.EINVAL  # a token works once
    ret, flink = client.call(other, "GEM_FLINK", handle=bo["handle"])
    assert ret == 0 and flink["name"] == 1
    ret, opened = client.call(master, "GEM_OPEN", name=1)
    assert ret == 0 and opened["size"] == MiB and opened["handle"] == 1


def test_root_clients_are_authenticated_at_open(dev, master, client):
    """uid 0 stands for CAP_SYS_ADMIN: authenticated without a magic."""
    root = dev.open(0, pid=13, comm="root", uid=0)
    _, bo = client.call(root, "CREATE_BO", size=MiB)
    assert client.call(root, "GEM_FLINK", handle=bo["handle"])[0] == 0


def test_master_drop_and_set(dev, master, client):
    """DROP_MASTER then SET_MASTER by the old master; others need CAP_SYS_ADMIN; EBUSY while taken."""
    other = dev.open(0, pid=12, comm="app", uid=1000)
    root = dev.open(0, pid=13, comm="root", uid=0)
    assert client.call(other, "DROP_MASTER")[0] == -errno.EACCES
    assert client.call(root, "DROP_MASTER")[0] == -errno.EINVAL  # root, but not master
    assert client.call(master, "DROP_MASTER")[0] == 0
    assert client.call(master, "DROP_MASTER")[0] == -errno.EINVAL
    assert client.call(other, "SET_MASTER")[0] == -errno.EACCES
    assert client.call(root, "SET_MASTER")[0] == 0
    assert client.call(master, "SET_MASTER")[0] == -errno.EBUSY
    assert client.call(master, "AUTH_MAGIC", magic=1)[0] == -errno.EACCES  # no longer master
    dev.release(root)
    assert client.call(master, "SET_MASTER")[0] == 0


def test_master_ioctls_are_refused_on_render_nodes(dev, render, client):
    """GET_MAGIC, GET_UNIQUE, SET_CLIENT_CAP, SET_MASTER have no DRM_RENDER_ALLOW."""
    for name in ("GET_MAGIC", "GET_UNIQUE", "SET_CLIENT_CAP", "SET_MASTER", "DROP_MASTER", "SET_VERSION"):
        assert client.call(render, name)[0] == -errno.EACCES, name


# -- core ioctls ---------------------------------------------------------------------------


def test_version_fills_buffers_and_writes_back_the_lengths(dev, render, client):
    """VERSION copies at most len bytes of each string (no NUL) and sets each len to the full length."""
    name, date = client.mem.alloc(4), client.mem.alloc(64)
    ret, v = client.call(render, "VERSION", name_len=4, name=name, date_len=64, date=date)
    assert ret == 0
    assert (v["version_major"], v["name_len"], v["date_len"], v["desc_len"]) == (1, 8, 8, 12)
    assert client.mem.peek(name, 4) == b"panf"
    assert client.mem.peek(date, 9) == b"20180908\0"
    assert v["desc"] == 0  # a NULL buffer gets only its length


def test_version_with_a_bad_buffer_is_efault(dev, render, client):
    """A name buffer pointing at unmapped memory is EFAULT."""
    assert client.call(render, "VERSION", name_len=8, name=0xdead0000)[0] == -errno.EFAULT


def test_get_cap_answers_a_render_only_gpu(dev, render, client):
    """PRIME 3, TIMESTAMP_MONOTONIC 1, SYNCOBJ 1 (Panfrost), SYNCOBJ_TIMELINE 0, others EOPNOTSUPP."""
    for cap, value in ((0x5, 3), (0x6, 1), (0x13, 1), (0x14, 0)):
        ret, out = client.call(render, "GET_CAP", capability=cap)
        assert (ret, out["value"]) == (0, value), cap
    assert client.call(render, "GET_CAP", capability=0x1)[0] == -errno.EOPNOTSUPP  # DUMB_BUFFER
    assert text(dev, render, "GET_CAP capability=6").fields == {"value": "1"}


def test_set_client_cap_needs_card0_and_modesetting(dev, master, render, client):
    """SET_CLIENT_CAP: EACCES on render nodes, EOPNOTSUPP on card0 of a non-modeset driver."""
    assert client.call(render, "SET_CLIENT_CAP", capability=2, value=1)[0] == -errno.EACCES
    assert client.call(master, "SET_CLIENT_CAP", capability=2, value=1)[0] == -errno.EOPNOTSUPP


def test_get_unique_is_empty_until_set_version(dev, master, client):
    """GET_UNIQUE is length 0 until SET_VERSION asks for interface 1.1+; then it is the bus id."""
    buf = client.mem.alloc(64)
    assert client.call(master, "GET_UNIQUE", unique_len=64, unique=buf)[1]["unique_len"] == 0
    ret, sv = client.call(master, "SET_VERSION", drm_di_major=1, drm_di_minor=4, drm_dd_major=-1,
                          drm_dd_minor=0)
    assert ret == 0 and (sv["drm_di_major"], sv["drm_di_minor"], sv["drm_dd_major"]) == (1, 4, 1)
    ret, u = client.call(master, "GET_UNIQUE", unique_len=4, unique=buf)
    assert ret == 0 and u["unique_len"] == 12 and client.mem.peek(buf, 4) == b"\0" * 4  # too small: untouched
    ret, u = client.call(master, "GET_UNIQUE", unique_len=64, unique=buf)
    assert client.mem.peek(buf, 12) == b"fde60000.gpu"


def test_set_client_name_reads_a_counted_string(dev, render, client):
    """SET_CLIENT_NAME takes name_len bytes at name; too long EINVAL, bad pointer EFAULT, shown in fdinfo."""
    addr = client.string("glmark2")
    assert client.call(render, "SET_CLIENT_NAME", name_len=7, name=addr)[0] == 0
    assert "drm-client-name:\tglmark2\n" in dev.fdinfo(render)
    assert client.call(render, "SET_CLIENT_NAME", name_len=65, name=addr)[0] == -errno.EINVAL
    assert client.call(render, "SET_CLIENT_NAME", name_len=7, name=0xdead0000)[0] == -errno.EFAULT
    assert client.call(render, "SET_CLIENT_NAME", name_len=3, name=client.string("a b"))[0] == -errno.EINVAL
    assert render.client_name == "glmark2"


def test_gem_close_in_binary(dev, render, client):
    """GEM_CLOSE drops a handle; an unknown one is EINVAL-free ENOENT; a non-zero pad EINVAL."""
    _, bo = client.call(render, "CREATE_BO", size=MiB)
    assert client.call(render, "GEM_CLOSE", handle=bo["handle"], pad=1)[0] == -errno.EINVAL
    assert client.call(render, "GEM_CLOSE", handle=bo["handle"])[0] == 0
    assert client.call(render, "GEM_CLOSE", handle=bo["handle"])[0] == -errno.ENOENT


def test_prime_is_refused_after_its_checks(dev, render, client):
    """PRIME_HANDLE_TO_FD: unknown handle ENOENT, bad flags EINVAL, else EOPNOTSUPP (no fds to install)."""
    _, bo = client.call(render, "CREATE_BO", size=MiB)
    assert client.call(render, "PRIME_HANDLE_TO_FD", handle=99)[0] == -errno.ENOENT
    assert client.call(render, "PRIME_HANDLE_TO_FD", handle=bo["handle"], flags=0x1000)[0] == -errno.EINVAL
    assert client.call(render, "PRIME_HANDLE_TO_FD", handle=bo["handle"], flags=0o2000002)[0] == -errno.EOPNOTSUPP
    assert client.call(render, "PRIME_FD_TO_HANDLE", fd=5)[0] == -errno.EOPNOTSUPP


def test_would_block_passes_through_the_binary_door():
    """WAIT_BO on the real clock raises WouldBlock out of drm_ioctl, for the bridge to wait on."""
    dev = make_device(clock="real")
    file = dev.open(128)
    client = BinaryClient()
    _, bo = client.call(file, "CREATE_BO", size=MiB)
    handles = client.array([bo["handle"]])
    assert client.call(file, "SUBMIT", jc=1, bo_handles=handles, bo_handle_count=1)[0] == 0
    with pytest.raises(WouldBlock):
        client.call(file, "WAIT_BO", handle=bo["handle"], timeout_ns=dev.clock.now_ns() + 10**12)


def test_a_device_without_a_driver_table_answers_the_core_ioctls():
    """drm_ioctl falls back to the core table: VERSION works, driver numbers are EINVAL."""
    from vdrm.drm.device import Driver, DrmDevice
    from vdrm.kernel.clock import VirtualClock
    from vdrm.kernel.printk import KernelLog
    from vdrm.mm.page_alloc import PageAllocator

    clock = VirtualClock()
    dev = DrmDevice(Driver(), pages=PageAllocator(4096), clock=clock, log=KernelLog(clock))
    file = dev.open(128)
    mem = FakeUserMemory()
    addr = mem.alloc(64)
    assert drm_ioctl(file, 0xC0406400, addr, mem) == 0
    assert drm_ioctl(file, 0xC0186442, addr, mem) == -errno.EINVAL


# -- the one dispatch ------------------------------------------------------------------------


def test_a_refused_call_never_reads_its_pointers(dev, render, client, monkeypatch):
    """EACCES comes before the user arrays are read: a bad pointer in a refused call is not EFAULT."""
    struct = Struct("s", (Field("list", "u64", pointer=UserArray("n")), Field("n", "u32")))
    table = build_table([Ioctl("CARD_ONLY", (Arg("list", "list"),), lambda f, list: {}, "x",
                               number=DRM_IOW(0x40, struct), flags=0)])
    monkeypatch.setattr(dev.drm, "ioctls", table)
    reads = client.mem.reads
    assert client.call(render, "CARD_ONLY", list=0xdead0000, n=4)[0] == -errno.EACCES
    assert client.mem.reads == reads + 1  # the struct, nothing behind it
    card = dev.open(0, pid=1, comm="x", uid=1000)
    assert client.call(card, "CARD_ONLY", list=0xdead0000, n=4)[0] == -errno.EFAULT


def test_dispatch_checks_flags_before_the_handler(dev, render):
    """A refused request never reaches its handler."""
    called = []
    ioctl = Ioctl("X", (), lambda f: called.append(f) or {}, "x", flags=DRM_AUTH | DRM_RENDER_ALLOW)
    assert dispatch(render, Request(ioctl, {})) == {}  # render clients pass DRM_AUTH
    ioctl = Ioctl("Y", (), lambda f: called.append(f) or {}, "y", flags=0)
    with pytest.raises(AccessDenied):
        dispatch(render, Request(ioctl, {}))
    assert called == [render]


# -- the table checks itself -----------------------------------------------------------------

_S = Struct("s", (Field("handle", "u32"), Field("pad", "u32")))


def _h(file, **kw):
    return {}


@pytest.mark.parametrize(("ioctls", "words"), [
    ([Ioctl("A", (Arg("handle", "u32"), Arg("pad", "u32", default=0)), _h, "", number=DRM_IOW(0x40, _S)),
      Ioctl("B", (Arg("handle", "u32"), Arg("pad", "u32", default=0)), _h, "", number=DRM_IOW(0x40, _S))],
     "number 0x40 is already A"),
    ([Ioctl("A", (Arg("handle", "u32"),), _h, "", number=DRM_IOW(0x40, _S))], "s.pad is an input field without"),
    ([Ioctl("A", (Arg("handle", "u32"), Arg("pad", "u32", default=0), Arg("extra", "u32", default=0)), _h, "",
            number=DRM_IOW(0x40, _S))], "no field of that name"),
    ([Ioctl("A", (Arg("handle", "u32", vdrm_only=True), Arg("pad", "u32", default=0)), _h, "",
            number=DRM_IOW(0x40, _S))], "vdrm-only, but"),
    ([Ioctl("A", (Arg("handle", "duration"), Arg("pad", "u32", default=0)), _h, "",
            number=DRM_IOW(0x40, _S))], "cannot travel in a u32"),
    ([Ioctl("A", (Arg("list", "u32"),), _h, "",
            number=DRM_IOW(0x40, Struct("t", (Field("list", "u64", pointer=UserArray("n")),
                                              Field("n", "u32")))))], "cannot travel in pointer"),
    ([Ioctl("A", (), _h, "", flags=0x400)], "flag bits"),
    ([Ioctl("A", (Arg("x", "u32", default="zero"),), _h, "")], "bad default"),
    ([Ioctl("A", (Arg("x", "u32", default=True),), _h, "")], "bad default"),
])
def test_build_table_refuses_inconsistent_declarations(ioctls, words):
    """Duplicate numbers, fields without arguments and the reverse, kind mismatches, bad flags and defaults."""
    with pytest.raises(ValueError, match=words):
        build_table(ioctls)


def test_the_real_table_builds_and_every_number_is_unique(dev):
    """Core + Panfrost + vdrm build into one table: every ioctl but the text-only SYNC_BO has a number,
    no two share one."""
    assert dev.ioctls["SYNC_BO"].number is None
    assert len(dev.ioctls.by_nr) == len(dev.ioctls) - 1 == len(CORE_IOCTLS) + 15
    with pytest.raises(InvalidArgument):
        dev.ioctls["CREATE_BO"].args[0].parse("8MB")


def test_help_shows_number_struct_and_flags(dev, render):
    """HELP verb=NAME shows the request code, the struct, its size and layout, and the flags."""
    fields = text(dev, render, "HELP verb=CREATE_BO").fields
    assert fields["cmd"] == "0xc0186442" and fields["struct"] == "drm_panfrost_create_bo"
    assert fields["size"] == "24" and fields["flags"] == "RENDER_ALLOW"
    assert fields["layout"].startswith("size:u32@0,flags:u32@4,handle:u32@8")
    assert text(dev, render, "HELP verb=GEM_FLINK").fields["flags"] == "AUTH"


def test_struct_pack_of_version_is_64_bytes():
    """drm_version is the LP64 64-byte struct libdrm sends."""
    assert pystruct.calcsize("<iii4xQQQQQQ") == 64
