"""Panthor's ioctls (``panthor_ioctl_*`` in ``panthor_drv.c``, ``include/uapi/drm/panthor_drm.h``)
and vdrm's own requests.

Each handler checks its arguments in the kernel's order and raises the kernel's errno.
Arrays the kernel takes as ``drm_panthor_obj_array`` are one element per request in the
text protocol (one VM_BIND op, one GROUP_SUBMIT queue submit); GROUP_CREATE takes its
queues as a list of ring-buffer sizes plus one priority for all.

vdrm's own requests:

``TILER_OOM heap=<handle> [renderpasses_in_flight=1] [pending_frag_count=0]``
    the tiler ran out of heap memory (``group_process_tiler_oom``): the heap grows one
    chunk under ``panthor_heap_grow``'s rules (ENOMEM at its limits).
``ADVANCE by=16ms``
    one step of the virtual clock (every GPU of the machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vdrm.drm import gem
from vdrm.drm.ioctl import Arg, Ioctl
from vdrm.errors import Canceled, InvalidArgument, NoEntry, OperationNotPermitted, OutOfMemory
from vdrm.mm.page_alloc import PAGE_SIZE
from vdrm.panthor.drv import (BO_FLAGS, BO_NO_MMAP, CSIF_INFO, CSG_PROTM_SUSPEND_SIZE, CSG_SUSPEND_SIZE,
                              FULL_VA_RANGE, G610_GPU_INFO, GROUP_PRIORITIES, GROUP_STATE_FATAL_FAULT,
                              GROUP_STATE_TIMEDOUT, MAX_CS_PER_CSG, MAX_GROUPS_PER_POOL, MAX_VMS_PER_FILE,
                              MIN_KERNEL_VA_SIZE, QUEUE_IFACE_SIZE, SYNCOBJ_SIZE, TIMESTAMP_FREQUENCY_HZ,
                              Group, PanthorBo, PanthorDriver, PanthorFile, Queue, Vm, kernel_bo)
from vdrm.panthor.heap import HeapPool

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile

U32_MAX = 0xFFFFFFFF
QUERY_TYPES = {"GPU_INFO": 0, "CSIF_INFO": 1, "TIMESTAMP_INFO": 2, "GROUP_PRIORITIES_INFO": 3}
VM_BIND_ASYNC = 1 << 0
OP_MAP_READONLY, OP_MAP_NOEXEC, OP_MAP_UNCACHED = 1 << 0, 1 << 1, 1 << 2
OP_TYPES = {"MAP": 0, "UNMAP": 1, "SYNC_ONLY": 2}
OP_FLAGS = {"READONLY": OP_MAP_READONLY, "NOEXEC": OP_MAP_NOEXEC, "UNCACHED": OP_MAP_UNCACHED}
DEFAULT_JOB_NS = 1_000_000
SZ_4K, SZ_64K = 4 << 10, 64 << 10


def _driver(file: "DrmFile") -> PanthorDriver:
    return file.dev.driver


def _priv(file: "DrmFile") -> PanthorFile:
    return file.driver_priv


def _pad(pad: int) -> None:
    if pad:
        raise InvalidArgument(f"pad must be 0, not {pad}")


def _vm(file: "DrmFile", vm_id: int) -> Vm:
    """``panthor_vm_pool_get_vm``: EINVAL for an id the file has no VM at."""
    vm = _priv(file).vms.get(vm_id)
    if vm is None:
        raise InvalidArgument(f"no VM {vm_id} in this file")
    return vm


def _group(file: "DrmFile", handle: int) -> Group:
    group = _priv(file).groups.get(handle)
    if group is None:
        raise InvalidArgument(f"no group {handle} in this file")
    return group


def dev_query(file: "DrmFile", type: int) -> dict[str, Any]:
    """panthor_ioctl_dev_query: the queried struct's fields (text path) and its size."""
    drv = _driver(file)
    if type == QUERY_TYPES["GPU_INFO"]:
        info = dict(G610_GPU_INFO)
        texture = info.pop("texture_features")
        out = {k: v for k, v in info.items() if k != "pad"}
        for i, value in enumerate(texture):
            out[f"texture_features{i}"] = value
        return {"size": 104, **out}
    if type == QUERY_TYPES["CSIF_INFO"]:
        return {"size": 24, **{k: v for k, v in CSIF_INFO.items() if k != "pad"}}
    if type == QUERY_TYPES["TIMESTAMP_INFO"] and drv.kernel >= (6, 11):
        ticks = file.dev.clock.now_ns() * (TIMESTAMP_FREQUENCY_HZ // 1_000_000) // 1000
        return {"size": 24, "timestamp_frequency": TIMESTAMP_FREQUENCY_HZ, "current_timestamp": ticks,
                "timestamp_offset": 0}
    if type == QUERY_TYPES["GROUP_PRIORITIES_INFO"] and drv.kernel >= (6, 12):
        mask = 0
        for name, prio in GROUP_PRIORITIES.items():
            if _priority_allowed(file, prio):
                mask |= 1 << prio
        return {"size": 4, "allowed_mask": mask}
    raise InvalidArgument(f"unknown query type {type}")


def _priority_allowed(file: "DrmFile", priority: int) -> bool:
    """``group_priority_permit``: HIGH and above need CAP_SYS_NICE (root here) or DRM master."""
    return priority < GROUP_PRIORITIES["HIGH"] or file.uid == 0 or file.is_master


def vm_create(file: "DrmFile", flags: int, user_va_range: int) -> dict[str, Any]:
    """panthor_ioctl_vm_create."""
    if flags:
        raise InvalidArgument(f"flags must be 0, not {flags}")
    if user_va_range == 0:
        user_va_range = FULL_VA_RANGE - MIN_KERNEL_VA_SIZE
    if user_va_range % PAGE_SIZE or user_va_range > FULL_VA_RANGE - MIN_KERNEL_VA_SIZE:
        raise InvalidArgument(f"user_va_range 0x{user_va_range:x} leaves no room for kernel objects")
    priv = _priv(file)
    vm_id = next((i for i in range(1, MAX_VMS_PER_FILE + 1) if i not in priv.vms), None)
    if vm_id is None:
        raise OutOfMemory(f"the file already has {MAX_VMS_PER_FILE} VMs")
    priv.vms[vm_id] = Vm(_driver(file), vm_id, user_va_range)
    return {"id": vm_id, "user_va_range": user_va_range}


def vm_destroy(file: "DrmFile", id: int, pad: int) -> dict[str, Any]:
    """panthor_ioctl_vm_destroy."""
    _pad(pad)
    vm = _priv(file).vms.get(id)
    if vm is None:
        raise InvalidArgument(f"no VM {id} in this file")
    for group in list(vm.groups):  # groups hold a VM reference; their jobs fail with it
        group.state |= GROUP_STATE_FATAL_FAULT
    del _priv(file).vms[id]
    vm.destroy()
    return {}


def vm_bind(file: "DrmFile", vm_id: int, flags: int, op: int, op_flags: int, bo_handle: int, bo_offset: int,
            va: int, size: int, syncs: int) -> dict[str, Any]:
    """panthor_ioctl_vm_bind: one drm_panthor_vm_bind_op, synchronous or on the VM's bind queue."""
    if flags & ~VM_BIND_ASYNC:
        raise InvalidArgument(f"unknown VM_BIND flags 0x{flags & ~VM_BIND_ASYNC:x}")
    vm = _vm(file, vm_id)
    asynchronous = bool(flags & VM_BIND_ASYNC)
    if syncs and not asynchronous:
        raise InvalidArgument("sync operations need DRM_PANTHOR_VM_BIND_ASYNC")
    if op == OP_TYPES["SYNC_ONLY"]:
        if not asynchronous or not syncs or bo_handle or bo_offset or va or size or op_flags:
            raise InvalidArgument("SYNC_ONLY needs ASYNC, at least one sync, and zero everything else")
        return {"state": vm.state}
    if (va | size) % PAGE_SIZE or size == 0:
        raise InvalidArgument("va and size must be non-zero page multiples")
    if va + size > vm.user_va_range:
        raise InvalidArgument(f"[0x{va:x}, 0x{va + size:x}) is outside the user VA range")
    if op == OP_TYPES["UNMAP"]:
        if bo_handle or bo_offset or op_flags:
            raise InvalidArgument("UNMAP takes no bo_handle, bo_offset or flags")
        vm.unmap(va, size)
        return {"state": vm.state}
    if op != OP_TYPES["MAP"]:
        raise InvalidArgument(f"unknown VM_BIND op {op}")
    if op_flags & ~(OP_MAP_READONLY | OP_MAP_NOEXEC | OP_MAP_UNCACHED):
        raise InvalidArgument(f"unknown map flags 0x{op_flags:x}")
    try:
        bo = file.handles.lookup(bo_handle)
    except NoEntry:
        raise InvalidArgument(f"no BO {bo_handle} in this file") from None
    if bo_offset % PAGE_SIZE or bo_offset + size > bo.size:
        raise InvalidArgument(f"[{bo_offset}, {bo_offset + size}) is not a page range of the {bo.size}-byte BO")
    if bo.exclusive_vm is not None and bo.exclusive_vm is not vm:
        raise InvalidArgument(f"BO {bo_handle} is private to VM {bo.exclusive_vm.id}")
    if vm.state != 0:
        raise InvalidArgument(f"VM {vm_id} is unusable: create a new one")
    try:
        vm.map(va, size, bo, bo_offset, op_flags)
    except OutOfMemory:
        if not asynchronous:
            raise
        vm.state = 1  # a failed queued bind: the VM is unusable, the ioctl had returned 0
    return {"state": vm.state}


def vm_get_state(file: "DrmFile", vm_id: int) -> dict[str, Any]:
    """panthor_ioctl_vm_get_state."""
    return {"state": _vm(file, vm_id).state}


def bo_create(file: "DrmFile", size: int, flags: int, exclusive_vm_id: int, pad: int) -> dict[str, Any]:
    """panthor_ioctl_bo_create: size rounds up to pages; the BO gets pages when first bound."""
    if size == 0 or pad or flags & ~BO_NO_MMAP:
        raise InvalidArgument("size must be non-zero, pad 0 and flags only NO_MMAP")
    vm = _vm(file, exclusive_vm_id) if exclusive_vm_id else None
    bo = PanthorBo(file.dev, -(-size // PAGE_SIZE) * PAGE_SIZE, flags, vm)
    try:
        handle = gem.handle_create(file, bo)
    finally:
        bo.put()
    return {"handle": handle, "size": bo.size}


def bo_mmap_offset(file: "DrmFile", handle: int, pad: int) -> dict[str, Any]:
    """panthor_ioctl_bo_mmap_offset: EPERM for NO_MMAP BOs."""
    _pad(pad)
    bo = file.handles.lookup(handle)
    if bo.flags & BO_NO_MMAP:
        raise OperationNotPermitted(f"BO {handle} was created NO_MMAP")
    return {"offset": bo.create_mmap_offset()}


def group_create(file: "DrmFile", vm_id: int, queues: tuple[int, ...], queue_priority: int, priority: int,
                 max_compute_cores: int, max_fragment_cores: int, max_tiler_cores: int,
                 compute_core_mask: int, fragment_core_mask: int, tiler_core_mask: int, pad: int) -> dict[str, Any]:
    """panthor_ioctl_group_create / panthor_group_create: queues are ring-buffer sizes."""
    _pad(pad)
    if not queues or len(queues) > MAX_CS_PER_CSG:
        raise InvalidArgument(f"a group has 1 to {MAX_CS_PER_CSG} queues, not {len(queues)}")
    if priority > GROUP_PRIORITIES["REALTIME"] or (priority == GROUP_PRIORITIES["REALTIME"]
                                                    and _driver(file).kernel < (6, 12)):
        raise InvalidArgument(f"unknown group priority {priority}")
    if not _priority_allowed(file, priority):
        raise OperationNotPermitted("HIGH and REALTIME groups need CAP_SYS_NICE or DRM master")
    shader, tiler = G610_GPU_INFO["shader_present"], G610_GPU_INFO["tiler_present"]
    for mask, present, cores, what in ((compute_core_mask, shader, max_compute_cores, "compute"),
                                       (fragment_core_mask, shader, max_fragment_cores, "fragment"),
                                       (tiler_core_mask, tiler, max_tiler_cores, "tiler")):
        if mask & ~present or bin(mask).count("1") < cores or cores == 0:
            raise InvalidArgument(f"{what} cores: mask 0x{mask:x} (present 0x{present:x}), max {cores}")
    if queue_priority > 15:
        raise InvalidArgument(f"queue priority {queue_priority} is above 15")
    for ringbuf in queues:
        if ringbuf < SZ_4K or ringbuf > SZ_64K or ringbuf & (ringbuf - 1):
            raise InvalidArgument(f"ring buffer size {ringbuf} is not a power of two in [4K, 64K]")
    vm = _vm(file, vm_id)
    priv = _priv(file)
    handle = next((i for i in range(1, MAX_GROUPS_PER_POOL + 1) if i not in priv.groups), None)
    if handle is None:
        raise OutOfMemory(f"the file already has {MAX_GROUPS_PER_POOL} groups")
    made = []
    try:
        for size in (CSG_SUSPEND_SIZE, CSG_PROTM_SUSPEND_SIZE,
                     -(-len(queues) * SYNCOBJ_SIZE // PAGE_SIZE) * PAGE_SIZE):
            made.append(kernel_bo(file.dev, size))
        qs = []
        for ringbuf in queues:
            made.append(kernel_bo(file.dev, ringbuf))
            made.append(kernel_bo(file.dev, QUEUE_IFACE_SIZE))
            qs.append(Queue(queue_priority, made[-2], made[-1]))
    except OutOfMemory:
        for bo in made:
            bo.unpin()
            bo.put()
        raise
    priv.groups[handle] = Group(_driver(file), handle, vm, priority, qs, made[:3])
    return {"group_handle": handle}


def group_destroy(file: "DrmFile", group_handle: int, pad: int) -> dict[str, Any]:
    """panthor_ioctl_group_destroy."""
    _pad(pad)
    group = _group(file, group_handle)
    _driver(file).update(file)
    del _priv(file).groups[group_handle]
    group.destroy()
    return {}


def group_submit(file: "DrmFile", group_handle: int, queue_index: int, stream_addr: int, stream_size: int,
                 latest_flush: int, syncs: int, pad: int, duration: int) -> dict[str, Any]:
    """panthor_ioctl_group_submit with one queue submit; ``duration`` (vdrm) is how long it runs."""
    _pad(pad)
    group = _group(file, group_handle)
    if queue_index >= len(group.queues):
        raise InvalidArgument(f"group {group_handle} has {len(group.queues)} queues, no {queue_index}")
    if stream_size % 8 or stream_addr % 64 or (stream_size == 0) != (stream_addr == 0):
        raise InvalidArgument("stream_size is a multiple of 8, stream_addr of 64, both zero or neither")
    if group.state & (GROUP_STATE_TIMEDOUT | GROUP_STATE_FATAL_FAULT) or group.vm.destroyed:
        raise Canceled(f"group {group_handle} can take no more jobs")
    if group.vm.state != 0:
        raise Canceled(f"the group's VM {group.vm.id} is unusable")
    if duration < 0:
        raise InvalidArgument("duration must not be negative")
    job = _driver(file).queue_job(group, group.queues[queue_index], duration if stream_size else 0)
    return {"start_ns": job.start_ns, "end_ns": job.end_ns}


def group_get_state(file: "DrmFile", group_handle: int, pad: int) -> dict[str, Any]:
    """panthor_ioctl_group_get_state."""
    _pad(pad)
    group = _group(file, group_handle)
    return {"state": group.state, "fatal_queues": group.fatal_queues}


def _heap_pool(vm: Vm) -> HeapPool:
    if vm.heaps is None:
        vm.heaps = HeapPool(vm, vm.drv.heap_backing)
    return vm.heaps


def tiler_heap_create(file: "DrmFile", vm_id: int, initial_chunk_count: int, chunk_size: int, max_chunks: int,
                      target_in_flight: int) -> dict[str, Any]:
    """panthor_ioctl_tiler_heap_create: handle = vm_id << 16 | heap id."""
    vm = _vm(file, vm_id)
    heap = _heap_pool(vm).create(initial_chunk_count, chunk_size, max_chunks, target_in_flight)
    return {"handle": (vm_id << 16) | heap.id, "tiler_heap_ctx_gpu_va": heap.ctx_va,
            "first_heap_chunk_gpu_va": heap.chunks[0]}


def _heap_of(file: "DrmFile", handle: int) -> tuple[HeapPool, int]:
    vm = _vm(file, handle >> 16)
    if vm.heaps is None:
        raise InvalidArgument(f"VM {vm.id} has no heaps")
    return vm.heaps, handle & 0xFFFF


def tiler_heap_destroy(file: "DrmFile", handle: int, pad: int) -> dict[str, Any]:
    """panthor_ioctl_tiler_heap_destroy."""
    _pad(pad)
    pool, heap_id = _heap_of(file, handle)
    pool.destroy_heap(heap_id)
    return {}


def tiler_oom(file: "DrmFile", heap: int, renderpasses_in_flight: int, pending_frag_count: int) -> dict[str, Any]:
    """vdrm: a tiler out-of-memory event on a heap (``group_process_tiler_oom``)."""
    pool, heap_id = _heap_of(file, heap)
    va = pool.grow(heap_id, renderpasses_in_flight, pending_frag_count)
    h = pool.heaps[heap_id]
    return {"new_chunk_gpu_va": va, "chunk_count": h.chunk_count}


def advance(file: "DrmFile", by: int) -> dict[str, Any]:
    """vdrm: one step of the virtual clock (every client of every GPU sees it)."""
    now = _driver(file).timeline.advance(by)
    return {"now_ns": now, "step_ns": by}


_PAD = Arg("pad", "u32", "must be 0", default=0)
_VM = Arg("vm_id", "u32", "a VM id from VM_CREATE")
_GROUP = Arg("group_handle", "u32", "a group handle from GROUP_CREATE")

PANTHOR_IOCTLS: tuple[Ioctl, ...] = (
    Ioctl("DEV_QUERY", (Arg("type", "enum", "GPU_INFO, CSIF_INFO, TIMESTAMP_INFO, GROUP_PRIORITIES_INFO",
                            names=QUERY_TYPES),),
          dev_query, "Query the GPU (a Mali-G610 MP4, RK3588): the struct's fields and its size.",
          frozenset({"gpu_id", "csf_id", "l2_features", "tiler_features", "mem_features", "mmu_features",
                     "thread_features", "coherency_features", "as_present", "shader_present", "l2_present",
                     "tiler_present", "texture_features0", "allowed_mask"})),
    Ioctl("VM_CREATE", (Arg("flags", "u32", "must be 0", default=0),
                        Arg("user_va_range", "size", "user VA size; 0 picks one", default=0)),
          vm_create, "Create a GPU VM (address space); answers its id.", frozenset({"user_va_range"})),
    Ioctl("VM_DESTROY", (Arg("id", "u32", "the VM id"), _PAD), vm_destroy, "Destroy a VM and its mappings."),
    Ioctl("VM_BIND", (_VM, Arg("flags", "flags", "ASYNC: queue on the VM's bind queue", default=0,
                               names={"ASYNC": VM_BIND_ASYNC}),
                      Arg("op", "enum", "MAP, UNMAP or SYNC_ONLY", default=0, names=OP_TYPES),
                      Arg("op_flags", "flags", "READONLY, NOEXEC, UNCACHED (MAP only)", default=0, names=OP_FLAGS),
                      Arg("bo_handle", "u32", "the BO to map (MAP only)", default=0),
                      Arg("bo_offset", "size", "offset in the BO", default=0),
                      Arg("va", "u64", "GPU VA, page-aligned", default=0),
                      Arg("size", "size", "bytes, page multiple", default=0),
                      Arg("syncs", "u32", "how many sync ops the op carries (ASYNC only)", default=0)),
          vm_bind, "Map or unmap memory in a VM (one op); answers the VM state."),
    Ioctl("VM_GET_STATE", (_VM,), vm_get_state, "0 usable, 1 unusable (an async bind failed)."),
    Ioctl("BO_CREATE", (Arg("size", "size", "bytes (rounded up to pages)"),
                        Arg("flags", "flags", "NO_MMAP", default=0, names=BO_FLAGS),
                        Arg("exclusive_vm_id", "u32", "the only VM it may be bound to (0: any)", default=0),
                        _PAD),
          bo_create, "Create a BO; answers its handle and page-aligned size."),
    Ioctl("BO_MMAP_OFFSET", (Arg("handle", "u32", "a GEM handle"), _PAD), bo_mmap_offset,
          "The fake mmap offset of a BO (EPERM for NO_MMAP).", frozenset({"offset"})),
    Ioctl("GROUP_CREATE", (_VM, Arg("queues", "list", "ring-buffer size of each queue (power of 2, 4K..64K)",
                                    default=(SZ_64K,)),
                           Arg("queue_priority", "u32", "0..15, for every queue", default=1),
                           Arg("priority", "enum", "LOW, MEDIUM, HIGH, REALTIME", default=1, names=GROUP_PRIORITIES),
                           Arg("max_compute_cores", "u32", "", default=4),
                           Arg("max_fragment_cores", "u32", "", default=4),
                           Arg("max_tiler_cores", "u32", "", default=1),
                           Arg("compute_core_mask", "u64", "", default=G610_GPU_INFO["shader_present"]),
                           Arg("fragment_core_mask", "u64", "", default=G610_GPU_INFO["shader_present"]),
                           Arg("tiler_core_mask", "u64", "", default=G610_GPU_INFO["tiler_present"]),
                           _PAD),
          group_create, "Create a scheduling group of queues on a VM; answers its handle."),
    Ioctl("GROUP_DESTROY", (_GROUP, _PAD), group_destroy, "Destroy a group; its queued jobs are dropped."),
    Ioctl("GROUP_SUBMIT", (_GROUP, Arg("queue_index", "u32", "the queue", default=0),
                           Arg("stream_addr", "u64", "command stream GPU VA (64-aligned)", default=0x1000000),
                           Arg("stream_size", "u32", "bytes (multiple of 8); 0 = a sync point", default=64),
                           Arg("latest_flush", "u32", "", default=0),
                           Arg("syncs", "u32", "sync ops (none are emulated)", default=0),
                           _PAD,
                           Arg("duration", "duration", "vdrm: how long the job runs", default=DEFAULT_JOB_NS)),
          group_submit, "Queue a job; engine time accrues at its end (if profiling was on)."),
    Ioctl("GROUP_GET_STATE", (_GROUP, _PAD), group_get_state, "The group's TIMEDOUT/FATAL_FAULT/INNOCENT bits."),
    Ioctl("TILER_HEAP_CREATE", (_VM, Arg("initial_chunk_count", "u32", ">= 1", default=1),
                                Arg("chunk_size", "size", "page-aligned, 128K..8M", default=2 << 20),
                                Arg("max_chunks", "u32", ">= initial_chunk_count", default=64),
                                Arg("target_in_flight", "u32", "render passes in flight before the FW waits",
                                    default=1)),
          tiler_heap_create, "Create a tiler heap in a VM.",
          frozenset({"tiler_heap_ctx_gpu_va", "first_heap_chunk_gpu_va"})),
    Ioctl("TILER_HEAP_DESTROY", (Arg("handle", "u32", "a heap handle"), _PAD), tiler_heap_destroy,
          "Destroy a tiler heap and its chunks."),
    Ioctl("TILER_OOM", (Arg("heap", "u32", "a heap handle"),
                        Arg("renderpasses_in_flight", "u32", "", default=1),
                        Arg("pending_frag_count", "u32", "", default=0)),
          tiler_oom, "vdrm: the tiler ran out of heap memory; the heap grows one chunk (ENOMEM at its limits).",
          frozenset({"new_chunk_gpu_va"})),
    Ioctl("ADVANCE", (Arg("by", "duration", "how far to move the virtual clock, e.g. 16ms"),),
          advance, "vdrm: advance the virtual clock one step (jobs run, ground truth updates)."),
)
