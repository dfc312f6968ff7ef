"""The emulated Panfrost device as a whole (``struct panfrost_device`` and its setup).

:class:`PanfrostDevice` is what the FUSE side talks to. It assembles the machine from
its parts: emulated RAM (:class:`~vdrm.mm.page_alloc.PageAllocator`), the clock, the
kernel log, the DRM core device with the Panfrost driver bound to it, and the
driver-level state (GPU model, job slots, AS slots, profiling switch, devfreq).

It offers exactly the entry points the kernel's file operations, sysfs and debugfs give
userspace: open/release of a DRM node, the ioctl table, fdinfo text, the ``profiling``
attribute, debugfs files. Everything is synchronous and atomic per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vdrm.drm import fdinfo
from vdrm.drm.device import ClientIdCounter, DrmDevice
from vdrm.drm.file import DrmFile
from vdrm.drm.ioctl import CORE_IOCTLS, Ioctl, IoctlTable, build_table
from vdrm.drm.limits import MAX_RAM_SIZE, Limits
from vdrm.errors import InvalidArgument
from vdrm.kernel.clock import Clock, MonotonicClock, VirtualClock
from vdrm.kernel.printk import KernelLog
from vdrm.mm.page_alloc import PAGE_SIZE, PageAllocator
from vdrm.panfrost.drv import PanfrostDriver
from vdrm.panfrost.gem import HEAP_BACKINGS
from vdrm.panfrost.ioctl import PANFROST_IOCTLS
from vdrm.panfrost.job import JOB_TIMEOUT_NS
from vdrm.panfrost.releases import PANFROST

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

SIZE_UNITS = ("auto", "exact", "truncating")
# The emulated releases, oldest first: the rows of the release table (vdrm.panfrost.releases).
KERNEL_VERSIONS = PANFROST.releases


@dataclass(frozen=True)
class DeviceConfig:
    """How the emulated machine is built (all of ``mount.py``'s device options)."""

    kernel: tuple[int, int] = (6, 18)  # fdinfo/debugfs dialect
    heap_backing: str = "sparse"  # "sparse" (RFC) or "dense" (mainline)
    ram_size: int = 4 << 30  # emulated RAM, bytes
    as_slots: int = 8  # hardware address-space slots
    clock: str = "real"  # "real" (CLOCK_MONOTONIC) or "virtual"
    seed: int = 0  # page allocator placement
    fragmentation: float = 0.3  # page allocator: 0 contiguous .. 1 scattered
    first_client_id: int = 1
    profiling: bool = False
    clock_start_ns: int = 0  # virtual clock only
    size_units: str = "auto"  # auto (by kernel), exact (6.7+ rule), truncating (6.5-6.6 rule)
    fdinfo_revision: str = "merged"  # or "docs": the revision of the kernel docs' example
    job_timeout_ns: int = JOB_TIMEOUT_NS  # the kernel's 500 ms; 0: jobs never time out
    limits: Limits = Limits()  # what the daemon lets clients hold (vdrm.drm.limits)
    owner_uid: int = 0  # the mount's owner: with root, the only uid that may ADVANCE the clock


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


class PanfrostDevice:
    """The whole emulated GPU: what userspace can reach through nodes, sysfs and debugfs."""

    def __init__(self, config: DeviceConfig = DeviceConfig()):
        if not PANFROST.is_emulated(config.kernel):
            known = PANFROST.names()
            raise InvalidArgument(f"kernel {config.kernel[0]}.{config.kernel[1]} is not emulated (known: {known})")
        if config.heap_backing not in HEAP_BACKINGS:
            raise InvalidArgument(f"heap backing must be sparse or dense, not {config.heap_backing!r}")
        if config.clock not in ("real", "virtual"):
            raise InvalidArgument(f"clock must be real or virtual, not {config.clock!r}")
        if config.ram_size < (16 << 20) or config.ram_size % PAGE_SIZE:
            raise InvalidArgument(f"emulated RAM must be a page multiple of at least 16 MiB, not {config.ram_size}")
        if config.ram_size > MAX_RAM_SIZE:
            raise InvalidArgument(f"emulated RAM of {config.ram_size >> 30} GiB is more than vdrm emulates "
                                  f"({MAX_RAM_SIZE >> 30} GiB at most)")
        self.config = config
        self.platform_device = PLATFORM_DEVICE
        if config.fdinfo_revision not in ("merged", "docs"):
            raise InvalidArgument(f"fdinfo revision must be merged or docs, not {config.fdinfo_revision!r}")
        if config.job_timeout_ns < 0:
            raise InvalidArgument(f"job timeout must not be negative, not {config.job_timeout_ns} ns")
        if config.size_units not in SIZE_UNITS:
            raise InvalidArgument(f"size units must be auto, exact or truncating, not {config.size_units!r}")
        self.clock: Clock = VirtualClock(config.clock_start_ns) if config.clock == "virtual" else MonotonicClock()
        self.log = KernelLog(self.clock)
        self.pages = PageAllocator(config.ram_size // PAGE_SIZE, seed=config.seed,
                                   fragmentation=config.fragmentation)
        self.driver = PanfrostDriver(kernel=config.kernel, heap_backing=config.heap_backing,
                                     as_slots=config.as_slots, platform_device=PLATFORM_DEVICE,
                                     profiling=config.profiling, size_units=config.size_units,
                                     fdinfo_revision=config.fdinfo_revision,
                                     job_timeout_ns=config.job_timeout_ns, owner_uid=config.owner_uid)
        self._ioctls = build_table(CORE_IOCTLS, PANFROST_IOCTLS)
        self.drm = DrmDevice(self.driver, pages=self.pages, clock=self.clock, log=self.log,
                             client_ids=ClientIdCounter(config.first_client_id),
                             ioctls=self._ioctls, unique=PLATFORM_DEVICE, limits=config.limits)
        self.timeline = self.driver.timeline

    @property
    def driver_name(self) -> str:
        """The driver bound to the platform device (sysfs ``driver``, ``DRIVER=``)."""
        return self.driver.name

    @property
    def kernel(self) -> tuple[int, int]:
        return self.config.kernel

    def update(self) -> None:
        """Bring the job timeline up to the clock's now."""
        self.driver.sched.update()

    # -- the virtual clock, timed events and ground truth ------------------------------

    def schedule(self, at_ns: int, action: Callable[[], None]) -> None:
        """Run ``action`` when the clock reaches ``at_ns`` (scenario timelines use this)."""
        self.timeline.schedule(at_ns, action)

    def advance(self, delta_ns: int) -> int:
        """One step of the virtual clock; see :meth:`Timeline.advance`."""
        return self.timeline.advance(delta_ns)

    def run_due(self) -> None:
        """Run the timed events that are due at the clock's current time."""
        self.timeline.run_due()

    def truth(self, file: DrmFile) -> dict:
        """What a correct fdinfo parser arrives at for ``file`` over the last clock step."""
        return self.timeline.truth(file)

    def open(self, minor: int, *, pid: int = 0, comm: str = "", uid: int = 0) -> DrmFile:
        """Open ``card0`` (minor 0) or ``renderD128`` (minor 128): a new DRM client."""
        self.update()
        return self.drm.open(minor, pid=pid, comm=comm, uid=uid)

    def release(self, file: DrmFile) -> None:
        """The last fd of an open closed: the client and everything it holds go."""
        self.update()
        self.drm.release(file)

    @property
    def ioctls(self) -> IoctlTable:
        """Every request a client may send, by upper-case name (DRM core + Panfrost + vdrm)."""
        return self._ioctls

    def fdinfo(self, file: DrmFile, *, pos: int = 0, flags: int = 0o2400002, mnt_id: int = 0, ino: int = 0) -> str:
        """The full ``/proc/<pid>/fdinfo/<fd>`` text: generic header lines, then DRM lines."""
        self.update()
        return fdinfo.header(pos=pos, flags=flags, mnt_id=mnt_id, ino=ino) + fdinfo.show_fdinfo(file, self.kernel)

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

    def debugfs_files(self) -> dict[str, Callable[[], str]]:
        """Files of ``/sys/kernel/debug/dri/<minor>/``: name -> renderer of the whole text."""
        from vdrm.panfrost import debugfs

        self.update()
        return debugfs.files(self)
