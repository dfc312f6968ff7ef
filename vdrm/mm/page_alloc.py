"""Physical page frames and the page allocator (``mm/page_alloc.c``, ``struct page`` flags).

Models the emulated RAM: ``total_pages`` page frames, each named by its page frame number
(pfn, an int). A page is metadata only; there is no page content. Per-pfn flags live in
one ``bytearray`` (the ``mem_map``), one byte per frame, with the ``PG_*`` bits below.

Invariants:

* a frame is free exactly when its ``mem_map`` byte is 0; an allocated frame always has
  ``PG_allocated`` set, and only allocated frames carry other flags (release clears them);
* ``free_pages`` equals the number of zero bytes in ``mem_map``;
* no frame below ``_lowest_free`` is free (the search hint);
* every call is all-or-nothing: a failed :meth:`PageAllocator.alloc_pages` changes no frame
  (shrinkers it called may have freed some, as in the kernel), a refused
  :meth:`PageAllocator.release` frees nothing;
* results are deterministic: the same ``seed`` and the same calls give the same pfns.

Placement. The allocator is first-fit from the lowest free frame, so frames released by
anyone are reused first, as a buddy allocator reuses freed order-0 pages. ``fragmentation``
models how scattered a busy machine's free lists are: at 0.0 the allocator never breaks a
run on purpose (a 512-page allocation on a fresh allocator is one contiguous run); at 1.0
it leaves a free frame between any two frames it hands out (512 pages become 512 separate
runs); in between, a frame that would extend a run is left behind with probability
``fragmentation`` (never two in a row), which gives mixed run lengths. A frame left behind
sits between two taken frames, so the next allocation takes it back first: holes do not
pile up. Under pressure (the pattern cannot be met before the end of RAM) the remaining
free frames are taken in order.

Gfp. ``Gfp.KERNEL`` may call the registered shrinkers (``fn(npages_wanted) -> npages
freed``) before failing and may use every free frame. ``Gfp.NOWAIT`` (the kernel's
``GFP_NOWAIT``) never calls shrinkers and refuses an allocation that would leave fewer
free frames than the low watermark (default 1/64 of RAM).

The free space is searched with array operations (numpy) over a window of ``mem_map``
from the lowest free frame, and big releases are one fancy-indexed store: a 2 MiB heap
fault allocates 512 frames at fragmentation 0.3 in about 16 us, where the byte-string
search (``translate``, ``count``, ``itertools.compress``; kept as the reference,
``vectorised = False``) took about 140 us, because it still made one Python int per frame
and one per run. At this size numpy's cost is per call, not per frame: the search uses
ndarray methods and ufuncs rather than numpy's Python-level helpers, and the runs come
out as arrays (``array('q')`` first pfns, ``array('I')`` lengths) with no list between.
"""

from __future__ import annotations

import enum
import random
import re
import sys
from array import array
from collections import deque
from dataclasses import dataclass
from itertools import accumulate, compress, count, repeat
from operator import add, sub
from typing import Any, Callable, Iterable

from vdrm.errors import InvalidArgument, KernelBug, OutOfMemory

try:  # the fast placement path; the byte-string one is the reference and the fallback
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is a dependency
    _np = None

_LITTLE = sys.byteorder == "little"

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)

# mem_map flag bits (one byte per frame)
PG_allocated = 0x01
PG_dirty = 0x02
PG_accessed = 0x04
PG_unevictable = 0x08
PG_USER_FLAGS = PG_dirty | PG_accessed | PG_unevictable  # what callers may set or clear

# byte -> 1 if the frame is free (byte 0), else 0
_FREE_TABLE = bytes([1] + [0] * 255)
_PAIRS = re.compile(b"\x01\x01")  # in a stretch of 1s: leave the 1st, take the 2nd, ...


def _bit_table(bit: int) -> bytes:
    """A ``bytes.translate`` table mapping a flags byte to 1 if ``bit`` is set, else 0."""
    return bytes(1 if value & bit else 0 for value in range(256))


_ALLOCATED_TABLE = _bit_table(PG_allocated)
_DIRTY_TABLE = _bit_table(PG_dirty)
_ACCESSED_TABLE = _bit_table(PG_accessed)

# kmalloc size classes (SLUB, 64-bit, 4 KiB pages): a request is rounded up to one of these
KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)


