"""The emulated GPU as userspace reaches it, whatever its driver: the device interface.

:class:`GpuDevice` is the one interface the FUSE tree, the daemon, the scenario loader
and runner and the benchmarks use. A driver (``vdrm.panfrost``, ``vdrm.panthor``)
subclasses it and supplies:

- the entry points the kernel's file operations give: :meth:`~GpuDevice.open` and
  :meth:`~GpuDevice.release` of a DRM node, the ioctl table (:attr:`~GpuDevice.ioctls`),
  fdinfo text (:meth:`~GpuDevice.fdinfo`);
- its rows of the tree: the platform device's name and ``uevent`` (OF identity), its
  sysfs attributes (:meth:`~GpuDevice.sysfs_attributes`, e.g. ``profiling``) and its
  debugfs files (:meth:`~GpuDevice.debugfs_files`);
- its kernel dialects (:attr:`~GpuDevice.KERNEL_VERSIONS`), its engines
  (:attr:`~GpuDevice.ENGINES`) and BO flags as a scenario names them;
- the ground truth of one client (:meth:`~GpuDevice.truth`) and the actions a scenario
  plays (create a BO, fault, submit a job, set engine usage and frequencies ...).

:class:`Services` is what the GPUs of one machine share, as in one kernel: emulated RAM,
the clock, the kernel log, the global ``drm-client-id`` counter and the timeline. A
:class:`Machine` is one or more GPUs over one :class:`Services`, card N having minors N
and 128 + N; it is what the tree serves. A GPU built alone makes its own services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping

from vdrm.drm import fdinfo
from vdrm.drm.device import ClientIdCounter, Driver, DrmDevice
from vdrm.drm.file import DrmFile
from vdrm.drm.ioctl import CORE_IOCTLS, Ioctl, IoctlTable, build_table
from vdrm.drm.limits import MAX_RAM_SIZE, Limits
from vdrm.drm.timeline import Timeline
from vdrm.errors import InvalidArgument, NoEntry
from vdrm.kernel.clock import Clock, MonotonicClock, VirtualClock
from vdrm.kernel.printk import KernelLog
from vdrm.mm.page_alloc import PAGE_SIZE, PageAllocator

if TYPE_CHECKING:
    pass

SIZE_UNITS = ("auto", "exact", "truncating")
HEAP_BACKINGS = ("sparse", "dense")


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
    profiling: int = 0  # the sysfs knob at boot: Panfrost 0/1, Panthor a mask
    clock_start_ns: int = 0  # virtual clock only
    size_units: str = "auto"  # auto (by kernel), exact (6.7+ rule), truncating (6.5-6.6 rule)
    fdinfo_revision: str = "merged"  # or "docs": the revision of the kernel docs' example
    job_timeout_ns: int = 500_000_000  # the driver's scheduler timeout (Panfrost: 500 ms); 0: never
    limits: Limits = Limits()  # what the daemon lets clients hold (vdrm.drm.limits)
    owner_uid: int = 0  # the mount's owner: with root, the only uid that may ADVANCE the clock


@dataclass(frozen=True)
class SysfsAttribute:
    """One attribute of the platform device's sysfs directory: show text, store a write."""

    show: Callable[[], str]
    store: Callable[[str], None] | None = None

    @property
    def mode(self) -> int:
        return 0o644 if self.store else 0o444


class Services:
    """What the GPUs of one machine share: RAM, clock, kernel log, client ids, timeline."""

    def __init__(self, config: DeviceConfig):
        if config.clock not in ("real", "virtual"):
            raise InvalidArgument(f"clock must be real or virtual, not {config.clock!r}")
        if config.ram_size < (16 << 20) or config.ram_size % PAGE_SIZE:
            raise InvalidArgument(f"emulated RAM must be a page multiple of at least 16 MiB, not {config.ram_size}")
        if config.ram_size > MAX_RAM_SIZE:
            raise InvalidArgument(f"emulated RAM of {config.ram_size >> 30} GiB is more than vdrm emulates "
                                  f"({MAX_RAM_SIZE >> 30} GiB at most)")
        self.clock: Clock = VirtualClock(config.clock_start_ns) if config.clock == "virtual" else MonotonicClock()
        self.log = KernelLog(self.clock)
        self.pages = PageAllocator(config.ram_size // PAGE_SIZE, seed=config.seed,
                                   fragmentation=config.fragmentation)
        self.client_ids = ClientIdCounter(config.first_client_id)
        self.timeline = Timeline(self.clock)


