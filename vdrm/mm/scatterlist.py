"""Scatter-gather tables (``lib/scatterlist.c``, ``include/linux/scatterlist.h``, mainline >= 6.2).

Models ``struct sg_table`` / ``struct sg_append_table`` and the builders that turn a list of
pages into entries, with the kernel's exact results: entry boundaries (physically
contiguous pages merge, a run is cut every ``max_segment`` rounded down to PAGE_SIZE),
offset and length of every entry (``size`` is consumed with unsigned 64-bit wrap, so only
one entry can be short and the ones after it get their full length), ``nents`` /
``orig_nents``, and the chunk layout (``max_single_alloc`` slots per chunk, default 128;
the last slot of a full chunk becomes the chain link when more entries follow).

Storage: an :class:`SgTable` keeps one pfn (``array('q')``) and one length
(``array('I')``) per entry, plus the chunk sizes; chain slots and flags are derived, and
:class:`Scatterlist` objects are made only when iterating. A contiguous 2 MiB block is one
entry of 12 bytes.

Invariants:

* every entry but possibly the first has offset 0 (appends with a ``prv`` refuse an offset);
* ``orig_nents`` == number of entries == ``len`` of the per-entry arrays; ``nents`` equals it
  after building and after :func:`dma_map_sgtable` (no IOMMU, so no DMA merging);
* entries fill chunk slots in order; every chunk but the last gives up its last slot to the
  chain link; ``SgAppendTable.total_nents`` == usable slots == sum(chunks) - (chunks - 1).

Where vdrm differs from the kernel (section 1.8 of the reference): inputs on which the
kernel dereferences NULL, corrupts its chunk walk or describes memory it was never given
are refused with InvalidArgument saying why: ``n_pages == 0``; ``offset >= PAGE_SIZE``;
appending new entries after a call that passed ``left_pages = 0``; an append that would
chain a new chunk after a short chunk (an earlier ``left_pages`` promised fewer pages than
followed); re-passing the page in which the previous entry ends mid-page. Appends absorb
as many contiguous pages into ``prv`` as ``max_segment`` allows (mainline), not RFC v2's
single page. ``CONFIG_ARCH_NO_SG_CHAIN`` is not modelled.

Where the kernel WARNs before refusing (``WARN_ON(max_segment < PAGE_SIZE)`` after the
round-down, ``WARN_ON(offset)`` on a call that continues a table), vdrm refuses the same
way and, given a kernel ``log``, writes the WARNING block there too
(:func:`vdrm.kernel.bug.warn`). The kernel tests in this order: ``max_segment``, then the
offset of a continuing call, before it looks at the pages, so a continuing call with
``n_pages == 0`` and ``offset != 0`` WARNs (it is not one of vdrm's silent refusals).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate, compress
from typing import TYPE_CHECKING, Iterator, Sequence

from vdrm.errors import InvalidArgument, KernelBug
from vdrm.kernel.bug import Frame, Task, WarnSite, warn
from vdrm.mm.page_alloc import PAGE_SHIFT, PAGE_SIZE, any_negative, is_contiguous, kmalloc_size, pfn_range

if TYPE_CHECKING:
    from vdrm.kernel.printk import KernelLog
    from vdrm.mm.xarray import XArray

# The two WARN_ONs of sg_alloc_append_table_from_pages (lines and offsets are vdrm's, see
# vdrm.kernel.bug); the task is the caller's, pid 1 unless one is given.
_APPEND = Frame("sg_alloc_append_table_from_pages", 0x3a4, 0x4c0)
WARN_MAX_SEGMENT = WarnSite("lib/scatterlist.c", 461, (_APPEND, Frame("sg_alloc_table_from_pages_segment", 0x48, 0x9c)))
WARN_OFFSET = WarnSite("lib/scatterlist.c", 472, (_APPEND,))
DEFAULT_TASK = Task(pid=1, comm="init")

SG_CHAIN = 0x01
SG_END = 0x02
SG_PAGE_LINK_MASK = SG_CHAIN | SG_END
UINT_MAX = 0xFFFFFFFF
ULONG_MAX = (1 << 64) - 1
SG_MAX_SINGLE_ALLOC = 128  # PAGE_SIZE / sizeof(struct scatterlist) with a DMA length field
SG_MAX_SINGLE_ALLOC_NO_DMA_LENGTH = 170  # 24-byte entries (no CONFIG_NEED_SG_DMA_LENGTH)
SG_CHUNK_SIZE = 128
SG_MAX_SEGMENTS = 2048
SG_TABLE_BYTES = 16  # sizeof(struct sg_table)

_LITTLE = sys.byteorder == "little"
_NONZERO = bytes([0] + [1] * 255)
_LOW_NIBBLE = bytes(value & 0x0F for value in range(256))  # bits 8..11 of a little-endian u32
_ONE_LANE = (1).to_bytes(8, sys.byteorder)
_lane_ones_cache: dict[int, int] = {}


@dataclass(slots=True)
class Scatterlist:
    """One ``struct scatterlist`` slot: a page (pfn), offset and length, DMA view, flags."""

    pfn: int | None  # None for an unset slot or a chain link
    offset: int
    length: int
    dma_address: int = 0
    dma_length: int = 0
    flags: int = 0  # SG_CHAIN / SG_END (the low bits of page_link)

    @property
    def is_chain(self) -> bool:
        return bool(self.flags & SG_CHAIN)

    @property
    def is_last(self) -> bool:
        """``sg_is_last``: the END mark."""
        return bool(self.flags & SG_END)

    @property
    def phys(self) -> int:
        """``sg_phys``: physical address of the first byte."""
        if self.pfn is None:
            raise InvalidArgument("sg_phys of a slot without a page")
        return (self.pfn << PAGE_SHIFT) + self.offset

    @property
    def npages(self) -> int:
        """Pages touched by ``[offset, offset + length)``."""
        return (self.offset + self.length + PAGE_SIZE - 1) >> PAGE_SHIFT


def _slot_bytes(max_single_alloc: int) -> int:
    return 24 if max_single_alloc == SG_MAX_SINGLE_ALLOC_NO_DMA_LENGTH else 32


class SgTable:
    """``struct sg_table``: entries in chunks of ``max_single_alloc`` slots."""

    __slots__ = ("nents", "orig_nents", "_pfns", "_lengths", "_size", "_first_offset", "_chunks",
                 "max_single_alloc", "dma_mapped", "_ended")

    def __init__(self, max_single_alloc: int = SG_MAX_SINGLE_ALLOC):
        self.nents = 0
        self.orig_nents = 0
        self._pfns = array("q")
        self._lengths = array("I")
        self._size = 0  # sum(_lengths), kept by every writer of _lengths
        self._first_offset = 0  # only entry 0 may have a non-zero offset
        self._chunks: list[int] = []  # slots per chunk
        self.max_single_alloc = max_single_alloc
        self.dma_mapped = False
        self._ended = False  # the last entry carries SG_END

    # -- introspection ----------------------------------------------------------------

    @property
    def chunks(self) -> list[int]:
        """Slots per allocated chunk, in chain order."""
        return list(self._chunks)

    @property
    def total_slots(self) -> int:
        return sum(self._chunks)

    def __len__(self) -> int:
        return self.orig_nents

    def __repr__(self) -> str:
        return f"SgTable(nents={self.nents}, orig_nents={self.orig_nents}, chunks={self._chunks})"

    def _entry(self, index: int, flags: int) -> Scatterlist:
        pfn = self._pfns[index]
        offset = self._first_offset if index == 0 else 0
        length = self._lengths[index]
        entry = Scatterlist(None if pfn < 0 else pfn, offset, length, flags=flags)
        if self.dma_mapped and pfn >= 0:
            entry.dma_address = (pfn << PAGE_SHIFT) + offset
            entry.dma_length = length
        return entry

    def _end_flags(self, index: int) -> int:
        return SG_END if self._ended and index == self.orig_nents - 1 else 0

    def __iter__(self) -> Iterator[Scatterlist]:
        """``for_each_sgtable_sg``: the ``orig_nents`` CPU entries, chain links skipped."""
        last = self.orig_nents - 1
        for index in range(self.orig_nents):
            yield self._entry(index, SG_END if self._ended and index == last else 0)

    def entry(self, index: int) -> Scatterlist:
        """Entry ``index`` (0-based, chain links not counted)."""
        if not 0 <= index < self.orig_nents:
            raise InvalidArgument(f"sg entry {index} outside 0..{self.orig_nents - 1}")
        return self._entry(index, self._end_flags(index))

    def slots(self) -> Iterator[tuple[int, int, Scatterlist | None]]:
        """Every allocated slot as ``(chunk, slot, content)``: an entry, a chain link, or None
        for a slot not used yet (the reserve an append's ``left_pages`` asked for)."""
        index = 0
        last_chunk = len(self._chunks) - 1
        for chunk, nslots in enumerate(self._chunks):
            for slot in range(nslots):
                if slot == nslots - 1 and chunk < last_chunk:
                    yield chunk, slot, Scatterlist(None, 0, 0, flags=SG_CHAIN)
                elif index < self.orig_nents:
                    yield chunk, slot, self._entry(index, self._end_flags(index))
                    index += 1
                else:
                    yield chunk, slot, (Scatterlist(None, 0, 0, flags=SG_END) if slot == nslots - 1 else None)

    def dma_entries(self) -> list[Scatterlist]:
        """``for_each_sgtable_dma_sg``: the first ``nents`` entries, with their DMA fields."""
        return [self._entry(index, self._end_flags(index)) for index in range(self.nents)]

    def dma_segments(self) -> list[tuple[int, int]]:
        """``(sg_dma_address, sg_dma_len)`` of the first ``nents`` entries (zeros if unmapped)."""
        count = self.nents
        if not self.dma_mapped:
            return [(0, 0)] * count
        addrs = list(map(PAGE_SIZE.__mul__, self._pfns[:count]))
        if count and self._first_offset:
            addrs[0] += self._first_offset
        return list(zip(addrs, self._lengths[:count]))

    def dma_npages(self, size: int | None = None) -> int:
        """The first ``nents`` DMA segments' lengths, each rounded up to whole pages, summed
        (0 if unmapped): the 4 KiB PTEs they need, without one object per segment.
        ``size``: :attr:`size` if the caller has it (and ``nents`` is every entry)."""
        count = self.nents
        if not self.dma_mapped or count == 0:
            return 0
        whole = count == len(self._lengths)
        lengths = self._lengths if whole else self._lengths[:count]
        raw = lengths.tobytes()
        if _LITTLE and raw[0::4].count(0) == count and raw[1::4].translate(_LOW_NIBBLE).count(0) == count:
            # every length is whole pages
            return (size if size is not None and whole else sum(lengths)) >> PAGE_SHIFT
        return sum((length + PAGE_SIZE - 1) >> PAGE_SHIFT for length in lengths)

    def pfn_runs(self) -> list[tuple[int, int]]:
        """``(first pfn, npages)`` per entry, npages covering ``[offset, offset + length)``."""
        count = self.orig_nents
        if count == 0:
            return []
        npages = [(length + PAGE_SIZE - 1) >> PAGE_SHIFT for length in self._lengths[:count]]
        if self._first_offset:
            npages[0] = (self._first_offset + self._lengths[0] + PAGE_SIZE - 1) >> PAGE_SHIFT
        return list(zip(self._pfns[:count], npages))

    def page_pfns(self) -> array:
        """Every page the entries cover, in table order (runs expanded)."""
        out = array("q")
        for pfn, npages in self.pfn_runs():
            out += pfn_range(pfn, npages)
        return out

    @property
    def size(self) -> int:
        """Bytes described: the sum of the entries' lengths."""
        return self._size

    def kernel_bytes(self) -> int:
        """Bytes the kernel allocates for this table: the ``sg_table`` struct plus its chunks
        (a full chunk is a whole page, a shorter one a kmalloc of 24 or 32 bytes per slot)."""
        if not self._chunks:
            return 0
        slot_bytes = _slot_bytes(self.max_single_alloc)
        total = kmalloc_size(SG_TABLE_BYTES)
        for nslots in self._chunks:
            total += PAGE_SIZE if nslots == self.max_single_alloc else kmalloc_size(nslots * slot_bytes)
        return total

    # -- filling a plain table --------------------------------------------------------

    def set_page(self, index: int, pfn: int, length: int, offset: int = 0) -> None:
        """``sg_set_page`` on entry ``index`` of a table made by :func:`sg_alloc_table`."""
        if not 0 <= index < self.orig_nents:
            raise InvalidArgument(f"sg entry {index} outside 0..{self.orig_nents - 1}")
        if offset and index:
            raise InvalidArgument("vdrm keeps a non-zero offset only on entry 0")
        if pfn < 0 or not 0 <= length <= UINT_MAX or not 0 <= offset <= UINT_MAX:
            raise InvalidArgument(f"bad sg entry: pfn {pfn}, offset {offset}, length {length}")
        self._pfns[index] = pfn
        self._size += length - self._lengths[index]
        self._lengths[index] = length
        if index == 0:
            self._first_offset = offset


class SgAppendTable:
    """``struct sg_append_table``: a table being built by successive appends."""

    __slots__ = ("sgt",)

    def __init__(self, max_single_alloc: int = SG_MAX_SINGLE_ALLOC):
        _check_max_single_alloc(max_single_alloc)
        self.sgt = SgTable(max_single_alloc)

    @property
    def prv(self) -> Scatterlist | None:
        """The last populated entry, or None before the first append."""
        count = self.sgt.orig_nents
        return self.sgt.entry(count - 1) if count else None

    @property
    def total_nents(self) -> int:
        """Usable slots allocated (chain links not counted)."""
        chunks = self.sgt._chunks
        return sum(chunks) - len(chunks) + 1 if chunks else 0

    def __repr__(self) -> str:
        return f"SgAppendTable({self.sgt!r}, total_nents={self.total_nents})"


# -- run detection ------------------------------------------------------------------------


def _lane_ones(nlanes: int) -> int:
    """An int with the value 1 in each of ``nlanes`` 64-bit lanes."""
    ones = _lane_ones_cache.get(nlanes)
    if ones is None:
        ones = int.from_bytes(_ONE_LANE * nlanes, sys.byteorder)
        if nlanes <= 4096:
            _lane_ones_cache[nlanes] = ones
    return ones


def page_runs(pages: array) -> tuple[array, array]:
    """Maximal physically contiguous runs of ``pages`` (``array('q')`` of pfns, in order):
    returns ``(first pfn of each run, npages of each run)``.

    Runs are found with whole-array integer arithmetic (one 64-bit lane per page:
    ``(pages + 1) ^ pages[1:]`` is zero exactly where page i+1 follows page i), so the
    contiguous and the fully scattered cases cost no Python work per page.
    """
    firsts, npages, _ = _page_runs(pages)
    return firsts, _array_q(npages)


def _array_q(values: list[int]) -> array:
    out = array("q")
    out.fromlist(values)
    return out


def _page_runs(pages: array) -> tuple[array, list[int], int]:
    """:func:`page_runs` with the run lengths as a list, plus the longest run."""
    count = len(pages)
    if count <= 1:
        return array("q", pages), [1] * count, count
    if is_contiguous(pages):
        return array("q", [pages[0]]), [count], count
    if not _LITTLE:  # pragma: no cover - every supported host is little-endian
        firsts, npages = _page_runs_loop(pages)
        return firsts, npages.tolist(), max(npages)
    raw = int.from_bytes(pages, "little")
    diff = (raw + _lane_ones(count)) ^ (raw >> 64)
    diff |= diff >> 32
    diff |= diff >> 16
    diff |= diff >> 8
    # starts[i] == 1 where page i begins a run
    starts = b"\x01" + diff.to_bytes(8 * count, "little")[0:8 * (count - 1):8].translate(_NONZERO)
    nruns = starts.count(1)
    if nruns == count:
        return array("q", pages), [1] * count, 1
    if nruns * 16 < count:  # long runs: jump from start to start
        firsts = []
        npages = []
        find = starts.find
        begin = 0
        while begin < count:
            end = find(1, begin + 1)
            if end < 0:
                end = count
            firsts.append(pages[begin])
            npages.append(end - begin)
            begin = end
        return _array_q(firsts), npages, max(npages)
    firsts_a = _array_q(list(compress(pages.tolist(), starts)))
    # each start followed by one extra byte: the pieces between starts are run lengths
    npages = list(map(len, starts.replace(b"\x01", b"\x01\x00").split(b"\x01")[1:]))
    return firsts_a, npages, max(npages)


def _page_runs_loop(pages: array) -> tuple[array, array]:
    firsts = array("q")
    npages = array("q")
    prev = -2
    for pfn in pages:
        if pfn == prev + 1:
            npages[-1] += 1
        else:
            firsts.append(pfn)
            npages.append(1)
        prev = pfn
    return firsts, npages


def _segments(firsts: array, npages: list[int], longest: int, max_pages: int) -> tuple[array, list[int]]:
    """Cut runs longer than ``max_pages`` into pieces of ``max_pages`` (the last may be shorter)."""
    if longest <= max_pages:
        return firsts, npages
    out_firsts = array("q")
    out_npages: list[int] = []
    for pfn, run in zip(firsts, npages):
        if run <= max_pages:
            out_firsts.append(pfn)
            out_npages.append(run)
            continue
        whole, rest = divmod(run, max_pages)
        out_firsts += array("q", range(pfn, pfn + whole * max_pages, max_pages))
        out_npages += [max_pages] * whole
        if rest:
            out_firsts.append(pfn + whole * max_pages)
            out_npages.append(rest)
    return out_firsts, out_npages


# -- argument checks ------------------------------------------------------------------------


def _check_max_single_alloc(max_single_alloc: int) -> None:
    if not isinstance(max_single_alloc, int) or max_single_alloc < 2:
        raise InvalidArgument(f"max_single_alloc must be an int >= 2 (128 or 170 in real configs), not {max_single_alloc!r}")


def segment_npages(max_segment: int) -> int:
    """Pages per entry allowed by ``max_segment``: rounded down to PAGE_SIZE, EINVAL below it."""
    if not isinstance(max_segment, int) or not 0 <= max_segment <= UINT_MAX:
        raise InvalidArgument(f"max_segment {max_segment!r} is not an unsigned int")
    npages = max_segment >> PAGE_SHIFT
    if npages == 0:
        raise InvalidArgument(
            f"max_segment {max_segment} rounds down to 0, below PAGE_SIZE ({PAGE_SIZE}); the kernel WARNs and returns -EINVAL"
        )
    return npages


def _as_pages(pages: Sequence[int]) -> array:
    if isinstance(pages, array) and pages.typecode == "q":
        return pages
    try:
        pages = array("q", pages)
    except (TypeError, OverflowError) as exc:
        raise InvalidArgument(f"pages must be pfns (non-negative ints): {exc}") from None
    return pages


# -- builders ---------------------------------------------------------------------------------


def sg_alloc_table(nents: int, *, max_single_alloc: int = SG_MAX_SINGLE_ALLOC) -> SgTable:
    """``sg_alloc_table``: a table of ``nents`` empty entries (EINVAL for 0), END on the last."""
    _check_max_single_alloc(max_single_alloc)
    if not isinstance(nents, int) or nents <= 0:
        raise InvalidArgument(f"sg_alloc_table of {nents!r} entries: the kernel returns -EINVAL for 0")
    if nents > UINT_MAX:
        raise InvalidArgument(f"sg_alloc_table of {nents} entries: nents is an unsigned int")
    table = SgTable(max_single_alloc)
    chunks = []
    left = nents
    while left > max_single_alloc:
        chunks.append(max_single_alloc)
        left -= max_single_alloc - 1
    chunks.append(left)
    table._chunks = chunks
    table._pfns = array("q", [-1]) * nents
    table._lengths = array("I", [0]) * nents
    table.nents = table.orig_nents = nents
    table._ended = True
    return table


def _place_entries(chunks: list[int], used_last: int, nentries: int, left_pages: int,
                   max_single_alloc: int) -> list[int]:
    """Chunk sizes after placing ``nentries`` new entries, following ``get_next_sg``.

    ``used_last`` is the number of entries already in the last chunk. A slot is taken in
    order; the last slot of the last chunk (END-marked) is taken only for the final entry
    of a call with ``left_pages == 0``; otherwise a new chunk of ``min(needed, max)`` slots
    is chained, ``needed`` being the entries still to place plus ``left_pages``.
    """
    chunks = list(chunks)
    if not chunks:
        chunks.append(min(nentries + left_pages, max_single_alloc))
        used_last = 0
    placed = 0
    while True:
        nslots = chunks[-1]
        free = nslots - 1 - used_last  # slots before the END slot
        if free > 0:
            step = min(free, nentries - placed)
            placed += step
            used_last += step
        if placed == nentries:
            return chunks
        if nentries - placed == 1 and left_pages == 0:
            return chunks  # the final entry takes the END slot
        if nslots < max_single_alloc:
            raise InvalidArgument(
                f"this append needs a new chunk after a chunk of only {nslots} slots: an earlier call's "
                f"left_pages promised fewer pages than followed; the kernel would chain from a short chunk "
                f"and sg_free_table would then leak chunks or read past a chunk's end"
            )
        chunks.append(min(nentries - placed + left_pages, max_single_alloc))
        used_last = 0


def sg_alloc_append_table_from_pages(
    append: SgAppendTable,
    pages: Sequence[int],
    offset: int,
    size: int,
    max_segment: int,
    left_pages: int,
    *,
    max_single_alloc: int = SG_MAX_SINGLE_ALLOC,
    log: "KernelLog | None" = None,
    task: Task = DEFAULT_TASK,
    runs: tuple[array, Sequence[int]] | None = None,
) -> None:
    """``sg_alloc_append_table_from_pages``: append ``pages`` to ``append``.

    ``offset`` applies to the first new entry (must be 0 when continuing), ``size`` bytes
    are distributed over the new entries with unsigned wrap, runs are cut every
    ``max_segment`` (rounded down to PAGE_SIZE), and ``left_pages`` reserves slots for the
    pages later calls will append. Pages contiguous with the previous entry are absorbed
    into it while ``max_segment`` allows. Refusals: see the module docstring; the two the
    kernel WARNs on also log the WARNING block to ``log`` (if given) as ``task``.

    ``runs`` (vdrm): the maximal runs of ``pages`` as ``(first pfns, npages)``, when the
    caller already has them (:meth:`PageAllocator.alloc_runs`); run detection is skipped.
    """
    sgt = append.sgt
    try:
        max_pages = segment_npages(max_segment)
    except InvalidArgument:
        if log is not None and isinstance(max_segment, int) and 0 <= max_segment <= UINT_MAX:
            warn(log, WARN_MAX_SEGMENT, task)
        raise
    if sgt.orig_nents and isinstance(offset, int) and offset:
        if log is not None:
            warn(log, WARN_OFFSET, task)
        raise InvalidArgument(f"offset {offset!r} when continuing a table: the kernel WARNs and returns -EINVAL")
    if max_single_alloc != sgt.max_single_alloc:
        raise InvalidArgument(
            f"max_single_alloc {max_single_alloc} differs from the table's {sgt.max_single_alloc}"
        )
    pages = _as_pages(pages)
    count = len(pages)
    if count == 0:
        raise InvalidArgument("n_pages is 0: the kernel would build an entry from the page before the array")
    if not isinstance(offset, int) or not 0 <= offset < PAGE_SIZE:
        raise InvalidArgument(f"offset {offset!r} is not inside the first page (0..{PAGE_SIZE - 1}); the kernel does not check it")
    if not isinstance(size, int) or not 0 <= size <= ULONG_MAX:
        raise InvalidArgument(f"size {size!r} is not an unsigned long")
    if not isinstance(left_pages, int) or not 0 <= left_pages <= UINT_MAX:
        raise InvalidArgument(f"left_pages {left_pages!r} is not an unsigned int")
    if sgt.dma_mapped:
        raise InvalidArgument("cannot append to a DMA-mapped table")
    contiguous = is_contiguous(pages)
    if pages[0] < 0 if contiguous else any_negative(pages):
        raise InvalidArgument("pages must be pfns (non-negative ints)")

    absorbed = 0
    nentries_before = sgt.orig_nents
    if nentries_before:
        prv_offset = sgt._first_offset if nentries_before == 1 else 0
        prv_length = sgt._lengths[-1]
        prv_end = prv_offset + prv_length
        next_pfn = sgt._pfns[-1] + (prv_end >> PAGE_SHIFT)
        room = (max_pages * PAGE_SIZE - prv_length) >> PAGE_SHIFT if max_pages * PAGE_SIZE >= prv_length else 0
        if pages[0] == next_pfn and room > 0:
            if prv_end & (PAGE_SIZE - 1):
                raise InvalidArgument(
                    f"the previous entry ends inside pfn {next_pfn:#x} (offset+length {prv_end}); passing that "
                    f"page again would make the kernel merge a whole page and describe memory never passed"
                )
            limit = min(room, count)
            absorbed = page_runs(pages[:limit])[1][0]
        if absorbed < count and sgt._ended:
            raise InvalidArgument(
                "appending new entries to a table whose previous call passed left_pages=0: its last entry "
                "is END-marked and the kernel's get_next_sg() would dereference NULL"
            )

    rest = pages[absorbed:] if absorbed else pages
    nnew = count - absorbed
    if nnew:
        if contiguous:  # so is what is left after absorption
            found = array("q", [rest[0]]), [nnew], nnew
        elif runs is not None and not absorbed:
            if sum(runs[1]) != count or len(runs[0]) != len(runs[1]):
                raise KernelBug(f"runs of {sum(runs[1])} pages passed with {count} pages")
            # no run is longer than all the pages: max() only when that could be too long
            found = runs[0], runs[1], (count if count <= max_pages else max(runs[1]))
        else:
            found = _page_runs(rest)
        firsts, npages = _segments(*found, max_pages)
        nentries = len(firsts)
        if nentries_before:
            chunks = sgt._chunks
            used_last = nentries_before - (sum(chunks) - chunks[-1] - (len(chunks) - 1))
        else:
            chunks, used_last = [], 0
        new_chunks = _place_entries(chunks, used_last, nentries, left_pages, sgt.max_single_alloc)
        lengths, added = _entry_lengths(npages, offset, size, nnew)
    # -- nothing was changed above this line; apply --
    if absorbed:
        sgt._lengths[-1] += absorbed * PAGE_SIZE
        sgt._size += absorbed * PAGE_SIZE
    if nnew:
        if not nentries_before:
            sgt._first_offset = offset
        sgt._pfns += firsts
        sgt._lengths += lengths
        sgt._size += added
        sgt._chunks = new_chunks
        sgt.nents = sgt.orig_nents = nentries_before + nentries
        sgt._ended = left_pages == 0
    elif left_pages == 0:
        sgt._ended = True


def _entry_lengths(npages: Sequence[int], offset: int, size: int, total_npages: int) -> tuple[array, int]:
    """Entry lengths, ``min(size_left, chunk bytes)`` with 64-bit wrap of ``size_left``, and
    their sum."""
    if len(npages) == 1:
        length = min(size, total_npages * PAGE_SIZE - offset)
        return array("I", [length]), length
    if len(npages) == total_npages:  # one page per entry
        lengths = array("I", [PAGE_SIZE]) * total_npages
    elif _LITTLE:
        # every lane times PAGE_SIZE at once: an entry is at most UINT_MAX bytes, so no
        # lane's npages reaches 2**20 and the shift never carries into the next lane
        pages = npages if isinstance(npages, array) and npages.typecode == "I" else array("I", npages)
        lengths = array("I")
        lengths.frombytes((int.from_bytes(pages, "little") << PAGE_SHIFT).to_bytes(4 * len(pages), "little"))
    else:  # pragma: no cover - every supported host is little-endian
        lengths = array("I")
        lengths.fromlist(list(map(PAGE_SIZE.__mul__, npages)))
    if offset:
        lengths[0] -= offset
    full = total_npages * PAGE_SIZE - offset
    if size >= full:
        return lengths, full
    ends = list(accumulate(lengths))
    short = bisect_right(ends, size)  # first entry the remaining size cannot fill
    before = ends[short - 1] if short else 0
    lengths[short] = size - before
    return lengths, full - (ends[short] - before) + lengths[short]


def sg_alloc_table_from_pages_segment(
    pages: Sequence[int],
    offset: int,
    size: int,
    max_segment: int,
    *,
    max_single_alloc: int = SG_MAX_SINGLE_ALLOC,
    log: "KernelLog | None" = None,
    runs: tuple[array, Sequence[int]] | None = None,
) -> SgTable:
    """``sg_alloc_table_from_pages_segment``: a one-shot table (append with ``left_pages = 0``);
    ``runs`` as for :func:`sg_alloc_append_table_from_pages`."""
    append = SgAppendTable(max_single_alloc)
    sg_alloc_append_table_from_pages(append, pages, offset, size, max_segment, 0, max_single_alloc=max_single_alloc,
                                     log=log, runs=runs)
    if append.total_nents != append.sgt.orig_nents:
        raise KernelBug(f"one-shot table has {append.total_nents} slots for {append.sgt.orig_nents} entries")
    return append.sgt


def sg_alloc_table_from_pages(
    pages: Sequence[int], offset: int, size: int, *, max_single_alloc: int = SG_MAX_SINGLE_ALLOC
) -> SgTable:
    """``sg_alloc_table_from_pages``: the ``_segment`` variant with ``max_segment = UINT_MAX``."""
    return sg_alloc_table_from_pages_segment(pages, offset, size, UINT_MAX, max_single_alloc=max_single_alloc)


def sg_alloc_table_from_xarray_segment(
    xa: "XArray",
    idx: int,
    n_pages: int,
    offset: int,
    size: int,
    max_segment: int,
    *,
    max_single_alloc: int = SG_MAX_SINGLE_ALLOC,
) -> SgTable:
    """RFC v2 1/6 ``sg_alloc_table_from_xarray_segment``: pages ``xa[idx .. idx+n_pages-1]``.

    A hole in the range is refused (the RFC would dereference NULL).
    """
    if xa.typecode != "q":
        raise InvalidArgument("sg tables are built from an XArray('q') of pfns")
    if not isinstance(n_pages, int) or n_pages <= 0:
        raise InvalidArgument(f"n_pages {n_pages!r}: at least one page is needed")
    if not isinstance(idx, int) or idx < 0:
        raise InvalidArgument(f"xarray index {idx!r} is negative")
    pages = xa.load_range(idx, n_pages)
    if any_negative(pages):
        hole = idx + pages.index(-1)
        raise InvalidArgument(f"xarray index {hole} in [{idx}, {idx + n_pages}) is not populated (a hole)")
    return sg_alloc_table_from_pages_segment(pages, offset, size, max_segment, max_single_alloc=max_single_alloc)


def sg_alloc_table_from_xarray(
    xa: "XArray", idx: int, n_pages: int, offset: int, size: int, *, max_single_alloc: int = SG_MAX_SINGLE_ALLOC
) -> SgTable:
    """RFC v2 1/6 ``sg_alloc_table_from_xarray``: the ``_segment`` variant with ``UINT_MAX``."""
    return sg_alloc_table_from_xarray_segment(xa, idx, n_pages, offset, size, UINT_MAX, max_single_alloc=max_single_alloc)


def dma_map_sgtable(sgt: SgTable) -> None:
    """``dma_map_sgtable`` without an IOMMU: DMA address = physical address, nents unchanged."""
    if not sgt._chunks:
        raise InvalidArgument("dma_map_sgtable of a freed or empty table")
    if any_negative(sgt._pfns):
        index = sgt._pfns.index(-1)
        raise InvalidArgument(f"dma_map_sgtable: entry {index} has no page")
    sgt.dma_mapped = True
    sgt.nents = sgt.orig_nents


def dma_unmap_sgtable(sgt: SgTable) -> None:
    """``dma_unmap_sgtable``: the DMA fields are no longer valid."""
    sgt.dma_mapped = False


def sg_free_table(sgt: SgTable) -> None:
    """``sg_free_table``: release every chunk; a second call is a no-op, as in the kernel."""
    sgt.nents = sgt.orig_nents = 0
    sgt._pfns = array("q")
    sgt._lengths = array("I")
    sgt._size = 0
    sgt._first_offset = 0
    sgt._chunks = []
    sgt.dma_mapped = False
    sgt._ended = False


def sg_free_append_table(append: SgAppendTable) -> None:
    """``sg_free_append_table``."""
    sg_free_table(append.sgt)
