"""The DRM core is driver-agnostic: a second Mali driver plugs in without touching it."""

from __future__ import annotations

from vdrm.drm import gem
from vdrm.drm.device import Driver, DrmDevice
from vdrm.drm.fdinfo import memory_lines, memory_stats, show_fdinfo, size_line
from vdrm.drm.gem import OBJECT_RESIDENT
from vdrm.drm.gem_shmem import ShmemObject
from vdrm.kernel.clock import VirtualClock
from vdrm.kernel.printk import KernelLog
from vdrm.mm.page_alloc import PageAllocator


class PanthorBo(ShmemObject):
    """Panthor's GEM status: RESIDENT once pages exist; no purgeable state, no rss."""

    def has_status(self) -> bool:
        return True

    def status(self) -> int:
        return OBJECT_RESIDENT if self.pages is not None else 0


class Panthor(Driver):
    """A minimal Panthor: one engine key, always-printed internal memory (6.15+ shape)."""

    name = "panthor"

    def open(self, file):
        file.driver_priv = {"engine_ns": 111110952750, "cycles": 94439687187, "internal": 10396 << 10}

    def show_fdinfo(self, file, out, version):
        priv = file.driver_priv
        out.append(f"drm-engine-panthor:\t{priv['engine_ns']} ns\n")
        out.append(f"drm-cycles-panthor:\t{priv['cycles']}\n")
        out.append("drm-maxfreq-panthor:\t1000000000 Hz\ndrm-curfreq-panthor:\t1000000000 Hz\n")
        out.append(size_line("panthor", "resident", "memory", priv["internal"], version))
        out.append(size_line("panthor", "active", "memory", priv["internal"], version))
        out.append(memory_lines(memory_stats(file, version), version))


def test_a_panthor_shaped_driver_runs_on_the_same_core():
    """Files, handles, shmem BOs and fdinfo work for another driver, in the kernel docs' Panthor shape."""
    clock = VirtualClock()
    dev = DrmDevice(Panthor(), pages=PageAllocator(4096), clock=clock, log=KernelLog(clock))
    for _ in range(9):
        dev.release(dev.open(128))  # client ids 1..9 used up, as in the docs' example (10)
    f = dev.open(128)
    bo = PanthorBo(dev, 2 << 20)
    bo.get_pages_sgt()
    gem.handle_create(f, bo)
    bo.put()
    text = show_fdinfo(f, (6, 15))
    assert text == (
        "drm-driver:\tpanthor\ndrm-client-id:\t10\n"
        "drm-engine-panthor:\t111110952750 ns\ndrm-cycles-panthor:\t94439687187\n"
        "drm-maxfreq-panthor:\t1000000000 Hz\ndrm-curfreq-panthor:\t1000000000 Hz\n"
        "panthor-resident-memory:\t10396 KiB\npanthor-active-memory:\t10396 KiB\n"
        "drm-total-memory:\t2 MiB\ndrm-shared-memory:\t0\ndrm-resident-memory:\t2 MiB\n"
    )
    dev.release(f)
    assert dev.pages.free_pages == 4096
