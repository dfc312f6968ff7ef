"""The emulated Panfrost device as a whole (``struct panfrost_device`` and its setup).

:class:`PanfrostDevice` is Panfrost behind the driver-neutral
:class:`~vdrm.drm.gpu.GpuDevice` interface the FUSE side talks to. It assembles the GPU
from its parts: the DRM core device with the Panfrost driver bound to it, on the
machine's emulated RAM, clock and kernel log, and the driver-level state (GPU model, job
slots, AS slots, profiling switch, devfreq).

Its rows of the tree: the RK3568 GPU's platform device and uevent, the sysfs
``profiling`` attribute (``profiling_show``/``profiling_store`` in ``panfrost_drv.c``,
kstrtobool), the debugfs files of :mod:`vdrm.panfrost.debugfs`. Everything is
synchronous and atomic per call.
"""

from __future__ import annotations

from typing import Callable

from vdrm.drm.file import DrmFile
from vdrm.drm.fdinfo import memory_stats
from vdrm.drm.gpu import SIZE_UNITS, DeviceConfig, GpuDevice, Services, SysfsAttribute  # noqa: F401
from vdrm.errors import InvalidArgument
from vdrm.panfrost import ioctl as pf
from vdrm.panfrost.drv import PanfrostDriver
from vdrm.panfrost.gem import BO_FLAGS
from vdrm.panfrost.ioctl import PANFROST_IOCTLS
from vdrm.panfrost.job import ENGINES, FDINFO_ENGINES, JS_FRAGMENT, REQ_FS
from vdrm.panfrost.mmu import DEFAULT_FAULT_ACCESS, DEFAULT_FAULT_EXCEPTION
from vdrm.panfrost.releases import DEBUGFS_PROFILE, PANFROST, PROFILING_SYSFS

__all__ = ["DeviceConfig", "KERNEL_VERSIONS", "PLATFORM_DEVICE", "PanfrostDevice", "kstrtobool"]

# The emulated board: a Rockchip RK3568 with a Mali-G52 2EE (Bifrost), whose GPU sits at
# fde60000 on the platform bus. Its device name is what sysfs `device` links and the
# kernel log's dev_err prefix show.
PLATFORM_DEVICE = "fde60000.gpu"

# The platform device's identity, as its sysfs ``uevent`` shows it and libdrm's
# drmGetDevices2 reads it (DRM_BUS_PLATFORM: ``OF_FULLNAME`` is the bus info,
# ``OF_COMPATIBLE_<n>`` the device info): the RK3568's Mali node of the kernel's
# arch/arm64/boot/dts/rockchip/rk356x(-base).dtsi, ``gpu: gpu@fde60000``, and the driver
# that binds it.
DRIVER_NAME = "panfrost"
OF_NAME = "gpu"
OF_FULLNAME = "/gpu@fde60000"
OF_COMPATIBLE = ("rockchip,rk3568-mali", "arm,mali-bifrost")
PLATFORM_BUS = "platform"


def platform_uevent() -> str:
    """The platform device's ``uevent``: what ``drivers/base/core.c`` and ``of_device_uevent``
    print for a bound device-tree device (``MODALIAS`` as ``of_modalias`` spells it)."""
    lines = [f"DRIVER={DRIVER_NAME}", f"OF_NAME={OF_NAME}", f"OF_FULLNAME={OF_FULLNAME}"]
    lines += [f"OF_COMPATIBLE_{i}={c}" for i, c in enumerate(OF_COMPATIBLE)]
    lines.append(f"OF_COMPATIBLE_N={len(OF_COMPATIBLE)}")
    lines.append(f"MODALIAS=of:N{OF_NAME}T(null)" + "".join(f"C{c}" for c in OF_COMPATIBLE))
    return "\n".join(lines) + "\n"

# The emulated releases, oldest first: the rows of the release table (vdrm.panfrost.releases).
KERNEL_VERSIONS = PANFROST.releases


