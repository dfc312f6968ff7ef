"""The emulated Panthor device (``struct panthor_device``): the RK3588's Mali-G610.

:class:`PanthorDevice` is Panthor behind the driver-neutral
:class:`~vdrm.drm.gpu.GpuDevice` interface. Its rows of the tree: the platform device
``fb000000.gpu`` (``gpu@fb000000`` in ``rk3588-base.dtsi``, compatible
``rockchip,rk3588-mali`` / ``arm,mali-valhall-csf``), the sysfs ``profiling`` mask
(``profiling_show``/``profiling_store`` in ``panthor_drv.c``: ``kstrtou32``, EINVAL for
bits beyond cycles|timestamps), and its debugfs files (vdrm's ``vdrm-heaps`` and
``vdrm-vm``).

Kernel dialects: 6.10 (the merge: no fdinfo, no TIMESTAMP_INFO) to 7.0, from the release
table in :mod:`vdrm.panthor.releases`; :mod:`vdrm.panthor.drv` says what each prints.
"""

from __future__ import annotations

from typing import Callable

from vdrm.drm import debugfs as core_debugfs
from vdrm.drm.file import DrmFile
from vdrm.drm.fdinfo import memory_stats
from vdrm.drm.gpu import DeviceConfig, GpuDevice, Services, SysfsAttribute
from vdrm.errors import InvalidArgument
from vdrm.panthor import ioctl as pt
from vdrm.panthor.drv import BO_FLAGS, PROFILING_ALL, PROFILING_TIMESTAMP, PanthorDriver
from vdrm.panthor.ioctl import PANTHOR_IOCTLS
from vdrm.panthor.releases import PANTHOR, PROFILING_SYSFS

PLATFORM_DEVICE = "fb000000.gpu"
PDEV_UEVENT = ("DRIVER=panthor\nOF_NAME=gpu\nOF_FULLNAME=/gpu@{address}\n"
               "OF_COMPATIBLE_0=rockchip,rk3588-mali\nOF_COMPATIBLE_1=arm,mali-valhall-csf\n"
               "OF_COMPATIBLE_N=2\nMODALIAS=of:NgpuT(null)Crockchip,rk3588-maliCarm,mali-valhall-csf\n")
KERNEL_VERSIONS = PANTHOR.releases  # 6.10 (the merge) .. 7.0: vdrm.panthor.releases
# What a scenario's BOs and jobs use: one VM, one group (one 64K queue unless the client
# lists its queues), BOs bound one after another from 4 GiB; EXCLUSIVE_VM (a scenario's
# name, not a uAPI bit) makes a BO private to the client's VM.
SCENARIO_VA_BASE = 1 << 32
SCENARIO_EXCLUSIVE_VM = 1 << 31


def kstrtou32(text: str) -> int:
    """The kernel's ``kstrtou32(buf, 0, ...)``: decimal, 0x hex or 0 octal, one newline allowed."""
    t = text[:-1] if text.endswith("\n") else text
    try:
        value = int(t, 0) if not (len(t) > 1 and t[0] == "0" and t[1] not in "xX") else int(t, 8)
    except ValueError:
        raise InvalidArgument(f"{text.strip()!r} is not a number") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise InvalidArgument(f"{value} does not fit a u32")
    return value


