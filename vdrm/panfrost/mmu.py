"""The Panfrost GPU MMU (``panfrost_mmu.c``): address spaces, page tables, faults.

Each open file has one :class:`MmuContext` (``struct panfrost_mmu``): its GPU VA space
(pages ``[0x2000, 0x100000)``, i.e. 32 MiB up to 4 GiB, see :mod:`.gpu_va`) and a page
table. The page table is kept as the list of mapped ranges with their physical runs, and
counts the 2 MiB block and 4 KiB page entries ``mmu_map_sg`` would write (a 2 MiB entry
when both the GPU and the physical address are 2 MiB aligned and 2 MiB remain).

A context only reaches the hardware through an address-space slot (:class:`AsSlots`,
``panfrost_mmu_as_get``/``_put``): a context that has one keeps it and moves to the head
of the LRU list; otherwise it takes the lowest free slot, and when every present slot is
taken it steals the slot of the least recently used context that has no job running.

Faults (:meth:`Mmu.handle_fault`) follow ``panfrost_mmu_map_fault_addr``: only a pure
translation fault (exception type ``0xC0``–``0xC7``) is tried; the address is rounded down
to 2 MiB and the whole block is populated (512 pages), its sg table built and mapped, and
the heap's ``heap_rss_size`` grows by 2 MiB. A repeated fault on a populated block is a
silent success. A fault outside any BO (``ENOENT``), in a BO that is not a heap
(``EINVAL``, with the ``matching BO is not heap type`` ``dev_WARN``: a whole WARNING block
with its call trace, see :mod:`vdrm.kernel.bug`), or that cannot get memory
(``ENOMEM``) is terminal: the seven-line ``Unhandled Page fault`` block goes to the kernel
log, the AS is marked faulty, and the job on it fails. The AS is re-enabled the next time
a job of that context takes it.

The access type is named by ``access_type_name``: ``ATOMIC`` only on GPUs with
``HW_FEATURE_AARCH64_MMU``, which the Mali-G52 has from 6.16 (the release table's
``g52-aarch64-mmu`` row), ``UNKNOWN`` before.

The heap allocation uses ``GFP_NOWAIT`` in the sparse backing (the RFC's fault path) and
``GFP_KERNEL`` in the dense one (mainline), so under memory pressure the sparse backing
fails earlier, as it would in the kernel.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from vdrm.errors import InvalidArgument, KernelBug, NoEntry, OutOfMemory, VdrmError
from vdrm.kernel.bug import Frame, Task, WarnSite, warn
from vdrm.kernel.printk import KERN_DEBUG, KERN_ERR
from vdrm.mm.page_alloc import PAGE_SHIFT, PAGE_SIZE, Gfp
from vdrm.panfrost.gem import SZ_2M, Mapping, PanfrostBo
from vdrm.panfrost.gpu_va import GpuVaSpace

if TYPE_CHECKING:
    from vdrm.kernel.printk import KernelLog
    from vdrm.mm.scatterlist import SgTable

# Exception codes (panfrost_device.h, DRM_PANFROST_EXCEPTION_*).
EXCEPTIONS: dict[int, str] = {
    0x00: "OK", 0x01: "DONE", 0x02: "INTERRUPTED", 0x03: "STOPPED", 0x04: "TERMINATED",
    0x05: "KABOOM", 0x06: "EUREKA", 0x08: "ACTIVE",
    0x40: "JOB_CONFIG_FAULT", 0x41: "JOB_POWER_FAULT", 0x42: "JOB_READ_FAULT",
    0x43: "JOB_WRITE_FAULT", 0x44: "JOB_AFFINITY_FAULT", 0x48: "JOB_BUS_FAULT",
    0x50: "INSTR_INVALID_PC", 0x51: "INSTR_INVALID_ENC", 0x52: "INSTR_TYPE_MISMATCH",
    0x53: "INSTR_OPERAND_FAULT", 0x54: "INSTR_TLS_FAULT", 0x55: "INSTR_BARRIER_FAULT",
    0x56: "INSTR_ALIGN_FAULT", 0x58: "DATA_INVALID_FAULT", 0x59: "TILE_RANGE_FAULT",
    0x5A: "ADDR_RANGE_FAULT", 0x5B: "IMPRECISE_FAULT", 0x60: "OOM", 0x61: "OOM_AFBC",
    0x7F: "UNKNOWN", 0x80: "DELAYED_BUS_FAULT", 0x88: "GPU_SHAREABILITY_FAULT",
    0x89: "SYS_SHAREABILITY_FAULT", 0x8A: "GPU_CACHEABILITY_FAULT",
    **{0xC0 + i: f"TRANSLATION_FAULT_{i}" for i in range(5)},
    0xC7: "TRANSLATION_FAULT_IDENTITY",
    **{0xC8 + i: f"PERM_FAULT_{i}" for i in range(4)},
    **{0xD0 + i: f"TRANSTAB_BUS_FAULT_{i}" for i in range(4)},
    **{0xD8 + i: f"ACCESS_FLAG_{i}" for i in range(4)},
    **{0xE0 + i: f"ADDR_SIZE_FAULT_IN{i}" for i in range(4)},
    **{0xE4 + i: f"ADDR_SIZE_FAULT_OUT{i}" for i in range(4)},
    **{0xE8 + i: f"MEM_ATTR_FAULT_{i}" for i in range(4)},
    **{0xEC + i: f"MEM_ATTR_NONCACHE_{i}" for i in range(4)},
}
EXCEPTION_CODES = {name: code for code, name in EXCEPTIONS.items()}

ACCESS_ATOMIC, ACCESS_EXECUTE, ACCESS_READ, ACCESS_WRITE = 0, 1, 2, 3
ACCESS_TYPES = {"ATOMIC": ACCESS_ATOMIC, "EXECUTE": ACCESS_EXECUTE, "READ": ACCESS_READ, "WRITE": ACCESS_WRITE}
DECODER_FAULT_BIT = 1 << 10

# What a heap fault raised by the tiler looks like by default: a level-3 translation
# fault on a write (the tiler writes polygon lists into the heap).
DEFAULT_FAULT_EXCEPTION = 0xC3
DEFAULT_FAULT_ACCESS = ACCESS_WRITE


def exception_name(code: int) -> str:
    """``panfrost_exception_name``; holes and unknown codes read "Unknown exception type"."""
    return EXCEPTIONS.get(code, "Unknown exception type")


def access_type_name(fault_status: int, *, aarch64_mmu: bool = False) -> str:
    """``access_type_name`` on bits 8-9 of the fault status."""
    access = (fault_status >> 8) & 0x3
    if access == ACCESS_ATOMIC:
        return "ATOMIC" if aarch64_mmu else "UNKNOWN"
    return {ACCESS_EXECUTE: "EXECUTE", ACCESS_READ: "READ", ACCESS_WRITE: "WRITE"}[access]


def fault_status(exception: int, access: int, source_id: int = 0, *, decoder: bool = False) -> int:
    """Compose an ``AS_FAULTSTATUS`` value."""
    return (exception & 0xFF) | (access & 0x3) << 8 | (DECODER_FAULT_BIT if decoder else 0) | (source_id & 0xFFFF) << 16


def unhandled_fault_message(as_nr: int, addr: int, status: int, *, aarch64_mmu: bool = False) -> str:
    """The seven lines ``panfrost_mmu_irq_handler_thread`` prints for a terminal fault."""
    exception_type = status & 0xFF
    access_type = (status >> 8) & 0x3
    source_id = status >> 16
    return (
        f"Unhandled Page fault in AS{as_nr} at VA 0x{addr:016X}\n"
        f"Reason: TODO\n"
        f"raw fault status: 0x{status:X}\n"
        f"decoded fault status: {'DECODER FAULT' if status & DECODER_FAULT_BIT else 'SLAVE FAULT'}\n"
        f"exception type 0x{exception_type:X}: {exception_name(exception_type)}\n"
        f"access type 0x{access_type:X}: {access_type_name(status, aarch64_mmu=aarch64_mmu)}\n"
        f"source id 0x{source_id:X}\n"
    )


@dataclass(frozen=True)
class PteRange:
    """The PTEs one ``map_sg`` call wrote: ``size`` bytes of GPU VA from ``iova``, contiguous,
    backed by the DMA segments of ``sgt`` (owned by the BO), and their entry counts."""

    iova: int
    size: int  # bytes
    prot: str
    n2m: int  # 2 MiB block entries
    n4k: int  # 4 KiB page entries
    sgt: "SgTable"

    def segments(self) -> list[tuple[int, int, int]]:
        """``(iova, physical address, length)`` of every DMA segment, in GPU address order."""
        out, addr = [], self.iova
        for paddr, length in self.sgt.dma_segments():
            out.append((addr, paddr, length))
            addr += length
        return out


class MmuContext:
    """``struct panfrost_mmu``: one file's GPU VA space and page table."""

    def __init__(self, client_id: int):
        self.client_id = client_id
        self.va = GpuVaSpace()
        self.as_nr = -1
        self.as_count = 0
        self.mappings: dict[int, Mapping] = {}  # VA node start (pfn) -> mapping
        self.ptes: dict[int, PteRange] = {}  # iova of each map_sg call -> what it wrote
        self.pte_2m = 0
        self.pte_4k = 0
        self.destroyed = False

    def map_sg(self, iova: int, sgt: "SgTable", prot: str) -> None:
        """``mmu_map_sg``: write PTEs for every DMA segment of ``sgt`` starting at ``iova``."""
        size = sgt.size
        if sgt.dma_mapped and sgt.nents > 1 and size <= SZ_2M:  # every segment is shorter than 2 MiB: 4 KiB entries
            n2m = 0
            n4k = sgt.dma_npages(size)
            addr = iova + size
        else:
            addr = iova
            n2m = n4k = 0
            for paddr, length in sgt.dma_segments():
                a, b = _pte_counts(addr, paddr, length)
                n2m += a
                n4k += b
                addr += length
        size = addr - iova
        old = self.ptes.get(iova)
        if old is None:
            self.ptes[iova] = PteRange(iova, size, prot, n2m, n4k, sgt)
        else:  # written again over live PTEs (a purged heap refaulted): both stay counted
            self.ptes[iova] = PteRange(iova, max(size, old.size), prot, old.n2m + n2m, old.n4k + n4k, sgt)
        self.pte_2m += n2m
        self.pte_4k += n4k

    def unmap(self, iova: int) -> None:
        """Drop the PTEs written at ``iova`` (for heaps, only the blocks present)."""
        r = self.ptes.pop(iova, None)
        if r is not None:
            self.pte_2m -= r.n2m
            self.pte_4k -= r.n4k

    def unmap_heap(self, base: int, nblocks: int) -> None:
        for block in range(nblocks):
            self.unmap(base + block * SZ_2M)

    def is_mapped(self, addr: int) -> bool:
        """Whether a PTE covers GPU address ``addr``."""
        node = self.va.find_pfn(addr >> PAGE_SHIFT)
        if node is None:
            return False
        base = node.start << PAGE_SHIFT
        block_base = base + ((addr - base) & ~(SZ_2M - 1))
        for key in (base, block_base):
            r = self.ptes.get(key)
            if r is not None and r.iova <= addr < r.iova + r.size:
                return True
        return False



