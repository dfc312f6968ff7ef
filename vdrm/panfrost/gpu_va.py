"""A file's GPU virtual address space (``panfrost_mmu.c`` and ``panfrost_gem_open``).

DOC: overview

Each open file is one GPU VM. Panfrost manages its VAs with a :class:`~vdrm.drm.drm_mm.DrmMm`
in pages over ``[SZ_32M, SZ_4G)``, i.e. pages ``[0x2000, 0x100000)`` ("4G enough for now. can
be 48-bit"). A BO gets its VA when a handle to it is opened in the file
(``panfrost_gem_open``), by BEST fit with:

* color ``PANFROST_BO_NOEXEC`` for no-exec BOs, else 0;
* alignment, in pages: the BO's own page count for executable BOs (so that an executable BO
  of a power-of-two size up to 16 MiB never crosses a 16 MiB boundary, as the 24-bit program
  counter needs; other sizes give alignments that are not powers of two), 512 (2 MiB) for
  no-exec BOs of at least 2 MiB, none otherwise;
* Panfrost's ``color_adjust`` (``panfrost_drm_mm_color_adjust``), which only touches
  executable requests: a hole may not start or end exactly on a 4 GiB boundary, a hole start
  within 16 MiB below the next 4 GiB boundary jumps to one page past it, and the end is clamped
  to just below the 4 GiB boundary above the start. Because this space ends at 4 GiB, an
  executable BO can never use the last page, and a hole starting 16 MiB or less below 4 GiB
  is useless to it.

Hence the first BO of a fresh file lands at VA 0x2000000 (unless it is executable and its
page count does not divide 0x2000: a first 12 KiB executable BO lands at 0x2001000), and the
order of creates and closes decides every later address exactly as in the kernel. All drm_mm
values are in pages (pfn); :meth:`GpuVaSpace.iova` converts to bytes.
"""

from __future__ import annotations

from typing import Iterator

from vdrm.drm.drm_mm import DrmMm, DrmMmNode
from vdrm.errors import KernelBug
from vdrm.mm.page_alloc import PAGE_SHIFT, PAGE_SIZE

SZ_2M = 2 << 20
SZ_16M = 16 << 20
SZ_32M = 32 << 20
SZ_4G = 4 << 30

#: First and one-past-last page of the space: ``[SZ_32M, SZ_4G) >> PAGE_SHIFT``.
VA_START_PFN = SZ_32M >> PAGE_SHIFT
VA_END_PFN = SZ_4G >> PAGE_SHIFT

#: ``PANFROST_BO_NOEXEC`` (uAPI create flag, also the drm_mm color of no-exec BOs).
PANFROST_BO_NOEXEC = 1

_PFN_4G = SZ_4G >> PAGE_SHIFT
_PFN_4G_MASK = _PFN_4G - 1
_PFN_16M = SZ_16M >> PAGE_SHIFT
_ALIGN_2M_PAGES = SZ_2M >> PAGE_SHIFT


def _align_up(pfn: int, boundary: int) -> int:
    return -(-pfn // boundary) * boundary


def color_adjust(node: DrmMmNode | None, color: int, start: int, end: int) -> tuple[int, int]:
    """``panfrost_drm_mm_color_adjust``: keep executable BOs off 4 GiB boundaries."""
    if color & PANFROST_BO_NOEXEC:
        return start, end
    if start & _PFN_4G_MASK == 0:
        start += 1
    if end & _PFN_4G_MASK == 0:
        end -= 1
    next_seg = _align_up(start, _PFN_4G)
    if next_seg - start <= _PFN_16M:
        start = next_seg + 1
    end = min(end, _align_up(start, _PFN_4G) - 1)
    return start, end


class GpuVaSpace:
    """``panfrost_mmu.mm``: one file's GPU VA allocator, in pages."""

    def __init__(self) -> None:
        self.mm = DrmMm(VA_START_PFN, VA_END_PFN - VA_START_PFN, color_adjust=color_adjust)

    def insert(self, size: int, *, noexec: bool) -> DrmMmNode:
        """Give a BO of ``size`` bytes a VA as ``panfrost_gem_open`` does; ``NoSpace`` if full."""
        if size <= 0 or size % PAGE_SIZE:
            raise KernelBug(f"GPU VA request of {size:#x} bytes is not a positive page multiple")
        npages = size >> PAGE_SHIFT
        if not noexec:
            alignment = npages
        elif size >= SZ_2M:
            alignment = _ALIGN_2M_PAGES
        else:
            alignment = 0
        color = PANFROST_BO_NOEXEC if noexec else 0
        return self.mm.insert_node(npages, alignment=alignment, color=color)

    def remove(self, node: DrmMmNode) -> None:
        """Release a BO's VA range (``panfrost_gem_teardown_mapping``)."""
        self.mm.remove_node(node)

    def find_pfn(self, pfn: int) -> DrmMmNode | None:
        """The node with ``start <= pfn < start + size`` (as ``addr_to_mapping`` finds it)."""
        return self.mm.find(pfn)

    def nodes(self) -> Iterator[DrmMmNode]:
        """The allocated ranges in address order."""
        return self.mm.nodes()

    @staticmethod
    def iova(node: DrmMmNode) -> int:
        """The node's GPU virtual address in bytes."""
        return node.start << PAGE_SHIFT

    def __len__(self) -> int:
        return len(self.mm)