class GpuDevice:
    """One emulated GPU: what userspace reaches through its nodes, sysfs and debugfs.

    Subclasses set the class attributes, build their :class:`Driver` and call
    ``super().__init__``; the methods marked "driver" below are theirs to give.
    """

    DRIVER: ClassVar[str] = "none"  # the driver's name, as drm-driver prints it
    KERNEL_VERSIONS: ClassVar[tuple[tuple[int, int], ...]] = ()  # the dialects emulated
    ENGINES: ClassVar[tuple[str, ...]] = ()  # engine names a scenario uses (jobs, usage, frequency)
    DEFAULT_ENGINE: ClassVar[str] = ""  # a scenario job's engine when it names none
    BO_FLAGS: ClassVar[Mapping[str, int]] = {}  # BO creation flags a scenario may name
    HEAP_FLAG: ClassVar[str | None] = None  # the BO flag that makes a growable heap, if any
    TILER_HEAPS: ClassVar[bool] = False  # tiler heaps and command-stream queues (CSF GPUs)
    MADVISE: ClassVar[bool] = False  # BOs can be marked purgeable
    PLATFORM_DEVICE: ClassVar[str] = ""  # the platform device's name (``fde60000.gpu``)

    def __init__(self, config: DeviceConfig, driver: Driver, ioctls: Iterable[Ioctl], *,
                 services: Services | None = None, index: int = 0):
        check_config(type(self), config)
        self.config = config
        self.services = services or Services(config)
        self.clock, self.log, self.pages = self.services.clock, self.services.log, self.services.pages
        self.platform_device = self.PLATFORM_DEVICE
        self.driver = driver
        self._ioctls = build_table(CORE_IOCTLS, ioctls)
        self.drm = DrmDevice(driver, pages=self.pages, clock=self.clock, log=self.log,
                             client_ids=self.services.client_ids, index=index,
                             ioctls=self._ioctls, unique=self.PLATFORM_DEVICE, limits=config.limits)
        self.timeline = driver.timeline = self.services.timeline
        self.timeline.attach(self)

    @property
    def kernel(self) -> tuple[int, int]:
        return self.config.kernel

    @property
    def driver_name(self) -> str:
        """The driver bound to the platform device (sysfs ``driver``, ``DRIVER=``)."""
        return self.driver.name

    @property
    def index(self) -> int:
        """The card number: minors ``index`` and ``128 + index``."""
        return self.drm.index

    @property
    def nodes(self) -> tuple[tuple[str, int, str], ...]:
        """The DRM nodes as (name, minor, by-path kind)."""
        primary, render = self.drm.minors
        return ((f"card{primary}", primary, "card"), (f"renderD{render}", render, "render"))

    def update(self) -> None:
        """driver: bring the job timeline up to the clock's now."""

    # -- the virtual clock, timed events and ground truth ------------------------------

    def schedule(self, at_ns: int, action: Callable[[], None]) -> None:
        """Run ``action`` when the clock reaches ``at_ns`` (scenario timelines use this)."""
        self.timeline.schedule(at_ns, action)

    def advance(self, delta_ns: int) -> int:
        """One step of the virtual clock (every GPU of the machine); see :meth:`Timeline.advance`."""
        return self.timeline.advance(delta_ns)

    def run_due(self) -> None:
        """Run the timed events that are due at the clock's current time."""
        self.timeline.run_due()

    def busy_snapshot(self) -> dict[int, list[int]]:
        """driver: each client's engine busy ns, by drm-client-id (before a clock step)."""
        return {}

    def truth(self, file: DrmFile) -> dict:
        """driver: what a correct fdinfo parser arrives at for ``file`` over the last step."""
        raise NotImplementedError

    # -- DRM nodes -------------------------------------------------------------------

    def open(self, minor: int, *, pid: int = 0, comm: str = "", uid: int = 0) -> DrmFile:
        """Open the primary or the render node: a new DRM client."""
        self.update()
        return self.drm.open(minor, pid=pid, comm=comm, uid=uid)

    def release(self, file: DrmFile) -> None:
        """The last fd of an open closed: the client and everything it holds go."""
        self.update()
        self.drm.release(file)

    @property
    def ioctls(self) -> IoctlTable:
        """Every request a client may send, by upper-case name (DRM core + driver + vdrm)."""
        return self._ioctls

    def fdinfo(self, file: DrmFile, *, pos: int = 0, flags: int = 0o2400002, mnt_id: int = 0, ino: int = 0) -> str:
        """The full ``/proc/<pid>/fdinfo/<fd>`` text: generic header lines, then DRM lines."""
        self.update()
        return fdinfo.header(pos=pos, flags=flags, mnt_id=mnt_id, ino=ino) + fdinfo.show_fdinfo(file, self.kernel)

    # -- the driver's rows of the tree -------------------------------------------------

    def uevent(self) -> str:
        """driver: the platform device's ``uevent`` (driver name and OF identity)."""
        return f"DRIVER={self.DRIVER}\n"

    def sysfs_attributes(self) -> dict[str, SysfsAttribute]:
        """driver: the platform device's own attributes (``profiling`` ...), by name."""
        return {}

    def debugfs_files(self) -> dict[str, Callable[[], str]]:
        """driver: files of ``/sys/kernel/debug/dri/<minor>/``: name -> renderer of the text."""
        return {}

    def debugfs_attributes(self) -> dict[str, SysfsAttribute]:
        """driver: writable debugfs files (mode 0600), fixed for the device's life, by name."""
        return {}

    # -- what a scenario does to the device (driver) -------------------------------------

    def create_bo(self, file: DrmFile, size: int, flags: int, label: str | None) -> int:
        """Create a BO the way the driver's userspace does; its handle."""
        raise NotImplementedError

    def bo_va(self, file: DrmFile, handle: int) -> int:
        """The GPU VA of a BO in ``file``'s address space."""
        raise NotImplementedError

    def fault(self, file: DrmFile, addr: int) -> None:
        """A GPU page fault at ``addr`` in ``file``'s address space (a heap grows)."""
        raise NotImplementedError

    def madvise(self, file: DrmFile, handle: int, dontneed: bool) -> None:
        raise NotImplementedError

    def setup_client(self, file: DrmFile, queues: tuple[int, ...]) -> None:
        """Per-client state a scenario asks for before its BOs (CSF: the group's queue ring sizes)."""

    def create_heap(self, file: DrmFile, chunk_size: int, initial_chunks: int, max_chunks: int,
                    target_in_flight: int) -> int:
        """A tiler heap (drivers with ``TILER_HEAPS``); its handle."""
        raise NotImplementedError

    def grow_heap(self, file: DrmFile, heap: int) -> None:
        """One tiler out-of-memory event on ``heap``: it grows a chunk (ENOMEM at its limits)."""
        raise NotImplementedError

    def purge(self, file: DrmFile, handle: int) -> None:
        """The shrinker purged this (DONTNEED) BO already."""
        raise NotImplementedError

    def submit(self, file: DrmFile, engine: int, handles: list[int], duration_ns: int,
               touch: list[int]) -> None:
        """A job on engine ``ENGINES[engine]`` using ``handles``, touching GPU addresses."""
        raise NotImplementedError

    def set_engine_usage(self, file: DrmFile, engine: int, busy_ns: int, cycles: int) -> None:
        raise NotImplementedError

    def skew_engine(self, file: DrmFile, engine: int, delta_ns: int) -> None:
        """Engine time briefly off by ``delta_ns`` (never below 0)."""
        raise NotImplementedError

    def set_frequency(self, engine: int, hz: int, *, current_only: bool = False) -> None:
        raise NotImplementedError

    def set_profiling(self, value: int) -> None:
        raise NotImplementedError


