"""The DRM device (``struct drm_device``) and the driver interface (``struct drm_driver``).

A :class:`DrmDevice` owns what is device-wide in the kernel: its minors (primary N,
render 128 + N for card N), the open files, the flink name table, the fake mmap offset space, the list
of GEM objects in creation order (what Panfrost's debugfs ``gems`` walks), and the
services it runs on: the page allocator (emulated RAM), the clock and the kernel log.

``drm-client-id`` values come from a :class:`ClientIdCounter`. In the kernel it is one
static 64-bit counter shared by every DRM device, first value 1; vdrm gives each daemon
one counter, and a scenario may start it elsewhere (to reproduce ids past 2**32).

A driver (:class:`Driver`) plugs in through the hooks the kernel's ``drm_driver`` has:
``open``/``postclose`` per file, ``gem_open``/``gem_close`` per handle, ``show_fdinfo``.
Nothing in this module knows which driver it runs; a second Mali driver (Panthor) is a
second :class:`Driver` subclass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping

from vdrm.drm import auth
from vdrm.drm.file import DrmFile
from vdrm.drm.limits import Limits
from vdrm.drm.vma_manager import VmaOffsetManager
from vdrm.errors import InvalidArgument, KernelBug, TooManyFiles

if TYPE_CHECKING:
    from vdrm.drm.auth import DrmMaster
    from vdrm.drm.gem import GemObject
    from vdrm.kernel.clock import Clock
    from vdrm.kernel.printk import KernelLog
    from vdrm.mm.page_alloc import PageAllocator

PRIMARY_MINOR = 0
RENDER_MINOR = 128


class ClientIdCounter:
    """The global ``drm-client-id`` counter: ``atomic64_inc_return`` of a counter at 0."""

    def __init__(self, first: int = 1):
        if first < 1:
            raise InvalidArgument(f"drm-client-id starts at 1 or above, not {first}")
        self._next = first

    def next(self) -> int:
        value = self._next
        self._next += 1
        return value

    def peek(self) -> int:
        return self._next


class Driver:
    """``struct drm_driver``: the hooks a driver gives the DRM core. Defaults do nothing."""

    name = "none"
    desc = ""
    date = ""
    version = (0, 0, 0)
    driver_features: frozenset[str] = frozenset()  # drm_driver.driver_features: GEM, RENDER, SYNCOBJ ...

    def bind(self, dev: "DrmDevice") -> None:
        """Called once when the device is created, before any file opens."""
        self.dev = dev

    def open(self, file: DrmFile) -> None:
        """``drm_driver.open``: set up per-file state (Panfrost: the GPU address space)."""

    def postclose(self, file: DrmFile) -> None:
        """``drm_driver.postclose``: tear down per-file state, after handles are gone."""

    def gem_open(self, file: DrmFile, obj: "GemObject") -> None:
        """``drm_gem_object_funcs.open``: a handle to ``obj`` was created in ``file``."""

    def gem_close(self, file: DrmFile, obj: "GemObject") -> None:
        """``drm_gem_object_funcs.close``: a handle to ``obj`` in ``file`` was deleted."""

    def has(self, feature: str) -> bool:
        """Whether the emulated kernel release has ``feature`` (a name in the driver's
        release table: an ioctl, a parameter, a flag, an fdinfo or debugfs change).

        The seam between the ioctl table (which declares ``Ioctl.since``) and the
        per-driver release table; the base driver has every feature."""
        return True

    def has_fdinfo(self, version: tuple[int, int]) -> bool:
        """Whether this driver has a ``show_fdinfo`` hook in kernel ``version``."""
        return True

    def show_fdinfo(self, file: DrmFile, out: list[str], version: tuple[int, int]) -> None:
        """``drm_driver.show_fdinfo``: append the driver's fdinfo lines for ``version``."""


class DrmDevice:
    """``struct drm_device``: minors, files, flink names, mmap offsets, object list."""

    def __init__(
        self,
        driver: Driver,
        *,
        pages: "PageAllocator",
        clock: "Clock",
        log: "KernelLog",
        client_ids: ClientIdCounter | None = None,
        index: int = 0,
        limits: Limits | None = None,
        ioctls: "Mapping[str, Any] | None" = None,
        unique: str = "",
    ):
        self.driver = driver
        self.index = index  # the card number: minors index and 128 + index
        self.limits = limits or Limits()
        self.label_bytes = 0  # bytes of BO labels held device-wide (limits.label_bytes)
        self.pages = pages
        self.clock = clock
        self.log = log
        self.client_ids = client_ids or ClientIdCounter()
        self.vma_offsets = VmaOffsetManager()
        self.files: dict[int, DrmFile] = {}  # client_id -> file, in open order
        self.master: "DrmMaster | None" = None  # dev->master: the current DRM master
        self.ioctls = ioctls  # build_table(core, driver): drm_ioctl() looks numbers up here
        self.unique = unique  # dev->unique: the parent device's name (platform: "fde60000.gpu")
        self.flink_names: dict[int, "GemObject"] = {}
        self._next_flink_name = 1
        self.objects: dict[int, "GemObject"] = {}  # id(obj) -> obj, in creation order
        driver.bind(self)

    @property
    def minors(self) -> tuple[int, int]:
        return (PRIMARY_MINOR + self.index, RENDER_MINOR + self.index)

    # -- files ---------------------------------------------------------------------

    def open(self, minor: int, *, pid: int = 0, comm: str = "", uid: int = 0) -> DrmFile:
        """drm_open: a new DRM client on ``minor`` with the next ``drm-client-id``.

        The first open of the primary node while nobody holds DRM master becomes master
        (``drm_master_open``, :mod:`vdrm.drm.auth`), and is authenticated.
        """
        if minor not in self.minors:
            raise InvalidArgument(f"no DRM minor {minor} on this device (have {self.minors})")
        if len(self.files) >= self.limits.clients:
            raise TooManyFiles(f"{len(self.files)} DRM clients are open, the daemon's limit "
                               "(--max-clients)")
        file = DrmFile(self, minor, self.client_ids.next(), pid=pid, comm=comm, uid=uid)
        self.driver.open(file)
        if minor == self.minors[0]:
            auth.master_open(file)
        self.files[file.client_id] = file
        return file

    def release(self, file: DrmFile) -> None:
        """drm_release: the last fd of an open closed; every handle and the VM go."""
        if self.files.pop(file.client_id, None) is not file:
            raise KernelBug(f"release of client {file.client_id}, which is not open")
        file.release_handles()
        self.driver.postclose(file)
        auth.master_release(file)
        file.closed = True

    # -- GEM bookkeeping -------------------------------------------------------------

    def gem_object_created(self, obj: "GemObject") -> None:
        """Record ``obj`` in creation order (drivers call this from their create path)."""
        self.objects[id(obj)] = obj

    def gem_object_freed(self, obj: "GemObject") -> None:
        """Forget ``obj``; called by :meth:`GemObject.put` on the last reference."""
        self.objects.pop(id(obj), None)

    def iter_objects(self) -> Iterator["GemObject"]:
        """Live GEM objects, oldest first."""
        return iter(list(self.objects.values()))

    def alloc_flink_name(self, obj: "GemObject") -> int:
        """idr_alloc(&dev->object_name_idr, obj, 1, 0): the next free global name."""
        name = self._next_flink_name
        while name in self.flink_names:
            name += 1
        self._next_flink_name = name + 1
        self.flink_names[name] = obj
        return name
