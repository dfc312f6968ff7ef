"""Panthor's ioctls in binary: request numbers, struct layouts, object arrays, the same device as text."""

from __future__ import annotations

import errno

import pytest

from tests.drm.uapi_client import BinaryClient
from vdrm.panthor import uapi
from vdrm.panthor.drv import G610_GPU_INFO

from .conftest import MiB, make_device, ok


def _elems(client: BinaryClient, struct, items: list[dict[str, int]], stride: int | None = None) -> int:
    stride = struct.size if stride is None else stride
    data = b"".join(struct.pack(i).ljust(stride, b"\0")[:stride] for i in items)
    return client.mem.alloc(data or b"\0")


def test_request_numbers_are_the_headers():
    """DRM_IOCTL_PANTHOR_* are DRM_IOWR('d', 0x40 + id, struct) with the header's struct sizes."""
    dev = make_device()
    want = {"DEV_QUERY": (0x40, 16), "VM_CREATE": (0x41, 16), "VM_DESTROY": (0x42, 8), "VM_BIND": (0x43, 24),
            "VM_GET_STATE": (0x44, 8), "BO_CREATE": (0x45, 24), "BO_MMAP_OFFSET": (0x46, 16),
            "GROUP_CREATE": (0x47, 56), "GROUP_DESTROY": (0x48, 8), "GROUP_SUBMIT": (0x49, 24),
            "GROUP_GET_STATE": (0x4A, 16), "TILER_HEAP_CREATE": (0x4B, 40), "TILER_HEAP_DESTROY": (0x4C, 8),
            "BO_SET_LABEL": (0x4D, 16), "SET_USER_MMIO_OFFSET": (0x4E, 8), "BO_SYNC": (0x4F, 16),
            "BO_QUERY_INFO": (0x50, 16)}
    for name, (nr, size) in want.items():
        assert dev.ioctls[name].cmd == (3 << 30) | (size << 16) | (ord("d") << 8) | nr, name
    assert (uapi.VM_BIND_OP.size, uapi.QUEUE_CREATE.size, uapi.QUEUE_SUBMIT.size, uapi.GPU_INFO.size) == (48, 8, 40, 104)


def test_dev_query_gpu_info_in_binary():
    """A NULL pointer answers the size (104); a buffer gets the G610's struct; a short size is EINVAL."""
    dev = make_device()
    f = dev.open(128)
    c = BinaryClient()
    ret, out = c.call(f, "DEV_QUERY", type=0, size=0, pointer=0)
    assert (ret, out["size"]) == (0, 104)
    buf = c.mem.alloc(b"\xff" * 120)
    ret, out = c.call(f, "DEV_QUERY", type=0, size=120, pointer=buf)
    assert ret == 0 and out["size"] == 120
    info = uapi.GPU_INFO.unpack(c.mem.peek(buf, 104))
    assert info["gpu_id"] == 0xA8670000 and info["shader_present"] == G610_GPU_INFO["shader_present"]
    assert info["selected_coherency"] == 0  # padding before 1.6 (7.0)
    assert c.mem.peek(buf + 104, 16) == bytes(16)  # the rest of the user's buffer is cleared
    assert c.call(f, "DEV_QUERY", type=0, size=2, pointer=buf)[0] == -errno.EINVAL
    assert c.call(f, "DEV_QUERY", type=9, size=0, pointer=0)[0] == -errno.EINVAL
    assert c.call(f, "DEV_QUERY", type=0, size=104, pointer=0xdead0000)[0] == -errno.EFAULT


def test_dev_query_timestamp_only_from_6_11():
    """TIMESTAMP_INFO is EINVAL in 6.10 on both doors; in 7.0 GPU_INFO carries selected_coherency."""
    old = make_device(kernel=(6, 10))
    f = old.open(128)
    c = BinaryClient()
    assert c.call(f, "DEV_QUERY", type=2, size=0, pointer=0)[0] == -errno.EINVAL
    new = make_device(kernel=(7, 0))
    g = new.open(128)
    buf = c.mem.alloc(bytes(104))
    assert c.call(g, "DEV_QUERY", type=0, size=104, pointer=buf)[0] == 0
    assert uapi.GPU_INFO.unpack(c.mem.peek(buf, 104))["selected_coherency"] == 31


