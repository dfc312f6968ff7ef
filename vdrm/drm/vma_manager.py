"""Fake mmap offsets (``drivers/gpu/drm/drm_vma_manager.c``, ``drm_vma_offset_manager``).

DOC: overview

Every GEM object that user space may mmap gets a range of fake page offsets in the device's
file, device-wide and unique: ``mmap(fd, offset)`` finds the object by looking the offset up.
On 64-bit kernels the space starts at page ``(0xFFFFFFFF >> PAGE_SHIFT) + 1`` = 0x100000
(byte offset 0x1_0000_0000) and is ``0xFFFFF * 256`` pages long (``DRM_FILE_PAGE_OFFSET_START``
and ``_SIZE`` in ``drm_gem.c``).

``drm_vma_offset_add`` allocates with ``drm_mm_insert_node()``: BEST fit, no alignment, no
color, so offsets follow the same hole rules as GPU VAs (:mod:`vdrm.drm.drm_mm`). All values
here are in pages (``pgoff``); the byte offset user space sees is ``pgoff << PAGE_SHIFT``.

The kernel's per-file access list (``drm_vma_node_allow``) is kept by the GEM layer, not here.
"""

from __future__ import annotations

from vdrm.drm.drm_mm import DrmMm, DrmMmNode
from vdrm.errors import KernelBug
from vdrm.mm.page_alloc import PAGE_SHIFT

#: ``DRM_FILE_PAGE_OFFSET_START`` on 64-bit: the first page above 4 GiB.
FILE_PAGE_OFFSET_START = (0xFFFFFFFF >> PAGE_SHIFT) + 1
#: ``DRM_FILE_PAGE_OFFSET_SIZE`` on 64-bit, in pages.
FILE_PAGE_OFFSET_NPAGES = (0xFFFFFFFF >> PAGE_SHIFT) * 256


class VmaOffsetManager:
    """``struct drm_vma_offset_manager``: device-wide fake mmap offsets, in pages."""

    def __init__(
        self, first_pgoff: int = FILE_PAGE_OFFSET_START, npages: int = FILE_PAGE_OFFSET_NPAGES
    ):
        self._mm = DrmMm(first_pgoff, npages)
        self._by_start: dict[int, DrmMmNode] = {}

    def add(self, npages: int) -> int:
        """``drm_vma_offset_add``: reserve ``npages`` offsets and return the first one.

        ``NoSpace`` when no hole is big enough (or ``npages`` is 0).
        """
        node = self._mm.insert_node(npages)
        self._by_start[node.start] = node
        return node.start

    def remove(self, start_pgoff: int) -> None:
        """``drm_vma_offset_remove``: release the range that starts at ``start_pgoff``."""
        node = self._by_start.pop(start_pgoff, None)
        if node is None:
            raise KernelBug(f"no mmap offset range starts at page {start_pgoff:#x}")
        self._mm.remove_node(node)

    def lookup(self, pgoff: int, npages: int = 1) -> int | None:
        """``drm_vma_offset_lookup_locked``: start of the range holding ``[pgoff, pgoff + npages)``.

        None when no single range contains all of it (the kernel's mmap then fails with EINVAL).
        """
        node = self._mm.find(pgoff)
        if node is None or pgoff + npages > node.end:
            return None
        return node.start

    def npages(self, start_pgoff: int) -> int:
        """Length of the range that starts at ``start_pgoff`` (``drm_vma_node_size``)."""
        node = self._by_start.get(start_pgoff)
        if node is None:
            raise KernelBug(f"no mmap offset range starts at page {start_pgoff:#x}")
        return node.size

    def __len__(self) -> int:
        return len(self._mm)