def kstrtoll(text: str) -> int:
    """The kernel's ``kstrtoll(s, 0, &v)``: an optional sign, ``0x`` hex, ``0`` octal or
    decimal digits, then at most one newline; InvalidArgument otherwise."""
    body = text[:-1] if text.endswith("\n") else text
    sign, digits = (body[0], body[1:]) if body[:1] in "+-" and body else ("", body)
    base = 16 if digits[:2].lower() == "0x" else 8 if digits[:1] == "0" and len(digits) > 1 else 10
    try:
        value = int(digits[2:] if base == 16 else digits, base) if digits and digits == digits.strip() else None
    except ValueError:
        value = None
    if value is None:
        raise InvalidArgument(f"{text.strip()!r} is not an integer")
    value = -value if sign == "-" else value
    if not -(1 << 63) <= value < (1 << 63):
        raise InvalidArgument(f"{text.strip()!r} does not fit a long long")
    return value


def kstrtobool(text: str) -> bool:
    """The kernel's ``kstrtobool``: y/Y/t/T/1/on are true, n/N/f/F/0/off false."""
    t = text.strip("\n")
    if t[:1] in ("y", "Y", "t", "T", "1"):
        return True
    if t[:1] in ("n", "N", "f", "F", "0"):
        return False
    if t[:2].lower() == "on":
        return True
    if t[:3].lower() == "off":
        return False
    raise InvalidArgument(f"{text.strip()!r} is not a boolean (use 0 or 1)")


