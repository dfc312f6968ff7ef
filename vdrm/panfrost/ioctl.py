"""Panfrost's ioctls (``panfrost_ioctl_*`` in ``panfrost_drv.c``) and vdrm's own requests.

Each handler checks its arguments in the kernel's order and raises the kernel's errno
(reference section 3.2). Struct fields keep their kernel names; the request protocol
adds defaults so a shell user can leave out what is always zero (``pad``), and a few
vdrm-only arguments that the real ioctl gets from command streams (how long a job runs,
which GPU addresses it touches).

vdrm's own requests, which the kernel has no ioctl for:

``FAULT addr=... [exception=TRANSLATION_FAULT_3] [access=WRITE] [source_id=0]``
    a GPU page fault at ``addr`` in this client's address space, as the GPU would raise
    it while running one of the client's jobs (the context takes an AS for the fault).
``ADVANCE by=16ms``
    one step of the virtual clock (device-wide; EINVAL on the real clock). Only the
    mount's owner and root may move it: anyone else gets EACCES, as a ``DRM_ROOT_ONLY``
    ioctl answers (:mod:`vdrm.fs.permissions`).

Binary numbers and structs are those of ``include/uapi/drm/panfrost_drm.h`` (driver 1.6,
kernel 7.0: SUBMIT is 48 bytes with ``jm_ctx_handle``; a 40-byte SUBMIT from an older
userspace reads zeros there, as the kernel's zero-fill gives). SUBMIT's vdrm-only knobs
(``engine``, ``duration``, ``touch``) have no struct field: binary jobs run on the engine
their requirements select, for :data:`DEFAULT_JOB_NS`, touching nothing.

vdrm's own FAULT and ADVANCE take driver numbers 0x5e and 0x5f (0x9e/0x9f absolute), at the
top of the driver range and far above Panfrost's last (0x0d, QUERY_BO_INFO, driver 1.6),
with their own structs ``drm_vdrm_fault`` and ``drm_vdrm_advance`` declared below. They are
vdrm's, not the kernel's: a real Panfrost answers EINVAL to them.

Releases: what a kernel lacks is refused as that kernel refuses it, keyed by the rows of
:mod:`vdrm.panfrost.releases`. An ioctl the release does not have (SET_LABEL_BO before
6.17, JM_CTX_* before 6.19, SYNC_BO and QUERY_BO_INFO before 7.0) is EINVAL, what
``drm_ioctl`` answers for an index past the driver's table; a GET_PARAM parameter it does
not know falls to the ``default: return -EINVAL`` of ``panfrost_ioctl_get_param``; an
unknown CREATE_BO flag or SUBMIT requirement is EINVAL from the handler's mask (before
6.13 SUBMIT accepts exactly 0 or FS). Before 6.19 ``drm_panfrost_submit`` ends at
``requirements``: ``jm_ctx_handle`` and ``pad`` are bytes the kernel never reads, so they
are ignored (every job goes to the file's one scheduling entity).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vdrm.drm import gem
from vdrm.drm.auth import is_current_master
from vdrm.drm.ioctl import Arg, Ioctl, advance
from vdrm.drm.uapi import (DRM_COMMAND_BASE, DRM_IOW, DRM_IOWR, Field, Struct, UserAddress, UserArray,
                           UserString)
from vdrm.errors import (InvalidArgument, NoDevice, NoEntry, NotImplementedByKernel, OutOfMemory,
                         TimedOut, TooBig, Busy, WouldBlock)
from vdrm.kernel.printk import KERN_INFO
from vdrm.panfrost.gem import (BO_FLAGS, BO_HEAP, BO_NOEXEC, BO_WB_MMAP, LABEL_MAXLEN,
                               MADV_DONTNEED, MADV_WILLNEED, Creator, PanfrostBo)
from vdrm.panfrost.job import ENGINES, JS_FRAGMENT, JS_VERTEX_TILER, REQ_FS, REQUIREMENTS
from vdrm.panfrost.mmu import (ACCESS_TYPES, DEFAULT_FAULT_ACCESS, DEFAULT_FAULT_EXCEPTION,
                               EXCEPTION_CODES, fault_status)
from vdrm.panfrost import releases
from vdrm.panfrost.drv import JM_PRIORITIES, PARAMS, PanfrostDriver, PanfrostFile

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile

U32_MAX = 0xFFFFFFFF
NULL_LABEL = "\0"  # SET_LABEL_BO without label=: the NULL pointer (clears the label)
DERIVED = -1  # SUBMIT engine=: derived from the requirements, as the kernel does
DEFAULT_JOB_NS = 1_000_000


def _driver(file: "DrmFile") -> PanfrostDriver:
    return file.dev.driver


def _priv(file: "DrmFile") -> PanfrostFile:
    return file.driver_priv


def _bo(file: "DrmFile", handle: int) -> PanfrostBo:
    return file.handles.lookup(handle)


def _check_pad(pad: int) -> None:
    if pad:
        raise InvalidArgument(f"pad must be 0, not {pad}")


def create_bo(file: "DrmFile", size: int, flags: int, pad: int) -> dict[str, Any]:
    """panfrost_ioctl_create_bo."""
    drv = _driver(file)
    if size == 0 or pad:
        raise InvalidArgument("size must be non-zero" if size == 0 else f"pad must be 0, not {pad}")
    if size > U32_MAX:
        raise InvalidArgument(f"size {size} does not fit drm_panfrost_create_bo.size (u32)")
    known = BO_NOEXEC | BO_HEAP | (BO_WB_MMAP if drv.has(releases.BO_WB_MMAP) else 0)
    if flags & ~known:
        extra = " (WB_MMAP arrives with driver 1.6, in 7.0)" if flags & ~known & BO_WB_MMAP else ""
        raise InvalidArgument(f"unknown flag bits 0x{flags & ~known:x}{extra}")
    if flags & BO_HEAP and not flags & BO_NOEXEC:
        raise InvalidArgument("heaps should never be executable: HEAP needs NOEXEC")
    if len(file.dev.objects) >= file.dev.limits.bos:
        raise OutOfMemory(f"{len(file.dev.objects)} BOs exist, the daemon's limit (--max-bos)")
    bo = PanfrostBo(file.dev, size, flags, heap_backing=drv.heap_backing,
                    creator=Creator(file.comm or "<unknown>", file.pid))
    try:
        handle = gem.handle_create(file, bo)
    finally:
        bo.put()  # the handle (if any) holds the object now
    mapping = bo.mapping_for(_priv(file).mmu)
    return {"handle": handle, "offset": mapping.iova}


def mmap_bo(file: "DrmFile", handle: int, flags: int) -> dict[str, Any]:
    """panfrost_ioctl_mmap_bo: the fake offset to mmap the BO at (heaps refused)."""
    if flags:
        file.dev.log.printk(KERN_INFO, f"[drm] unknown mmap_bo flags: {flags}")
        raise InvalidArgument(f"unknown mmap_bo flags: {flags}")
    bo = _bo(file, handle)
    if bo.is_heap:
        raise InvalidArgument("heap BOs cannot be mmapped: their pages are not pinned")
    return {"offset": bo.create_mmap_offset()}


def get_bo_offset(file: "DrmFile", handle: int, pad: int = 0) -> dict[str, Any]:
    """panfrost_ioctl_get_bo_offset: the BO's GPU VA in this file (``pad`` is not checked)."""
    bo = _bo(file, handle)
    mapping = bo.mapping_for(_priv(file).mmu)
    if mapping is None:
        raise InvalidArgument(f"BO {handle} has no mapping in this file")
    return {"offset": mapping.iova}


