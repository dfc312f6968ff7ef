"""The Panthor DRM driver (``panthor_drv.c``, ``panthor_mmu.c``, ``panthor_sched.c``,
``panthor_heap.c``): per-file VMs, groups and tiler heaps, job time, fdinfo.

The emulated GPU is the **Mali-G610 MP4** of the Rockchip RK3588 (Valhall, CSF; GPU_ID
0xa8670000, 4 shader cores, 8 address spaces, up to 1 GHz); timestamps tick at the
RK3588's 24 MHz arch timer.

Per file (``panthor_open``): a VM pool (ids 1..``MAX_VMS_PER_FILE``), a group pool
(handles 1..``MAX_GROUPS_PER_POOL``) and the GPU usage counters (``panthor_gpu_usage``:
timestamp ticks and cycles).

**VMs** (``panthor_mmu.c``): user VA ``[0, user_va_range)`` is bound explicitly by
VM_BIND; mapping over a bound range replaces what was there (``drm_gpuvm_sm_map``
splits the old mappings), unmapping splits partly covered ones. A mapping pins its BO's
pages (``drm_gem_shmem_get_pages_sgt``). Kernel objects (heap contexts and chunks) live
above ``user_va_range``. An asynchronous bind that fails while executing makes the VM
UNUSABLE: later MAPs are refused, UNMAPs still run.

**Groups** (``panthor_sched.c``): each queue runs its jobs in order; a job's time
accrues to the file when it completes, sampled only if the ``profiling`` mask was set
when the job was queued (``job->profiling.mask``): bit 0 cycles, bit 1 timestamps. A
group owns kernel BOs (suspend buffers, syncobjs, per-queue ring buffer and firmware
interface memory), counted in fdinfo's driver-internal lines.

**Tiler heaps** (``panthor_heap.c``): see :mod:`vdrm.panthor.heap`.

``fdinfo_revision = "docs"`` reproduces the revision ``Documentation/gpu/panthor.rst``'s
example was taken from: the ``panthor-*-memory`` lines with every generic memory line
(active and purgeable included), a mix no merged release prints.

fdinfo (``panthor_show_fdinfo``): 6.11+ prints, with the TIMESTAMP bit,
``drm-engine-panthor`` (ticks * 1e9 / 24 MHz, rounded up), with the CYCLES bit
``drm-cycles-panthor``, always ``drm-maxfreq-panthor``/``drm-curfreq-panthor``; 6.15+
then ``panthor-resident-memory``/``panthor-active-memory`` (kernel-owned BOs of the file:
group BOs, heap chunks and heap contexts; active while the group runs / the VM has an
address space); then the generic memory lines (Panthor BOs: RESIDENT status only, no
rss callback). 6.10 has no fdinfo at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vdrm.drm.device import Driver
from vdrm.drm.fdinfo import memory_lines, memory_stats, size_line
from vdrm.drm.gem import OBJECT_RESIDENT
from vdrm.drm.gem_shmem import ShmemObject
from vdrm.errors import InvalidArgument, KernelBug, OutOfMemory
from vdrm.mm.page_alloc import PAGE_SIZE
from vdrm.panthor import releases

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile
    from vdrm.drm.gem import GemObject
    from vdrm.kernel.clock import Clock
    from vdrm.panthor.heap import HeapPool

MAX_FREQ_HZ = 1_000_000_000
TIMESTAMP_FREQUENCY_HZ = 24_000_000
NSEC_PER_SEC = 1_000_000_000

PROFILING_CYCLES = 1 << 0  # PANTHOR_DEVICE_PROFILING_CYCLES
PROFILING_TIMESTAMP = 1 << 1  # PANTHOR_DEVICE_PROFILING_TIMESTAMP
PROFILING_ALL = PROFILING_CYCLES | PROFILING_TIMESTAMP

MAX_VMS_PER_FILE = 32  # PANTHOR_MAX_VMS_PER_FILE
MAX_GROUPS_PER_POOL = 128
MAX_CS_PER_CSG = 8  # the emulated firmware's cs_slot_count
VA_BITS = 48  # DRM_PANTHOR_MMU_VA_BITS(mmu_features)
FULL_VA_RANGE = 1 << VA_BITS
MIN_KERNEL_VA_SIZE = 1 << 32  # what vdrm leaves above the user range by default

BO_NO_MMAP = 1 << 0
BO_WB_MMAP = 1 << 1  # 1.6
BO_FLAGS = {"NO_MMAP": BO_NO_MMAP}  # what a scenario may name

VM_STATE_USABLE, VM_STATE_UNUSABLE = 0, 1
DOCS_MEMORY_RULES = (6, 13)  # fdinfo_revision "docs": memory lines as before the optional ones (6.14)

GROUP_STATE_TIMEDOUT = 1 << 0
GROUP_STATE_FATAL_FAULT = 1 << 1
GROUP_STATE_INNOCENT = 1 << 2
GROUP_PRIORITIES = {"LOW": 0, "MEDIUM": 1, "HIGH": 2, "REALTIME": 3}

# What the emulated firmware's CSG interface asks for per group and per queue (bytes).
CSG_SUSPEND_SIZE = 0x24000
CSG_PROTM_SUSPEND_SIZE = 0x24000
QUEUE_IFACE_SIZE = 2 * PAGE_SIZE
SYNCOBJ_SIZE = 16  # sizeof(struct panthor_syncobj_64b)

# Feature registers of the RK3588's Mali-G610 MP4 (drm_panthor_gpu_info).
G610_GPU_INFO = {
    "gpu_id": 0xA8670000, "gpu_rev": 0x0, "csf_id": 0x40A0412, "l2_features": 0x7120306,
    "tiler_features": 0x809, "mem_features": 0x301, "mmu_features": 0x2830,
    "thread_features": 0x4010000, "max_threads": 2048, "thread_max_workgroup_size": 1024,
    "thread_max_barrier_size": 1024, "coherency_features": 0, "texture_features": (0xC1FFFF9E, 0x0, 0x0, 0x0),
    "as_present": 0xFF, "shader_present": 0x50005, "l2_present": 0x1, "tiler_present": 0x1,
    "core_features": 0x0, "pad": 0,
}
CSIF_INFO = {"csg_slot_count": 8, "cs_slot_count": MAX_CS_PER_CSG, "cs_reg_count": 96,
             "scoreboard_slot_count": 8, "unpreserved_cs_reg_count": 4, "pad": 0}


def driver_version(kernel: tuple[int, int]) -> tuple[int, int, int]:
    """``DRM_IOCTL_VERSION`` of Panthor in kernel ``kernel``: the release table's newest bump."""
    major, minor = releases.PANTHOR.driver_version(kernel)
    return (major, minor, 0)


