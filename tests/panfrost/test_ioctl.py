"""Panfrost ioctls: the kernel's argument rules, errnos and results (reference 3.2)."""

from __future__ import annotations

import pytest

from vdrm.errors import (Busy, InvalidArgument, NoDevice, NoEntry, NotImplementedByKernel, TimedOut,
                         TooBig, WouldBlock)
from vdrm.panfrost.gem import BO_HEAP, BO_NOEXEC, BO_WB_MMAP, MADV_DONTNEED, MADV_WILLNEED
from vdrm.panfrost.drv import PARAMS
from vdrm.panfrost.ioctl import DERIVED

from .conftest import MiB, ioctl, make_device

HEAP = BO_HEAP | BO_NOEXEC


def test_first_heap_bo_lands_at_32_mib(render):
    """The issue's example: an 8 MiB heap on a fresh client is handle 1 at VA 0x2000000."""
    assert ioctl(render, "CREATE_BO", size=8 * MiB, flags=HEAP) == {"handle": 1, "offset": 0x2000000}


@pytest.mark.parametrize("size, flags, pad, why", [
    (0, 0, 0, "size must be non-zero"),
    (4096, 0, 1, "pad"),
    (4096, 0x8, 0, "unknown flag"),
    (4096, BO_WB_MMAP, 0, "WB_MMAP"),
    (2 * MiB, BO_HEAP, 0, "HEAP needs NOEXEC"),
    (1 << 32, 0, 0, "u32"),
])
def test_create_bo_rejects_what_the_kernel_rejects(render, size, flags, pad, why):
    """Every CREATE_BO refusal of the kernel is EINVAL with a message naming the cause."""
    with pytest.raises(InvalidArgument, match=why):
        ioctl(render, "CREATE_BO", size=size, flags=flags, pad=pad)
    assert len(render.handles) == 0


def test_heap_size_rounds_up_to_2_mib_and_is_not_resident(render):
    """A 1-byte heap becomes a 2 MiB BO with nothing backed until a fault."""
    ioctl(render, "CREATE_BO", size=1, flags=HEAP)
    bo = render.handles.lookup(1)
    assert (bo.size, bo.rss(), bo.status() & 1) == (2 * MiB, 0, 0)


def test_regular_bo_is_resident_and_mapped_at_creation(dev, render):
    """A non-heap BO is backed and GPU-mapped as soon as its handle exists."""
    free_before = dev.pages.free_pages
    ioctl(render, "CREATE_BO", size=5000, flags=BO_NOEXEC)
    bo = render.handles.lookup(1)
    assert bo.size == 8192 and bo.rss() == 8192
    assert dev.pages.free_pages == free_before - 2
    assert render.driver_priv.mmu.is_mapped(0x2000000 + 4096)


def test_handles_are_lowest_free_and_reused(render):
    """Handles start at 1 and a closed handle's id is handed out again first."""
    for _ in range(3):
        ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    ioctl(render, "GEM_CLOSE", handle=2)
    assert ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)["handle"] == 2
    assert ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)["handle"] == 4


def test_gem_close_unknown_handle_is_enoent(render):
    """Closing a handle that does not exist is ENOENT."""
    with pytest.raises(NoEntry):
        ioctl(render, "GEM_CLOSE", handle=7)


def test_closing_the_last_handle_returns_the_pages(dev, render):
    """A BO dies with its last handle and its pages go back to the allocator."""
    free_before = dev.pages.free_pages
    ioctl(render, "CREATE_BO", size=4 * MiB, flags=BO_NOEXEC)
    ioctl(render, "GEM_CLOSE", handle=1)
    assert dev.pages.free_pages == free_before
    assert list(dev.drm.iter_objects()) == []