def check_config(cls: type[GpuDevice], config: DeviceConfig) -> None:
    """The options every driver checks the same way (its kernel dialects included)."""
    if config.kernel not in cls.KERNEL_VERSIONS:
        known = ", ".join(f"{a}.{b}" for a, b in cls.KERNEL_VERSIONS)
        raise InvalidArgument(f"kernel {config.kernel[0]}.{config.kernel[1]} is not emulated by "
                              f"{cls.DRIVER} (known: {known})")
    if config.heap_backing not in HEAP_BACKINGS:
        raise InvalidArgument(f"heap backing must be sparse or dense, not {config.heap_backing!r}")
    if config.fdinfo_revision not in ("merged", "docs"):
        raise InvalidArgument(f"fdinfo revision must be merged or docs, not {config.fdinfo_revision!r}")
    if config.size_units not in SIZE_UNITS:
        raise InvalidArgument(f"size units must be auto, exact or truncating, not {config.size_units!r}")
    if config.job_timeout_ns < 0:
        raise InvalidArgument(f"job timeout must not be negative, not {config.job_timeout_ns} ns")


class Machine:
    """One or more GPUs sharing one :class:`Services`: what the mounted tree serves."""

    def __init__(self, devices: Iterable[GpuDevice]):
        self.devices = tuple(devices)
        if not self.devices:
            raise InvalidArgument("a machine has at least one GPU")
        self.services = self.devices[0].services
        if any(d.services is not self.services for d in self.devices):
            raise InvalidArgument("the GPUs of one machine share one clock, RAM and log")
        minors = [m for d in self.devices for m in d.drm.minors]
        if len(set(minors)) != len(minors):
            raise InvalidArgument(f"two GPUs share a DRM minor ({minors})")
        pdevs = [d.platform_device for d in self.devices]
        if len(set(pdevs)) != len(pdevs):
            raise InvalidArgument(f"two GPUs on one platform device ({', '.join(pdevs)})")
        self._by_minor = {m: d for d in self.devices for m in d.drm.minors}
        self._by_drm = {id(d.drm): d for d in self.devices}

    @property
    def clock(self) -> Clock:
        return self.services.clock

    @property
    def log(self) -> KernelLog:
        return self.services.log

    @property
    def timeline(self) -> Timeline:
        return self.services.timeline

    @property
    def device(self) -> GpuDevice:
        """The first GPU (card0)."""
        return self.devices[0]

    def on_minor(self, minor: int) -> GpuDevice:
        device = self._by_minor.get(minor)
        if device is None:
            raise NoEntry(f"no DRM minor {minor} in this machine")
        return device

    def of(self, file: DrmFile) -> GpuDevice:
        """The GPU a DRM client belongs to."""
        return self._by_drm[id(file.dev)]

    @property
    def files(self) -> dict[int, DrmFile]:
        """Every open DRM client of every GPU, by drm-client-id (ids are machine-wide)."""
        out: dict[int, DrmFile] = {}
        for device in self.devices:
            out.update(device.drm.files)
        return out

    def update(self) -> None:
        self.timeline.update()

    def open(self, minor: int, **kwargs: Any) -> DrmFile:
        return self.on_minor(minor).open(minor, **kwargs)

    def release(self, file: DrmFile) -> None:
        self.of(file).release(file)

    def fdinfo(self, file: DrmFile, **kwargs: Any) -> str:
        return self.of(file).fdinfo(file, **kwargs)

    def truth(self, file: DrmFile) -> dict:
        return self.of(file).truth(file)

    def ioctls_of(self, file: DrmFile) -> IoctlTable:
        return self.of(file).ioctls

    def advance(self, delta_ns: int) -> int:
        return self.timeline.advance(delta_ns)


def as_machine(device: "GpuDevice | Machine") -> Machine:
    """A machine of one GPU, or the machine itself."""
    return device if isinstance(device, Machine) else Machine((device,))
