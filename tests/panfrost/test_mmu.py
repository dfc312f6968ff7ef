"""The GPU MMU: heap faults, terminal faults and their log text, AS slots (reference 3.5)."""

from __future__ import annotations

import pytest

from vdrm.errors import InvalidArgument, NoEntry, OutOfMemory
from vdrm.panfrost.gem import BO_HEAP, BO_NOEXEC
from vdrm.panfrost.mmu import (AsSlots, access_type_name, exception_name, fault_status,
                               unhandled_fault_message)

from .conftest import MiB, ioctl, make_device

HEAP = BO_HEAP | BO_NOEXEC


def heap(file, size=8 * MiB):
    return ioctl(file, "CREATE_BO", size=size, flags=HEAP)


def test_fault_populates_the_2_mib_block_around_the_address(render):
    """A fault anywhere in a heap block backs that whole block and grows rss by 2 MiB."""
    base = heap(render)["offset"]
    got = ioctl(render, "FAULT", addr=base + 2 * MiB + 12345)
    assert got == {"as": 0, "addr": base + 2 * MiB, "populated": 1}
    bo = render.handles.lookup(1)
    assert bo.heap_rss_size == 2 * MiB and bo.populated_blocks() == [1]
    assert render.driver_priv.mmu.is_mapped(base + 2 * MiB + 4 * MiB - 1 - 2 * MiB)


def test_repeated_fault_is_a_silent_success(dev, render):
    """Faulting an already populated block changes nothing and allocates nothing."""
    base = heap(render)["offset"]
    ioctl(render, "FAULT", addr=base)
    free = dev.pages.free_pages
    assert ioctl(render, "FAULT", addr=base + 4096)["populated"] == 0
    assert dev.pages.free_pages == free
    assert render.handles.lookup(1).heap_rss_size == 2 * MiB


@pytest.mark.parametrize("backing", ["sparse", "dense"])
def test_both_backings_give_the_same_numbers(backing):
    """Sparse and dense heaps report the same rss and fdinfo; only bookkeeping differs."""
    dev = make_device(heap_backing=backing)
    f = dev.open(128)
    base = heap(f, 64 * MiB)["offset"]
    for block in (0, 5, 31):
        ioctl(f, "FAULT", addr=base + block * 2 * MiB)
    bo = f.handles.lookup(1)
    assert bo.heap_rss_size == 6 * MiB and bo.populated_blocks() == [0, 5, 31]
    assert "drm-resident-memory:\t6 MiB\n" in dev.fdinfo(f)
    assert bo.kernel_bookkeeping_bytes() > 0