def madvise(file: "DrmFile", handle: int, madv: int) -> dict[str, Any]:
    """panfrost_ioctl_madvise: DONTNEED makes the BO purgeable under memory pressure."""
    bo = _bo(file, handle)
    if madv == MADV_DONTNEED:
        if len(bo.mappings) != 1 or bo.mappings[0].mmu is not _priv(file).mmu:
            raise InvalidArgument("DONTNEED needs the BO to be mapped by this file only")
    retained = _driver(file).set_madv(bo, madv)
    return {"retained": int(retained)}


def wait_bo(file: "DrmFile", handle: int, pad: int, timeout_ns: int) -> dict[str, Any]:
    """panfrost_ioctl_wait_bo: ``timeout_ns`` is an absolute CLOCK_MONOTONIC deadline."""
    _check_pad(pad)
    bo = _bo(file, handle)
    drv = _driver(file)
    priv = _priv(file)
    resumed, priv.waiting = priv.waiting == (handle, timeout_ns), None
    drv.sched.update()
    if not bo.is_active():
        return {}
    clock = file.dev.clock
    now = clock.now_ns()
    if timeout_ns <= now:
        if resumed:  # the deadline passed while this wait slept
            raise TimedOut(f"BO {handle} is still busy at the deadline")
        raise Busy(f"BO {handle} is busy (a deadline of 0 or in the past is a poll)")
    if clock.virtual:
        raise TimedOut(f"BO {handle} is busy; on the virtual clock time passes only when advanced")
    idle_at = drv.sched.idle_at(bo)
    priv.waiting = (handle, timeout_ns)
    raise WouldBlock(min(idle_at, timeout_ns) if idle_at else timeout_ns)


