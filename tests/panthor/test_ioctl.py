"""Panthor's ioctls: results, and the kernel's errno for each bad argument."""

from __future__ import annotations

import pytest

from vdrm.panthor.drv import G610_GPU_INFO

from .conftest import MiB, errno_of, make_device, ok, request


@pytest.fixture
def dev():
    return make_device()


@pytest.fixture
def file(dev):
    return dev.open(129 if dev.index else 128, pid=7, comm="vkcube", uid=1000)


def test_dev_query_gpu_info_is_the_g610(dev, file) -> None:
    """GPU_INFO answers the G610's registers and the struct's size (104 bytes)."""
    r = ok(dev, file, "DEV_QUERY type=GPU_INFO")
    assert r["size"] == 104 and r["gpu_id"] == 0xA8670000 and r["shader_present"] == G610_GPU_INFO["shader_present"]


def test_dev_query_types_follow_the_dialect() -> None:
    """TIMESTAMP_INFO exists from 6.11, GROUP_PRIORITIES_INFO from 6.12; before, EINVAL."""
    old = make_device(kernel=(6, 10))
    f = old.open(128)
    assert errno_of(old, f, "DEV_QUERY type=TIMESTAMP_INFO") == "EINVAL"
    new = make_device(kernel=(6, 12))
    g = new.open(128, uid=1000)
    assert ok(new, g, "DEV_QUERY type=TIMESTAMP_INFO")["timestamp_frequency"] == 24_000_000
    assert ok(new, g, "DEV_QUERY type=GROUP_PRIORITIES_INFO")["allowed_mask"] == 0b0011
    assert errno_of(make_device(kernel=(6, 11)), make_device(kernel=(6, 11)).open(128),
                    "DEV_QUERY type=GROUP_PRIORITIES_INFO") == "EINVAL"


def test_group_priorities_depend_on_privilege(dev) -> None:
    """An unprivileged client may use LOW and MEDIUM; root or DRM master all four."""
    user = dev.open(128, uid=1000)
    assert ok(dev, user, "DEV_QUERY type=GROUP_PRIORITIES_INFO")["allowed_mask"] == 0b0011
    root = dev.open(128, uid=0)
    assert ok(dev, root, "DEV_QUERY type=GROUP_PRIORITIES_INFO")["allowed_mask"] == 0b1111
    vm = ok(dev, user, "VM_CREATE")["id"]
    assert errno_of(dev, user, f"GROUP_CREATE vm_id={vm} priority=HIGH") == "EACCES"  # group_priority_permit


def test_vm_create_and_destroy(dev, file) -> None:
    """VM ids start at 1; flags must be 0; destroying an unknown id is EINVAL."""
    assert ok(dev, file, "VM_CREATE")["id"] == 1
    assert ok(dev, file, "VM_CREATE user_va_range=4G") == {"id": 2, "user_va_range": 4 << 30}
    assert errno_of(dev, file, "VM_CREATE flags=1") == "EINVAL"
    assert errno_of(dev, file, "VM_DESTROY id=9") == "EINVAL"
    assert errno_of(dev, file, "VM_DESTROY id=1 pad=1") == "EINVAL"
    assert ok(dev, file, "VM_DESTROY id=1") == {}
    assert errno_of(dev, file, "VM_GET_STATE vm_id=1") == "EINVAL"


def test_vm_bind_maps_unmaps_and_splits(dev, file) -> None:
    """MAP pins the BO's pages (resident), a partial UNMAP splits, a full UNMAP unpins."""
    vm = ok(dev, file, "VM_CREATE")["id"]
    bo = ok(dev, file, "BO_CREATE size=1M")["handle"]
    bo_obj = file.handles.lookup(bo)
    assert bo_obj.pages is None
    ok(dev, file, f"VM_BIND vm_id={vm} bo_handle={bo} va=0x200000 size=1M")
    assert bo_obj.pages is not None
    ok(dev, file, f"VM_BIND vm_id={vm} op=UNMAP va=0x240000 size=64K")
    assert [(m.va, m.size, m.bo_offset) for m in file.driver_priv.vms[vm].mappings] == [
        (0x200000, 0x40000, 0), (0x250000, 0xB0000, 0x50000)]
    ok(dev, file, f"VM_BIND vm_id={vm} op=UNMAP va=0x200000 size=1M")
    assert bo_obj.pages is None and bo_obj.refcount == 1