_ONE_LANE = (1).to_bytes(8, "little")
_NONNEGATIVE_HIGH_BYTES = bytes(range(128))
_lanes_cache: dict[int, tuple[int, int]] = {}


_LANES_CHUNK = 4096  # pfn_range / is_contiguous work in blocks of this many pfns


def _lanes(npages: int) -> tuple[int, int]:
    """(1 in each of ``npages`` 64-bit lanes, lane i holding i), cached for small counts."""
    lanes = _lanes_cache.get(npages)
    if lanes is None:
        ones = int.from_bytes(_ONE_LANE * npages, "little")
        iota = int.from_bytes(array("q", range(npages)).tobytes(), "little")
        lanes = (ones, iota)
        if npages <= _LANES_CHUNK:
            _lanes_cache[npages] = lanes
    return lanes


def pfn_range(first: int, npages: int) -> array:
    """``array('q', range(first, first + npages))``, built with integer arithmetic on 64-bit
    lanes (one multiply-add and one copy per 4096 pfns) instead of a Python loop."""
    out = array("q")
    if not _LITTLE:  # pragma: no cover - every supported host is little-endian
        out.extend(range(first, first + npages))
        return out
    while npages > 0:
        step = min(npages, _LANES_CHUNK)
        ones, iota = _lanes(step)
        out.frombytes((first * ones + iota).to_bytes(8 * step, "little"))
        first += step
        npages -= step
    return out


def any_negative(values: array) -> bool:
    """Whether an ``array('q')`` holds a negative value (sign bytes checked in C)."""
    if not _LITTLE:  # pragma: no cover
        return bool(values) and min(values) < 0
    return bool(values.tobytes()[7::8].translate(None, _NONNEGATIVE_HIGH_BYTES))


def is_contiguous(pfns: array) -> bool:
    """Whether ``pfns`` is exactly ``first, first+1, ...`` (one physical run)."""
    count = len(pfns)
    if count <= 1:
        return True
    first = pfns[0]
    if pfns[-1] - first != count - 1:
        return False
    if not _LITTLE:  # pragma: no cover
        return pfns == array("q", range(first, first + count))
    for start in range(0, count, _LANES_CHUNK):
        stop = min(count, start + _LANES_CHUNK)
        ones, iota = _lanes(stop - start)
        # equal as integers <=> equal lane by lane (no lane of the right side carries)
        if int.from_bytes(pfns[start:stop], "little") != (first + start) * ones + iota:
            return False
    return True


def page_align(size: int) -> int:
    """``PAGE_ALIGN``: round ``size`` (bytes) up to a multiple of PAGE_SIZE."""
    return (size + PAGE_SIZE - 1) & PAGE_MASK


def kmalloc_size(size: int) -> int:
    """Bytes the kernel really spends for ``kmalloc(size)`` (slab class, or whole pages)."""
    if size <= 0:
        return 0
    for klass in KMALLOC_SIZES:
        if size <= klass:
            return klass
    return page_align(size)


def kvmalloc_size(size: int) -> int:
    """Bytes spent by ``kvmalloc(size)``: a slab object up to 8 KiB, whole pages above."""
    return kmalloc_size(size)


_NO_RUNS = array("q")  # the empty runs of a call that asked for none (never mutated)
_NO_LENGTHS = array("I")
_VECTOR_RELEASE = 256  # releases of at least this many frames go through numpy
_TWICE = "release of the same pfn twice in one call (double free)"


def _runs(taken: bytes, first_pfn: int) -> tuple[array, array]:
    """The runs of 1s in a window's taken-frames bytes (window byte i is pfn
    ``first_pfn + i``): ``(first pfn of each run, npages of each run)``.

    Splitting at the 0s gives one piece per run (empty pieces between adjacent 0s); piece
    k starts at ``first_pfn + k + len(pieces before it)``: C-speed iterators, one step per
    piece, none per frame.
    """
    pieces = list(map(len, taken.split(b"\x00")))
    firsts = array("q")
    firsts.fromlist(list(compress(map(add, accumulate(pieces, initial=first_pfn), count()), pieces)))
    return firsts, array("I", filter(None, pieces))


class Gfp(enum.IntFlag):
    """Allocation context: whether the allocator may reclaim (shrinkers) and how deep it may dig."""

    KERNEL = 0  # GFP_KERNEL: may call shrinkers, may use all free memory
    NOWAIT = 1  # GFP_NOWAIT: no reclaim, fails below the low watermark