def submit(file: "DrmFile", jc: int, bo_handles: list[int], requirements: int, out_sync: int,
           jm_ctx_handle: int, pad: int, engine: int, duration: int, touch: list[int],
           in_syncs: list[int] = ()) -> dict[str, Any]:
    """panfrost_ioctl_submit, plus vdrm's engine/duration/touch description of the job."""
    drv = _driver(file)
    contexts = drv.has(releases.JM_CONTEXTS)
    if contexts:
        _check_pad(pad)
    else:
        jm_ctx_handle = 0  # past the end of this kernel's drm_panfrost_submit: never read
    if jc == 0:
        raise InvalidArgument("jc (the job chain address) must be non-zero")
    if drv.has(releases.SUBMIT_CYCLE_COUNT):
        if requirements & ~(REQ_FS | REQUIREMENTS["CYCLE_COUNT"]):
            raise InvalidArgument(f"unknown requirement bits 0x{requirements:x}")
    elif requirements not in (0, REQ_FS):
        raise InvalidArgument(f"requirements 0x{requirements:x}: this kernel takes 0 or FS only "
                              f"(CYCLE_COUNT arrives with driver 1.3, in 6.13)")
    if out_sync:
        raise NoDevice(f"no sync object {out_sync} (vdrm emulates none)")
    if in_syncs:
        raise NoEntry(f"no sync object {in_syncs[0]} to wait for (vdrm emulates none)")
    priv = _priv(file)
    if jm_ctx_handle not in priv.jm_ctxs:
        raise InvalidArgument(f"no JM context {jm_ctx_handle} in this file")
    bos = []
    for handle in bo_handles:
        bo = _bo(file, handle)
        if bo.mapping_for(priv.mmu) is None:
            raise InvalidArgument(f"BO {handle} has no mapping in this file")
        bos.append(bo)
    if engine == DERIVED:
        engine = JS_FRAGMENT if requirements & REQ_FS else JS_VERTEX_TILER
    elif not 0 <= engine < len(ENGINES):
        raise InvalidArgument(f"no engine {engine} (known: {', '.join(f'{i}={e.upper()}' for i, e in enumerate(ENGINES))})")
    if drv.sched.in_flight(priv.mmu) >= file.dev.limits.jobs_per_client:
        raise OutOfMemory(f"this client has {drv.sched.in_flight(priv.mmu)} jobs in flight, the daemon's "
                          "limit (--max-jobs-per-client)")
    if duration < 0:
        raise InvalidArgument(f"duration {duration} ns is negative (a job cannot end before it starts)")
    job = drv.sched.submit(priv.mmu, priv.usage, engine, bos, duration, touch,
                           requirements, file.client_id, jc)
    return {"job": job.seq, "engine": ENGINES[job.slot], "state": job.state}


# GET_PARAM parameters newer than the oldest emulated release, with the row that adds them.
_PARAM_SINCE = {
    "SYSTEM_TIMESTAMP": releases.TIMESTAMP_PARAMS,
    "SYSTEM_TIMESTAMP_FREQUENCY": releases.TIMESTAMP_PARAMS,
    "ALLOWED_JM_CTX_PRIORITIES": releases.JM_CONTEXTS,
    "SELECTED_COHERENCY": releases.SELECTED_COHERENCY,
}


