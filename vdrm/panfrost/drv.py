"""The Panfrost DRM driver (``panfrost_drv.c``): per-file state, GEM hooks, fdinfo, params.

:class:`PanfrostDriver` is the ``struct drm_driver`` bound to a
:class:`~vdrm.drm.device.DrmDevice`, and holds what ``struct panfrost_device`` holds: the
MMU (address-space slots, fault path), the job scheduler, the profiling switch, the
engine frequencies (devfreq) and the GPU's feature registers.

The emulated GPU is the **Mali-G52 2EE** of the Rockchip RK3568 (product id 0x7402,
r1p0; one core group, 8 address spaces, 3 job slots, up to 800 MHz). Feature register
values are those such a board reports at probe; timestamps tick at the RK3568's 24 MHz
arch timer.

Per file (``panfrost_open``): a GPU address space (:class:`~vdrm.panfrost.mmu.MmuContext`),
engine usage counters, and the default JM context (handle 0, priority MEDIUM).

GEM hooks: creating a handle maps the BO into the file's address space
(``panfrost_gem_open``: a VA node placed by drm_mm, and for non-heap BOs every page
backed and mapped at once); deleting it unmaps and frees the node.

fdinfo (``panfrost_show_fdinfo``, 6.7+): for ``fragment`` then ``vertex-tiler``, the
engine and cycle lines (always in 6.7-6.9; from 6.10 only while profiling is on), then
``drm-maxfreq``/``drm-curfreq``; then the generic memory lines.

Which release has what is never tested here as ``(6, N)``: :meth:`PanfrostDriver.has`
looks it up in :data:`vdrm.panfrost.releases.PANFROST`, which also gives the driver
version each release reports.

``fdinfo_revision = "docs"`` reproduces the patch revision that
``Documentation/gpu/panfrost.rst``'s example was taken from, which the merged code does
not: memory categories add whole object sizes (no ``rss`` callback yet, hence an
``active`` larger than ``resident``) and zero prints as ``0 MiB``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vdrm.drm.device import Driver
from vdrm.drm.fdinfo import memory_lines, memory_stats
from vdrm.errors import InvalidArgument, KernelBug, OutOfMemory
from vdrm.kernel.printk import KERN_INFO
from vdrm.panfrost.gem import MADV_DONTNEED, Mapping, PanfrostBo
from vdrm.panfrost.job import FDINFO_ENGINES, JOB_TIMEOUT_NS, NUM_JOB_SLOTS, EngineUsage, Scheduler
from vdrm.panfrost.mmu import AsSlots, Mmu, MmuContext
from vdrm.panfrost import releases

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile
    from vdrm.drm.gem import GemObject

MAX_FREQ_HZ = 800_000_000
TIMESTAMP_FREQUENCY_HZ = 24_000_000

# JM context priorities (1.5)
JM_PRIORITIES = {"LOW": 0, "MEDIUM": 1, "HIGH": 2}
# what debugfs sched_ctxs prints: the drm_sched priority each maps to
SCHED_PRIORITY_NAMES = {0: "LOW", 1: "NORMAL", 2: "HIGH"}

# PANFROST_PARAM_* ids, in enum order.
PARAM_NAMES = (
    "GPU_PROD_ID", "GPU_REVISION", "SHADER_PRESENT", "TILER_PRESENT", "L2_PRESENT",
    "STACK_PRESENT", "AS_PRESENT", "JS_PRESENT", "L2_FEATURES", "CORE_FEATURES",
    "TILER_FEATURES", "MEM_FEATURES", "MMU_FEATURES", "THREAD_FEATURES", "MAX_THREADS",
    "THREAD_MAX_WORKGROUP_SZ", "THREAD_MAX_BARRIER_SZ", "COHERENCY_FEATURES",
    *(f"TEXTURE_FEATURES{i}" for i in range(4)), *(f"JS_FEATURES{i}" for i in range(16)),
    "NR_CORE_GROUPS", "THREAD_TLS_ALLOC", "AFBC_FEATURES", "SYSTEM_TIMESTAMP",
    "SYSTEM_TIMESTAMP_FREQUENCY", "ALLOWED_JM_CTX_PRIORITIES", "SELECTED_COHERENCY",
)
PARAMS = {name: i for i, name in enumerate(PARAM_NAMES)}

# Feature registers of the RK3568's Mali-G52 2EE (as its probe prints them).
G52_FEATURES = {
    "GPU_PROD_ID": 0x7402, "GPU_REVISION": 0x1000, "SHADER_PRESENT": 0x1,
    "TILER_PRESENT": 0x1, "L2_PRESENT": 0x1, "STACK_PRESENT": 0x0,
    "L2_FEATURES": 0x07110206, "CORE_FEATURES": 0x2, "TILER_FEATURES": 0x209,
    "MEM_FEATURES": 0x1, "MMU_FEATURES": 0x2823, "THREAD_FEATURES": 0x0A040400,
    "MAX_THREADS": 768, "THREAD_MAX_WORKGROUP_SZ": 384, "THREAD_MAX_BARRIER_SZ": 384,
    "COHERENCY_FEATURES": 0x80000000 | 0x1, "TEXTURE_FEATURES0": 0xDB3FF9FE,
    "TEXTURE_FEATURES1": 0x00FFFFFF, "TEXTURE_FEATURES2": 0x9F81FFFF,
    "TEXTURE_FEATURES3": 0x0, "JS_FEATURES0": 0x20E, "JS_FEATURES1": 0x1FE,
    "JS_FEATURES2": 0x7E, "NR_CORE_GROUPS": 1, "THREAD_TLS_ALLOC": 0,
    "AFBC_FEATURES": 0x0, "SYSTEM_TIMESTAMP_FREQUENCY": TIMESTAMP_FREQUENCY_HZ,
    "SELECTED_COHERENCY": 31,  # DRM_PANFROST_GPU_COHERENCY_NONE
}


@dataclass
class PanfrostFile:
    """``struct panfrost_file_priv``: one client's GPU state."""

    mmu: MmuContext
    usage: EngineUsage = field(default_factory=EngineUsage)
    jm_ctxs: dict[int, int] = field(default_factory=lambda: {0: JM_PRIORITIES["MEDIUM"]})
    waiting: tuple[int, int] | None = None  # (handle, deadline) of a WAIT_BO that blocked