class PanthorBo(ShmemObject):
    """``struct panthor_gem_object``: a shmem BO, maybe private to one VM (``exclusive_vm``).

    status: RESIDENT once its pages exist (sparse: any page); no rss callback (fdinfo
    counts whole sizes); active while a job of its exclusive VM runs.
    """

    def __init__(self, dev, size: int, flags: int = 0, exclusive_vm: "Vm | None" = None, *,
                 sparse: bool = False, granularity_npages: int = 1):
        super().__init__(dev, size, sparse=sparse, granularity_npages=granularity_npages)
        self.flags = flags
        self.exclusive_vm = exclusive_vm
        self._label: str | None = None
        self.bindings = 0  # VM mappings pinning the pages
        self.syncs = 0  # BO_SYNC operations on it (cache maintenance, counted)

    @property
    def label(self) -> str | None:
        """The BO's label (BO_SET_LABEL); its bytes count in ``dev.label_bytes``."""
        return self._label

    @label.setter
    def label(self, text: str | None) -> None:
        old = len(self._label.encode("utf-8", "surrogateescape")) if self._label else 0
        new = len(text.encode("utf-8", "surrogateescape")) if text else 0
        self.dev.label_bytes += new - old
        self._label = text

    def free(self) -> None:
        self.label = None
        super().free()

    def has_status(self) -> bool:
        return True

    def status(self) -> int:
        if self.imported or (self.is_populated() if self.sparse else self.pages is not None):
            return OBJECT_RESIDENT
        return 0

    def is_active(self) -> bool:
        vm = self.exclusive_vm
        return vm is not None and vm.busy()