class PanfrostDevice(GpuDevice):
    """The RK3568's Mali-G52 under Panfrost: what userspace reaches through nodes, sysfs, debugfs."""

    DRIVER = "panfrost"
    KERNEL_VERSIONS = KERNEL_VERSIONS
    ENGINES = ENGINES
    DEFAULT_ENGINE = "vertex-tiler"
    BO_FLAGS = {name: bit for name, bit in BO_FLAGS.items() if name != "WB_MMAP"}
    HEAP_FLAG = "HEAP"
    MADVISE = True
    PLATFORM_DEVICE = PLATFORM_DEVICE

    def __init__(self, config: DeviceConfig = DeviceConfig(), *, services: Services | None = None,
                 index: int = 0):
        driver = PanfrostDriver(kernel=config.kernel, heap_backing=config.heap_backing,
                                as_slots=config.as_slots, platform_device=PLATFORM_DEVICE,
                                profiling=config.profiling, size_units=config.size_units,
                                fdinfo_revision=config.fdinfo_revision,
                                job_timeout_ns=config.job_timeout_ns, owner_uid=config.owner_uid)
        super().__init__(config, driver, PANFROST_IOCTLS, services=services, index=index)

    def update(self) -> None:
        """Bring the job timeline up to the clock's now."""
        self.driver.sched.update()

    # -- sysfs and debugfs ----------------------------------------------------------------

    def uevent(self) -> str:
        return platform_uevent()

    @property
    def profiling(self) -> bool:
        return self.driver.profiling

    def write_profiling(self, text: str) -> None:
        """A write to sysfs ``profiling`` (kstrtobool rules); InvalidArgument otherwise."""
        value = kstrtobool(text)
        self.update()
        self.driver.profiling = value

    def write_profile(self, text: str) -> None:
        """A write to debugfs ``profile`` (6.7-6.9): an ``atomic_t`` set through
        ``simple_attr_write`` (kstrtoll, base 0); any non-zero value turns profiling on and
        reads back as written (truncated to 32 bits as ``atomic_set`` does)."""
        value = kstrtoll(text)
        value = (value + (1 << 31)) % (1 << 32) - (1 << 31)
        self.update()
        self.driver.profiling = value

    def _show_profiling(self) -> str:
        return f"{int(self.profiling)}\n"  # sysfs: a bool; debugfs: the atomic_t as set

    def sysfs_attributes(self) -> dict[str, SysfsAttribute]:
        """``profiling`` from 6.10 (kstrtobool); before, the switch is in debugfs."""
        if not self.driver.has(PROFILING_SYSFS):
            return {}
        return {"profiling": SysfsAttribute(self._show_profiling, self.write_profiling)}

    def debugfs_attributes(self) -> dict[str, SysfsAttribute]:
        """``profile`` (6.7-6.9): the debugfs atomic_t that was the switch before sysfs."""
        if not self.driver.has(DEBUGFS_PROFILE):
            return {}
        return {"profile": SysfsAttribute(self._show_profiling, self.write_profile)}

    def debugfs_files(self) -> dict[str, Callable[[], str]]:
        """Files of ``/sys/kernel/debug/dri/<minor>/``: name -> renderer of the whole text."""
        from vdrm.panfrost import debugfs

        self.update()
        return debugfs.files(self)

    # -- ground truth -------------------------------------------------------------------

    def busy_snapshot(self) -> dict[int, list[int]]:
        self.update()
        return {cid: list(f.driver_priv.usage.elapsed_ns) for cid, f in self.drm.files.items()}

    def truth(self, file: DrmFile) -> dict:
        """What a correct fdinfo parser arrives at for ``file`` over the last clock step:
        per engine the busy time, its delta and ``delta / step`` (it can exceed 1, since
        the kernel adds a job's time when the job completes), and memory per category in
        bytes, exactly as the fdinfo lines count it."""
        self.update()
        step = self.timeline.last_step
        usage = file.driver_priv.usage
        drv = self.driver
        before = self.timeline.busy_before(file, usage.elapsed_ns)
        engines = {}
        for slot, engine in enumerate(FDINFO_ENGINES):
            delta = usage.elapsed_ns[slot] - before[slot]
            engines[engine] = {"busy_ns": usage.elapsed_ns[slot], "delta_ns": delta,
                               "utilisation": (delta / step.step_ns) if step.step_ns else None,
                               "cycles": usage.cycles[slot], "maxfreq_hz": drv.max_freq_hz[slot],
                               "curfreq_hz": drv.cur_freq_hz[slot]}
        # the same revision the fdinfo text is rendered in: a parser of that text computes these
        stats = memory_stats(file, drv.kernel, use_rss=drv.fdinfo_revision != "docs")
        return {
            "drm-client-id": file.client_id,
            "drm-driver": drv.name,
            "minor": file.minor,
            "pid": file.pid,
            "comm": file.comm,
            "clock": {"now_ns": self.clock.now_ns(), "step_start_ns": step.start_ns,
                      "step_end_ns": step.end_ns, "step_ns": step.step_ns},
            "profiling": bool(drv.profiling),
            "engines": engines,
            "memory": {"total": stats.total, "shared": stats.shared, "resident": stats.resident,
                       "purgeable": stats.purgeable, "active": stats.active},
        }

    # -- what a scenario does -----------------------------------------------------------

    def create_bo(self, file: DrmFile, size: int, flags: int, label: str | None) -> int:
        handle = pf.create_bo(file, size, flags, 0)["handle"]
        if label is not None:
            pf.set_label_bo(file, handle, 0, label)
        return handle

    def bo_va(self, file: DrmFile, handle: int) -> int:
        return file.handles.lookup(handle).mapping_for(file.driver_priv.mmu).iova

    def fault(self, file: DrmFile, addr: int) -> None:
        pf.fault(file, addr, DEFAULT_FAULT_EXCEPTION, DEFAULT_FAULT_ACCESS, 0)

    def madvise(self, file: DrmFile, handle: int, dontneed: bool) -> None:
        pf.madvise(file, handle, 1 if dontneed else 0)

    def purge(self, file: DrmFile, handle: int) -> None:
        self.driver.purge(file.handles.lookup(handle))

    def submit(self, file: DrmFile, engine: int, handles: list[int], duration_ns: int,
               touch: list[int]) -> None:
        requirements = REQ_FS if engine == JS_FRAGMENT else 0
        pf.submit(file, 1, handles, requirements, 0, 0, 0, engine, duration_ns, touch)

    def set_engine_usage(self, file: DrmFile, engine: int, busy_ns: int, cycles: int) -> None:
        usage = file.driver_priv.usage
        usage.elapsed_ns[engine], usage.cycles[engine] = busy_ns, cycles

    def skew_engine(self, file: DrmFile, engine: int, delta_ns: int) -> None:
        usage = file.driver_priv.usage
        usage.elapsed_ns[engine] = max(0, usage.elapsed_ns[engine] + delta_ns)

    def set_frequency(self, engine: int, hz: int, *, current_only: bool = False) -> None:
        if not current_only:
            self.driver.max_freq_hz[engine] = hz
        self.driver.cur_freq_hz[engine] = hz

    def set_profiling(self, value: int) -> None:
        self.driver.profiling = value