def test_dense_bookkeeping_covers_the_whole_bo_and_sparse_only_what_is_populated():
    """One fault into a 256 MiB heap costs dense a 512 KiB page array, sparse far less."""
    costs = {}
    for backing in ("sparse", "dense"):
        dev = make_device(heap_backing=backing, fragmentation=0.0)
        f = dev.open(128)
        ioctl(f, "FAULT", addr=heap(f, 256 * MiB)["offset"])
        costs[backing] = f.handles.lookup(1).kernel_bookkeeping_bytes()
    assert costs["dense"] >= 8 * (256 * MiB // 4096)
    assert costs["sparse"] < costs["dense"] // 50


def test_fault_outside_any_bo_is_terminal_with_the_kernel_message(dev, render):
    """A fault where no BO lives logs the 7-line block, marks the AS faulty, and is ENOENT."""
    with pytest.raises(NoEntry, match="no BO"):
        ioctl(render, "FAULT", addr=0x1234567)
    log = dev.log.text()
    lines = [line.split("] ", 1)[1] for line in log.splitlines()]
    assert lines == [
        "panfrost fde60000.gpu: Unhandled Page fault in AS0 at VA 0x0000000001234567",
        "Reason: TODO",
        "raw fault status: 0x3C3",
        "decoded fault status: SLAVE FAULT",
        "exception type 0xC3: TRANSLATION_FAULT_3",
        "access type 0x3: WRITE",
        "source id 0x0",
    ]
    assert dev.driver.slots.is_faulty(0)


def test_fault_in_a_non_heap_bo_warns_with_the_mapping_start(dev, render):
    """A fault in a regular BO prints 'matching BO is not heap type' with the BO's VA, then the block."""
    ioctl(render, "CREATE_BO", size=4 * MiB, flags=BO_NOEXEC)
    render.driver_priv.mmu.unmap(0x2000000)  # make the address fault despite the BO
    with pytest.raises(InvalidArgument, match="not a heap"):
        ioctl(render, "FAULT", addr=0x2000000 + 8192)
    text = dev.log.text()
    assert "matching BO is not heap type (GPU VA = 2000000)\n" in text
    assert "Unhandled Page fault in AS0 at VA 0x0000000002002000" in text


def test_a_faulty_as_is_reenabled_on_next_use(dev, render):
    """After a terminal fault the next as_get of the same context clears the faulty bit."""
    with pytest.raises(NoEntry):
        ioctl(render, "FAULT", addr=0x100)
    base = heap(render)["offset"]
    assert ioctl(render, "FAULT", addr=base)["populated"] == 1
    assert not dev.driver.slots.is_faulty(0)


def test_heap_fault_without_memory_is_terminal_and_leaks_nothing():
    """A heap fault that cannot get 2 MiB is ENOMEM, terminal, and leaves rss and RAM unchanged."""
    dev = make_device(ram_size=16 * MiB)
    f = dev.open(128)
    base = heap(f, 32 * MiB)["offset"]
    faulted = 0
    with pytest.raises(OutOfMemory):
        for block in range(16):
            ioctl(f, "FAULT", addr=base + block * 2 * MiB)
            faulted += 1
    bo = f.handles.lookup(1)
    assert bo.heap_rss_size == faulted * 2 * MiB
    assert dev.pages.total_pages - dev.pages.free_pages == faulted * 512
    assert "Unhandled Page fault" in dev.log.text()


def test_non_translation_faults_are_not_handled(render):
    """A permission fault inside a heap is terminal even though a heap BO is there."""
    base = heap(render)["offset"]
    with pytest.raises(InvalidArgument, match="not a translation fault"):
        ioctl(render, "FAULT", addr=base, exception=0xC8)
    assert render.handles.lookup(1).heap_rss_size == 0


def test_message_decoding():
    """Exception names, holes, access types and the decoder bit decode as the kernel does."""
    assert exception_name(0xC5) == "Unknown exception type"
    assert exception_name(0xC7) == "TRANSLATION_FAULT_IDENTITY"
    assert access_type_name(0) == "UNKNOWN" and access_type_name(0, aarch64_mmu=True) == "ATOMIC"
    status = fault_status(0xC1, 2, 0x1234, decoder=True)
    text = unhandled_fault_message(3, 0xDEAD000, status)
    assert "raw fault status: 0x123406C1\n" in text
    assert "decoded fault status: DECODER FAULT\n" in text
    assert "access type 0x2: READ\n" in text and text.endswith("source id 0x1234\n")


class _Ctx:
    def __init__(self):
        self.as_nr, self.as_count = -1, 0


def test_as_slots_reuse_lowest_free_then_steal_least_recently_used():
    """Contexts get the lowest free AS; when all are taken the LRU idle context's AS is stolen."""
    from vdrm.kernel.clock import VirtualClock
    from vdrm.kernel.printk import KernelLog

    slots = AsSlots(2, KernelLog(VirtualClock()))
    a, b, c = _Ctx(), _Ctx(), _Ctx()
    assert slots.get(a) == 0 and slots.get(b) == 1
    slots.put(a)
    slots.put(b)
    assert slots.get(a) == 0  # a is now most recent; b is least recent
    slots.put(a)
    assert slots.get(c) == 1 and b.as_nr == -1 and slots.steals == 1