@dataclass
class VmMapping:
    """One ``drm_gpuva``: ``size`` bytes at ``va`` showing ``bo`` from ``bo_offset``."""

    va: int
    size: int
    bo: PanthorBo
    bo_offset: int
    flags: int

    @property
    def end(self) -> int:
        return self.va + self.size


class Vm:
    """``struct panthor_vm``: explicit user mappings, a kernel VA area, a heap pool."""

    def __init__(self, drv: "PanthorDriver", vm_id: int, user_va_range: int):
        self.drv = drv
        self.id = vm_id
        self.user_va_range = user_va_range
        self.mappings: list[VmMapping] = []  # sorted by va, never overlapping
        self.state = VM_STATE_USABLE
        self.heaps: "HeapPool | None" = None
        self._kernel_va = user_va_range  # next free kernel VA (bump allocator)
        self.destroyed = False
        self.groups: list["Group"] = []

    def busy(self) -> bool:
        """Whether a job using this VM runs now (it holds an address space then)."""
        return any(g.running() for g in self.groups)

    def alloc_kernel_va(self, size: int) -> int:
        va = self._kernel_va
        if va + size > FULL_VA_RANGE:
            raise OutOfMemory("the VM's kernel VA range is full")
        self._kernel_va += size
        return va

    def map(self, va: int, size: int, bo: PanthorBo, bo_offset: int, flags: int) -> None:
        """Bind ``bo`` at ``va`` (replacing what was there); pins the BO's pages."""
        if bo.sparse:
            raise KernelBug("user BOs are dense")
        bo.get_pages()  # may raise OutOfMemory before anything changes
        self.unmap(va, size)
        bo.get()
        bo.bindings += 1
        mapping = VmMapping(va, size, bo, bo_offset, flags)
        self.mappings.append(mapping)
        self.mappings.sort(key=lambda m: m.va)

    def unmap(self, va: int, size: int) -> None:
        """Unbind ``[va, va + size)``, splitting mappings that cross its ends."""
        end = va + size
        kept: list[VmMapping] = []
        for m in self.mappings:
            if m.end <= va or m.va >= end:
                kept.append(m)
                continue
            if m.va < va:  # the part before the hole stays: it keeps the old reference
                kept.append(VmMapping(m.va, va - m.va, m.bo, m.bo_offset, m.flags))
                m.bo.get()
                m.bo.bindings += 1
                m.bo.get_pages()
            if m.end > end:
                kept.append(VmMapping(end, m.end - end, m.bo, m.bo_offset + (end - m.va), m.flags))
                m.bo.get()
                m.bo.bindings += 1
                m.bo.get_pages()
            self._drop(m.bo)
        kept.sort(key=lambda m: m.va)
        self.mappings = kept

    def _drop(self, bo: PanthorBo) -> None:
        bo.bindings -= 1
        bo.put_pages()
        bo.put()

    def destroy(self) -> None:
        """``panthor_vm_destroy``: unbind everything, destroy heaps; groups keep it alive no longer."""
        for m in self.mappings:
            self._drop(m.bo)
        self.mappings = []
        if self.heaps is not None:
            self.heaps.destroy()
            self.heaps = None
        self.destroyed = True


@dataclass
class Queue:
    """One command-stream queue of a group: its ring buffer and its job timeline."""

    priority: int
    ringbuf: ShmemObject
    iface: ShmemObject
    busy_until_ns: int = 0
    jobs: list["Job"] = field(default_factory=list)  # queued or running, in order


@dataclass
class Job:
    start_ns: int
    end_ns: int
    profiling: int  # the profiling mask when it was queued
    cycles_hz: int


