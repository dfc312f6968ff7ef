"""Panfrost buffer objects (``panfrost_gem.c``, ``struct panfrost_gem_object``).

A :class:`PanfrostBo` is a shmem object with Panfrost's extras: the ``noexec`` and
``is_heap`` bits, one :class:`Mapping` per file that holds a handle (its GPU VA node in
that file's address space), the number of jobs in flight that use it, a label, the
creator recorded for debugfs, and for heaps ``heap_rss_size`` and the per-2 MiB sg tables.

Heap BOs are never backed at creation; they grow through GPU faults (:mod:`.mmu`), in
one of two backings chosen per device:

``sparse`` (the RFC v2 series)
    the object is a sparse shmem object: populated pages live in an xarray, each 2 MiB
    block's sg table is built by ``get_sparse_pages_sgt`` and kept in a sparse structure
    keyed by block (the RFC's v3 TODO 2, solved).
``dense`` (mainline up to 6.18)
    on the first fault Panfrost allocates a page-pointer array for the *whole* BO and an
    array of ``size / 2 MiB`` sg tables, then fills 512 entries per fault.

fdinfo numbers are identical in both; the bookkeeping is not, and
:meth:`PanfrostBo.kernel_bookkeeping_bytes` reports the kernel-equivalent cost.

Status and rss callbacks (what fdinfo's memory lines use):

* status: RESIDENT if imported or backed (dense: page array exists; sparse: any page
  populated — RFC 6/6's ``drm_gem_shmem_is_populated``), PURGEABLE if ``madv`` is
  DONTNEED;
* rss: heaps count ``heap_rss_size`` (a multiple of 2 MiB); other BOs their full size
  once their pages exist, else 0.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vdrm.drm.gem import OBJECT_PURGEABLE, OBJECT_RESIDENT
from vdrm.drm.gem_shmem import ShmemObject
from vdrm.errors import InvalidArgument, KernelBug
from vdrm.mm.page_alloc import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from vdrm.drm.device import DrmDevice
    from vdrm.drm.drm_mm import DrmMmNode
    from vdrm.mm.scatterlist import SgTable
    from vdrm.panfrost.mmu import MmuContext

# include/uapi/drm/panfrost_drm.h
BO_NOEXEC = 1 << 0
BO_HEAP = 1 << 1
BO_WB_MMAP = 1 << 2
BO_FLAGS = {"NOEXEC": BO_NOEXEC, "HEAP": BO_HEAP, "WB_MMAP": BO_WB_MMAP}

MADV_WILLNEED = 0
MADV_DONTNEED = 1

SZ_2M = 2 << 20
NUM_FAULT_PAGES = SZ_2M // PAGE_SIZE  # pages populated per heap fault
LABEL_MAXLEN = 4096  # PANFROST_BO_LABEL_MAXLEN, NUL included
TASK_COMM_LEN = 16

HEAP_BACKINGS = ("sparse", "dense")
_NO_PAGE = -1


@dataclass(eq=False)
class Mapping:
    """``struct panfrost_gem_mapping``: a BO's place in one file's GPU address space."""

    bo: "PanfrostBo"
    mmu: "MmuContext"
    node: "DrmMmNode"
    active: bool = False  # page-table entries present
    refcount: int = 1

    @property
    def iova(self) -> int:
        return self.node.start << PAGE_SHIFT

    @property
    def end(self) -> int:
        return (self.node.start + self.node.size) << PAGE_SHIFT


@dataclass
class Creator:
    """The process that created the BO, as debugfs ``gems`` prints it."""

    comm: str
    tgid: int


class PanfrostBo(ShmemObject):
    """``struct panfrost_gem_object``: a shmem BO with Panfrost's heap and VA extras."""

    def __init__(self, dev: "DrmDevice", size: int, flags: int, *, heap_backing: str, creator: Creator):
        is_heap = bool(flags & BO_HEAP)
        if is_heap:
            size = -(-size // SZ_2M) * SZ_2M  # roundup(size, SZ_2M)
        size = -(-size // PAGE_SIZE) * PAGE_SIZE
        if heap_backing not in HEAP_BACKINGS:
            raise InvalidArgument(f"heap backing must be one of {HEAP_BACKINGS}, not {heap_backing!r}")
        super().__init__(dev, size, sparse=is_heap and heap_backing == "sparse")
        self.is_heap = is_heap
        self.noexec = bool(flags & BO_NOEXEC)
        self.wb_mmap = bool(flags & BO_WB_MMAP)
        self.flags = flags
        self.mappings: list[Mapping] = []
        self.gpu_usecount = 0  # jobs in flight that reference this BO
        self.heap_rss_size = 0
        self._label: str | None = None
        self.creator = Creator(creator.comm[: TASK_COMM_LEN - 1], creator.tgid)
        # Dense heaps: the per-block sg tables, a list sized for the whole BO allocated on
        # the first fault, as mainline does. Sparse heaps keep them in the shmem object,
        # one per 2 MiB granule (sparse_sgt), where the RFC's TODO 2 wants them.
        self.sgts: list["SgTable | None"] | None = None

    @property
    def label(self) -> str | None:
        """The BO's label (SET_LABEL_BO); its bytes count in ``dev.label_bytes``."""
        return self._label

    @label.setter
    def label(self, text: str | None) -> None:
        old = len(self._label.encode()) if self._label else 0
        new = len(text.encode()) if text else 0
        self.dev.label_bytes += new - old
        self._label = text

    # -- blocks of a heap -----------------------------------------------------------

    @property
    def nblocks(self) -> int:
        return self.size // SZ_2M

    def block_populated(self, block: int) -> bool:
        """Whether heap block ``block`` (2 MiB) has been faulted in."""
        return self.block_sgt(block) is not None

    def populated_blocks(self) -> list[int]:
        if self.sparse:
            return [i for i, _ in self.sparse_sgts()]
        if self.sgts is None:
            return []
        return [i for i, sgt in enumerate(self.sgts) if sgt is not None]

    def block_sgt(self, block: int) -> "SgTable | None":
        if self.sparse:
            return self.sparse_sgt(block)
        return self.sgts[block] if self.sgts is not None else None

    def populate_heap_block(self, block: int, gfp) -> "SgTable":
        """Back heap block ``block`` with 512 pages and return its dma-mapped sg table.

        The caller (the fault handler) has checked the block is not populated yet.
        """
        page_offset = block * NUM_FAULT_PAGES
        if self.sparse:
            return self.get_sparse_pages_sgt(NUM_FAULT_PAGES, page_offset, gfp)
        from vdrm.mm.scatterlist import dma_map_sgtable, sg_alloc_table_from_pages

        if self.pages is None:
            # First fault: the page-pointer array for the whole BO and the sgt array.
            self.pages = array("q", [_NO_PAGE]) * (self.size >> PAGE_SHIFT)
            self.sgts = [None] * self.nblocks
            self.pages_use_count = 1
        pfns = self.dev.pages.alloc_pages(NUM_FAULT_PAGES, gfp)
        self.pages[page_offset: page_offset + NUM_FAULT_PAGES] = pfns
        sgt = sg_alloc_table_from_pages(pfns, 0, SZ_2M)
        dma_map_sgtable(sgt)
        self.sgts[block] = sgt
        return sgt

    # -- GEM callbacks ------------------------------------------------------------------

    def has_status(self) -> bool:
        return True

    def is_backed(self) -> bool:
        """RESIDENT test: imported, a dense page array, or a populated sparse object."""
        if self.imported:
            return True
        if self.sparse:
            return self.is_populated()
        return self.pages is not None

    def status(self) -> int:
        bits = 0
        if self.is_backed():
            bits |= OBJECT_RESIDENT
        if self.madv == MADV_DONTNEED:
            bits |= OBJECT_PURGEABLE
        return bits

    def rss(self) -> int:
        if self.is_heap:
            return self.heap_rss_size
        if self.heap_rss_size:
            raise KernelBug("a non-heap BO has a heap rss size")
        return self.size if self.pages is not None else 0

    def is_active(self) -> bool:
        return self.gpu_usecount > 0

    @property
    def resident_bytes(self) -> int:
        """Bytes of emulated RAM this BO holds right now."""
        return self.rss()

    def kernel_bookkeeping_bytes(self) -> int:
        """What the kernel would spend tracking this BO's backing (not the pages)."""
        if not self.is_heap or self.sparse:
            return super().kernel_bookkeeping_bytes()
        if self.pages is None:
            return 0
        sgt_structs = 16 * self.nblocks  # struct sg_table array, one per 2 MiB
        tables = sum(sgt.kernel_bytes() - 16 for sgt in self.sgts if sgt is not None)
        return 8 * (self.size >> PAGE_SHIFT) + sgt_structs + tables

    def free(self) -> None:
        """Release heap tables and pages (a dense heap's page array has holes)."""
        self.label = None
        if self.is_heap and not self.sparse and self.pages is not None:
            present = [pfn for pfn in self.pages if pfn != _NO_PAGE]
            if present:
                self.dev.pages.release(present)
            self.pages = None
            self.pages_use_count = 0
            self.sgts = None
        super().free()

    # -- mappings -------------------------------------------------------------------

    def mapping_for(self, mmu: "MmuContext") -> Mapping | None:
        """``panfrost_gem_mapping_get``: this BO's mapping in ``mmu``, if any."""
        for mapping in self.mappings:
            if mapping.mmu is mmu:
                return mapping
        return None