def test_a_whole_frame_in_binary_equals_the_text_door():
    """VM_CREATE, BO_CREATE, VM_BIND (two ops), GROUP_CREATE, GROUP_SUBMIT, a heap: same fdinfo as text."""
    text, binary = make_device(profiling=3), make_device(profiling=3)
    ft, fb = text.open(128, pid=3, comm="vk"), binary.open(128, pid=3, comm="vk")
    ok(text, ft, "VM_CREATE")
    ok(text, ft, "BO_CREATE size=2M")
    ok(text, ft, "VM_BIND vm_id=1 bo_handle=1 va=0x200000 size=1M")
    ok(text, ft, "VM_BIND vm_id=1 bo_handle=1 bo_offset=1M va=0x400000 size=1M")
    ok(text, ft, "GROUP_CREATE vm_id=1 queues=4096,8192 queue_priority=3")
    ok(text, ft, "GROUP_SUBMIT group_handle=1 queue_index=1")
    ok(text, ft, "TILER_HEAP_CREATE vm_id=1 initial_chunk_count=2 chunk_size=512K max_chunks=4")
    ok(text, ft, "TILER_OOM heap=0x10000")
    c = BinaryClient()
    ret, out = c.call(fb, "VM_CREATE")
    assert ret == 0 and out["id"] == 1 and out["user_va_range"] > 0
    ret, out = c.call(fb, "BO_CREATE", size=2 * MiB)
    assert (ret, out["handle"], out["size"]) == (0, 1, 2 * MiB)
    ops = _elems(c, uapi.VM_BIND_OP, [{"bo_handle": 1, "va": 0x200000, "size": MiB},
                                      {"bo_handle": 1, "bo_offset": MiB, "va": 0x400000, "size": MiB}])
    assert c.call(fb, "VM_BIND", vm_id=1, ops_stride=48, ops_count=2, ops=ops)[0] == 0
    queues = _elems(c, uapi.QUEUE_CREATE, [{"priority": 3, "ringbuf_size": 4096}, {"priority": 3, "ringbuf_size": 8192}])
    ret, out = c.call(fb, "GROUP_CREATE", queues_stride=8, queues_count=2, queues=queues, max_compute_cores=4,
                      max_fragment_cores=4, max_tiler_cores=1, priority=1, compute_core_mask=0x50005,
                      fragment_core_mask=0x50005, tiler_core_mask=1, vm_id=1)
    assert (ret, out["group_handle"]) == (0, 1)
    subs = _elems(c, uapi.QUEUE_SUBMIT, [{"queue_index": 1, "stream_addr": 0x1000000, "stream_size": 64}])
    assert c.call(fb, "GROUP_SUBMIT", group_handle=1, queue_submits_stride=40, queue_submits_count=1,
                  queue_submits=subs)[0] == 0
    ret, out = c.call(fb, "TILER_HEAP_CREATE", vm_id=1, initial_chunk_count=2, chunk_size=512 << 10, max_chunks=4,
                      target_in_flight=1)
    assert (ret, out["handle"]) == (0, 0x10000) and out["first_heap_chunk_gpu_va"] > out["tiler_heap_ctx_gpu_va"]
    ret, out = c.call(fb, "TILER_OOM", heap=0x10000, renderpasses_in_flight=1)
    assert ret == 0 and out["chunk_count"] == 3
    text.advance(10_000_000)
    binary.advance(10_000_000)
    assert text.fdinfo(ft) == binary.fdinfo(fb)
    assert text.debugfs_files()["vdrm-vm"]() == binary.debugfs_files()["vdrm-vm"]()


def test_object_array_strides():
    """A stride below the struct is EINVAL; a longer one with zeros is fine; non-zero extra bytes E2BIG."""
    dev = make_device()
    f = dev.open(128)
    c = BinaryClient()
    c.call(f, "VM_CREATE")
    c.call(f, "BO_CREATE", size=MiB)
    op = {"bo_handle": 1, "va": 0x200000, "size": 4096}
    short = _elems(c, uapi.VM_BIND_OP, [op], stride=32)
    assert c.call(f, "VM_BIND", vm_id=1, ops_stride=32, ops_count=1, ops=short)[0] == -errno.EINVAL
    longer = _elems(c, uapi.VM_BIND_OP, [op], stride=56)
    assert c.call(f, "VM_BIND", vm_id=1, ops_stride=56, ops_count=1, ops=longer)[0] == 0
    dirty = c.mem.alloc(uapi.VM_BIND_OP.pack(op) + b"\x01" + bytes(7))
    assert c.call(f, "VM_BIND", vm_id=1, ops_stride=56, ops_count=1, ops=dirty)[0] == -errno.E2BIG
    assert c.call(f, "VM_BIND", vm_id=1, ops_stride=48, ops_count=1, ops=0xdead0000)[0] == -errno.EFAULT


