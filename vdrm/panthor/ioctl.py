"""Panthor's ioctls (``panthor_ioctl_*`` in ``panthor_drv.c``, ``include/uapi/drm/panthor_drm.h``)
and vdrm's own requests.

Each handler checks its arguments in the kernel's order and raises the kernel's errno.
Every ioctl is declared once, for both doors (:mod:`vdrm.drm.ioctl`): its request number
and struct come from :mod:`vdrm.panthor.uapi`, ``since`` names its row in the release
table (:mod:`vdrm.panthor.releases`), so a release without it answers EINVAL.

Arrays the kernel takes as ``drm_panthor_obj_array`` (VM_BIND ops, GROUP_CREATE queues,
GROUP_SUBMIT queue submits, BO_SYNC ops) arrive whole from binary callers; the text
protocol spells out one element as arguments (marked "text" in HELP), and GROUP_CREATE
takes its queues as a list of ring-buffer sizes with one priority for all.

Differences from the kernel, on purpose: sync objects are not emulated (the DRM core has
no SYNCOBJ ioctls here), so sync operations are counted and signal at once; a failed
synchronous VM_BIND does not write back how many ops ran (``ops.count``), because the
binary door copies a struct back only on success; ``mmap()`` of a NO_MMAP BO (EINVAL in
``panthor_gem_mmap``) is not reachable, as vdrm has no mmap of BOs.

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
from vdrm.drm.ioctl import Arg, Ioctl, advance
from vdrm.errors import AccessDenied, Canceled, InvalidArgument, NoEntry, OutOfMemory, TooBig
from vdrm.mm.page_alloc import PAGE_SIZE
from vdrm.panthor import releases, uapi
from vdrm.panthor.drv import (BO_NO_MMAP, BO_WB_MMAP, CSIF_INFO, CSG_PROTM_SUSPEND_SIZE, CSG_SUSPEND_SIZE,
                              FULL_VA_RANGE, G610_GPU_INFO, GROUP_PRIORITIES, GROUP_STATE_FATAL_FAULT,
                              GROUP_STATE_TIMEDOUT, MAX_CS_PER_CSG, MAX_GROUPS_PER_POOL, MAX_VMS_PER_FILE,
                              MIN_KERNEL_VA_SIZE, QUEUE_IFACE_SIZE, SYNCOBJ_SIZE, TIMESTAMP_FREQUENCY_HZ,
                              VM_STATE_UNUSABLE, VM_STATE_USABLE, Group, PanthorBo, PanthorDriver, PanthorFile,
                              Queue, Vm, kernel_bo)
from vdrm.panthor.heap import HeapPool

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile

U32_MAX = 0xFFFFFFFF
QUERY_TYPES = {"GPU_INFO": 0, "CSIF_INFO": 1, "TIMESTAMP_INFO": 2, "GROUP_PRIORITIES_INFO": 3}
VM_BIND_ASYNC = 1 << 0
OP_MAP_READONLY, OP_MAP_NOEXEC, OP_MAP_UNCACHED = 1 << 0, 1 << 1, 1 << 2
OP_TYPES = {"MAP": 0, "UNMAP": 1, "SYNC_ONLY": 2}
OP_TYPE_SHIFT = 28
OP_TYPE_MASK = 0xF << OP_TYPE_SHIFT
SELECTED_COHERENCY_NONE = 31  # DRM_PANTHOR_GPU_COHERENCY_NONE: the RK3588's GPU is not IO-coherent
USER_MMIO_OFFSET_32BIT, USER_MMIO_OFFSET_64BIT = 1 << 43, 1 << 56
BO_SYNC_TYPES = {"CPU_CACHE_FLUSH": 0, "CPU_CACHE_FLUSH_AND_INVALIDATE": 1}
BO_IS_IMPORTED = 1 << 0
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
    """panthor_ioctl_dev_query: the queried struct's fields (text), its bytes (binary) and size.

    An unknown type, or one the release does not have yet, is EINVAL.
    """
    drv = _driver(file)
    if type == QUERY_TYPES["GPU_INFO"]:
        fields = gpu_info(drv)
        struct = uapi.GPU_INFO
    elif type == QUERY_TYPES["CSIF_INFO"]:
        fields, struct = dict(CSIF_INFO), uapi.CSIF_INFO
    elif type == QUERY_TYPES["TIMESTAMP_INFO"] and drv.has(releases.TIMESTAMP_INFO):
        ticks = file.dev.clock.now_ns() * (TIMESTAMP_FREQUENCY_HZ // 1_000_000) // 1000
        fields = {"timestamp_frequency": TIMESTAMP_FREQUENCY_HZ, "current_timestamp": ticks, "timestamp_offset": 0}
        struct = uapi.TIMESTAMP_INFO
    elif type == QUERY_TYPES["GROUP_PRIORITIES_INFO"] and drv.has(releases.GROUP_PRIORITIES_INFO):
        mask = 0
        for prio in GROUP_PRIORITIES.values():
            if _priority_exists(drv, prio) and _priority_allowed(file, prio):
                mask |= 1 << prio
        fields, struct = {"allowed_mask": mask}, uapi.GROUP_PRIORITIES_INFO
    else:
        raise InvalidArgument(f"unknown query type {type}")
    text = {"size": struct.size, **{k: v for k, v in fields.items() if not k.startswith("pad")}}
    return uapi.Results(text, {"info": struct.pack(fields)}, text_only=frozenset({"size"}))


def gpu_info(drv: PanthorDriver) -> dict[str, int]:
    """``drm_panthor_gpu_info`` of the emulated G610 (``selected_coherency`` from 1.6)."""
    info = {k: v for k, v in G610_GPU_INFO.items() if k != "texture_features"}
    for i, value in enumerate(G610_GPU_INFO["texture_features"]):
        info[f"texture_features{i}"] = value
    info["selected_coherency"] = SELECTED_COHERENCY_NONE if drv.has(releases.SELECTED_COHERENCY) else 0
    return info


def _priority_exists(drv: PanthorDriver, priority: int) -> bool:
    return priority < GROUP_PRIORITIES["REALTIME"] or drv.has(releases.GROUP_PRIORITIES_INFO)


def _priority_allowed(file: "DrmFile", priority: int) -> bool:
    """``group_priority_permit``: HIGH and above need CAP_SYS_NICE (root here) or DRM master."""
    return priority <= GROUP_PRIORITIES["MEDIUM"] or file.uid == 0 or file.is_master


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


def _text_op(op: int, op_flags: int, bo_handle: int, bo_offset: int, va: int, size: int,
             syncs: int) -> dict[str, int]:
    """The one ``drm_panthor_vm_bind_op`` a text request spells out argument by argument."""
    return {"flags": (op << OP_TYPE_SHIFT) | op_flags, "bo_handle": bo_handle, "bo_offset": bo_offset,
            "va": va, "size": size, "syncs_count": syncs}


def _binary(items: list[Any], what: str) -> list[dict[str, int]]:
    if any(not isinstance(item, dict) for item in items):
        raise InvalidArgument(f"{what} is an array of structs, binary callers only; the text request "
                              "takes one element as arguments")
    return items


def vm_bind(file: "DrmFile", vm_id: int, flags: int, ops: list[Any], ops_stride: int, op: int, op_flags: int,
            bo_handle: int, bo_offset: int, va: int, size: int, syncs: int) -> dict[str, Any]:
    """panthor_ioctl_vm_bind: ops run in order, synchronously or on the VM's bind queue.

    Synchronously (``panthor_ioctl_vm_bind_sync``) the first failing op's errno is the
    result and the ops after it do not run. With ASYNC (``panthor_ioctl_vm_bind_async``)
    every op is checked first (a bad one fails the ioctl and none runs); an op that then
    fails while executing (out of memory pinning pages) makes the VM unusable, the ioctl
    having returned 0. Sync objects are not emulated: ops may carry sync counts (ASYNC
    only), which signal at once.
    """
    if flags & ~VM_BIND_ASYNC:
        raise InvalidArgument(f"unknown VM_BIND flags 0x{flags & ~VM_BIND_ASYNC:x}")
    vm = _vm(file, vm_id)
    todo = _binary(ops, "ops") if ops else [_text_op(op, op_flags, bo_handle, bo_offset, va, size, syncs)]
    asynchronous = bool(flags & VM_BIND_ASYNC)
    if asynchronous:
        prepared = [_prepare_op(file, vm, o, asynchronous) for o in todo]
        for kind, args in prepared:
            _exec_op(vm, kind, args, asynchronous)
    else:
        for o in todo:
            kind, args = _prepare_op(file, vm, o, asynchronous)
            _exec_op(vm, kind, args, asynchronous)
    return {"state": vm.state}


def _prepare_op(file: "DrmFile", vm: Vm, o: dict[str, int], asynchronous: bool) -> tuple[int, tuple]:
    """``panthor_vm_bind_prepare_op_ctx``: an op's checks, in the kernel's order."""
    kind, op_flags = o["flags"] >> OP_TYPE_SHIFT, o["flags"] & ~OP_TYPE_MASK
    syncs = o.get("syncs_count", 0)
    if syncs and not asynchronous:
        raise InvalidArgument("sync operations need DRM_PANTHOR_VM_BIND_ASYNC")
    if kind == OP_TYPES["SYNC_ONLY"]:
        if not asynchronous or not syncs or o["bo_handle"] or o["bo_offset"] or o["va"] or o["size"] or op_flags:
            raise InvalidArgument("SYNC_ONLY needs ASYNC, at least one sync, and zero everything else")
        return kind, ()
    va, size = o["va"], o["size"]
    if (va | size) % PAGE_SIZE or size == 0:
        raise InvalidArgument("va and size must be non-zero page multiples")
    if va + size > vm.user_va_range:
        raise InvalidArgument(f"[0x{va:x}, 0x{va + size:x}) is outside the user VA range")
    if kind == OP_TYPES["UNMAP"]:
        if o["bo_handle"] or o["bo_offset"] or op_flags:
            raise InvalidArgument("UNMAP takes no bo_handle, bo_offset or flags")
        return kind, (va, size)
    if kind != OP_TYPES["MAP"]:
        raise InvalidArgument(f"unknown VM_BIND op {kind}")
    if op_flags & ~(OP_MAP_READONLY | OP_MAP_NOEXEC | OP_MAP_UNCACHED):
        raise InvalidArgument(f"unknown map flags 0x{op_flags:x}")
    try:
        bo = file.handles.lookup(o["bo_handle"])
    except NoEntry:
        raise InvalidArgument(f"no BO {o['bo_handle']} in this file") from None
    bo_offset = o["bo_offset"]
    if bo_offset % PAGE_SIZE or bo_offset + size > bo.size:
        raise InvalidArgument(f"[{bo_offset}, {bo_offset + size}) is not a page range of the {bo.size}-byte BO")
    if bo.exclusive_vm is not None and bo.exclusive_vm is not vm:
        raise InvalidArgument(f"BO {o['bo_handle']} is private to VM {bo.exclusive_vm.id}")
    if vm.state != VM_STATE_USABLE:
        raise InvalidArgument(f"VM {vm.id} is unusable: create a new one")
    return kind, (va, size, bo, bo_offset, op_flags)


def _exec_op(vm: Vm, kind: int, args: tuple, asynchronous: bool) -> None:
    if kind == OP_TYPES["UNMAP"]:
        vm.unmap(*args)
    elif kind == OP_TYPES["MAP"]:
        if vm.state != VM_STATE_USABLE:  # an earlier queued op failed
            return
        try:
            vm.map(*args)
        except OutOfMemory:
            if not asynchronous:
                raise
            vm.state = VM_STATE_UNUSABLE


def vm_get_state(file: "DrmFile", vm_id: int) -> dict[str, Any]:
    """panthor_ioctl_vm_get_state."""
    return {"state": _vm(file, vm_id).state}


def bo_create(file: "DrmFile", size: int, flags: int, exclusive_vm_id: int, pad: int) -> dict[str, Any]:
    """panthor_ioctl_bo_create: size rounds up to pages; the BO gets pages when first bound."""
    known = BO_NO_MMAP | (BO_WB_MMAP if _driver(file).has(releases.BO_WB_MMAP) else 0)
    if size == 0 or pad or flags & ~known:
        raise InvalidArgument(f"size must be non-zero, pad 0 and flags within 0x{known:x}")
    vm = _vm(file, exclusive_vm_id) if exclusive_vm_id else None
    if len(file.dev.objects) >= file.dev.limits.bos:
        raise OutOfMemory(f"{len(file.dev.objects)} BOs exist, the daemon's limit (--max-bos)")
    bo = PanthorBo(file.dev, -(-size // PAGE_SIZE) * PAGE_SIZE, flags, vm)
    try:
        handle = gem.handle_create(file, bo)
    finally:
        bo.put()
    return {"handle": handle, "size": bo.size}


def bo_mmap_offset(file: "DrmFile", handle: int, pad: int) -> dict[str, Any]:
    """panthor_ioctl_bo_mmap_offset: the fake offset, even for NO_MMAP BOs (their mmap fails)."""
    _pad(pad)
    bo = file.handles.lookup(handle)
    return {"offset": bo.create_mmap_offset()}


def group_create(file: "DrmFile", queues: list[Any], queues_stride: int, queue_priority: int,
                 max_compute_cores: int, max_fragment_cores: int, max_tiler_cores: int, priority: int, pad: int,
                 compute_core_mask: int, fragment_core_mask: int, tiler_core_mask: int,
                 vm_id: int) -> dict[str, Any]:
    """panthor_ioctl_group_create / panthor_group_create.

    Binary callers pass ``drm_panthor_queue_create`` structs; a text request lists the
    ring-buffer sizes and gives every queue ``queue_priority``.
    """
    if not queues:
        raise InvalidArgument("a group has at least one queue")
    if isinstance(queues[0], dict):
        specs = [(q["priority"], q["ringbuf_size"], q["pad0"] | q["pad1"] | q["pad2"]) for q in _binary(queues, "queues")]
    else:
        specs = [(queue_priority, ringbuf, 0) for ringbuf in queues]
    _pad(pad)
    if max(max_compute_cores, max_fragment_cores, max_tiler_cores, priority) > 0xFF:
        raise InvalidArgument("max_*_cores and priority are u8 fields")
    if len(specs) > MAX_CS_PER_CSG:
        raise InvalidArgument(f"a group has 1 to {MAX_CS_PER_CSG} queues, not {len(specs)}")
    if priority > GROUP_PRIORITIES["REALTIME"] or not _priority_exists(_driver(file), priority):
        raise InvalidArgument(f"unknown group priority {priority}")
    if not _priority_allowed(file, priority):
        raise AccessDenied("HIGH and REALTIME groups need CAP_SYS_NICE or DRM master")
    shader, tiler = G610_GPU_INFO["shader_present"], G610_GPU_INFO["tiler_present"]
    for mask, present, cores, what in ((compute_core_mask, shader, max_compute_cores, "compute"),
                                       (fragment_core_mask, shader, max_fragment_cores, "fragment"),
                                       (tiler_core_mask, tiler, max_tiler_cores, "tiler")):
        if mask & ~present or bin(mask).count("1") < cores or cores == 0:
            raise InvalidArgument(f"{what} cores: mask 0x{mask:x} (present 0x{present:x}), max {cores}")
    vm = _vm(file, vm_id)
    for prio, ringbuf, qpad in specs:
        if qpad:
            raise InvalidArgument("drm_panthor_queue_create.pad must be 0")
        if prio > 15:
            raise InvalidArgument(f"queue priority {prio} is above 15")
        if ringbuf < SZ_4K or ringbuf > SZ_64K or ringbuf & (ringbuf - 1):
            raise InvalidArgument(f"ring buffer size {ringbuf} is not a power of two in [4K, 64K]")
    priv = _priv(file)
    handle = next((i for i in range(1, MAX_GROUPS_PER_POOL + 1) if i not in priv.groups), None)
    if handle is None:
        raise OutOfMemory(f"the file already has {MAX_GROUPS_PER_POOL} groups")
    made = []
    try:
        for size in (CSG_SUSPEND_SIZE, CSG_PROTM_SUSPEND_SIZE,
                     -(-len(specs) * SYNCOBJ_SIZE // PAGE_SIZE) * PAGE_SIZE):
            made.append(kernel_bo(file.dev, size))
        qs = []
        for prio, ringbuf, _ in specs:
            made.append(kernel_bo(file.dev, ringbuf))
            made.append(kernel_bo(file.dev, QUEUE_IFACE_SIZE))
            qs.append(Queue(prio, made[-2], made[-1]))
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


def group_submit(file: "DrmFile", group_handle: int, pad: int, queue_submits: list[Any], queue_submits_stride: int,
                 queue_index: int, stream_addr: int, stream_size: int, latest_flush: int, syncs: int,
                 duration: int) -> dict[str, Any]:
    """panthor_ioctl_group_submit: every queue submit is checked (``panthor_job_create``)
    before any is queued. ``duration`` (vdrm) is how long each job runs."""
    _pad(pad)
    jobs = (_binary(queue_submits, "queue_submits") if queue_submits else
            [{"queue_index": queue_index, "stream_addr": stream_addr, "stream_size": stream_size,
              "latest_flush": latest_flush, "pad": 0, "syncs_count": syncs}])
    group = _group(file, group_handle)
    if duration < 0:
        raise InvalidArgument("duration must not be negative")
    for job in jobs:
        if job["pad"]:
            raise InvalidArgument("drm_panthor_queue_submit.pad must be 0")
        if job["queue_index"] >= len(group.queues):
            raise InvalidArgument(f"group {group_handle} has {len(group.queues)} queues, no {job['queue_index']}")
        size, addr = job["stream_size"], job["stream_addr"]
        if size % 8 or addr % 64 or (size == 0) != (addr == 0):
            raise InvalidArgument("stream_size is a multiple of 8, stream_addr of 64, both zero or neither")
    if group.state & (GROUP_STATE_TIMEDOUT | GROUP_STATE_FATAL_FAULT) or group.vm.destroyed:
        raise Canceled(f"group {group_handle} can take no more jobs")
    if group.vm.state != VM_STATE_USABLE:
        raise Canceled(f"the group's VM {group.vm.id} is unusable")
    drv = _driver(file)
    queued = [drv.queue_job(group, group.queues[j["queue_index"]], duration if j["stream_size"] else 0)
              for j in jobs]
    return {"start_ns": queued[-1].start_ns, "end_ns": queued[-1].end_ns}


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


def bo_set_label(file: "DrmFile", handle: int, pad: int, label: str) -> dict[str, Any]:
    """panthor_ioctl_bo_set_label (1.4): NULL clears; at most 4095 bytes (else E2BIG)."""
    _pad(pad)
    bo = file.handles.lookup(handle)
    if label == uapi.NULL_LABEL:
        bo.label = None
        return {}
    nbytes = len(label.encode("utf-8", "surrogateescape"))
    if nbytes >= uapi.LABEL_MAXLEN:  # strndup_user's EINVAL, turned into E2BIG by the handler
        raise TooBig(f"a label is at most {uapi.LABEL_MAXLEN - 1} bytes, not {nbytes}")
    dev = file.dev
    old = len(bo.label.encode("utf-8", "surrogateescape")) if bo.label else 0
    if dev.label_bytes - old + nbytes > dev.limits.label_bytes:
        raise OutOfMemory(f"BO labels already hold {dev.label_bytes} bytes, the daemon's limit "
                          "(--max-label-bytes)")
    bo.label = label
    return {}


def set_user_mmio_offset(file: "DrmFile", offset: int) -> dict[str, Any]:
    """panthor_ioctl_set_user_mmio_offset (1.5): the 32-bit or the 64-bit MMIO offset only."""
    if offset not in (USER_MMIO_OFFSET_32BIT, USER_MMIO_OFFSET_64BIT):
        raise InvalidArgument(f"offset 0x{offset:x} is neither DRM_PANTHOR_USER_MMIO_OFFSET_32BIT nor _64BIT")
    _priv(file).user_mmio_offset = offset
    return {}


def bo_sync(file: "DrmFile", ops: list[Any], ops_stride: int, handle: int, type: int, offset: int,
            size: int) -> dict[str, Any]:
    """panthor_ioctl_bo_sync (1.6): cache maintenance on BO ranges; vdrm checks and counts it."""
    todo = _binary(ops, "ops") if ops else [{"handle": handle, "type": type, "offset": offset, "size": size}]
    checked = []
    for o in todo:
        if o["type"] not in BO_SYNC_TYPES.values():
            raise InvalidArgument(f"unknown sync type {o['type']}")
        bo = file.handles.lookup(o["handle"])
        if o["offset"] + o["size"] > bo.size or o["size"] == 0:
            raise InvalidArgument(f"[{o['offset']}, {o['offset'] + o['size']}) is not inside the {bo.size}-byte BO")
        checked.append(bo)
    for bo in checked:
        bo.syncs += 1
    return {}


def bo_query_info(file: "DrmFile", handle: int) -> dict[str, Any]:
    """panthor_ioctl_bo_query_info (1.6): creation flags, and IS_IMPORTED for foreign BOs."""
    bo = file.handles.lookup(handle)
    return {"extra_flags": BO_IS_IMPORTED if bo.imported else 0, "create_flags": bo.flags, "pad": 0}


_PAD = Arg("pad", "u32", "must be 0", default=0)
_VM = Arg("vm_id", "u32", "a VM id from VM_CREATE")
_GROUP = Arg("group_handle", "u32", "a group handle from GROUP_CREATE")
_HANDLE = Arg("handle", "u32", "a GEM handle")


def _text(name: str, kind: str, doc: str, default: Any, names: dict[str, int] | None = None) -> Arg:
    """An argument of the one array element a text request spells out (no struct field)."""
    return Arg(name, kind, f"text: {doc}", default=default, names=names or {}, vdrm_only=True)


def _stride(name: str, elem: Any) -> Arg:
    return Arg(f"{name}_stride", "u32", f"binary: sizeof({elem.name})", default=elem.size)


PANTHOR_IOCTLS: tuple[Ioctl, ...] = (
    Ioctl("DEV_QUERY", (Arg("type", "enum", "GPU_INFO, CSIF_INFO, TIMESTAMP_INFO (1.1), GROUP_PRIORITIES_INFO (1.2)",
                            names=QUERY_TYPES),),
          dev_query, "Query the GPU (a Mali-G610 MP4, RK3588): the struct's fields and its size.",
          frozenset({"gpu_id", "csf_id", "l2_features", "tiler_features", "mem_features", "mmu_features",
                     "thread_features", "coherency_features", "as_present", "shader_present", "l2_present",
                     "tiler_present", "texture_features0", "allowed_mask"}),
          number=uapi.number(uapi.DEV_QUERY, uapi.DRM_PANTHOR_DEV_QUERY)),
    Ioctl("VM_CREATE", (Arg("flags", "u32", "must be 0", default=0),
                        Arg("user_va_range", "size", "user VA size; 0 picks one", default=0)),
          vm_create, "Create a GPU VM (address space); answers its id.", frozenset({"user_va_range"}),
          number=uapi.number(uapi.VM_CREATE, uapi.DRM_PANTHOR_VM_CREATE)),
    Ioctl("VM_DESTROY", (Arg("id", "u32", "the VM id"), _PAD), vm_destroy, "Destroy a VM and its mappings.",
          number=uapi.number(uapi.VM_DESTROY, uapi.DRM_PANTHOR_VM_DESTROY)),
    Ioctl("VM_BIND", (_VM, Arg("flags", "flags", "ASYNC: queue on the VM's bind queue", default=0,
                               names={"ASYNC": VM_BIND_ASYNC}),
                      Arg("ops", "list", "binary: drm_panthor_vm_bind_op array", default=()),
                      _stride("ops", uapi.VM_BIND_OP),
                      _text("op", "enum", "MAP, UNMAP or SYNC_ONLY", 0, OP_TYPES),
                      _text("op_flags", "flags", "READONLY, NOEXEC, UNCACHED (MAP only)", 0, OP_FLAGS),
                      _text("bo_handle", "u32", "the BO to map (MAP only)", 0),
                      _text("bo_offset", "size", "offset in the BO", 0),
                      _text("va", "u64", "GPU VA, page-aligned", 0),
                      _text("size", "size", "bytes, page multiple", 0),
                      _text("syncs", "u32", "how many sync ops the op carries (ASYNC only)", 0)),
          vm_bind, "Map or unmap memory in a VM; answers the VM state.",
          number=uapi.number(uapi.VM_BIND, uapi.DRM_PANTHOR_VM_BIND)),
    Ioctl("VM_GET_STATE", (_VM,), vm_get_state, "0 usable, 1 unusable (an async bind failed).",
          number=uapi.number(uapi.VM_GET_STATE, uapi.DRM_PANTHOR_VM_GET_STATE)),
    Ioctl("BO_CREATE", (Arg("size", "size", "bytes (rounded up to pages)"),
                        Arg("flags", "flags", "NO_MMAP, WB_MMAP (1.6)", default=0,
                            names={"NO_MMAP": BO_NO_MMAP, "WB_MMAP": BO_WB_MMAP}),
                        Arg("exclusive_vm_id", "u32", "the only VM it may be bound to (0: any)", default=0),
                        _PAD),
          bo_create, "Create a BO; answers its handle and page-aligned size.",
          number=uapi.number(uapi.BO_CREATE, uapi.DRM_PANTHOR_BO_CREATE)),
    Ioctl("BO_MMAP_OFFSET", (_HANDLE, _PAD), bo_mmap_offset, "The fake mmap offset of a BO.", frozenset({"offset"}),
          number=uapi.number(uapi.BO_MMAP_OFFSET, uapi.DRM_PANTHOR_BO_MMAP_OFFSET)),
    Ioctl("GROUP_CREATE", (Arg("queues", "list", "binary: drm_panthor_queue_create array; text: ring-buffer "
                                             "sizes (power of 2, 4K..64K)", default=(SZ_64K,)),
                           _stride("queues", uapi.QUEUE_CREATE),
                           _text("queue_priority", "u32", "0..15, for every queue", 1),
                           Arg("max_compute_cores", "u32", "", default=4),
                           Arg("max_fragment_cores", "u32", "", default=4),
                           Arg("max_tiler_cores", "u32", "", default=1),
                           Arg("priority", "enum", "LOW, MEDIUM, HIGH, REALTIME (1.2)", default=1,
                               names=GROUP_PRIORITIES),
                           _PAD,
                           Arg("compute_core_mask", "u64", "", default=G610_GPU_INFO["shader_present"]),
                           Arg("fragment_core_mask", "u64", "", default=G610_GPU_INFO["shader_present"]),
                           Arg("tiler_core_mask", "u64", "", default=G610_GPU_INFO["tiler_present"]),
                           _VM),
          group_create, "Create a scheduling group of queues on a VM; answers its handle.",
          number=uapi.number(uapi.GROUP_CREATE, uapi.DRM_PANTHOR_GROUP_CREATE)),
    Ioctl("GROUP_DESTROY", (_GROUP, _PAD), group_destroy, "Destroy a group; its queued jobs are dropped.",
          number=uapi.number(uapi.GROUP_DESTROY, uapi.DRM_PANTHOR_GROUP_DESTROY)),
    Ioctl("GROUP_SUBMIT", (_GROUP, _PAD,
                           Arg("queue_submits", "list", "binary: drm_panthor_queue_submit array", default=()),
                           _stride("queue_submits", uapi.QUEUE_SUBMIT),
                           _text("queue_index", "u32", "the queue", 0),
                           _text("stream_addr", "u64", "command stream GPU VA (64-aligned)", 0x1000000),
                           _text("stream_size", "u32", "bytes (multiple of 8); 0 = a sync point", 64),
                           _text("latest_flush", "u32", "", 0),
                           _text("syncs", "u32", "sync ops (none are emulated)", 0),
                           Arg("duration", "duration", "vdrm: how long each job runs", default=DEFAULT_JOB_NS,
                               vdrm_only=True)),
          group_submit, "Queue jobs; engine time accrues at their end (if profiling was on when queued).",
          number=uapi.number(uapi.GROUP_SUBMIT, uapi.DRM_PANTHOR_GROUP_SUBMIT)),
    Ioctl("GROUP_GET_STATE", (_GROUP, _PAD), group_get_state, "The group's TIMEDOUT/FATAL_FAULT/INNOCENT bits.",
          number=uapi.number(uapi.GROUP_GET_STATE, uapi.DRM_PANTHOR_GROUP_GET_STATE)),
    Ioctl("TILER_HEAP_CREATE", (_VM, Arg("initial_chunk_count", "u32", ">= 1", default=1),
                                Arg("chunk_size", "size", "page-aligned, 128K..8M", default=2 << 20),
                                Arg("max_chunks", "u32", ">= initial_chunk_count", default=64),
                                Arg("target_in_flight", "u32", "render passes in flight before the FW waits",
                                    default=1)),
          tiler_heap_create, "Create a tiler heap in a VM.",
          frozenset({"tiler_heap_ctx_gpu_va", "first_heap_chunk_gpu_va"}),
          number=uapi.number(uapi.TILER_HEAP_CREATE, uapi.DRM_PANTHOR_TILER_HEAP_CREATE)),
    Ioctl("TILER_HEAP_DESTROY", (Arg("handle", "u32", "a heap handle"), _PAD), tiler_heap_destroy,
          "Destroy a tiler heap and its chunks.",
          number=uapi.number(uapi.TILER_HEAP_DESTROY, uapi.DRM_PANTHOR_TILER_HEAP_DESTROY)),
    Ioctl("BO_SET_LABEL", (_HANDLE, _PAD, Arg("label", "str", "the label (%20 for spaces); leave out to clear",
                                              default=uapi.NULL_LABEL)),
          bo_set_label, "Label a BO (driver 1.4).", since=releases.BO_SET_LABEL,
          number=uapi.number(uapi.BO_SET_LABEL, uapi.DRM_PANTHOR_BO_SET_LABEL)),
    Ioctl("SET_USER_MMIO_OFFSET", (Arg("offset", "u64", "1<<43 (32-bit) or 1<<56 (64-bit)"),),
          set_user_mmio_offset, "Choose the user MMIO mmap offset (driver 1.5).", since=releases.SET_USER_MMIO_OFFSET,
          number=uapi.number(uapi.SET_USER_MMIO_OFFSET, uapi.DRM_PANTHOR_SET_USER_MMIO_OFFSET)),
    Ioctl("BO_SYNC", (Arg("ops", "list", "binary: drm_panthor_bo_sync_op array", default=()),
                      _stride("ops", uapi.BO_SYNC_OP),
                      _text("handle", "u32", "the BO", 0),
                      _text("type", "enum", "CPU_CACHE_FLUSH or CPU_CACHE_FLUSH_AND_INVALIDATE", 0, BO_SYNC_TYPES),
                      _text("offset", "size", "start of the range", 0),
                      _text("size", "size", "bytes", 0)),
          bo_sync, "CPU cache maintenance on BO ranges (driver 1.6).", since=releases.BO_SYNC,
          number=uapi.number(uapi.BO_SYNC, uapi.DRM_PANTHOR_BO_SYNC)),
    Ioctl("BO_QUERY_INFO", (_HANDLE,), bo_query_info, "A BO's creation flags and whether it was imported (1.6).",
          since=releases.BO_QUERY_INFO,
          number=uapi.number(uapi.BO_QUERY_INFO, uapi.DRM_PANTHOR_BO_QUERY_INFO)),
    Ioctl("TILER_OOM", (Arg("heap", "u32", "a heap handle"),
                        Arg("renderpasses_in_flight", "u32", "", default=1),
                        Arg("pending_frag_count", "u32", "", default=0)),
          tiler_oom, "vdrm: the tiler ran out of heap memory; the heap grows one chunk (ENOMEM at its limits).",
          frozenset({"new_chunk_gpu_va"}),
          number=uapi.number(uapi.VDRM_TILER_OOM, uapi.VDRM_TILER_OOM_STRUCT)),
    Ioctl("ADVANCE", (Arg("by", "duration", "how far to move the virtual clock, e.g. 16ms"),),
          advance, "vdrm: advance the virtual clock one step (jobs run, ground truth updates).",
          number=uapi.number(uapi.VDRM_ADVANCE, uapi.VDRM_ADVANCE_STRUCT)),
)