def get_param(file: "DrmFile", param: int, pad: int) -> dict[str, Any]:
    """panfrost_ioctl_get_param."""
    _check_pad(pad)
    drv = _driver(file)
    names = {v: k for k, v in PARAMS.items()}
    name = names.get(param)
    since = _PARAM_SINCE.get(name)
    if name is None or (since is not None and not drv.has(since)):
        raise InvalidArgument(f"unknown param {param} in this kernel (panfrost_ioctl_get_param: "
                              f"default: -EINVAL; HELP verb=GET_PARAM)")
    if name == "SYSTEM_TIMESTAMP":
        value = file.dev.clock.now_ns() * 24 // 1000  # 24 MHz ticks
    elif name == "ALLOWED_JM_CTX_PRIORITIES":
        # LOW and MEDIUM for everyone; HIGH with CAP_SYS_NICE (root here) or DRM master
        # (panfrost_high_prio_allowed in panfrost_device.h)
        value = (1 << JM_PRIORITIES["LOW"]) | (1 << JM_PRIORITIES["MEDIUM"])
        if file.uid == 0 or is_current_master(file):
            value |= 1 << JM_PRIORITIES["HIGH"]
    else:
        value = drv.features().get(name, 0)
    return {"param": name, "value": value}


def set_label_bo(file: "DrmFile", handle: int, pad: int, label: str) -> dict[str, Any]:
    """panfrost_ioctl_set_label_bo: leave out ``label=`` to clear (a NULL pointer)."""
    _check_pad(pad)
    bo = _bo(file, handle)
    if label == NULL_LABEL:
        bo.label = None
        return {}
    nbytes = len(label.encode())
    if nbytes > LABEL_MAXLEN - 1:
        raise TooBig(f"label is {nbytes} bytes, at most {LABEL_MAXLEN - 1}")
    dev = file.dev
    old = len(bo.label.encode()) if bo.label else 0
    if dev.label_bytes - old + nbytes > dev.limits.label_bytes:
        raise OutOfMemory(f"BO labels already hold {dev.label_bytes} bytes, the daemon's limit "
                          "(--max-label-bytes)")
    bo.label = label
    return {}


def jm_ctx_create(file: "DrmFile", priority: int) -> dict[str, Any]:
    """panfrost_ioctl_jm_ctx_create: a scheduling context (1.5)."""
    if priority not in JM_PRIORITIES.values():
        raise InvalidArgument(f"unknown priority {priority}")
    ctxs = _priv(file).jm_ctxs
    handle = 1
    while handle in ctxs:
        handle += 1
    ctxs[handle] = priority
    return {"handle": handle}


def jm_ctx_destroy(file: "DrmFile", handle: int, pad: int) -> dict[str, Any]:
    """panfrost_ioctl_jm_ctx_destroy: the default context 0 cannot be destroyed."""
    _check_pad(pad)
    if handle == 0:
        raise InvalidArgument("the default JM context 0 cannot be destroyed")
    if _priv(file).jm_ctxs.pop(handle, None) is None:
        raise InvalidArgument(f"no JM context {handle}")
    return {}


SYNC_TYPES = {"CPU_CACHE_FLUSH": 0, "CPU_CACHE_FLUSH_AND_INVALIDATE": 1}
BO_IS_IMPORTED = 1 << 0  # DRM_PANFROST_BO_IS_IMPORTED (query_bo_info extra_flags)


def sync_bo(file: "DrmFile", handle: int, type: int, offset: int, size: int, pad: int) -> dict[str, Any]:
    """panfrost_ioctl_sync_bo (1.6) with one ``drm_panfrost_bo_sync_op``: CPU cache
    maintenance of ``[offset, offset + size)`` of a BO. The emulated CPU has no cache, so
    a valid op changes nothing; vdrm refuses a range past the BO's end (EINVAL)."""
    _check_pad(pad)
    bo = _bo(file, handle)
    if type not in SYNC_TYPES.values():
        raise InvalidArgument(f"unknown sync type {type} (panfrost_gem_sync: -EINVAL)")
    if offset + size > bo.size:
        raise InvalidArgument(f"sync range [{offset}, {offset + size}) is past the BO's {bo.size} bytes")
    return {}


def query_bo_info(file: "DrmFile", handle: int) -> dict[str, Any]:
    """panfrost_ioctl_query_bo_info (1.6): the flags the BO was created with (NOEXEC, HEAP,
    WB_MMAP when not write-combined), or only IS_IMPORTED for an imported one."""
    bo = _bo(file, handle)
    create_flags = extra_flags = 0
    if bo.imported:
        extra_flags |= BO_IS_IMPORTED
    else:
        create_flags |= (BO_NOEXEC if bo.noexec else 0) | (BO_HEAP if bo.is_heap else 0)
        create_flags |= BO_WB_MMAP if bo.wb_mmap else 0  # the RK3568 GPU is not coherent: map_wc unless WB_MMAP
    return {"create_flags": create_flags, "extra_flags": extra_flags, "pad": 0}