def test_sync_bind_stops_at_the_first_bad_op():
    """Synchronously, ops before a failing one stay done; asynchronously a bad op fails the whole ioctl first."""
    dev = make_device()
    f = dev.open(128)
    c = BinaryClient()
    c.call(f, "VM_CREATE")
    c.call(f, "BO_CREATE", size=MiB)
    good, bad = {"bo_handle": 1, "va": 0x200000, "size": 4096}, {"bo_handle": 7, "va": 0x300000, "size": 4096}
    ops = _elems(c, uapi.VM_BIND_OP, [good, bad])
    assert c.call(f, "VM_BIND", vm_id=1, ops_stride=48, ops_count=2, ops=ops)[0] == -errno.EINVAL
    assert [m.va for m in f.driver_priv.vms[1].mappings] == [0x200000]
    ops = _elems(c, uapi.VM_BIND_OP, [{**good, "va": 0x500000}, bad])
    assert c.call(f, "VM_BIND", vm_id=1, flags=1, ops_stride=48, ops_count=2, ops=ops)[0] == -errno.EINVAL
    assert [m.va for m in f.driver_priv.vms[1].mappings] == [0x200000]


@pytest.mark.parametrize("kernel,have", [((6, 15), False), ((6, 16), True)])
def test_bo_set_label_and_mmio_offset_follow_the_release(kernel, have):
    """BO_SET_LABEL (1.4) and SET_USER_MMIO_OFFSET (1.5) exist from 6.16; before, EINVAL on both doors."""
    dev = make_device(kernel=kernel)
    f = dev.open(128)
    c = BinaryClient()
    c.call(f, "BO_CREATE", size=4096)
    ret, _ = c.call(f, "BO_SET_LABEL", handle=1, label=c.string("vertex buffer"))
    assert ret == (0 if have else -errno.EINVAL)
    assert f.handles.lookup(1).label == ("vertex buffer" if have else None)
    assert c.call(f, "SET_USER_MMIO_OFFSET", offset=1 << 43)[0] == (0 if have else -errno.EINVAL)
    if have:
        assert c.call(f, "SET_USER_MMIO_OFFSET", offset=1 << 40)[0] == -errno.EINVAL
        assert c.call(f, "BO_SET_LABEL", handle=1, label=0)[0] == 0 and f.handles.lookup(1).label is None
        assert c.call(f, "BO_SET_LABEL", handle=1, label=c.string("x" * 5000))[0] == -errno.E2BIG
        assert c.call(f, "BO_SET_LABEL", handle=9, label=0)[0] == -errno.ENOENT
    assert dev.driver.version[:2] == ((1, 5) if have else (1, 3))


def test_bo_sync_and_query_info_arrive_in_7_0():
    """BO_SYNC, BO_QUERY_INFO and the WB_MMAP flag are 1.6 (7.0): EINVAL in 6.18, working in 7.0."""
    old, new = make_device(kernel=(6, 18)), make_device(kernel=(7, 0))
    c = BinaryClient()
    fo, fn = old.open(128), new.open(128)
    assert c.call(fo, "BO_QUERY_INFO", handle=1)[0] == -errno.EINVAL
    assert c.call(fo, "BO_CREATE", size=4096, flags=2)[0] == -errno.EINVAL
    assert c.call(fn, "BO_CREATE", size=4096, flags=2)[0] == 0
    ret, out = c.call(fn, "BO_QUERY_INFO", handle=1)
    assert (ret, out["create_flags"], out["extra_flags"]) == (0, 2, 0)
    ops = _elems(c, uapi.BO_SYNC_OP, [{"handle": 1, "type": 1, "offset": 0, "size": 4096}])
    assert c.call(fn, "BO_SYNC", ops_stride=24, ops_count=1, ops=ops)[0] == 0
    assert fn.handles.lookup(1).syncs == 1
    bad = _elems(c, uapi.BO_SYNC_OP, [{"handle": 1, "type": 5, "offset": 0, "size": 4096}])
    assert c.call(fn, "BO_SYNC", ops_stride=24, ops_count=1, ops=bad)[0] == -errno.EINVAL
    assert new.driver.version[:2] == (1, 6)
