"""The kernel log ring: dmesg's format, multi-line records, a size that only grows."""

from __future__ import annotations

from vdrm.kernel.clock import VirtualClock
from vdrm.kernel.printk import KERN_DEBUG, KERN_ERR, KernelLog


def test_records_render_as_dmesg_with_every_line_prefixed():
    """Each line of a multi-line record carries the record's [%5lu.%06lu] timestamp."""
    clock = VirtualClock(12_345_678_901)
    log = KernelLog(clock)
    log.printk(KERN_ERR, "panfrost fde60000.gpu: first\nsecond\n")
    assert log.text() == "[   12.345678] panfrost fde60000.gpu: first\n[   12.345678] second\n"


def test_debug_records_are_dropped_at_the_default_level():
    """KERN_DEBUG is below the console level and is not kept."""
    log = KernelLog(VirtualClock())
    assert log.printk(KERN_DEBUG, "noise") is None and log.size == 0


def test_size_grows_and_reads_are_by_offset():
    """size counts every byte ever logged, so tail -f can follow; reads slice by offset."""
    log = KernelLog(VirtualClock())
    log.printk(KERN_ERR, "a")
    first = log.size
    log.printk(KERN_ERR, "b")
    assert log.size == 2 * first
    assert log.read(first, 100) == b"[    0.000000] b\n"
    assert log.read(0, 5) == b"[    "


def test_a_full_ring_drops_the_oldest_records_but_size_keeps_growing():
    """Past ring_bytes the oldest records go; offsets of kept records stay valid."""
    log = KernelLog(VirtualClock(), ring_bytes=64)
    for i in range(10):
        log.printk(KERN_ERR, f"line {i}")
    assert log.size == 10 * len(b"[    0.000000] line 0\n")
    assert log.records()[-1].text == "line 9" and len(log.records()) < 10
    assert log.read(log.size - 22, 22) == b"[    0.000000] line 9\n"
    assert log.read(0, 10) == b""