class PanthorDevice(GpuDevice):
    """The RK3588's Mali-G610 under Panthor."""

    DRIVER = "panthor"
    KERNEL_VERSIONS = KERNEL_VERSIONS
    ENGINES = ("panthor",)
    DEFAULT_ENGINE = "panthor"
    BO_FLAGS = {**BO_FLAGS, "EXCLUSIVE_VM": SCENARIO_EXCLUSIVE_VM}
    HEAP_FLAG = None
    TILER_HEAPS = True
    PLATFORM_DEVICE = PLATFORM_DEVICE

    def __init__(self, config: DeviceConfig = DeviceConfig(kernel=(6, 18)), *, services: Services | None = None,
                 index: int = 0):
        driver = PanthorDriver(kernel=config.kernel, heap_backing=config.heap_backing,
                               platform_device=PLATFORM_DEVICE,
                               profiling=PROFILING_ALL if config.profiling is True else int(config.profiling),
                               size_units=config.size_units, fdinfo_revision=config.fdinfo_revision,
                               owner_uid=config.owner_uid)
        super().__init__(config, driver, PANTHOR_IOCTLS, services=services, index=index)
        self._scenario: dict[int, tuple[int, int, int]] = {}  # client id -> (vm, group, next va)

    def update(self) -> None:
        for file in self.drm.files.values():
            self.driver.update(file)

    # -- sysfs and debugfs ------------------------------------------------------------

    def uevent(self) -> str:
        return PDEV_UEVENT.format(address=self.platform_device.split(".")[0])

    @property
    def profiling(self) -> int:
        return self.driver.profiling

    def write_profiling(self, text: str) -> None:
        value = kstrtou32(text)
        if value & ~PROFILING_ALL:
            raise InvalidArgument(f"profiling is a mask of 1 (cycles) and 2 (timestamps), not {value}")
        self.update()
        self.driver.profiling = value

    def sysfs_attributes(self) -> dict[str, SysfsAttribute]:
        if not self.driver.has(PROFILING_SYSFS):
            return {}
        return {"profiling": SysfsAttribute(lambda: f"{self.profiling}\n", self.write_profiling)}

    def debugfs_files(self) -> dict[str, Callable[[], str]]:
        """The DRM core's ``clients`` and ``gem_names``, and vdrm's ``vdrm-heaps`` and ``vdrm-vm``.

        Not emulated: Panthor's own ``gpuvas`` (``panthor_mmu_debugfs_init``) and ``gems``.
        """
        self.update()
        return {"clients": lambda: core_debugfs.clients(self.drm), "gem_names": lambda: core_debugfs.gem_names(self.drm),
                "vdrm-heaps": self._debugfs_heaps, "vdrm-vm": self._debugfs_vm}

    def _debugfs_heaps(self) -> str:
        out = []
        for cid, file in self.drm.files.items():
            for vm in file.driver_priv.vms.values():
                if vm.heaps is None:
                    continue
                for heap in vm.heaps.heaps.values():
                    out.append(f"client {cid} vm {vm.id} heap {heap.id}: {heap.chunk_count}/{heap.max_chunks} "
                               f"chunks of {heap.chunk_size} ({vm.heaps.backing}), ctx 0x{heap.ctx_va:x}, "
                               f"bookkeeping {heap.bookkeeping_bytes()} bytes\n")
        return "".join(out)

    def _debugfs_vm(self) -> str:
        out = []
        for cid, file in self.drm.files.items():
            handles = {id(obj): h for h, obj in file.handles.items()}
            for vm in file.driver_priv.vms.values():
                out.append(f"client {cid} vm {vm.id} state {vm.state} user_va_range 0x{vm.user_va_range:x}\n")
                for m in vm.mappings:
                    handle = handles.get(id(m.bo), 0)  # 0: the handle is closed, the mapping lives on
                    out.append(f"  0x{m.va:016x}-0x{m.end:016x} handle {handle} offset 0x{m.bo_offset:x}\n")
        return "".join(out)

    # -- ground truth -------------------------------------------------------------------

    def busy_snapshot(self) -> dict[int, list[int]]:
        return {cid: [self.driver.busy_ns(f)] for cid, f in self.drm.files.items()}

    def truth(self, file: DrmFile) -> dict:
        """What a correct parser arrives at for ``file`` over the last clock step: one engine,
        whose utilisation is None while the profiling mask lacks timestamps (no
        drm-engine-panthor line to compute it from); busy time counts only jobs queued
        while that bit was set, as the fdinfo line does."""
        self.update()
        step = self.timeline.last_step
        drv = self.driver
        busy = drv.busy_ns(file)
        before = self.timeline.busy_before(file, [busy])[0]
        resident, active = drv.internal_memory(file)
        stats = memory_stats(file, self.kernel)
        return {
            "drm-client-id": file.client_id, "drm-driver": drv.name, "minor": file.minor,
            "pid": file.pid, "comm": file.comm,
            "clock": {"now_ns": self.clock.now_ns(), "step_start_ns": step.start_ns,
                      "step_end_ns": step.end_ns, "step_ns": step.step_ns},
            "profiling": drv.profiling,
            "engines": {"panthor": {"busy_ns": busy, "delta_ns": busy - before,
                                    "utilisation": ((busy - before) / step.step_ns
                                                    if step.step_ns and drv.profiling & PROFILING_TIMESTAMP else None),
                                    "cycles": file.driver_priv.usage.cycles, "maxfreq_hz": drv.max_freq_hz,
                                    "curfreq_hz": drv.cur_freq_hz}},
            "memory": {"total": stats.total, "shared": stats.shared, "resident": stats.resident,
                       "purgeable": stats.purgeable, "active": stats.active},
            "internal": {"resident": resident, "active": active},
        }

    # -- what a scenario does: each client gets one VM and one group, BOs bound in turn ----

    def setup_client(self, file: DrmFile, queues: tuple[int, ...]) -> None:
        self._scenario_state(file, queues or (1 << 16,))

    def _scenario_state(self, file: DrmFile, queues: tuple[int, ...] = (1 << 16,)) -> tuple[int, int, int]:
        state = self._scenario.get(file.client_id)
        if state is None:
            vm = pt.vm_create(file, 0, 0)["id"]
            group = pt.group_create(file, queues=list(queues), queues_stride=0, queue_priority=1,
                                    max_compute_cores=4, max_fragment_cores=4, max_tiler_cores=1, priority=1, pad=0,
                                    compute_core_mask=0x50005, fragment_core_mask=0x50005, tiler_core_mask=0x1,
                                    vm_id=vm)["group_handle"]
            state = self._scenario[file.client_id] = (vm, group, SCENARIO_VA_BASE)
        return state

    def create_bo(self, file: DrmFile, size: int, flags: int, label: str | None) -> int:
        vm, group, va = self._scenario_state(file)
        exclusive = vm if flags & SCENARIO_EXCLUSIVE_VM else 0
        created = pt.bo_create(file, size, flags & ~SCENARIO_EXCLUSIVE_VM, exclusive, 0)
        pt.vm_bind(file, vm, flags=0, ops=[], ops_stride=0, op=0, op_flags=0, bo_handle=created["handle"],
                   bo_offset=0, va=va, size=created["size"], syncs=0)
        file.handles.lookup(created["handle"]).label = label
        self._scenario[file.client_id] = (vm, group, va + created["size"])
        return created["handle"]

    def create_heap(self, file: DrmFile, chunk_size: int, initial_chunks: int, max_chunks: int,
                    target_in_flight: int) -> int:
        vm, _, _ = self._scenario_state(file)
        return pt.tiler_heap_create(file, vm, initial_chunks, chunk_size, max_chunks, target_in_flight)["handle"]

    def grow_heap(self, file: DrmFile, heap: int) -> None:
        pt.tiler_oom(file, heap, 1, 0)

    def bo_va(self, file: DrmFile, handle: int) -> int:
        bo = file.handles.lookup(handle)
        for vm in file.driver_priv.vms.values():
            for m in vm.mappings:
                if m.bo is bo:
                    return m.va
        raise InvalidArgument(f"BO {handle} is not bound")

    def fault(self, file: DrmFile, addr: int) -> None:
        raise InvalidArgument("Panthor BOs are bound whole: there is no fault-in to play (use a heap event)")

    def submit(self, file: DrmFile, engine: int, handles: list[int], duration_ns: int,
               touch: list[int]) -> None:
        _, group, _ = self._scenario_state(file)
        pt.group_submit(file, group, pad=0, queue_submits=[], queue_submits_stride=0, queue_index=0,
                        stream_addr=0x1000000, stream_size=64, latest_flush=0, syncs=0, duration=duration_ns)

    def set_engine_usage(self, file: DrmFile, engine: int, busy_ns: int, cycles: int) -> None:
        usage = file.driver_priv.usage
        usage.time_ticks = busy_ns * 24 // 1000
        usage.cycles = cycles

    def skew_engine(self, file: DrmFile, engine: int, delta_ns: int) -> None:
        usage = file.driver_priv.usage
        usage.time_ticks = max(0, usage.time_ticks + delta_ns * 24 // 1000)

    def set_frequency(self, engine: int, hz: int, *, current_only: bool = False) -> None:
        if not current_only:
            self.driver.max_freq_hz = hz
        self.driver.cur_freq_hz = hz

    def set_profiling(self, value: int) -> None:
        self.driver.profiling = (PROFILING_ALL if value is True else int(value)) & PROFILING_ALL

    def madvise(self, file: DrmFile, handle: int, dontneed: bool) -> None:
        raise InvalidArgument("Panthor has no madvise")

    def purge(self, file: DrmFile, handle: int) -> None:
        raise InvalidArgument("Panthor has no madvise")