class Group:
    """``struct panthor_group``: queues on one VM, at one priority; its kernel BOs."""

    def __init__(self, drv: "PanthorDriver", handle: int, vm: Vm, priority: int, queues: list[Queue],
                 kernel_bos: list[ShmemObject]):
        self.drv = drv
        self.handle = handle
        self.vm = vm
        self.priority = priority
        self.queues = queues
        self.kernel_bos = kernel_bos  # suspend buffers and syncobjs
        self.state = 0
        self.fatal_queues = 0
        vm.groups.append(self)

    def running(self) -> bool:
        now = self.drv.clock.now_ns()
        return any(j.start_ns <= now < j.end_ns for q in self.queues for j in q.jobs)

    def internal_bos(self) -> list[ShmemObject]:
        return [*self.kernel_bos, *(q.ringbuf for q in self.queues), *(q.iface for q in self.queues)]

    def destroy(self) -> None:
        """``panthor_group_destroy``: queued jobs are cancelled, kernel BOs freed."""
        for q in self.queues:
            q.jobs.clear()
        for bo in self.internal_bos():
            bo.unpin()
            bo.put()
        self.kernel_bos, self.queues = [], []
        self.vm.groups.remove(self)


@dataclass
class GpuUsage:
    """``struct panthor_gpu_usage``: timestamp ticks and cycles of completed jobs."""

    time_ticks: int = 0
    cycles: int = 0


@dataclass
class PanthorFile:
    """``struct panthor_file``: the file's VM pool, group pool and usage."""

    vms: dict[int, Vm] = field(default_factory=dict)
    groups: dict[int, Group] = field(default_factory=dict)
    usage: GpuUsage = field(default_factory=GpuUsage)
    user_mmio_offset: int | None = None  # SET_USER_MMIO_OFFSET; None: by the caller's pgoff_t


def kernel_bo(dev, size: int) -> ShmemObject:
    """``panthor_kernel_bo_create``: a pinned kernel BO no handle reaches."""
    bo = ShmemObject(dev, size)
    bo.pin()
    return bo


