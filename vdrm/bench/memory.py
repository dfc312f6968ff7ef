"""Part 1, the RFC's headline: bookkeeping memory of heap BOs, sparse against dense.

For each heap size and residency, one heap :class:`~vdrm.panfrost.gem.PanfrostBo` is built
at engine level (CREATE_BO's size is a u32 and the GPU VA space is 4 GiB − 32 MiB, so a
4 GiB heap cannot come through the ioctl) and its 2 MiB blocks faulted in, spread evenly,
with the fault path's own call (:meth:`PanfrostBo.populate_heap_block`). Two figures:

* ``kernel_bytes``: what the kernel would spend (``kernel_bookkeeping_bytes``: the
  page-pointer array and sg tables of the dense backing; xarray nodes and sg tables of
  the sparse one);
* ``python_bytes``: what vdrm itself allocates for the BO and its backing structures
  (``tracemalloc`` from before the BO is created to after its blocks are populated). The
  emulated RAM (one byte of ``mem_map`` per frame) exists before and is not counted.

Targets: sparse ≤ 16 B of vdrm memory per resident page, ≤ 1 KiB per empty heap BO.
"""

from __future__ import annotations

import gc
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Any

from vdrm.mm.page_alloc import PAGE_SHIFT, Gfp
from vdrm.panfrost.device import DeviceConfig, PanfrostDevice
from vdrm.panfrost.gem import BO_HEAP, BO_NOEXEC, NUM_FAULT_PAGES, SZ_2M, Creator, PanfrostBo

SIZES = (256 << 20, 1 << 30, 4 << 30)
RESIDENCIES = (0.0, 0.01, 0.10, 1.0)
BACKINGS = ("sparse", "dense")
TARGET_SPARSE_BYTES_PER_PAGE = 16
TARGET_EMPTY_HEAP_BYTES = 1024


@dataclass
class MemoryRow:
    backing: str
    size: int
    residency: float
    resident_pages: int
    python_bytes: int  # the BO and its backing
    backing_bytes: int  # python_bytes less the bare object (a BO with no backing structures)
    kernel_bytes: int

    @property
    def python_per_page(self) -> float | None:
        return self.python_bytes / self.resident_pages if self.resident_pages else None

    @property
    def backing_per_page(self) -> float | None:
        return self.backing_bytes / self.resident_pages if self.resident_pages else None

    @property
    def kernel_per_page(self) -> float | None:
        return self.kernel_bytes / self.resident_pages if self.resident_pages else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "python_per_page": self.python_per_page,
                "backing_per_page": self.backing_per_page, "kernel_per_page": self.kernel_per_page}


def _spread(count: int, nblocks: int) -> list[int]:
    """``count`` block indices spread evenly over ``nblocks``."""
    return sorted({(i * nblocks) // count for i in range(count)}) if count else []


def device_for(size: int) -> PanfrostDevice:
    """A device with RAM for one fully resident heap of ``size`` (RAM is metadata only)."""
    return PanfrostDevice(DeviceConfig(clock="virtual", ram_size=size + (64 << 20), fragmentation=0.3))


def _traced(build):
    """(object, bytes tracemalloc saw allocated while ``build()`` ran and stayed allocated)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        obj = build()
        gc.collect()
        return obj, tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()


def bare_object_bytes(dev: PanfrostDevice, size: int) -> int:
    """A BO of ``size`` with no backing structures yet (dense, not a heap, never backed)."""
    bo, used = _traced(lambda: PanfrostBo(dev.drm, size, BO_NOEXEC, heap_backing="dense",
                                          creator=Creator("bench", 1)))
    bo.put()
    return used


def measure(dev: PanfrostDevice, backing: str, size: int, residency: float) -> MemoryRow:
    """Build one heap BO at ``residency`` and measure its bookkeeping; the BO is freed after."""
    nblocks = size // SZ_2M
    blocks = _spread(round(nblocks * residency), nblocks)

    def build() -> PanfrostBo:
        bo = PanfrostBo(dev.drm, size, BO_HEAP | BO_NOEXEC, heap_backing=backing, creator=Creator("bench", 1))
        for block in blocks:
            bo.populate_heap_block(block, Gfp.KERNEL)
        bo.heap_rss_size = len(blocks) * SZ_2M
        return bo

    bo, used = _traced(build)
    bare = bare_object_bytes(dev, size)
    row = MemoryRow(backing, size, residency, len(blocks) * NUM_FAULT_PAGES, used, max(0, used - bare),
                    bo.kernel_bookkeeping_bytes())
    bo.put()
    return row


def run(sizes: tuple[int, ...] = SIZES, residencies: tuple[float, ...] = RESIDENCIES,
        backings: tuple[str, ...] = BACKINGS) -> dict[str, Any]:
    rows = []
    dev = device_for(max(sizes))
    for size in sizes:
        for backing in backings:
            for residency in residencies:
                rows.append(measure(dev, backing, size, residency))
    sparse_resident = [r for r in rows if r.backing == "sparse" and r.resident_pages]
    sparse_empty = [r for r in rows if r.backing == "sparse" and not r.resident_pages]
    # Per resident page: the growth over the empty heap of the same size, worst row.
    empty_of = {r.size: r.backing_bytes for r in sparse_empty}
    per_page = [(r.backing_bytes - empty_of.get(r.size, 0)) / r.resident_pages for r in sparse_resident]
    worst_per_page = max(per_page, default=0.0)
    worst_empty = max((r.backing_bytes for r in sparse_empty), default=0)
    return {
        "rows": [r.as_dict() for r in rows],
        "targets": {
            "sparse_python_bytes_per_resident_page": {
                "value": worst_per_page, "target": TARGET_SPARSE_BYTES_PER_PAGE,
                "met": worst_per_page <= TARGET_SPARSE_BYTES_PER_PAGE},
            "sparse_python_bytes_per_empty_heap": {
                "value": worst_empty, "target": TARGET_EMPTY_HEAP_BYTES,
                "met": worst_empty <= TARGET_EMPTY_HEAP_BYTES},
        },
    }


def page_count(size: int) -> int:
    return size >> PAGE_SHIFT
