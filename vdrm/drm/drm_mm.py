"""The DRM range allocator (``drivers/gpu/drm/drm_mm.c``, ``struct drm_mm``).

DOC: overview

A :class:`DrmMm` manages the integer range ``[start, start + size)`` in abstract units (its
callers use pages). Allocated ranges are :class:`DrmMmNode` objects; the gaps between
consecutive nodes, and between the nodes and the ends of the range, are the holes. Placement
follows the kernel's rules as they stand in current kernels (and have since before Panfrost
was merged):

* **BEST** (mode 0, what ``drm_mm_insert_node_generic`` callers such as Panfrost and the mmap
  offset manager use): holes are visited from the smallest hole whose size is at least the
  request, upward by size; among holes of the same size the most recently added hole comes
  first (see "Hole recency" below). Each hole is narrowed by ``color_adjust``, skipped if the
  request no longer fits, its start rounded **up** to the alignment, skipped again if the
  request no longer fits, and otherwise the node goes at that start (the low end).
* **LOW**: holes in ascending address order, same placement at the low end.
* **HIGH**: holes in descending address order; the node goes at the top of the adjusted hole,
  its start rounded **down** to the alignment.
* Fast failures, before any hole is looked at: a size of 0, or a size larger than the largest
  hole, is ``ENOSPC``. An alignment of 0 or 1 means none; powers of two are applied with a
  mask and anything else by division (Panfrost aligns executable BOs to their own size, which
  need not be a power of two).

The kernel's ``DRM_MM_INSERT_EVICT`` mode (holes by recency alone) is not emulated.

Hole recency. The kernel keeps every hole in a red-black tree ordered by size, largest first,
and a new hole goes to the right of all holes of equal size; the BEST search takes the
right-most hole that is big enough and then walks leftwards. So among equal sizes the hole
inserted into the tree last is tried first. A hole is (re)inserted whenever it comes into
being or changes size:

* inserting a node takes its hole out of the tree; the part left below the node (if any) goes
  back in first, then the part left above it (if any), so the upper remainder is the newer;
* removing a node takes the holes before and after it out and puts the single merged hole
  back in, so that hole is the newest, whether it is new, grown, or two joined into one.

This module models the tree by giving each hole a sequence number when it is inserted and
ordering holes by ``(size, -seq)``. (The first rbtree version of drm_mm kept the size tree
smallest-first and so preferred the *oldest* equal-size hole; it was reversed to largest-first,
as far as we know around 2018, before Panfrost was merged. vdrm models only the newer order.)

Invariants, checked by the tests: nodes never overlap and stay inside the range; nodes and
holes tile the range exactly; no two holes touch (a hole is always maximal); no hole is empty.

Implementation: nodes are kept in address order in a sorted list keyed by start, holes in
a dict by start plus two sorted lists (by address, and by ``(size, -seq)``), all
``sortedcontainers`` lists, so that lookups, insertions and removals stay ``O(log n)``.
(Plain Python lists with ``bisect`` made each removal a ``memmove`` of the whole list:
releasing a client with 80,000 BOs took seconds, quadratic in its BO count.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Iterator

from sortedcontainers import SortedKeyList, SortedList

from vdrm.errors import KernelBug, NoSpace


def _node_start(node: "DrmMmNode") -> int:
    return node.start


@dataclass(frozen=True, slots=True, eq=False)
class DrmMmNode:
    """``struct drm_mm_node``: an allocated range ``[start, start + size)`` and its color.

    Nodes compare by identity: two allocations of the same range at different times are
    different nodes, and removing a stale node is a bug the allocator detects.
    """

    start: int
    size: int
    color: int = 0

    @property
    def end(self) -> int:
        """First unit after the node."""
        return self.start + self.size


#: ``color_adjust(node_before_hole, color, hole_start, hole_end) -> (start, end)``: narrows a
#: hole for a request of ``color``. ``node_before_hole`` is None for the hole at the start of
#: the range (the kernel passes its sentinel head node there).
ColorAdjust = Callable[[DrmMmNode | None, int, int, int], tuple[int, int]]


class InsertMode(enum.IntEnum):
    """``enum drm_mm_insert_mode``, the values the kernel gives them."""

    BEST = 0
    LOW = 1
    HIGH = 2


class DrmMm:
    """``struct drm_mm`` over ``[start, start + size)``; see the module documentation."""

    def __init__(self, start: int, size: int, *, color_adjust: ColorAdjust | None = None):
        if start < 0 or size <= 0:
            raise KernelBug(f"drm_mm over [{start:#x}, +{size:#x}) is empty or negative")
        self.start = start
        self.size = size
        self.end = start + size
        self.color_adjust = color_adjust
        # Nodes in address order.
        self._nodes: SortedKeyList = SortedKeyList(key=_node_start)
        # Holes: start -> (end, seq); sorted starts; sorted (size, -seq, start).
        self._holes: dict[int, tuple[int, int]] = {}
        self._hole_starts: SortedList = SortedList()
        self._holes_by_size: SortedList = SortedList()
        self._hole_seq = 0
        self._add_hole(self.start, self.end)

    # -- holes ---------------------------------------------------------------------

    def _add_hole(self, start: int, end: int) -> None:
        self._hole_seq += 1
        self._holes[start] = (end, self._hole_seq)
        self._hole_starts.add(start)
        self._holes_by_size.add((end - start, -self._hole_seq, start))

    def _rm_hole(self, start: int) -> None:
        end, seq = self._holes.pop(start)
        self._hole_starts.remove(start)
        self._holes_by_size.remove((end - start, -seq, start))

    def _holes_best(self, size: int) -> Iterator[int]:
        """Starts of the holes of at least ``size``, smallest first, newest first per size."""
        for _, _, start in self._holes_by_size.irange((size,)):
            yield start

    def _holes_low(self, size: int) -> Iterator[int]:
        for start in list(self._hole_starts):
            if self._holes[start][0] - start >= size:
                yield start

    def _holes_high(self, size: int) -> Iterator[int]:
        for start in list(reversed(self._hole_starts)):
            if self._holes[start][0] - start >= size:
                yield start

    def _node_before(self, addr: int) -> DrmMmNode | None:
        """The last node starting below ``addr`` (the node a hole at ``addr`` follows)."""
        i = self._nodes.bisect_key_left(addr)
        return self._nodes[i - 1] if i else None

    # -- insert / remove -----------------------------------------------------------

    def insert_node(
        self,
        size: int,
        *,
        alignment: int = 0,
        color: int = 0,
        mode: InsertMode = InsertMode.BEST,
    ) -> DrmMmNode:
        """``drm_mm_insert_node_generic``: allocate ``size`` units; ``NoSpace`` if no hole fits."""
        if size < 0 or alignment < 0:
            raise KernelBug(f"drm_mm insert with size {size} and alignment {alignment}")
        if size == 0 or size > self.largest_hole():
            raise NoSpace(f"no hole of {size:#x} units (largest is {self.largest_hole():#x})")
        if alignment <= 1:
            alignment = 0
        remainder_mask = alignment - 1 if alignment & (alignment - 1) == 0 else 0

        if mode == InsertMode.BEST:
            candidates = self._holes_best(size)
        elif mode == InsertMode.LOW:
            candidates = self._holes_low(size)
        elif mode == InsertMode.HIGH:
            candidates = self._holes_high(size)
        else:
            raise KernelBug(f"drm_mm insert mode {mode!r} is not emulated")

        for hole_start in candidates:
            hole_end = self._holes[hole_start][0]
            col_start, col_end = hole_start, hole_end
            if self.color_adjust is not None:
                col_start, col_end = self.color_adjust(
                    self._node_before(hole_start), color, hole_start, hole_end
                )
            if col_end - col_start < size:
                continue
            node_start = col_end - size if mode == InsertMode.HIGH else col_start
            if alignment:
                if remainder_mask:
                    rem = node_start & remainder_mask
                else:
                    rem = node_start % alignment
                if rem:
                    node_start -= rem
                    if mode != InsertMode.HIGH:
                        node_start += alignment
                    if node_start < col_start or node_start + size > col_end:
                        continue
            node = DrmMmNode(node_start, size, color)
            self._place(node, hole_start, hole_end)
            return node
        raise NoSpace(f"no hole fits {size:#x} units aligned to {alignment:#x}, color {color:#x}")

    def _place(self, node: DrmMmNode, hole_start: int, hole_end: int) -> None:
        self._nodes.add(node)
        # Order matters for recency: the lower remainder is re-added before the upper one.
        self._rm_hole(hole_start)
        if node.start > hole_start:
            self._add_hole(hole_start, node.start)
        if node.end < hole_end:
            self._add_hole(node.end, hole_end)

    def remove_node(self, node: DrmMmNode) -> None:
        """``drm_mm_remove_node``: free ``node``; its range merges with the holes around it."""
        i = self._nodes.bisect_key_left(node.start)
        if i == len(self._nodes) or self._nodes[i] is not node:
            raise KernelBug(f"drm_mm remove of a node not allocated here: {node!r}")
        prev_end = self._nodes[i - 1].end if i else self.start
        next_start = self._nodes[i + 1].start if i + 1 < len(self._nodes) else self.end
        del self._nodes[i]
        if node.end in self._holes:
            self._rm_hole(node.end)
        if prev_end in self._holes:
            self._rm_hole(prev_end)
        # The merged hole is always re-added, so it becomes the newest hole.
        self._add_hole(prev_end, next_start)

    # -- queries -------------------------------------------------------------------

    def find(self, addr: int) -> DrmMmNode | None:
        """The node with ``start <= addr < start + size``, or None."""
        i = self._nodes.bisect_key_right(addr) - 1
        if i >= 0 and addr < self._nodes[i].end:
            return self._nodes[i]
        return None

    def nodes(self) -> Iterator[DrmMmNode]:
        """The allocated nodes in address order (a snapshot: removing while iterating is safe)."""
        return iter(tuple(self._nodes))

    def holes(self) -> Iterator[tuple[int, int]]:
        """The holes as ``(start, end)`` in address order (a snapshot)."""
        return iter(tuple((start, self._holes[start][0]) for start in self._hole_starts))

    def largest_hole(self) -> int:
        """Size of the largest hole, 0 when the range is full."""
        return self._holes_by_size[-1][0] if self._holes_by_size else 0

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return (
            f"<DrmMm [{self.start:#x}, {self.end:#x}) {len(self)} nodes, {len(self._holes)} holes>"
        )