class PanthorDriver(Driver):
    """``struct drm_driver`` for Panthor plus the ``struct panthor_device`` state."""

    name = "panthor"
    desc = "Panthor DRM driver"
    date = "20230801"
    driver_features = frozenset({"RENDER", "GEM", "SYNCOBJ", "SYNCOBJ_TIMELINE", "GEM_GPUVA"})

    def __init__(self, *, kernel: tuple[int, int], heap_backing: str, platform_device: str,
                 profiling: int = 0, size_units: str = "auto", fdinfo_revision: str = "merged",
                 owner_uid: int = 0):
        self.kernel = kernel
        self.version = driver_version(kernel)
        self.heap_backing = heap_backing
        self.platform_device = platform_device
        if profiling & ~PROFILING_ALL:
            raise InvalidArgument(f"the profiling mask has bits 0 (cycles) and 1 (timestamps), not {profiling}")
        self.profiling = profiling
        self.size_units = size_units
        self.fdinfo_revision = fdinfo_revision
        self.owner_uid = owner_uid  # the mount's owner (may ADVANCE, with root)
        self.max_freq_hz = MAX_FREQ_HZ
        self.cur_freq_hz = MAX_FREQ_HZ

    def bind(self, dev) -> None:
        super().bind(dev)
        self.clock: "Clock" = dev.clock

    def has(self, feature: str) -> bool:
        """Whether the emulated release has ``feature`` (:data:`vdrm.panthor.releases.PANTHOR`)."""
        return releases.PANTHOR.has(feature, self.kernel)

    # -- files ----------------------------------------------------------------------

    def open(self, file: "DrmFile") -> None:
        file.driver_priv = PanthorFile()

    def postclose(self, file: "DrmFile") -> None:
        """``panthor_postclose``: groups go first, then VMs (their heaps with them)."""
        self.update(file)
        priv: PanthorFile = file.driver_priv
        for group in list(priv.groups.values()):
            group.destroy()
        priv.groups.clear()
        for vm in list(priv.vms.values()):
            vm.destroy()
        priv.vms.clear()

    def gem_close(self, file: "DrmFile", obj: "GemObject") -> None:
        """A handle's last close does not unbind: VM mappings hold their own references."""

    # -- job time -------------------------------------------------------------------

    def update(self, file: "DrmFile") -> None:
        """Accrue completed jobs' time to ``file`` (``panthor_fdinfo_gather_group_samples``)."""
        now = self.clock.now_ns()
        priv: PanthorFile = file.driver_priv
        for group in priv.groups.values():
            for q in group.queues:
                while q.jobs and q.jobs[0].end_ns <= now:
                    job = q.jobs.pop(0)
                    ns = job.end_ns - job.start_ns
                    if job.profiling & PROFILING_TIMESTAMP:
                        priv.usage.time_ticks += ns * TIMESTAMP_FREQUENCY_HZ // NSEC_PER_SEC
                    if job.profiling & PROFILING_CYCLES:
                        priv.usage.cycles += ns * job.cycles_hz // NSEC_PER_SEC

    def queue_job(self, group: Group, queue: Queue, duration_ns: int) -> Job:
        now = self.clock.now_ns()
        start = max(now, queue.busy_until_ns)
        job = Job(start, start + duration_ns, self.profiling, self.cur_freq_hz)
        queue.busy_until_ns = job.end_ns
        queue.jobs.append(job)
        return job

    # -- fdinfo ---------------------------------------------------------------------

    def has_fdinfo(self, version: tuple[int, int]) -> bool:
        return releases.PANTHOR.has(releases.FDINFO, version)

    def internal_memory(self, file: "DrmFile") -> tuple[int, int]:
        """(resident, active) bytes of the file's kernel-owned BOs (``panthor_group_kbo_sizes``,
        ``panthor_vm_heaps_sizes``)."""
        priv: PanthorFile = file.driver_priv
        resident = active = 0
        for group in priv.groups.values():
            size = sum(bo.size for bo in group.internal_bos())
            resident += size
            if group.running():
                active += size
        for vm in priv.vms.values():
            if vm.heaps is None:
                continue
            size = vm.heaps.resident_size()
            resident += size
            if vm.busy():
                active += size
        return resident, active

    def show_fdinfo(self, file: "DrmFile", out: list[str], version: tuple[int, int]) -> None:
        self.update(file)
        usage: GpuUsage = file.driver_priv.usage
        if self.profiling & PROFILING_TIMESTAMP:
            ns = -(-usage.time_ticks * NSEC_PER_SEC // TIMESTAMP_FREQUENCY_HZ)
            out.append(f"drm-engine-panthor:\t{ns} ns\n")
        if self.profiling & PROFILING_CYCLES:
            out.append(f"drm-cycles-panthor:\t{usage.cycles}\n")
        out.append(f"drm-maxfreq-panthor:\t{self.max_freq_hz} Hz\n")
        out.append(f"drm-curfreq-panthor:\t{self.cur_freq_hz} Hz\n")
        units = {"auto": version, "exact": (6, 7), "truncating": (6, 6)}[self.size_units]
        docs = self.fdinfo_revision == "docs"
        if docs or releases.PANTHOR.has(releases.FDINFO_INTERNAL_MEMORY, version):
            resident, active = self.internal_memory(file)
            out.append(size_line(self.name, "resident", "memory", resident, units))
            out.append(size_line(self.name, "active", "memory", active, units))
        # the docs' revision prints every memory line, as kernels before 6.14 do
        memory_version = min(version, DOCS_MEMORY_RULES) if docs else version
        out.append(memory_lines(memory_stats(file, memory_version), memory_version, units=units))

    def busy_ns(self, file: "DrmFile") -> int:
        """The engine time fdinfo would print with the TIMESTAMP bit."""
        self.update(file)
        return -(-file.driver_priv.usage.time_ticks * NSEC_PER_SEC // TIMESTAMP_FREQUENCY_HZ)
