"""Tiler heaps (``panthor_heap.c``): chunk lists the tiler grows on out-of-memory events.

A VM's heap pool (``panthor_heap_pool``) holds up to ``MAX_HEAPS_PER_POOL`` heaps and
one kernel BO of heap contexts (``MAX_HEAPS_PER_POOL`` contexts of ``HEAP_CTX_STRIDE``
bytes, in the VM's kernel VA). A heap (``panthor_heap_create``) starts with
``initial_chunk_count`` chunks of ``chunk_size`` bytes and grows one chunk per tiler
out-of-memory event (``panthor_heap_grow``, reached from ``group_process_tiler_oom``;
vdrm's ``TILER_OOM`` request), new chunks going to the head of the list. The rules:

- ``initial_chunk_count`` >= 1, ``max_chunks`` >= ``initial_chunk_count``, ``chunk_size``
  page-aligned in [128 KiB, 8 MiB], ``target_in_flight`` >= 1: else EINVAL;
- growing an unknown heap is EINVAL; with more render passes in flight than
  ``target_in_flight``, or ``max_chunks`` reached, ENOMEM (the firmware then waits for
  fragment jobs or runs the user's exception handler); the grown chunk's VA is returned
  as ``(gpu_va & ~0xfff) | (chunk_size >> 12)``.

Backing, a device option (``heap_backing``): ``dense`` is mainline, one pinned kernel BO
per chunk; ``sparse`` (the RFC's path) is one sparse shmem object of
``max_chunks * chunk_size`` per heap whose chunk-sized ranges are populated as the heap
grows. fdinfo counts ``chunk_size * chunk_count`` either way; ``kernel_bookkeeping_bytes``
shows what each costs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vdrm.drm.gem_shmem import ShmemObject
from vdrm.errors import Busy, InvalidArgument, OutOfMemory
from vdrm.mm.page_alloc import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from vdrm.panthor.drv import Vm

MAX_HEAPS_PER_POOL = 128
HEAP_CTX_STRIDE = 64  # sizeof(struct panthor_heap_gpu_ctx) aligned to the G610's L2 line
SZ_128K = 128 << 10
SZ_8M = 8 << 20


class Heap:
    """``struct panthor_heap``: its chunks (newest first) and its limits."""

    def __init__(self, pool: "HeapPool", heap_id: int, chunk_size: int, max_chunks: int,
                 target_in_flight: int):
        self.pool = pool
        self.id = heap_id
        self.chunk_size = chunk_size
        self.max_chunks = max_chunks
        self.target_in_flight = target_in_flight
        self.chunks: list[int] = []  # chunk GPU VAs, newest first
        self._dense: list[ShmemObject] = []
        self._sparse: ShmemObject | None = None
        self.base_va = pool.vm.alloc_kernel_va(max_chunks * chunk_size)
        if pool.backing == "sparse":
            npages = chunk_size >> PAGE_SHIFT
            granularity = npages if npages & (npages - 1) == 0 else 1
            self._sparse = ShmemObject.create_sparse(pool.dev, max_chunks * chunk_size,
                                                     granularity_npages=granularity)

    @property
    def chunk_count(self) -> int:
        return len(self.chunks)

    @property
    def ctx_va(self) -> int:
        return self.pool.ctx_va + self.id * HEAP_CTX_STRIDE

    def add_chunk(self) -> int:
        """``panthor_alloc_heap_chunk``: back one more chunk; its GPU VA."""
        index = self.chunk_count
        if self._sparse is not None:
            self._sparse.populate_range(index * (self.chunk_size >> PAGE_SHIFT), self.chunk_size >> PAGE_SHIFT)
        else:
            bo = ShmemObject(self.pool.dev, self.chunk_size)
            bo.pin()  # may raise OutOfMemory
            self._dense.append(bo)
        va = self.base_va + index * self.chunk_size
        self.chunks.insert(0, va)
        return va

    def resident_size(self) -> int:
        return self.chunk_size * self.chunk_count

    def bookkeeping_bytes(self) -> int:
        if self._sparse is not None:
            return self._sparse.kernel_bookkeeping_bytes()
        return sum(bo.kernel_bookkeeping_bytes() for bo in self._dense)

    def destroy(self) -> None:
        for bo in self._dense:
            bo.unpin()
            bo.put()
        self._dense = []
        if self._sparse is not None:
            self._sparse.put()
            self._sparse = None
        self.chunks = []


class HeapPool:
    """``struct panthor_heap_pool``: the heaps of one VM and their context BO."""

    def __init__(self, vm: "Vm", backing: str):
        self.vm = vm
        self.dev = vm.drv.dev
        self.backing = backing
        self.heaps: dict[int, Heap] = {}
        size = MAX_HEAPS_PER_POOL * HEAP_CTX_STRIDE
        self.ctx_bo = ShmemObject(self.dev, size)
        self.ctx_bo.pin()
        self.ctx_va = vm.alloc_kernel_va(self.ctx_bo.size)

    def create(self, initial_chunk_count: int, chunk_size: int, max_chunks: int,
               target_in_flight: int) -> Heap:
        """``panthor_heap_create``."""
        if initial_chunk_count == 0:
            raise InvalidArgument("initial_chunk_count must be at least 1")
        if chunk_size % PAGE_SIZE or not SZ_128K <= chunk_size <= SZ_8M:
            raise InvalidArgument(f"chunk_size {chunk_size} is not page-aligned in [128K, 8M]")
        if initial_chunk_count > max_chunks:
            raise InvalidArgument(f"initial_chunk_count {initial_chunk_count} exceeds max_chunks {max_chunks}")
        if target_in_flight == 0:
            raise InvalidArgument("target_in_flight must be at least 1")
        heap_id = next((i for i in range(MAX_HEAPS_PER_POOL) if i not in self.heaps), None)
        if heap_id is None:
            raise Busy(f"the VM already has {MAX_HEAPS_PER_POOL} heaps")
        heap = Heap(self, heap_id, chunk_size, max_chunks, target_in_flight)
        try:
            for _ in range(initial_chunk_count):
                heap.add_chunk()
        except OutOfMemory:
            heap.destroy()
            raise
        self.heaps[heap_id] = heap
        return heap

    def grow(self, heap_id: int, renderpasses_in_flight: int, pending_frag_count: int) -> int:
        """``panthor_heap_grow``: one chunk more; the encoded VA the firmware gets."""
        heap = self.heaps.get(heap_id)
        if heap is None:
            raise InvalidArgument(f"no heap {heap_id} in VM {self.vm.id}")
        if renderpasses_in_flight > heap.target_in_flight:
            raise OutOfMemory(f"{renderpasses_in_flight} render passes in flight, target {heap.target_in_flight}")
        if heap.chunk_count >= heap.max_chunks:
            raise OutOfMemory(f"heap {heap_id} has its max_chunks {heap.max_chunks} chunks")
        va = heap.add_chunk()
        return (va & ~0xFFF) | (heap.chunk_size >> 12)

    def destroy_heap(self, heap_id: int) -> None:
        """``panthor_heap_destroy``."""
        heap = self.heaps.pop(heap_id, None)
        if heap is None:
            raise InvalidArgument(f"no heap {heap_id} in VM {self.vm.id}")
        heap.destroy()

    def resident_size(self) -> int:
        return self.ctx_bo.size + sum(h.resident_size() for h in self.heaps.values())

    def destroy(self) -> None:
        for heap_id in list(self.heaps):
            self.destroy_heap(heap_id)
        self.ctx_bo.unpin()
        self.ctx_bo.put()