def _pte_counts(iova: int, paddr: int, length: int) -> tuple[int, int]:
    """How many 2 MiB and 4 KiB entries ``mmu_map_sg`` writes for one segment.

    ``mmu_map_sg`` takes a 2 MiB step wherever both addresses are 2 MiB aligned and 2 MiB
    remain, else a 4 KiB step. Both addresses move together, so they are aligned at the
    same time only when they agree modulo 2 MiB: then 4 KiB steps up to the first 2 MiB
    boundary, 2 MiB steps while 2 MiB remain, 4 KiB steps for the rest.
    """
    if length <= 0:
        return 0, 0
    if (iova - paddr) % SZ_2M:
        return 0, (length + PAGE_SIZE - 1) >> PAGE_SHIFT
    head = (-iova) % SZ_2M
    if head % PAGE_SIZE or head >= length:  # never lands on a 2 MiB boundary with 2 MiB left
        return _pte_counts_stepwise(iova, paddr, length)
    n2m = (length - head) // SZ_2M
    rest = length - head - n2m * SZ_2M
    return n2m, (head >> PAGE_SHIFT) + ((rest + PAGE_SIZE - 1) >> PAGE_SHIFT)


def _pte_counts_stepwise(iova: int, paddr: int, length: int) -> tuple[int, int]:
    """The kernel's loop, step by step (unaligned corner cases)."""
    n2m = n4k = 0
    while length > 0:
        if iova % SZ_2M == 0 and paddr % SZ_2M == 0 and length >= SZ_2M:
            step = SZ_2M
            n2m += 1
        else:
            step = PAGE_SIZE
            n4k += 1
        iova += step
        paddr += step
        length -= step
    return n2m, n4k