def driver_version(kernel: tuple[int, int]) -> tuple[int, int, int]:
    """The (major, minor, patch) ``DRM_IOCTL_VERSION`` reports in kernel ``kernel``."""
    major, minor = releases.PANFROST.driver_version(kernel)
    return (major, minor, 0)


class PanfrostDriver(Driver):
    """``struct drm_driver`` for Panfrost plus the ``struct panfrost_device`` state."""

    name = "panfrost"
    desc = "panfrost DRM"
    driver_features = frozenset({"RENDER", "GEM", "SYNCOBJ"})
    date = "20180908"

    def __init__(self, *, kernel: tuple[int, int], heap_backing: str, as_slots: int,
                 platform_device: str, profiling: bool = False, size_units: str = "auto",
                 fdinfo_revision: str = "merged", job_timeout_ns: int = JOB_TIMEOUT_NS,
                 owner_uid: int = 0):
        self.kernel = kernel
        self.version = driver_version(kernel)
        self.heap_backing = heap_backing
        self.nr_as = as_slots
        self.platform_device = platform_device
        self.profiling = profiling
        self.size_units = size_units
        self.fdinfo_revision = fdinfo_revision
        self.job_timeout_ns = job_timeout_ns
        self.owner_uid = owner_uid  # the mount's owner (may ADVANCE, with root)
        self.max_freq_hz = [MAX_FREQ_HZ] * NUM_JOB_SLOTS
        self.cur_freq_hz = [MAX_FREQ_HZ] * NUM_JOB_SLOTS
        self.shrinker_list: dict[int, PanfrostBo] = {}  # DONTNEED BOs, oldest first
        self.purged = 0

    def bind(self, dev) -> None:
        super().bind(dev)
        self.slots = AsSlots(self.nr_as, dev.log)
        self.mmu = Mmu(self.slots, dev.log, self.platform_device, aarch64_mmu=self.has(releases.AARCH64_MMU),
                       release=f"{self.kernel[0]}.{self.kernel[1]}.0")
        self.sched = Scheduler(dev.clock, self.slots, self.mmu, profiling=lambda: self.profiling,
                               frequency_hz=lambda slot: self.cur_freq_hz[slot],
                               job_timeout_ns=self.job_timeout_ns)
        dev.pages.register_shrinker(self.shrink)

    def has(self, feature: str) -> bool:
        """Whether the emulated release has ``feature`` (a row of the Panfrost release table)."""
        return releases.PANFROST.has(feature, self.kernel)

    def features(self) -> dict[str, int]:
        values = dict(G52_FEATURES)
        values["AS_PRESENT"] = self.slots.present_mask
        values["JS_PRESENT"] = (1 << NUM_JOB_SLOTS) - 1
        return values

    # -- files ---------------------------------------------------------------------

    def open(self, file: "DrmFile") -> None:
        file.driver_priv = PanfrostFile(MmuContext(file.client_id))

    def postclose(self, file: "DrmFile") -> None:
        priv: PanfrostFile = file.driver_priv
        self.sched.cancel_file(priv.mmu)
        if priv.mmu.mappings:
            raise KernelBug(f"client {file.client_id} closed with {len(priv.mmu.mappings)} mappings left")
        if priv.mmu.as_count == 0:
            self.slots.release(priv.mmu)
        priv.mmu.destroyed = True

    # -- GEM hooks ----------------------------------------------------------------------

    def gem_open(self, file: "DrmFile", obj: "GemObject") -> None:
        """``panfrost_gem_open``: place the BO in the file's VA space and map it."""
        bo: PanfrostBo = obj
        ctx: MmuContext = file.driver_priv.mmu
        node = ctx.va.insert(bo.size, noexec=bo.noexec)
        mapping = Mapping(bo, ctx, node)
        if not bo.is_heap:
            try:
                sgt = bo.get_pages_sgt()
            except OutOfMemory:
                ctx.va.remove(node)
                raise
            ctx.map_sg(mapping.iova, sgt, "rw-noexec" if bo.noexec else "rw")
            mapping.active = True
        bo.get()
        bo.mappings.append(mapping)
        ctx.mappings[node.start] = mapping

    def gem_close(self, file: "DrmFile", obj: "GemObject") -> None:
        """``panfrost_gem_close``: unmap this file's mapping and free its VA node."""
        bo: PanfrostBo = obj
        ctx: MmuContext = file.driver_priv.mmu
        mapping = bo.mapping_for(ctx)
        if mapping is None:
            raise KernelBug("closing a handle whose BO has no mapping in this file")
        self.teardown_mapping(mapping)
        bo.put()

    def teardown_mapping(self, mapping: Mapping) -> None:
        bo, ctx = mapping.bo, mapping.mmu
        bo.mappings.remove(mapping)
        if mapping.active:
            if bo.is_heap:
                ctx.unmap_heap(mapping.iova, bo.nblocks)
            else:
                ctx.unmap(mapping.iova)
            mapping.active = False
        del ctx.mappings[mapping.node.start]
        ctx.va.remove(mapping.node)

    # -- madvise and the shrinker -------------------------------------------------------

    def set_madv(self, bo: PanfrostBo, madv: int) -> bool:
        retained = bo.madvise(madv)
        if retained:
            if madv == MADV_DONTNEED:
                self.shrinker_list.setdefault(id(bo), bo)
            else:
                self.shrinker_list.pop(id(bo), None)
        return retained

    def purge(self, bo: PanfrostBo) -> None:
        """``panfrost_gem_purge``: unmap the BO everywhere and drop its pages."""
        for mapping in list(bo.mappings):
            if mapping.active:
                mapping.mmu.unmap(mapping.iova)
                mapping.active = False
        bo.purge()
        self.shrinker_list.pop(id(bo), None)
        self.purged += 1

    def shrink(self, npages_wanted: int) -> int:
        """``panfrost_gem_shrinker_scan``: purge purgeable BOs until enough is freed."""
        freed = 0
        for key, bo in list(self.shrinker_list.items()):
            if freed >= npages_wanted:
                break
            if bo.freed:
                del self.shrinker_list[key]
                continue
            if not bo.is_purgeable():
                continue
            self.purge(bo)
            freed += bo.size >> 12
        if freed:
            self.dev.log.printk(KERN_INFO, f"panfrost {self.platform_device}: Purging {freed << 12} bytes")
        return freed

    # -- fdinfo ---------------------------------------------------------------------------

    def has_fdinfo(self, version: tuple[int, int]) -> bool:
        return releases.PANFROST.has(releases.FDINFO, version)

    def show_fdinfo(self, file: "DrmFile", out: list[str], version: tuple[int, int]) -> None:
        self.sched.update()
        usage: EngineUsage = file.driver_priv.usage
        engine_lines = self.profiling or not releases.PANFROST.has(releases.FDINFO_ENGINE_NEEDS_PROFILING, version)
        for slot, engine in enumerate(FDINFO_ENGINES):
            if engine_lines:
                out.append(f"drm-engine-{engine}:\t{usage.elapsed_ns[slot]} ns\n")
                out.append(f"drm-cycles-{engine}:\t{usage.cycles[slot]}\n")
            out.append(f"drm-maxfreq-{engine}:\t{self.max_freq_hz[slot]} Hz\n")
            out.append(f"drm-curfreq-{engine}:\t{self.cur_freq_hz[slot]} Hz\n")
        units = {"auto": version, "exact": releases.CORE.feature(releases.FDINFO_EXACT_UNITS).since,
                 "truncating": releases.CORE.oldest}[self.size_units]
        docs = self.fdinfo_revision == "docs"
        stats = memory_stats(file, version, use_rss=not docs)
        out.append(memory_lines(stats, version, units=units, zero_has_unit=docs))
