"""GEM objects, handles and flink names (``drivers/gpu/drm/drm_gem.c``).

A :class:`GemObject` is the driver-independent part of a buffer object: its size, its
reference count, how many handles point at it (``handle_count``), its global flink name,
whether it was exported as a dma-buf, and its fake mmap offset. The shmem helper
(:mod:`vdrm.drm.gem_shmem`) and the drivers build on it.

Lifetime rules, as in the kernel:

* an object starts with one reference, owned by its creator, which normally hands it to a
  handle (``handle_create``) and drops its own reference;
* every handle holds one reference and adds one to ``handle_count``;
* a flink name is looked up under the device and dies with the last handle
  (``drm_gem_object_handle_free`` drops the name when ``handle_count`` reaches 0);
* the object is freed, and its pages returned, when the last reference goes.

Handles are per file, allocated as the lowest free id >= 1 (``idr_alloc(..., 1, 0)``), so
they start at 1 and a closed handle's id is reused first.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Iterator

from vdrm.errors import InvalidArgument, KernelBug, NoEntry, NoSpace
from vdrm.mm.page_alloc import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from vdrm.drm.device import DrmDevice
    from vdrm.drm.file import DrmFile

# drm_gem_object_status bits (include/drm/drm_gem.h)
OBJECT_RESIDENT = 1 << 0
OBJECT_PURGEABLE = 1 << 1
OBJECT_ACTIVE = 1 << 2


class GemObject:
    """``struct drm_gem_object``: size, references, handles, name, export state, mmap offset."""

    def __init__(self, dev: "DrmDevice", size: int):
        if size <= 0 or size % PAGE_SIZE:
            raise InvalidArgument(f"GEM object size {size} is not a positive multiple of {PAGE_SIZE}")
        self.dev = dev
        self.size = size
        self.refcount = 1
        self.handle_count = 0
        self.name = 0  # flink name, 0 = none
        self.exported = False  # obj->dma_buf != NULL
        self.imported = False  # obj->import_attach != NULL
        self.vma_pgoff: int | None = None  # drm_vma_node_start(), in pages
        self.freed = False

    # -- references ----------------------------------------------------------------

    def get(self) -> "GemObject":
        """drm_gem_object_get: take one reference."""
        if self.refcount <= 0:
            raise KernelBug(f"get on a GEM object whose refcount is {self.refcount}")
        self.refcount += 1
        return self

    def put(self) -> None:
        """drm_gem_object_put: drop one reference; the last one frees the object."""
        if self.refcount <= 0:
            raise KernelBug("put on a GEM object that is already freed")
        self.refcount -= 1
        if self.refcount == 0:
            self.free_mmap_offset()
            self.free()
            self.freed = True
            self.dev.gem_object_freed(self)

    # -- driver hooks (drm_gem_object_funcs) ---------------------------------------

    def status(self) -> int:
        """``funcs->status``: OBJECT_* bits; 0 means the driver has no status callback."""
        return 0

    def has_status(self) -> bool:
        """Whether the driver provides a ``status`` callback at all."""
        return False

    def rss(self) -> int | None:
        """``funcs->rss``: resident bytes, or None when the driver has no rss callback."""
        return None

    def is_active(self) -> bool:
        """Whether unsignalled fences sit on the reservation object (busy on an engine)."""
        return False

    def free(self) -> None:
        """``funcs->free``: release what the object owns. Subclasses extend this."""

    # -- mmap offset (drm_gem_create_mmap_offset / drm_gem_free_mmap_offset) --------

    def create_mmap_offset(self) -> int:
        """Give the object a fake mmap offset (bytes) in the device-wide offset space."""
        if self.vma_pgoff is None:
            self.vma_pgoff = self.dev.vma_offsets.add(self.size >> PAGE_SHIFT)
        return self.vma_pgoff << PAGE_SHIFT

    def free_mmap_offset(self) -> None:
        """Release the fake mmap offset, if any (purge and free do this)."""
        if self.vma_pgoff is not None:
            self.dev.vma_offsets.remove(self.vma_pgoff)
            self.vma_pgoff = None

    @property
    def mmap_offset(self) -> int:
        """``drm_vma_node_offset_addr``: the fake offset in bytes, 0 when there is none."""
        return 0 if self.vma_pgoff is None else self.vma_pgoff << PAGE_SHIFT


class HandleTable:
    """A file's ``object_idr``: handle -> object, lowest free id >= 1 first."""

    def __init__(self) -> None:
        self._objects: dict[int, GemObject] = {}
        self._free_ids: list[int] = []  # min-heap of released ids, all below _next_id
        self._next_id = 1

    def alloc(self, obj: GemObject) -> int:
        """Store ``obj`` under the lowest free handle and return it."""
        if self._free_ids:
            handle = heapq.heappop(self._free_ids)
        else:
            handle = self._next_id
            self._next_id += 1
        self._objects[handle] = obj
        return handle

    def remove(self, handle: int) -> GemObject:
        """Remove ``handle`` and return its object; NoEntry if there is no such handle."""
        try:
            obj = self._objects.pop(handle)
        except KeyError:
            raise NoEntry(f"no GEM handle {handle} in this file") from None
        heapq.heappush(self._free_ids, handle)
        return obj

    def lookup(self, handle: int) -> GemObject:
        """Return the object behind ``handle``; NoEntry if there is none."""
        try:
            return self._objects[handle]
        except KeyError:
            raise NoEntry(f"no GEM handle {handle} in this file") from None

    def items(self) -> Iterator[tuple[int, GemObject]]:
        """(handle, object) in ascending handle order, as ``idr_for_each_entry`` walks."""
        for handle in sorted(self._objects):
            yield handle, self._objects[handle]

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, handle: int) -> bool:
        return handle in self._objects