def perfcnt(file: "DrmFile", **_: Any) -> dict[str, Any]:
    """PERFCNT_ENABLE / PERFCNT_DUMP: refused unless the unstable_ioctls parameter is set."""
    raise NotImplementedByKernel("perfcnt ioctls need panfrost.unstable_ioctls=1 (vdrm emulates no counters)")


def fault(file: "DrmFile", addr: int, exception: int, access: int, source_id: int,
          pad: int = 0) -> dict[str, Any]:
    """vdrm: a GPU page fault at ``addr`` in this client's address space."""
    _check_pad(pad)
    drv = _driver(file)
    ctx = _priv(file).mmu
    drv.sched.update()
    as_nr = drv.slots.get(ctx)
    try:
        result = drv.mmu.handle_fault(as_nr, addr, fault_status(exception, access, source_id))
    finally:
        drv.slots.put(ctx)
    return {"as": result.as_nr, "addr": result.addr, "populated": int(result.populated)}


_HANDLE = Arg("handle", "u32", "a GEM handle of this client")
_PAD = Arg("pad", "u32", "must be 0", default=0)

# include/uapi/drm/panfrost_drm.h
PANFROST_SUBMIT = Struct("drm_panfrost_submit", (
    Field("jc", "u64"),
    Field("in_syncs", "u64", pointer=UserArray("in_sync_count")),
    Field("in_sync_count", "u32"),
    Field("out_sync", "u32"),
    Field("bo_handles", "u64", pointer=UserArray("bo_handle_count")),
    Field("bo_handle_count", "u32"),
    Field("requirements", "u32"),
    Field("jm_ctx_handle", "u32"),
    Field("pad", "u32"),
))
PANFROST_WAIT_BO = Struct("drm_panfrost_wait_bo", (Field("handle", "u32"), Field("pad", "u32"),
                                                   Field("timeout_ns", "s64")))
PANFROST_CREATE_BO = Struct("drm_panfrost_create_bo", (
    Field("size", "u32"), Field("flags", "u32"), Field("handle", "u32", "out"), Field("pad", "u32"),
    Field("offset", "u64", "out"),
))
PANFROST_MMAP_BO = Struct("drm_panfrost_mmap_bo", (Field("handle", "u32"), Field("flags", "u32"),
                                                   Field("offset", "u64", "out")))
PANFROST_GET_PARAM = Struct("drm_panfrost_get_param", (Field("param", "u32"), Field("pad", "u32"),
                                                       Field("value", "u64", "out")))
PANFROST_GET_BO_OFFSET = Struct("drm_panfrost_get_bo_offset", (Field("handle", "u32"), Field("pad", "u32"),
                                                               Field("offset", "u64", "out")))
PANFROST_PERFCNT_ENABLE = Struct("drm_panfrost_perfcnt_enable", (Field("enable", "u32"),
                                                                 Field("counterset", "u32")))
PANFROST_PERFCNT_DUMP = Struct("drm_panfrost_perfcnt_dump", (Field("buf_ptr", "u64", pointer=UserAddress()),))
PANFROST_MADVISE = Struct("drm_panfrost_madvise", (Field("handle", "u32"), Field("madv", "u32"),
                                                   Field("retained", "u32", "out")))
PANFROST_SET_LABEL_BO = Struct("drm_panfrost_set_label_bo", (
    Field("handle", "u32"), Field("pad", "u32"),
    Field("label", "u64", pointer=UserString(LABEL_MAXLEN, null=NULL_LABEL)),
))
PANFROST_JM_CTX_CREATE = Struct("drm_panfrost_jm_ctx_create", (Field("handle", "u32", "out"),
                                                               Field("priority", "u32")))
PANFROST_JM_CTX_DESTROY = Struct("drm_panfrost_jm_ctx_destroy", (Field("handle", "u32"), Field("pad", "u32")))
PANFROST_QUERY_BO_INFO = Struct("drm_panfrost_query_bo_info", (
    Field("handle", "u32"), Field("extra_flags", "u32", "out"), Field("create_flags", "u32", "out"),
    Field("pad", "u32", "out"),
))