def test_mmap_bo_offsets_are_device_wide_from_4_gib(dev, render):
    """Fake mmap offsets start at 0x1_0000_0000 and do not overlap across clients."""
    other = dev.open(128)
    ioctl(render, "CREATE_BO", size=8192, flags=BO_NOEXEC)
    ioctl(other, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    first = ioctl(render, "MMAP_BO", handle=1)["offset"]
    second = ioctl(other, "MMAP_BO", handle=1)["offset"]
    assert first == 0x1_0000_0000
    assert second >= first + 8192


def test_mmap_bo_refuses_heaps_and_flags(render):
    """MMAP_BO is EINVAL for a heap BO and for non-zero flags, ENOENT for a bad handle."""
    ioctl(render, "CREATE_BO", size=2 * MiB, flags=HEAP)
    with pytest.raises(InvalidArgument, match="heap"):
        ioctl(render, "MMAP_BO", handle=1)
    with pytest.raises(InvalidArgument, match="flags"):
        ioctl(render, "MMAP_BO", handle=1, flags=1)
    with pytest.raises(NoEntry):
        ioctl(render, "MMAP_BO", handle=9)


def test_get_bo_offset_is_this_files_va(dev, render):
    """GET_BO_OFFSET answers the GPU VA of the BO in the calling file."""
    ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    assert ioctl(render, "GET_BO_OFFSET", handle=1) == {"offset": 0x2000000}
    with pytest.raises(NoEntry):
        ioctl(render, "GET_BO_OFFSET", handle=2)


def test_flink_and_open_share_one_object_across_files(dev, render):
    """GEM_OPEN by flink name gives another file a handle to the same object, mapped in its VA."""
    ioctl(render, "CREATE_BO", size=4 * MiB, flags=BO_NOEXEC)
    name = ioctl(render, "GEM_FLINK", handle=1)["name"]
    assert ioctl(render, "GEM_FLINK", handle=1)["name"] == name  # idempotent
    other = dev.open(128)
    got = ioctl(other, "GEM_OPEN", name=name)
    assert got == {"handle": 1, "size": 4 * MiB}
    bo = render.handles.lookup(1)
    assert other.handles.lookup(1) is bo and bo.handle_count == 2
    assert ioctl(other, "GET_BO_OFFSET", handle=1) == {"offset": 0x2000000}
    with pytest.raises(NoEntry):
        ioctl(other, "GEM_OPEN", name=name + 1)


def test_flink_name_dies_with_the_last_handle(dev, render):
    """Once every handle is closed the flink name no longer opens anything."""
    ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    name = ioctl(render, "GEM_FLINK", handle=1)["name"]
    ioctl(render, "GEM_CLOSE", handle=1)
    with pytest.raises(NoEntry):
        ioctl(dev.open(128), "GEM_OPEN", name=name)


def test_madvise_dontneed_needs_a_single_mapping_of_the_caller(dev, render):
    """DONTNEED is refused for a BO another file also maps; WILLNEED is always fine."""
    ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    other = dev.open(128)
    ioctl(other, "GEM_OPEN", name=ioctl(render, "GEM_FLINK", handle=1)["name"])
    with pytest.raises(InvalidArgument, match="DONTNEED"):
        ioctl(render, "MADVISE", handle=1, madv=MADV_DONTNEED)
    assert ioctl(render, "MADVISE", handle=1, madv=MADV_WILLNEED) == {"retained": 1}


def test_shrinker_purges_dontneed_bos_before_allocation_fails(render):
    """When RAM runs short, DONTNEED BOs are purged and MADVISE then reports retained=0."""
    dev = render.dev
    bo_size = dev.pages.total_pages * 4096 // 5 * 3 // 4096 * 4096  # 60% of RAM each
    ioctl(render, "CREATE_BO", size=bo_size, flags=BO_NOEXEC)
    ioctl(render, "MADVISE", handle=1, madv=MADV_DONTNEED)
    ioctl(render, "CREATE_BO", size=bo_size, flags=BO_NOEXEC)  # only fits after a purge
    assert ioctl(render, "MADVISE", handle=1, madv=MADV_WILLNEED) == {"retained": 0}
    assert "Purging" in dev.log.text()


def test_allocation_beyond_ram_is_enomem_and_leaks_nothing(render):
    """A BO larger than the emulated RAM fails with ENOMEM and leaves no handle or pages."""
    from vdrm.errors import OutOfMemory

    dev = render.dev
    free_before = dev.pages.free_pages
    with pytest.raises(OutOfMemory):
        ioctl(render, "CREATE_BO", size=dev.pages.total_pages * 4096 + 4096, flags=BO_NOEXEC)
    assert dev.pages.free_pages == free_before and len(render.handles) == 0


def test_get_param_reports_the_mali_g52(render):
    """GET_PARAM answers the G52's product id, 3 job slots and the AS mask; unknown ids are EINVAL."""
    assert ioctl(render, "GET_PARAM", param=PARAMS["GPU_PROD_ID"])["value"] == 0x7402
    assert ioctl(render, "GET_PARAM", param=PARAMS["JS_PRESENT"])["value"] == 0x7
    assert ioctl(render, "GET_PARAM", param=PARAMS["AS_PRESENT"])["value"] == 0xFF
    newer = {"ALLOWED_JM_CTX_PRIORITIES", "SELECTED_COHERENCY"}  # 6.19 and 7.0: not in the default 6.18
    for name, param in PARAMS.items():
        if name in newer:
            with pytest.raises(InvalidArgument):
                ioctl(render, "GET_PARAM", param=param)
        else:
            ioctl(render, "GET_PARAM", param=param)
    with pytest.raises(InvalidArgument):
        ioctl(render, "GET_PARAM", param=len(PARAMS))
    with pytest.raises(InvalidArgument):
        ioctl(render, "GET_PARAM", param=0, pad=1)


def test_set_label_bo_limits_and_clears(render):
    """A label up to 4095 bytes is stored, a longer one is E2BIG, leaving it out clears it."""
    ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    bo = render.handles.lookup(1)
    ioctl(render, "SET_LABEL_BO", handle=1, label="x" * 4095)
    assert len(bo.label) == 4095
    with pytest.raises(TooBig):
        ioctl(render, "SET_LABEL_BO", handle=1, label="x" * 4096)
    ioctl(render, "SET_LABEL_BO", handle=1, label="")
    assert bo.label == ""
    ioctl(render, "SET_LABEL_BO", handle=1)
    assert bo.label is None


def test_submit_validates_like_the_kernel(render):
    """SUBMIT: jc 0 and bad requirements are EINVAL, out_sync is ENODEV, bad handles ENOENT."""
    with pytest.raises(InvalidArgument, match="jc"):
        ioctl(render, "SUBMIT", jc=0)
    with pytest.raises(InvalidArgument, match="requirement"):
        ioctl(render, "SUBMIT", requirements=4)
    with pytest.raises(NoDevice):
        ioctl(render, "SUBMIT", out_sync=3)
    with pytest.raises(NoEntry):
        ioctl(render, "SUBMIT", bo_handles=[5])
    ioctl(render, "SUBMIT", jm_ctx_handle=2, pad=1)  # 6.18's struct ends before these fields
    f = make_device(kernel=(6, 19)).open(128)
    with pytest.raises(InvalidArgument, match="JM context"):
        ioctl(f, "SUBMIT", jm_ctx_handle=2)


def test_wait_bo_polls_times_out_and_blocks(dev, render):
    """WAIT_BO: idle BO ok; busy BO EBUSY on a poll; virtual clock ETIMEDOUT; real clock WouldBlock."""
    ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    assert ioctl(render, "WAIT_BO", handle=1) == {}
    ioctl(render, "SUBMIT", bo_handles=[1], duration=5_000_000)
    with pytest.raises(Busy):
        ioctl(render, "WAIT_BO", handle=1, timeout_ns=0)
    with pytest.raises(TimedOut):
        ioctl(render, "WAIT_BO", handle=1, timeout_ns=dev.clock.now_ns() + 10**9)
    dev.clock.advance(5_000_000)
    assert ioctl(render, "WAIT_BO", handle=1, timeout_ns=0) == {}

    real = make_device(clock="real")
    f = real.open(128)
    ioctl(f, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    ioctl(f, "SUBMIT", bo_handles=[1], duration=10**9)
    with pytest.raises(WouldBlock) as blocked:
        ioctl(f, "WAIT_BO", handle=1, timeout_ns=real.clock.now_ns() + 5 * 10**9)
    assert blocked.value.until_ns <= real.clock.now_ns() + 10**9


def test_jm_contexts():
    """JM_CTX_CREATE (6.19) hands out handles from 1; the default context 0 cannot be destroyed."""
    render = make_device(kernel=(6, 19)).open(128)
    assert ioctl(render, "JM_CTX_CREATE")["handle"] == 1
    with pytest.raises(InvalidArgument):
        ioctl(render, "JM_CTX_DESTROY", handle=0)
    ioctl(render, "JM_CTX_DESTROY", handle=1)
    with pytest.raises(InvalidArgument):
        ioctl(render, "JM_CTX_DESTROY", handle=1)


def test_perfcnt_is_enosys(render):
    """The unstable perfcnt ioctls are refused as without the module parameter."""
    with pytest.raises(NotImplementedByKernel):
        ioctl(render, "PERFCNT_ENABLE")


def test_client_ids_are_global_and_increasing(dev):
    """Every open, on either node, takes the next drm-client-id from 1."""
    ids = [dev.open(m).client_id for m in (128, 0, 128)]
    assert ids == [1, 2, 3]


def test_version_and_client_name(render):
    """VERSION names the driver; SET_CLIENT_NAME accepts printable names and refuses spaces."""
    assert ioctl(render, "VERSION")["name"] == "panfrost"
    ioctl(render, "SET_CLIENT_NAME", name="compositor")
    assert render.client_name == "compositor"
    with pytest.raises(InvalidArgument):
        ioctl(render, "SET_CLIENT_NAME", name="a b")


def test_release_frees_everything(dev):
    """Closing a client with BOs, heaps and jobs in flight returns every page."""
    free_before = dev.pages.free_pages
    f = dev.open(128)
    ioctl(f, "CREATE_BO", size=4 * MiB, flags=BO_NOEXEC)
    ioctl(f, "CREATE_BO", size=16 * MiB, flags=HEAP)
    ioctl(f, "SUBMIT", bo_handles=[1, 2], duration=10**6, touch=[0x2000000 + 4 * MiB])
    ioctl(f, "SUBMIT", bo_handles=[1], duration=10**6, engine=DERIVED)
    dev.release(f)
    dev.clock.advance(10**7)
    dev.update()
    assert dev.pages.free_pages == free_before
    assert list(dev.drm.iter_objects()) == []


def test_wait_bo_that_sleeps_past_its_deadline_times_out():
    """A blocked WAIT_BO resumed after its deadline is ETIMEDOUT; a fresh late deadline is EBUSY."""
    dev = make_device()
    f = dev.open(128)
    ioctl(f, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    ioctl(f, "SUBMIT", bo_handles=[1], duration=10**9)
    dev.clock.virtual = False  # behave like the real clock for the first call
    deadline = dev.clock.now_ns() + 10**6
    with pytest.raises(WouldBlock):
        ioctl(f, "WAIT_BO", handle=1, timeout_ns=deadline)
    dev.clock.advance(2 * 10**6)
    with pytest.raises(TimedOut):
        ioctl(f, "WAIT_BO", handle=1, timeout_ns=deadline)
    with pytest.raises(Busy):
        ioctl(f, "WAIT_BO", handle=1, timeout_ns=deadline)


def test_advance_moves_the_virtual_clock_and_runs_jobs(dev, render):
    """ADVANCE steps the virtual clock: a 2 ms job finishes and its BO goes idle."""
    ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    ioctl(render, "SUBMIT", bo_handles=[1], duration=2_000_000)
    assert ioctl(render, "ADVANCE", by=2_000_000) == {"now_ns": 2_000_000, "step_ns": 2_000_000}
    assert ioctl(render, "WAIT_BO", handle=1) == {}
    with pytest.raises(InvalidArgument, match="real"):
        ioctl(make_device(clock="real").open(128), "ADVANCE", by=1)