_NOWAIT = int(Gfp.NOWAIT)


@dataclass(frozen=True)
class AllocatorStats:
    """A snapshot of the allocator's counters (``statistics()`` style)."""

    total: int  # frames of RAM
    free: int  # frames free now
    allocated: int  # frames allocated now
    allocations: int  # successful alloc_pages calls
    failures: int  # alloc_pages calls that raised OutOfMemory
    shrinker_calls: int  # shrinker invocations
    released: int  # frames released so far
    released_dirty: int  # of those, frames that carried PG_dirty when released
    released_accessed: int  # of those, frames that carried PG_accessed when released


class PageAllocator:
    """The emulated RAM: ``total_pages`` frames, a flags byte each, first-fit placement."""

    def __init__(
        self,
        total_pages: int,
        *,
        seed: int = 0,
        fragmentation: float = 0.0,
        low_watermark_pages: int | None = None,
    ):
        if not isinstance(total_pages, int) or total_pages < 1:
            raise InvalidArgument(f"total_pages must be a positive int, not {total_pages!r}")
        if not 0.0 <= fragmentation <= 1.0:
            raise InvalidArgument(f"fragmentation must lie in [0, 1], not {fragmentation}")
        if low_watermark_pages is None:
            low_watermark_pages = total_pages // 64
        if not 0 <= low_watermark_pages <= total_pages:
            raise InvalidArgument(f"low watermark {low_watermark_pages} pages is outside [0, {total_pages}]")
        self._total_pages = total_pages
        self._mem_map = bytearray(total_pages)
        # the same bytes as numpy sees them (the map is never resized, so the view stays valid)
        self._frames = _np.frombuffer(self._mem_map, dtype=_np.uint8) if _np is not None else None
        self._free = total_pages
        self._lowest_free = 0
        self._rng = random.Random(seed)
        self.fragmentation = fragmentation
        # a candidate at an odd position is skipped when a random byte is below this
        self._skip_threshold = round(fragmentation * 256)
        self._skip_table = bytes(1 if value < self._skip_threshold else 0 for value in range(256))
        self.low_watermark_pages = low_watermark_pages
        self._shrinkers: list[Callable[[int], int]] = []
        self._allocations = 0
        self._failures = 0
        self._shrinker_calls = 0
        self._released = 0
        self._released_dirty = 0
        self._released_accessed = 0
        self.vectorised = _np is not None  # False: the byte-string search (the reference)

    # -- counters --------------------------------------------------------------------

    @property
    def total_pages(self) -> int:
        return self._total_pages

    @property
    def free_pages(self) -> int:
        """Number of free frames."""
        return self._free

    @property
    def allocated_pages(self) -> int:
        return self._total_pages - self._free

    def stats(self) -> AllocatorStats:
        return AllocatorStats(
            total=self._total_pages,
            free=self._free,
            allocated=self._total_pages - self._free,
            allocations=self._allocations,
            failures=self._failures,
            shrinker_calls=self._shrinker_calls,
            released=self._released,
            released_dirty=self._released_dirty,
            released_accessed=self._released_accessed,
        )

    # -- shrinkers -------------------------------------------------------------------

    def register_shrinker(self, fn: Callable[[int], int]) -> None:
        """Add ``fn(npages_wanted) -> npages_freed``, called by KERNEL allocations before failing."""
        self._shrinkers.append(fn)

    def unregister_shrinker(self, fn: Callable[[int], int]) -> None:
        try:
            self._shrinkers.remove(fn)
        except ValueError:
            raise KernelBug("unregister of a shrinker that was never registered") from None

    # -- allocation ------------------------------------------------------------------

    def alloc_pages(self, npages: int, gfp: Gfp = Gfp.KERNEL) -> array:
        """Allocate ``npages`` frames, all or nothing; returns their pfns as ``array('q')``.

        Raises OutOfMemory when RAM (or, for NOWAIT, RAM above the low watermark) cannot
        supply them after the shrinkers (KERNEL only) had their say.
        """
        return self._alloc(npages, gfp, False)[0]

    def alloc_runs(self, npages: int, gfp: Gfp = Gfp.KERNEL) -> tuple[array, array, array]:
        """:meth:`alloc_pages` that also says how the frames lie: ``(pfns, first pfn of each
        physically contiguous run as ``array('q')``, npages of each run as ``array('I')``)``,
        in allocation order.

        The runs come from the search that picked the frames (array operations), so a
        caller building an sg table needs no run detection over the pfns.
        """
        return self._alloc(npages, gfp, True)

    def _alloc(self, npages: int, gfp: Gfp, runs: bool) -> tuple[array, array, array]:
        if not isinstance(npages, int) or npages < 1:
            raise InvalidArgument(f"cannot allocate {npages!r} pages")
        if int(gfp) & _NOWAIT:  # an int test: IntFlag's own & costs half a microsecond
            if self._free - npages < self.low_watermark_pages:
                self._failures += 1
                raise OutOfMemory(
                    f"GFP_NOWAIT allocation of {npages} pages refused: {self._free} pages free, "
                    f"the low watermark is {self.low_watermark_pages} pages and NOWAIT never reclaims"
                )
        elif self._free < npages:
            freed = 0
            for shrinker in list(self._shrinkers):
                self._shrinker_calls += 1
                freed += shrinker(npages - self._free)
                if self._free >= npages:
                    break
            if self._free < npages:
                self._failures += 1
                raise OutOfMemory(
                    f"out of memory: {npages} pages wanted, {self._free} of {self._total_pages} free "
                    f"after {len(self._shrinkers)} shrinker(s) reported {freed} pages freed"
                )
        taken = self._take(npages, runs)
        self._allocations += 1
        return taken

    def _take(self, npages: int, runs: bool = False) -> tuple[array, array, array]:
        """Pick ``npages`` free frames (there are at least that many) and mark them allocated;
        with ``runs``, also the runs they form (else two empty values)."""
        mem = self._mem_map
        total = self._total_pages
        start = self._lowest_free
        if not self._skip_threshold and mem.count(0, start, start + npages) == npages:
            # a fresh stretch at the lowest free frame: one contiguous run
            mem[start:start + npages] = b"\x01" * npages
            taken = pfn_range(start, npages)
            firsts, lengths = (array("q", [start]), array("I", [npages])) if runs else (_NO_RUNS, _NO_LENGTHS)
        elif self.vectorised:
            taken, firsts, lengths = self._take_vectorised(start, npages, runs)
        else:
            window = 2 * npages + 64
            while True:
                end = min(total, start + window)
                old = mem[start:end]
                takeable = free = old.translate(_FREE_TABLE)
                if self._skip_threshold:
                    takeable = self._thin(free)
                if takeable.count(1) >= npages:
                    break
                if end == total:
                    takeable = free  # pressure: every free frame, in order
                    break
                window *= 2
            taken = array("q")
            taken.fromlist(list(compress(range(start, end), takeable)))
            del taken[npages:]
            cut = taken[-1] + 1 - start
            if taken[-1] - taken[0] == npages - 1:  # ascending and distinct: one run
                mem[taken[0]:taken[0] + npages] = b"\x01" * npages
                firsts, lengths = (array("q", [taken[0]]), array("I", [npages])) if runs else (_NO_RUNS, _NO_LENGTHS)
            else:
                marked = int.from_bytes(old[:cut], "little") | int.from_bytes(takeable[:cut], "little")
                mem[start:start + cut] = marked.to_bytes(cut, "little")
                firsts, lengths = _runs(takeable[:cut], start) if runs else (_NO_RUNS, _NO_LENGTHS)
        self._free -= npages
        if taken[0] == start:
            lowest = mem.find(0, start)
            self._lowest_free = total if lowest < 0 else lowest
        return taken, firsts, lengths

    def _take_vectorised(self, start: int, npages: int, runs: bool) -> tuple[array, array, array]:
        """:meth:`_take`'s search from ``start``, the same frames from the same random bytes,
        in numpy: the frames picked and marked, and their runs (the caller keeps the books).

        The byte-string search above costs a Python object per frame where it lists the
        taken pfns and one per run where it splits them (about 140 us for 512 pages at
        fragmentation 0.3, most of a heap fault); here every step is one array operation
        over the window. With ``vectorised`` False the byte-string search runs instead:
        the reference the tests hold this one to, frame for frame.
        """
        np = _np
        total = self._total_pages
        frames = self._frames
        window = 2 * npages + 64
        while True:
            end = min(total, start + window)
            free = frames[start:end] == 0
            takeable = self._thin_vectorised(free) if self._skip_threshold else free
            # ndarray methods and ufuncs, not numpy's Python-level wrappers (flatnonzero,
            # ones, diff): at 512 frames a call's overhead costs more than its work
            found = takeable.nonzero()[0]
            if len(found) >= npages:
                break
            if end == total:
                found = free.nonzero()[0]  # pressure: every free frame, in order
                break
            window *= 2
        index = found[:npages]
        index += start
        frames[index] = PG_allocated
        taken = array("q")
        taken.frombytes(index.tobytes())  # nonzero gives intp: int64 on every 64-bit host
        if not runs:
            return taken, _NO_RUNS, _NO_LENGTHS
        # cuts[k]: a run starts at index[k] (cuts[npages] closes the last run); a run ends
        # wherever the next frame is not the next pfn
        cuts = np.empty(npages + 1, dtype=bool)
        cuts[0] = cuts[npages] = True
        np.not_equal(np.subtract(index[1:], index[:-1]), 1, out=cuts[1:npages])
        bounds = cuts.nonzero()[0]
        firsts = array("q")
        firsts.frombytes(index[bounds[:-1]].tobytes())
        lengths = array("I")
        lengths.frombytes(np.subtract(bounds[1:], bounds[:-1]).astype(np.uint32).tobytes())
        return taken, firsts, lengths

    def _thin_vectorised(self, free: "Any") -> "Any":
        """:meth:`_thin` over a boolean array (same random bytes, same frames left)."""
        np = _np
        eligible = free[1:] & free[:-1]  # frame i+1 is free and so is frame i
        if self._skip_threshold < 256:
            # the random byte of each frame, as 1 where it is below the threshold (translate)
            eligible &= np.frombuffer(self._rng.randbytes(len(free)).translate(self._skip_table), dtype=bool)[1:]
        # leave every other frame of each stretch of eligible ones, starting with its first:
        # a bool array's bytes are 0/1, and a left-to-right replace is _thin's regex
        left = np.frombuffer(b"\x00" + eligible.tobytes().replace(b"\x01\x01", b"\x01\x00"), dtype=bool)
        return free > left  # free and not left (a frame left behind is a free one)

    def _thin(self, free: bytes) -> bytes:
        """Frames of a window to take (1), from its free frames (1), leaving some behind.

        A free frame whose predecessor is also free may be left behind (probability
        ``fragmentation``); within a stretch of such frames every other one is left, starting
        with the first, so a frame left behind always sits between two taken ones and the
        next allocation (which starts at the lowest free frame) takes it back.
        """
        width = len(free)
        free_int = int.from_bytes(free, "little")
        prev_free = free_int << 8  # byte i now holds frame i-1's bit
        eligible = free_int & prev_free
        if self._skip_threshold < 256:
            eligible &= int.from_bytes(self._rng.randbytes(width).translate(self._skip_table), "little")
        eligible_bytes = (eligible & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        left = _PAIRS.sub(b"\x01\x00", eligible_bytes)
        return (free_int ^ int.from_bytes(left, "little")).to_bytes(width, "little")

    # -- release ---------------------------------------------------------------------

    def release(self, pfns: Iterable[int]) -> None:
        """Return frames to the free pool. KernelBug on a double free or an unknown pfn."""
        if not isinstance(pfns, array) or pfns.typecode != "q":
            pfns = array("q", pfns)
        npages = len(pfns)
        if npages == 0:
            return
        clear = self._release_vectorised if self.vectorised and npages >= _VECTOR_RELEASE else self._release_bytes
        first, dirty, accessed = clear(pfns)
        self._released += npages
        self._released_dirty += dirty
        self._released_accessed += accessed
        self._free += npages
        if first < self._lowest_free:
            self._lowest_free = first

    def _release_bytes(self, pfns: array) -> tuple[int, int, int]:
        """Check and free ``pfns`` (nothing freed if a check fails): the lowest, and how
        many were dirty and accessed."""
        npages = len(pfns)
        flags = self._flags_of(pfns, "release")
        contiguous = is_contiguous(pfns)
        if not contiguous and len(set(pfns)) != npages:
            raise KernelBug(_TWICE)
        mem = self._mem_map
        if contiguous:
            first = pfns[0]
            mem[first:first + npages] = bytes(npages)
        else:
            first = min(pfns)
            deque(map(mem.__setitem__, pfns, repeat(0, npages)), 0)
        return first, flags.translate(_DIRTY_TABLE).count(1), flags.translate(_ACCESSED_TABLE).count(1)

    def _release_vectorised(self, pfns: array) -> tuple[int, int, int]:
        """:meth:`_release_bytes` in numpy, with the same checks in the same order: a big
        object's pages (a 1 GiB heap is 262,144 frames) cost one array operation per
        step, not one Python call per frame (48 ms before). A bad pfn is reported by
        :meth:`_flags_of`, so both paths name the same one the same way."""
        np = _np
        frames = self._frames
        index = np.frombuffer(pfns, dtype=np.int64)
        if ((index < 0) | (index >= self._total_pages)).any():
            self._flags_of(pfns, "release")  # raises, naming the first pfn outside RAM
        flags = frames[index]
        if not (flags & PG_allocated).all():
            self._flags_of(pfns, "release")  # raises, naming the first free pfn
        first = int(index.min())
        if not is_contiguous(pfns) and int(np.bincount(index - first).max()) > 1:
            raise KernelBug(_TWICE)
        frames[index] = 0
        return first, int(np.count_nonzero(flags & PG_dirty)), int(np.count_nonzero(flags & PG_accessed))

    def _flags_of(self, pfns: array, what: str) -> bytes:
        """The flags bytes of ``pfns``, after checking every one is a valid allocated frame."""
        try:
            if any_negative(pfns):
                raise IndexError
            flags = bytes(map(self._mem_map.__getitem__, pfns))
        except IndexError:
            bad = next(p for p in pfns if not 0 <= p < self._total_pages)
            raise KernelBug(f"{what} of pfn {bad:#x}, outside RAM (0..{self._total_pages - 1:#x})") from None
        if flags.translate(_ALLOCATED_TABLE).count(0):
            bad = next(p for p in pfns if not self._mem_map[p] & PG_allocated)
            raise KernelBug(f"{what} of pfn {bad:#x}, which is not allocated (double free?)")
        return flags

    # -- per-frame flags -------------------------------------------------------------

    def _check_pfn(self, pfn: int) -> None:
        if not isinstance(pfn, int) or not 0 <= pfn < self._total_pages:
            raise KernelBug(f"pfn {pfn!r} is outside RAM (0..{self._total_pages - 1:#x})")

    def page_flags(self, pfn: int) -> int:
        """The ``PG_*`` bits of frame ``pfn`` (0 for a free frame)."""
        self._check_pfn(pfn)
        return self._mem_map[pfn]

    def is_allocated(self, pfn: int) -> bool:
        self._check_pfn(pfn)
        return bool(self._mem_map[pfn] & PG_allocated)

    def set_page_flags(self, pfn: int, flags: int) -> None:
        """Set ``PG_dirty``/``PG_accessed``/``PG_unevictable`` on an allocated frame."""
        self._check_user_flags(flags)
        if not self.is_allocated(pfn):
            raise KernelBug(f"set_page_flags on free pfn {pfn:#x}")
        self._mem_map[pfn] |= flags

    def clear_page_flags(self, pfn: int, flags: int) -> None:
        """Clear ``PG_dirty``/``PG_accessed``/``PG_unevictable`` on an allocated frame."""
        self._check_user_flags(flags)
        if not self.is_allocated(pfn):
            raise KernelBug(f"clear_page_flags on free pfn {pfn:#x}")
        self._mem_map[pfn] &= ~flags

    def mark_pages(self, pfns: Iterable[int], flags: int) -> None:
        """Set ``flags`` on many allocated frames at once (``folio_mark_dirty`` etc. in bulk)."""
        self._check_user_flags(flags)
        if not isinstance(pfns, array) or pfns.typecode != "q":
            pfns = array("q", pfns)
        if not pfns or not flags:
            return
        table = bytes(value | flags for value in range(256))
        marked = self._flags_of(pfns, "mark_pages").translate(table)
        deque(map(self._mem_map.__setitem__, pfns, marked), 0)

    @staticmethod
    def _check_user_flags(flags: int) -> None:
        if flags & ~PG_USER_FLAGS:
            raise InvalidArgument(f"page flags {flags:#x} include bits callers may not change")