class AsSlots:
    """The hardware address-space slots and their LRU (``as_alloc_mask``, ``as_lru_list``)."""

    def __init__(self, nr_slots: int, log: "KernelLog"):
        if not 1 <= nr_slots <= 16:
            raise InvalidArgument(f"a Mali GPU has 1 to 16 address spaces, not {nr_slots}")
        self.present_mask = (1 << nr_slots) - 1
        self.alloc_mask = 0
        self.faulty_mask = 0
        self.lru: OrderedDict[int, MmuContext] = OrderedDict()  # head (most recent) first
        self.log = log
        self.steals = 0

    def get(self, ctx: MmuContext) -> int:
        """``panfrost_mmu_as_get``: the AS ``ctx`` runs on, assigning or stealing one."""
        if ctx.as_nr >= 0:
            ctx.as_count += 1
            self.lru.move_to_end(id(ctx), last=False)
            if self.faulty_mask & (1 << ctx.as_nr):
                self.faulty_mask &= ~(1 << ctx.as_nr)  # re-enabled on the next use
            return ctx.as_nr
        free = ~self.alloc_mask & self.present_mask
        if free:
            as_nr = (free & -free).bit_length() - 1
        else:
            victim = next((c for c in reversed(self.lru.values()) if c.as_count == 0), None)
            if victim is None:
                raise KernelBug("every address space is in use by a running job")
            as_nr = victim.as_nr
            victim.as_nr = -1
            del self.lru[id(victim)]
            self.steals += 1
            self.faulty_mask &= ~(1 << as_nr)
        self.alloc_mask |= 1 << as_nr
        ctx.as_nr = as_nr
        ctx.as_count = 1
        self.lru[id(ctx)] = ctx
        self.lru.move_to_end(id(ctx), last=False)
        self.log.printk(KERN_DEBUG, f"Assigned AS{as_nr} to mmu {id(ctx):#x}, alloc_mask={self.alloc_mask:x}")
        return as_nr

    def put(self, ctx: MmuContext) -> None:
        """``panfrost_mmu_as_put``: one user of the context's AS is done."""
        if ctx.as_count <= 0:
            raise KernelBug(f"AS put on a context with as_count {ctx.as_count}")
        ctx.as_count -= 1

    def release(self, ctx: MmuContext) -> None:
        """The context is destroyed: its AS becomes free."""
        if ctx.as_nr >= 0:
            self.alloc_mask &= ~(1 << ctx.as_nr)
            self.faulty_mask &= ~(1 << ctx.as_nr)
            del self.lru[id(ctx)]
            ctx.as_nr = -1

    def context_on(self, as_nr: int) -> MmuContext | None:
        for ctx in self.lru.values():
            if ctx.as_nr == as_nr:
                return ctx
        return None

    def mark_faulty(self, as_nr: int) -> None:
        self.faulty_mask |= 1 << as_nr

    def is_faulty(self, as_nr: int) -> bool:
        return bool(self.faulty_mask & (1 << as_nr))


