"""Part 2, engine speed, and the engine half of part 4, scale: no FUSE, plain calls.

* 2 MiB heap faults per second: the FAULT request's handler on a heap BO (AS slot,
  ``handle_fault``: populate 512 pages, sg table, PTEs, kernel log), sparse and dense;
* scatterlist builds per second (``sg_alloc_table_from_pages``) for 512 and 1 Mi pages
  from the allocator at the device's default fragmentation;
* fdinfo renders per second (``PanfrostDevice.fdinfo``) for a client with 10 and with
  1,000 BOs;
* scale: one client's fdinfo render and one request (``protocol.handle`` of VERSION and
  of GET_BO_OFFSET) on a device with 10 clients against one with 10,000 clients × 10 BOs,
  side by side; and the Python memory (tracemalloc) per client and per BO.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from vdrm.bench.common import compare, median_rate
from vdrm.drm.limits import Limits
from vdrm.fs import protocol
from vdrm.mm.page_alloc import PAGE_SHIFT, PageAllocator
from vdrm.mm.scatterlist import sg_alloc_table_from_pages
from vdrm.panfrost.device import DeviceConfig, PanfrostDevice
from vdrm.panfrost.gem import BO_HEAP, BO_NOEXEC, SZ_2M

HEAP_SIZE = 1 << 30  # 512 blocks of 2 MiB per heap BO


# The scale runs hold 10,000 clients x 10 BOs: past the daemon's default limits, which
# guard a mount against its users, not the benchmark against itself.
_BENCH_LIMITS = Limits(clients=1 << 20, bos=1 << 24)


def _device(ram: int = 8 << 30, backing: str = "sparse") -> PanfrostDevice:
    return PanfrostDevice(DeviceConfig(clock="virtual", ram_size=ram, heap_backing=backing,
                                       limits=_BENCH_LIMITS))


def _call(dev: PanfrostDevice, file: Any, verb: str, **args: Any) -> dict[str, Any]:
    """The handler of ``verb`` with its optional arguments at their defaults, as a request
    line without them would call it (the defaults looked up once per declaration)."""
    ioctl = dev.ioctls[verb]
    cached = _DEFAULTS.get(verb)
    if cached is None or cached[0] is not ioctl:
        cached = _DEFAULTS[verb] = (ioctl, {a.name: a.default for a in ioctl.args if not a.required})
    return ioctl.handler(file, **{**cached[1], **args})


_DEFAULTS: dict[str, tuple[Any, dict[str, Any]]] = {}  # verb -> (its declaration, its defaults)


def fault_op(backing: str):
    """A callable that handles one 2 MiB heap fault per call (fresh blocks every time)."""
    dev = _device(ram=2 * HEAP_SIZE + (64 << 20), backing=backing)
    file = dev.open(128, pid=1, comm="bench")
    heaps: list[tuple[int, int]] = []  # (handle, iova)
    state = {"block": HEAP_SIZE // SZ_2M}

    def new_heap() -> None:
        if len(heaps) == 2:  # free the older one: RAM and VA are finite
            _call(dev, file, "GEM_CLOSE", handle=heaps.pop(0)[0])
        bo = _call(dev, file, "CREATE_BO", size=HEAP_SIZE, flags=BO_HEAP | BO_NOEXEC)
        heaps.append((bo["handle"], bo["offset"]))

    def fault() -> None:
        if state["block"] == HEAP_SIZE // SZ_2M:
            new_heap()
            state["block"] = 0
        _call(dev, file, "FAULT", addr=heaps[-1][1] + state["block"] * SZ_2M)
        state["block"] += 1

    return fault


def fault_rate(backing: str, *, batch: int = 64, repeats: int = 7) -> float:
    """2 MiB heap faults per second through the FAULT handler (fresh blocks each time)."""
    fault = fault_op(backing)
    gc.collect()
    return median_rate(fault, batch=batch, repeats=repeats)


def sg_build_rate(npages: int, *, batch: int, repeats: int) -> tuple[int, float]:
    """(entries, builds per second) of an sg table over ``npages`` allocated pages."""
    pages = PageAllocator(npages + npages // 2 + 64, fragmentation=DeviceConfig().fragmentation, seed=1)
    pfns = pages.alloc_pages(npages)
    size = npages << PAGE_SHIFT
    entries = sg_alloc_table_from_pages(pfns, 0, size).orig_nents
    return entries, median_rate(lambda: sg_alloc_table_from_pages(pfns, 0, size), batch=batch, repeats=repeats)


def _populate(dev: PanfrostDevice, nclients: int, nbos: int, bo_size: int = 4096) -> list[Any]:
    files = []
    for i in range(nclients):
        file = dev.open(128, pid=1000 + i, comm=f"client{i}")
        for _ in range(nbos):
            _call(dev, file, "CREATE_BO", size=bo_size, flags=BO_NOEXEC)
        files.append(file)
    return files


def fdinfo_rate(nbos: int, *, batch: int = 200, repeats: int = 7) -> float:
    dev = _device()
    file = _populate(dev, 1, nbos)[0]
    return median_rate(lambda: dev.fdinfo(file), batch=batch, repeats=repeats)


def python_bytes(clients: int, bos: int) -> tuple[float, float]:
    """tracemalloc: Python bytes per client (an open DRM file) and per 4 KiB BO."""
    dev = _device(ram=1 << 30)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        files = _populate(dev, clients, 0)
        opened = tracemalloc.get_traced_memory()[0]
        for file in files:
            for _ in range(bos):
                _call(dev, file, "CREATE_BO", size=4096, flags=BO_NOEXEC)
        gc.collect()
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (opened - base) / clients, (end - opened) / (clients * bos) if bos else 0.0


def scale(small: int = 10, large: int = 10_000, bos: int = 10, *, batch: int = 300,
          repeats: int = 9) -> dict[str, Any]:
    """One client's fdinfo and one request with ``small`` against ``large`` clients × ``bos``."""
    dev_small = _device(ram=1 << 30)
    files_small = _populate(dev_small, small, bos)
    dev_large = _device(ram=1 << 30)
    start = time.perf_counter()
    files_large = _populate(dev_large, large, bos)
    build_seconds = time.perf_counter() - start
    clients_bytes, bos_bytes = python_bytes(min(large, 1000), bos)
    # The measured client is in the middle of the large device, with the same BOs.
    a, b = files_small[small // 2], files_large[large // 2]
    handle_a = next(iter(h for h, _ in a.handles.items()))
    handle_b = next(iter(h for h, _ in b.handles.items()))
    offset_a = f"GET_BO_OFFSET handle={handle_a}".encode()
    offset_b = f"GET_BO_OFFSET handle={handle_b}".encode()
    out: dict[str, Any] = {"small_clients": small, "large_clients": large, "bos_per_client": bos,
                           "large_build_seconds": build_seconds,
                           "python_bytes_per_client": clients_bytes,
                           "python_bytes_per_bo": bos_bytes}
    gc.collect()
    gc.disable()
    try:
        out["fdinfo"] = compare(lambda: dev_large.fdinfo(b), lambda: dev_small.fdinfo(a),
                                batch=batch, repeats=repeats).as_dict()
        out["version_request"] = compare(lambda: protocol.handle(dev_large.ioctls, b, b"VERSION"),
                                         lambda: protocol.handle(dev_small.ioctls, a, b"VERSION"),
                                         batch=batch, repeats=repeats).as_dict()
        out["bo_request"] = compare(lambda: protocol.handle(dev_large.ioctls, b, offset_b),
                                    lambda: protocol.handle(dev_small.ioctls, a, offset_a),
                                    batch=batch, repeats=repeats).as_dict()
    finally:
        gc.enable()
    # ratio of costs (large/small) = rate small / rate large
    for key in ("fdinfo", "version_request", "bo_request"):
        out[key]["cost_ratio"] = 1 / out[key]["ratio"]
    return out


def run(*, quick: bool = False) -> dict[str, Any]:
    reps = 3 if quick else 7
    out: dict[str, Any] = {}
    out["fault_per_s"] = {b: fault_rate(b, batch=16 if quick else 64, repeats=reps) for b in ("sparse", "dense")}
    out["sg_build_per_s"] = {}
    for npages, batch in ((512, 200), (1 << 20, 1)):
        if quick and npages > 512:
            npages = 1 << 14
        entries, per_s = sg_build_rate(npages, batch=batch if not quick else 5, repeats=reps if npages <= 512 else 3)
        out["sg_build_per_s"][str(npages)] = {"entries": entries, "per_s": per_s}
    out["fdinfo_per_s"] = {str(n): fdinfo_rate(n, batch=50 if quick else 200, repeats=reps)
                           for n in ((10, 100) if quick else (10, 1000))}
    return out