@pytest.mark.parametrize("line,errno", [
    ("VM_BIND vm_id=9 bo_handle=1 va=0x200000 size=4K", "EINVAL"),  # no such VM
    ("VM_BIND vm_id=1 bo_handle=7 va=0x200000 size=4K", "EINVAL"),  # no such BO
    ("VM_BIND vm_id=1 bo_handle=1 va=0x200100 size=4K", "EINVAL"),  # unaligned
    ("VM_BIND vm_id=1 bo_handle=1 va=0x200000 size=2M", "EINVAL"),  # past the BO's end
    ("VM_BIND vm_id=1 bo_handle=1 va=0x200000 size=4K syncs=1", "EINVAL"),  # syncs without ASYNC
    ("VM_BIND vm_id=1 op=SYNC_ONLY", "EINVAL"),  # sync-only without ASYNC
    ("VM_BIND vm_id=1 op=UNMAP bo_handle=1 va=0x200000 size=4K", "EINVAL"),  # UNMAP takes no BO
    ("VM_BIND vm_id=1 flags=2 bo_handle=1 va=0x200000 size=4K", "EINVAL"),  # unknown flag
])
def test_vm_bind_errnos(dev, file, line, errno) -> None:
    """Each malformed VM_BIND op fails with the kernel's errno and changes nothing."""
    ok(dev, file, "VM_CREATE")
    ok(dev, file, "BO_CREATE size=1M")
    assert errno_of(dev, file, line) == errno
    assert file.driver_priv.vms[1].mappings == []


def test_async_bind_failure_makes_the_vm_unusable() -> None:
    """An async MAP that runs out of memory returns 0 but leaves the VM unusable for MAPs."""
    dev = make_device(ram_size=16 * MiB)
    f = dev.open(128)
    vm = ok(dev, f, "VM_CREATE")["id"]
    big = ok(dev, f, "BO_CREATE size=15M")["handle"]
    hog = ok(dev, f, "BO_CREATE size=8M")["handle"]
    ok(dev, f, f"VM_BIND vm_id={vm} bo_handle={hog} va=0x10000000 size=8M")
    assert errno_of(dev, f, f"VM_BIND vm_id={vm} bo_handle={big} va=0x20000000 size=15M") == "ENOMEM"
    assert ok(dev, f, f"VM_GET_STATE vm_id={vm}")["state"] == 0
    assert ok(dev, f, f"VM_BIND vm_id={vm} flags=ASYNC bo_handle={big} va=0x20000000 size=15M")["state"] == 1
    assert errno_of(dev, f, f"VM_BIND vm_id={vm} bo_handle={hog} va=0x30000000 size=4K") == "EINVAL"
    ok(dev, f, f"VM_BIND vm_id={vm} op=UNMAP va=0x10000000 size=8M")  # UNMAP still runs
    assert ok(dev, f, "VM_BIND vm_id=1 flags=ASYNC op=SYNC_ONLY syncs=1")["state"] == 1


def test_bo_create_and_mmap_offset(dev, file) -> None:
    """Sizes round up to pages; exclusive VMs must exist and bind nowhere else; every BO has an mmap offset."""
    assert ok(dev, file, "BO_CREATE size=5000")["size"] == 8192
    assert errno_of(dev, file, "BO_CREATE size=0") == "EINVAL"
    assert errno_of(dev, file, "BO_CREATE size=4K flags=2") == "EINVAL"
    assert errno_of(dev, file, "BO_CREATE size=4K exclusive_vm_id=3") == "EINVAL"
    vm = ok(dev, file, "VM_CREATE")["id"]
    other = ok(dev, file, "VM_CREATE")["id"]
    private = ok(dev, file, f"BO_CREATE size=4K flags=NO_MMAP exclusive_vm_id={vm}")["handle"]
    assert ok(dev, file, f"BO_MMAP_OFFSET handle={private}")["offset"] > 0  # the mmap itself would fail
    assert errno_of(dev, file, "BO_CREATE size=4K flags=WB_MMAP") == "EINVAL"  # 1.6 (7.0) only
    assert errno_of(dev, file, f"VM_BIND vm_id={other} bo_handle={private} va=0x100000 size=4K") == "EINVAL"
    ok(dev, file, f"VM_BIND vm_id={vm} bo_handle={private} va=0x100000 size=4K")
    assert ok(dev, file, "BO_MMAP_OFFSET handle=1")["offset"] > 0
    assert errno_of(dev, file, "BO_MMAP_OFFSET handle=99") == "ENOENT"


def test_groups(dev, file) -> None:
    """Groups need a VM, valid queues and core masks; destroyed or unknown handles are EINVAL."""
    assert errno_of(dev, file, "GROUP_CREATE vm_id=1") == "EINVAL"
    vm = ok(dev, file, "VM_CREATE")["id"]
    assert errno_of(dev, file, f"GROUP_CREATE vm_id={vm} queues=3000") == "EINVAL"
    assert errno_of(dev, file, f"GROUP_CREATE vm_id={vm} queues=") == "EINVAL"
    assert errno_of(dev, file, f"GROUP_CREATE vm_id={vm} compute_core_mask=0x100") == "EINVAL"
    assert errno_of(dev, file, f"GROUP_CREATE vm_id={vm} queue_priority=16") == "EINVAL"
    g = ok(dev, file, f"GROUP_CREATE vm_id={vm} queues=4096,65536")["group_handle"]
    assert ok(dev, file, f"GROUP_GET_STATE group_handle={g}") == {"state": 0, "fatal_queues": 0}
    assert errno_of(dev, file, f"GROUP_SUBMIT group_handle={g} queue_index=2") == "EINVAL"
    assert errno_of(dev, file, f"GROUP_SUBMIT group_handle={g} stream_addr=0x1010") == "EINVAL"
    assert errno_of(dev, file, f"GROUP_SUBMIT group_handle={g} stream_size=60") == "EINVAL"
    ok(dev, file, f"GROUP_DESTROY group_handle={g}")
    assert errno_of(dev, file, f"GROUP_DESTROY group_handle={g}") == "EINVAL"
    assert errno_of(dev, file, f"GROUP_GET_STATE group_handle={g}") == "EINVAL"


