"""Benchmark of the memory engine: bookkeeping memory and speed of sparse shmem objects.

Run ``python -m vdrm.bench.engine``. It prints:

* Python memory (tracemalloc) that vdrm itself spends per resident page of a 4 GiB
  object: sparse at 0 %, 1 %, 10 % and 100 % residency (populated in 2 MiB ranges, spread
  evenly), with fragmentation 0.0 (the allocator's default) and 0.5, and dense at 100 %;
  next to it what the kernel would spend (``kernel_bookkeeping_bytes``);
* the time of one 2 MiB populate + sg table (``get_sparse_pages_sgt`` of 512 pages);
* the time to build an sg table of 512 pages and of 1 Mi pages.

Times are medians over repeated runs (``timeit`` style). Targets: sparse <= 16 B per
resident page, <= 1 KiB for an empty object's page store, 2 MiB populate + sgt well under
50 us. The emulated RAM itself (the allocator's ``mem_map``, one byte per frame) exists
before the measurement and is not counted.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import tracemalloc
from array import array
from dataclasses import dataclass

from vdrm.drm.gem_shmem import NUM_FAULT_PAGES, ShmemObject
from vdrm.kernel.clock import VirtualClock
from vdrm.kernel.printk import KernelLog
from vdrm.mm.page_alloc import PAGE_SHIFT, PageAllocator
from vdrm.mm.scatterlist import sg_alloc_table_from_pages

SZ_2M = 2 << 20
OBJECT_SIZE = 4 << 30
OBJECT_NPAGES = OBJECT_SIZE >> PAGE_SHIFT
NRANGES = OBJECT_NPAGES // NUM_FAULT_PAGES
RAM_PAGES = 3 * OBJECT_NPAGES  # 12 GiB of emulated RAM: room for fragmentation patterns


class _Offsets:
    """A minimal mmap offset space (the benchmark needs no real DRM device)."""

    def __init__(self) -> None:
        self._next = 1 << 20

    def add(self, npages: int) -> int:
        start = self._next
        self._next += npages
        return start

    def remove(self, start: int) -> None:
        pass


class _Device:
    """Just what a shmem object uses: pages, offsets, log, object bookkeeping hooks."""

    def __init__(self, fragmentation: float):
        self.pages = PageAllocator(RAM_PAGES, fragmentation=fragmentation, seed=1)
        self.vma_offsets = _Offsets()
        self.log = KernelLog(VirtualClock())

    def gem_object_created(self, obj: ShmemObject) -> None:
        pass

    def gem_object_freed(self, obj: ShmemObject) -> None:
        pass


@dataclass
class MemoryRow:
    label: str
    resident_pages: int
    total_bytes: int  # object + page store + tables
    store_bytes: int  # page store + tables only
    kernel_bytes: int
    entries: int  # sg entries over all tables


def _spread(count: int) -> list[int]:
    """``count`` range indices spread evenly over the object."""
    if count == 0:
        return []
    return sorted({(i * NRANGES) // count for i in range(count)})


def measure_sparse(fragmentation: float, residency: float) -> MemoryRow:
    dev = _Device(fragmentation)
    ranges = _spread(round(NRANGES * residency))
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    obj = ShmemObject.create_sparse(dev, OBJECT_SIZE)
    after_create = tracemalloc.get_traced_memory()[0]
    for index in ranges:
        obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, index * NUM_FAULT_PAGES)
    gc.collect()
    end = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    empty_store = _empty_store_bytes()
    entries = sum(table.orig_nents for _, table in obj.sparse_sgts())
    row = MemoryRow(
        f"sparse frag={fragmentation:.1f} {residency * 100:g}%",
        len(obj.pages),  # type: ignore[arg-type]
        end - base,
        end - after_create + empty_store if ranges else empty_store,
        obj.kernel_bookkeeping_bytes(),
        entries,
    )
    obj.put()
    return row


def _empty_store_bytes() -> int:
    """Python bytes of an empty sparse page store (page XArray + table XArray)."""
    from vdrm.mm.xarray import XArray

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    keep = [(XArray("q"), XArray()) for _ in range(100)]
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del keep
    return used // 100


def measure_dense(fragmentation: float) -> MemoryRow:
    dev = _Device(fragmentation)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    obj = ShmemObject(dev, OBJECT_SIZE)
    after_create = tracemalloc.get_traced_memory()[0]
    obj.get_pages_sgt()
    gc.collect()
    end = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    row = MemoryRow(
        f"dense  frag={fragmentation:.1f} 100%",
        obj.npages,
        end - base,
        end - after_create,
        obj.kernel_bookkeeping_bytes(),
        obj.sgt.orig_nents,  # type: ignore[union-attr]
    )
    obj.put()
    return row


def _median_per_call(run, calls: int, repeats: int) -> float:
    """Median over ``repeats`` of (time of ``calls`` calls) / calls, in seconds."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def time_populate(fragmentation: float, calls: int = 100, repeats: int = 15) -> float:
    dev = _Device(fragmentation)
    obj = ShmemObject.create_sparse(dev, OBJECT_SIZE)
    next_range = iter(range(NRANGES))

    def populate() -> None:
        obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, next(next_range) * NUM_FAULT_PAGES)

    gc.disable()
    try:
        result = _median_per_call(populate, calls, repeats)
    finally:
        gc.enable()
    obj.put()
    return result