# vdrm's own (not in any kernel header)
VDRM_FAULT = Struct("drm_vdrm_fault", (
    Field("addr", "u64", "inout", doc="in: the faulting GPU VA; out: the 2 MiB block's start"),
    Field("exception", "u32"), Field("access", "u32"), Field("source_id", "u32"),
    Field("as", "u32", "out", doc="the AS the fault was taken in"),
    Field("populated", "u32", "out", doc="1 if the fault grew a heap"),
    Field("pad", "u32"),
), doc="vdrm: a GPU page fault in this client's address space")
VDRM_ADVANCE = Struct("drm_vdrm_advance", (
    Field("by", "s64"), Field("now_ns", "u64", "out"),
), doc="vdrm: one step of the virtual clock")

PANFROST_IOCTL_BASE = DRM_COMMAND_BASE
VDRM_FAULT_NR = 0x5E
VDRM_ADVANCE_NR = 0x5F

PANFROST_IOCTLS: tuple[Ioctl, ...] = (
    Ioctl("CREATE_BO", (Arg("size", "size", "bytes (heaps round up to 2M)"),
                        Arg("flags", "flags", "NOEXEC, HEAP (HEAP needs NOEXEC), WB_MMAP (7.0+)", default=0,
                            names=BO_FLAGS),
                        _PAD),
          create_bo, "Create a BO; answers its handle and its GPU VA in this client.",
          frozenset({"offset"}), number=DRM_IOWR(DRM_COMMAND_BASE + 0x02, PANFROST_CREATE_BO)),
    Ioctl("MMAP_BO", (_HANDLE, Arg("flags", "u32", "must be 0", default=0)),
          mmap_bo, "The fake mmap offset of a BO (heap BOs are refused).", frozenset({"offset"}),
          number=DRM_IOWR(DRM_COMMAND_BASE + 0x03, PANFROST_MMAP_BO)),
    Ioctl("GET_BO_OFFSET", (_HANDLE, _PAD), get_bo_offset, "The BO's GPU VA in this client.",
          frozenset({"offset"}), number=DRM_IOWR(DRM_COMMAND_BASE + 0x05, PANFROST_GET_BO_OFFSET)),
    Ioctl("MADVISE", (_HANDLE, Arg("madv", "enum", "WILLNEED or DONTNEED",
                                   names={"WILLNEED": MADV_WILLNEED, "DONTNEED": MADV_DONTNEED})),
          madvise, "Mark a BO purgeable (DONTNEED) or needed again; retained=0 once purged.",
          number=DRM_IOWR(DRM_COMMAND_BASE + 0x08, PANFROST_MADVISE)),
    Ioctl("WAIT_BO", (_HANDLE, _PAD,
                      Arg("timeout_ns", "s64", "absolute CLOCK_MONOTONIC deadline; 0 polls", default=0)),
          wait_bo, "Wait until no job uses the BO (EBUSY on a poll, ETIMEDOUT at the deadline).",
          number=DRM_IOW(DRM_COMMAND_BASE + 0x01, PANFROST_WAIT_BO)),
    Ioctl("SUBMIT", (Arg("jc", "u64", "job chain GPU address, non-zero", default=1),
                     Arg("in_syncs", "list", "sync objects to wait for (none exist: must be empty)",
                         default=()),
                     Arg("bo_handles", "list", "BOs the job uses (busy until it ends)", default=()),
                     Arg("requirements", "flags", "FS (fragment job), CYCLE_COUNT", default=0,
                         names=REQUIREMENTS),
                     Arg("out_sync", "u32", "sync object to signal (none exist: must be 0)", default=0),
                     Arg("jm_ctx_handle", "u32", "JM context (0 = the default one)", default=0),
                     _PAD,
                     Arg("engine", "enum", "vdrm: job slot, default from requirements",
                         default=DERIVED, names={e.upper(): i for i, e in enumerate(ENGINES)}, vdrm_only=True),
                     Arg("duration", "duration", "vdrm: how long the job runs", default=DEFAULT_JOB_NS,
                         vdrm_only=True),
                     Arg("touch", "list", "vdrm: GPU addresses the job accesses, in order (faults)",
                         default=(), vdrm_only=True)),
          submit, "Run a job on an engine; BOs are busy and engine time accrues while it runs.",
          number=DRM_IOW(DRM_COMMAND_BASE + 0x00, PANFROST_SUBMIT)),
    Ioctl("GET_PARAM", (Arg("param", "enum", "a PANFROST_PARAM_* name or number", names=PARAMS), _PAD),
          get_param, "Read a GPU parameter (the emulated GPU is a Mali-G52 2EE, RK3568).",
          number=DRM_IOWR(DRM_COMMAND_BASE + 0x04, PANFROST_GET_PARAM)),
    Ioctl("SET_LABEL_BO", (_HANDLE, _PAD,
                           Arg("label", "str", "the label (%20 for spaces); leave out to clear",
                               default=NULL_LABEL)),
          set_label_bo, "Label a BO (shown in debugfs gems; kernel 6.17+).",
          number=DRM_IOWR(DRM_COMMAND_BASE + 0x09, PANFROST_SET_LABEL_BO), since=releases.SET_LABEL_BO),
    Ioctl("JM_CTX_CREATE", (Arg("priority", "enum", "LOW, MEDIUM or HIGH", default=JM_PRIORITIES["MEDIUM"],
                                names=JM_PRIORITIES),),
          jm_ctx_create, "Create a job-manager scheduling context (driver 1.5, kernel 6.19+).",
          number=DRM_IOWR(DRM_COMMAND_BASE + 0x0a, PANFROST_JM_CTX_CREATE), since=releases.JM_CONTEXTS),
    Ioctl("JM_CTX_DESTROY", (_HANDLE, _PAD), jm_ctx_destroy, "Destroy a JM context (not 0; kernel 6.19+).",
          number=DRM_IOWR(DRM_COMMAND_BASE + 0x0b, PANFROST_JM_CTX_DESTROY), since=releases.JM_CONTEXTS),
    # SYNC_BO's struct points to an array of drm_panfrost_bo_sync_op, which the binary layer
    # cannot describe yet: text only (one op per request); a binary SYNC_BO is EINVAL.
    Ioctl("SYNC_BO", (_HANDLE, Arg("type", "enum", "CPU_CACHE_FLUSH or CPU_CACHE_FLUSH_AND_INVALIDATE",
                                   default=SYNC_TYPES["CPU_CACHE_FLUSH"], names=SYNC_TYPES),
                      Arg("offset", "u32", "start of the range in the BO", default=0),
                      Arg("size", "u32", "bytes to sync"), _PAD),
          sync_bo, "CPU cache maintenance on a BO range (driver 1.6, kernel 7.0; one op per request).",
          since=releases.SYNC_BO),
    Ioctl("QUERY_BO_INFO", (_HANDLE,), query_bo_info,
          "The BO's creation flags, or IS_IMPORTED (driver 1.6, kernel 7.0).",
          number=DRM_IOWR(DRM_COMMAND_BASE + 0x0d, PANFROST_QUERY_BO_INFO), since=releases.QUERY_BO_INFO),
    Ioctl("PERFCNT_ENABLE", (Arg("enable", "u32", "", default=0), Arg("counterset", "u32", "", default=0)),
          perfcnt, "Unstable ioctl: refused with ENOSYS, as without panfrost.unstable_ioctls.",
          number=DRM_IOW(DRM_COMMAND_BASE + 0x06, PANFROST_PERFCNT_ENABLE)),
    Ioctl("PERFCNT_DUMP", (Arg("buf_ptr", "u64", "", default=0),),
          perfcnt, "Unstable ioctl: refused with ENOSYS, as without panfrost.unstable_ioctls.",
          number=DRM_IOW(DRM_COMMAND_BASE + 0x07, PANFROST_PERFCNT_DUMP)),
    Ioctl("FAULT", (Arg("addr", "u64", "GPU virtual address"),
                    Arg("exception", "enum", "exception type name or code", default=DEFAULT_FAULT_EXCEPTION,
                        names=EXCEPTION_CODES),
                    Arg("access", "enum", "ATOMIC, EXECUTE, READ or WRITE", default=DEFAULT_FAULT_ACCESS,
                        names=ACCESS_TYPES),
                    Arg("source_id", "u32", "the faulting unit's id", default=0),
                    Arg("pad", "u32", "must be 0 (binary struct only)", default=0)),
          fault, "vdrm: a GPU page fault in this client's address space (heaps grow 2M at a time).",
          frozenset({"addr"}), number=DRM_IOWR(DRM_COMMAND_BASE + VDRM_FAULT_NR, VDRM_FAULT)),
    Ioctl("ADVANCE", (Arg("by", "duration", "how far to move the virtual clock, e.g. 16ms"),),
          advance, "vdrm: advance the virtual clock one step (jobs run, ground truth updates).",
          number=DRM_IOWR(DRM_COMMAND_BASE + VDRM_ADVANCE_NR, VDRM_ADVANCE)),
)