def handle_create(file: "DrmFile", obj: GemObject) -> int:
    """drm_gem_handle_create: a new handle in ``file`` holding one reference to ``obj``.

    NoSpace when the file already holds the daemon's limit of handles (its id space)."""
    cap = file.dev.limits.bos_per_client
    if len(file.handles) >= cap:
        raise NoSpace(f"this client holds {len(file.handles)} GEM handles, the daemon's limit "
                      "(--max-bos-per-client)")
    obj.get()
    obj.handle_count += 1
    handle = file.handles.alloc(obj)
    try:
        file.dev.driver.gem_open(file, obj)
    except BaseException:
        file.handles.remove(handle)
        _drop_handle_ref(obj)
        raise
    return handle


def handle_delete(file: "DrmFile", handle: int) -> None:
    """drm_gem_handle_delete (GEM_CLOSE): drop ``handle``; the object may die with it."""
    obj = file.handles.remove(handle)
    file.dev.driver.gem_close(file, obj)
    _drop_handle_ref(obj)


def _drop_handle_ref(obj: GemObject) -> None:
    obj.handle_count -= 1
    if obj.handle_count < 0:
        raise KernelBug("GEM handle_count went negative")
    if obj.handle_count == 0 and obj.name:
        obj.dev.flink_names.pop(obj.name, None)
        obj.name = 0
    obj.put()


def flink(file: "DrmFile", handle: int) -> int:
    """DRM_IOCTL_GEM_FLINK: give the object a global name (idempotent) and return it."""
    obj = file.handles.lookup(handle)
    if obj.handle_count == 0:
        raise NoEntry(f"GEM handle {handle} is being closed")
    if not obj.name:
        obj.name = obj.dev.alloc_flink_name(obj)
    return obj.name


def gem_open(file: "DrmFile", name: int) -> tuple[int, int]:
    """DRM_IOCTL_GEM_OPEN: a new handle for the object called ``name``; returns (handle, size)."""
    try:
        obj = file.dev.flink_names[name]
    except KeyError:
        raise NoEntry(f"no GEM object has the flink name {name}") from None
    return handle_create(file, obj), obj.size