def _page_lists(npages: int) -> dict[str, array]:
    allocators = {
        "contiguous": PageAllocator(2 * npages + 64, fragmentation=0.0, seed=1),
        "frag=0.5": PageAllocator(2 * npages + 64, fragmentation=0.5, seed=1),
        "scattered": PageAllocator(2 * npages + 64, fragmentation=1.0, seed=1),
    }
    return {name: pa.alloc_pages(npages) for name, pa in allocators.items()}


def time_sg_build(npages: int, calls: int, repeats: int) -> list[tuple[str, int, float]]:
    out = []
    for name, pages in _page_lists(npages).items():
        size = npages << PAGE_SHIFT
        entries = sg_alloc_table_from_pages(pages, 0, size).orig_nents
        seconds = _median_per_call(lambda: sg_alloc_table_from_pages(pages, 0, size), calls, repeats)
        out.append((name, entries, seconds))
    return out


def _fmt_bytes_per_page(row: MemoryRow, total: bool) -> str:
    value = row.total_bytes if total else row.store_bytes
    if row.resident_pages == 0:
        return f"{value} B"
    return f"{value / row.resident_pages:.2f}"


def calibration() -> float:
    """Median time of a fixed pure-Python loop (100k iterations), to compare machines."""
    def loop() -> None:
        total = 0
        for i in range(100_000):
            total += i

    return _median_per_call(loop, 5, 9)


def main() -> int:
    print(f"vdrm engine benchmark (Python {sys.version.split()[0]}), object = 4 GiB = {OBJECT_NPAGES} pages, "
          f"ranges of 2 MiB = {NUM_FAULT_PAGES} pages")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f}; calibration loop "
          f"(100k Python additions) {calibration() * 1e3:.2f} ms\n")
    print("Time of one 2 MiB populate + sg table (get_sparse_pages_sgt, 512 pages), median")
    for fragmentation in (0.0, 0.5, 1.0):
        seconds = time_populate(fragmentation)
        print(f"  fragmentation {fragmentation:.1f}: {seconds * 1e6:8.1f} us")
    print()

    print("Time to build an sg table (sg_alloc_table_from_pages), median")
    for npages, calls, repeats in ((512, 200, 15), (1 << 20, 1, 5)):
        for name, entries, seconds in time_sg_build(npages, calls, repeats):
            unit = f"{seconds * 1e6:10.1f} us" if seconds < 1e-2 else f"{seconds * 1e3:10.1f} ms"
            print(f"  {npages:>8} pages, {name:<11} -> {entries:>7} entries: {unit}")
    print()

    print("Memory per resident page (tracemalloc; at 0 % residency the absolute bytes)")
    header = f"{'object':<26}{'resident pages':>15}{'sg entries':>12}{'py B/page':>12}{'store B/page':>14}{'kernel B/page':>15}"
    print(header)
    print("-" * len(header))
    rows = []
    for fragmentation in (0.0, 0.5):
        for residency in (0.0, 0.01, 0.10, 1.0):
            rows.append(measure_sparse(fragmentation, residency))
    for fragmentation in (0.0, 0.5):
        rows.append(measure_dense(fragmentation))
    for row in rows:
        kernel = f"{row.kernel_bytes} B" if row.resident_pages == 0 else f"{row.kernel_bytes / row.resident_pages:.2f}"
        print(f"{row.label:<26}{row.resident_pages:>15}{row.entries:>12}{_fmt_bytes_per_page(row, True):>12}"
              f"{_fmt_bytes_per_page(row, False):>14}{kernel:>15}")
    print("  py = everything the object allocated (object, page store, tables); "
          "store = page xarray + sg tables only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