def test_a_group_whose_vm_died_takes_no_jobs(dev, file) -> None:
    """Destroying the VM under a group marks it fatally faulted: submits are ECANCELED."""
    vm = ok(dev, file, "VM_CREATE")["id"]
    g = ok(dev, file, f"GROUP_CREATE vm_id={vm}")["group_handle"]
    ok(dev, file, f"VM_DESTROY id={vm}")
    assert ok(dev, file, f"GROUP_GET_STATE group_handle={g}")["state"] == 2
    assert errno_of(dev, file, f"GROUP_SUBMIT group_handle={g}") == "ECANCELED"


def test_queue_jobs_run_in_order(dev, file) -> None:
    """A queue runs its jobs one after another; a second queue runs alongside."""
    vm = ok(dev, file, "VM_CREATE")["id"]
    g = ok(dev, file, f"GROUP_CREATE vm_id={vm} queues=4096,4096")["group_handle"]
    assert ok(dev, file, f"GROUP_SUBMIT group_handle={g} duration=3ms") == {"start_ns": 0, "end_ns": 3_000_000}
    assert ok(dev, file, f"GROUP_SUBMIT group_handle={g} duration=2ms")["end_ns"] == 5_000_000
    assert ok(dev, file, f"GROUP_SUBMIT group_handle={g} queue_index=1 duration=1ms")["end_ns"] == 1_000_000


def test_tiler_heap_grows_one_chunk_per_oom_up_to_max_chunks(dev, file) -> None:
    """A heap starts with initial_chunk_count chunks, grows one per TILER_OOM, ENOMEM at max_chunks."""
    vm = ok(dev, file, "VM_CREATE")["id"]
    r = ok(dev, file, f"TILER_HEAP_CREATE vm_id={vm} initial_chunk_count=2 chunk_size=1M max_chunks=4")
    handle = r["handle"]
    assert handle == vm << 16
    heap = file.driver_priv.vms[vm].heaps.heaps[0]
    assert r["first_heap_chunk_gpu_va"] == heap.chunks[0] and heap.chunk_count == 2
    grown = ok(dev, file, f"TILER_OOM heap={handle}")
    assert grown["chunk_count"] == 3
    assert grown["new_chunk_gpu_va"] == (heap.chunks[0] & ~0xFFF) | ((1 << 20) >> 12)
    assert errno_of(dev, file, f"TILER_OOM heap={handle} renderpasses_in_flight=2") == "ENOMEM"
    ok(dev, file, f"TILER_OOM heap={handle}")
    assert errno_of(dev, file, f"TILER_OOM heap={handle}") == "ENOMEM"
    assert errno_of(dev, file, f"TILER_OOM heap={handle + 1}") == "EINVAL"
    ok(dev, file, f"TILER_HEAP_DESTROY handle={handle}")
    assert errno_of(dev, file, f"TILER_HEAP_DESTROY handle={handle}") == "EINVAL"


@pytest.mark.parametrize("args", ["initial_chunk_count=0", "chunk_size=64K", "chunk_size=16M",
                                  "chunk_size=130K", "initial_chunk_count=5 max_chunks=4",
                                  "target_in_flight=0", "vm_id=5"])
def test_tiler_heap_create_errnos(dev, file, args) -> None:
    """panthor_heap_create's argument rules: each violation is EINVAL."""
    ok(dev, file, "VM_CREATE")
    line = "TILER_HEAP_CREATE " + ("" if "vm_id" in args else "vm_id=1 ") + args
    assert errno_of(dev, file, line) == "EINVAL"


@pytest.mark.parametrize("backing", ["sparse", "dense"])
def test_heap_backings_count_the_same_but_cost_differently(backing) -> None:
    """Sparse and dense chunks give the same fdinfo; both free every page on close."""
    dev = make_device(heap_backing=backing)
    f = dev.open(128)
    free = dev.pages.free_pages
    ok(dev, f, "VM_CREATE")
    ok(dev, f, "TILER_HEAP_CREATE vm_id=1 initial_chunk_count=3 chunk_size=2M max_chunks=8")
    assert "panthor-resident-memory:\t6152 KiB\n" in dev.fdinfo(f)  # 3 chunks + the 8 KiB contexts
    assert dev.pages.free_pages == free - (6 << 20 >> 12) - 2
    dev.release(f)
    assert dev.pages.free_pages == free