@dataclass(frozen=True)
class FaultResult:
    """What a fault did: the AS, the 2 MiB-aligned address and whether pages were added."""

    as_nr: int
    addr: int
    populated: bool
    bo: PanfrostBo | None = None


# The MMU interrupt's thread (``devm_request_threaded_irq(..., "panfrost-mmu")``: comm
# "irq/<n>-panfrost-mmu", kept to 15 characters) and the dev_WARN in
# panfrost_mmu_map_fault_addr(), inlined into the thread function as in the dri-devel
# trace. The irq number, pid, line and frame offsets are vdrm's (see vdrm.kernel.bug).
MMU_IRQ_TASK = Task(pid=173, comm="irq/45-panfrost-mmu")
NOT_HEAP_WARN = WarnSite("drivers/gpu/drm/panfrost/panfrost_mmu.c", 565, (
    Frame("panfrost_mmu_irq_handler_thread", 0x4a8, 0x6b0, "panfrost"),
    Frame("irq_thread_fn", 0x2c, 0xa8),
    Frame("irq_thread", 0x19c, 0x2c8),
    Frame("kthread", 0x110, 0x130),
    Frame("ret_from_fork", 0x10, 0x20),
))


class Mmu:
    """The device's MMU: the AS slots, the fault path and its kernel log messages."""

    def __init__(self, slots: AsSlots, log: "KernelLog", dev_name: str, *, heap_gfp_sparse: Gfp = Gfp.NOWAIT,
                 aarch64_mmu: bool = False, release: str = "6.18.0"):
        self.slots = slots
        self.log = log
        self.dev_name = dev_name
        self.aarch64_mmu = aarch64_mmu  # HW_FEATURE_AARCH64_MMU: fault logs say ATOMIC
        self.release = release  # what a WARNING block's CPU: line names
        self.heap_gfp_sparse = heap_gfp_sparse
        self.faults_handled = 0
        self.faults_terminal = 0

    def _dev_printk(self, level: int, text: str) -> None:
        self.log.printk(level, f"panfrost {self.dev_name}: {text}")

    def handle_fault(self, as_nr: int, addr: int, status: int) -> FaultResult:
        """The IRQ thread for one page fault in ``as_nr``; terminal faults raise.

        Raises the kernel's error (NoEntry, InvalidArgument, OutOfMemory) after logging
        the terminal message and marking the AS faulty.
        """
        exception_type = status & 0xFF
        try:
            if (exception_type & 0xF8) != 0xC0:
                raise InvalidArgument(f"fault status 0x{status:X} is not a translation fault")
            result = self._map_fault_addr(as_nr, addr)
        except VdrmError as err:
            self.faults_terminal += 1
            self._dev_printk(KERN_ERR, unhandled_fault_message(as_nr, addr, status, aarch64_mmu=self.aarch64_mmu))
            self.slots.mark_faulty(as_nr)
            raise type(err)(f"unhandled page fault in AS{as_nr} at VA 0x{addr:x}: {err}") from None
        self.faults_handled += 1
        return result

    def _map_fault_addr(self, as_nr: int, addr: int) -> FaultResult:
        ctx = self.slots.context_on(as_nr)
        node = ctx.va.find_pfn(addr >> PAGE_SHIFT) if ctx else None
        if node is None:
            raise NoEntry("no BO is mapped there")
        mapping = ctx.mappings[node.start]
        bo = mapping.bo
        if not bo.is_heap:
            warn(self.log, NOT_HEAP_WARN, MMU_IRQ_TASK,
                 f"panfrost {self.dev_name}: matching BO is not heap type (GPU VA = {mapping.iova:x})",
                 release=self.release)
            raise InvalidArgument("the BO there is not a heap BO")
        if mapping.mmu.as_nr != as_nr:
            raise KernelBug("fault in an AS that is not the mapping's")
        block_addr = addr & ~(SZ_2M - 1)
        block = (block_addr - mapping.iova) // SZ_2M
        if bo.block_populated(block):
            return FaultResult(as_nr, block_addr, False, bo)
        gfp = self.heap_gfp_sparse if bo.sparse else Gfp.KERNEL
        try:
            sgt = bo.populate_heap_block(block, gfp)
        except OutOfMemory as err:
            raise OutOfMemory(f"no memory for 2 MiB of heap ({err})") from None
        mapping.mmu.map_sg(block_addr, sgt, "rw-noexec-cache")
        mapping.active = True
        bo.heap_rss_size += SZ_2M
        self.log.printk(KERN_DEBUG, f"panfrost {self.dev_name}: mapped page fault @ AS{as_nr} {block_addr:x}")
        return FaultResult(as_nr, block_addr, True, bo)


def iter_mappings(ctx: MmuContext) -> Iterator[Mapping]:
    """The mappings of a context, in GPU address order."""
    for node in ctx.va.nodes():
        yield ctx.mappings[node.start]
