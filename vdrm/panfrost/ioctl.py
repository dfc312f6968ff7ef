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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vdrm.drm import gem
from vdrm.drm.ioctl import Arg, Ioctl
from vdrm.errors import (AccessDenied, InvalidArgument, NoDevice, NoEntry, NotImplementedByKernel, OutOfMemory,
                         TimedOut, TooBig, Busy, WouldBlock)
from vdrm.kernel.printk import KERN_INFO
from vdrm.panfrost.gem import (BO_FLAGS, BO_HEAP, BO_NOEXEC, BO_WB_MMAP, LABEL_MAXLEN,
                               MADV_DONTNEED, MADV_WILLNEED, Creator, PanfrostBo)
from vdrm.panfrost.job import ENGINES, JS_FRAGMENT, JS_VERTEX_TILER, REQ_FS, REQUIREMENTS
from vdrm.panfrost.mmu import (ACCESS_TYPES, DEFAULT_FAULT_ACCESS, DEFAULT_FAULT_EXCEPTION,
                               EXCEPTION_CODES, fault_status)
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
    known = BO_NOEXEC | BO_HEAP
    if flags & ~known:
        extra = " (WB_MMAP arrives with driver 1.6, after 6.18)" if flags & BO_WB_MMAP else ""
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


def get_bo_offset(file: "DrmFile", handle: int) -> dict[str, Any]:
    """panfrost_ioctl_get_bo_offset: the BO's GPU VA in this file."""
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
           jm_ctx_handle: int, pad: int, engine: int, duration: int, touch: list[int]) -> dict[str, Any]:
    """panfrost_ioctl_submit, plus vdrm's engine/duration/touch description of the job."""
    _check_pad(pad)
    if jc == 0:
        raise InvalidArgument("jc (the job chain address) must be non-zero")
    if requirements & ~(REQ_FS | REQUIREMENTS["CYCLE_COUNT"]):
        raise InvalidArgument(f"unknown requirement bits 0x{requirements:x}")
    if out_sync:
        raise NoDevice(f"no sync object {out_sync} (vdrm emulates none)")
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
    sched = _driver(file).sched
    if sched.in_flight(priv.mmu) >= file.dev.limits.jobs_per_client:
        raise OutOfMemory(f"this client has {sched.in_flight(priv.mmu)} jobs in flight, the daemon's "
                          "limit (--max-jobs-per-client)")
    if duration < 0:
        raise InvalidArgument(f"duration {duration} ns is negative (a job cannot end before it starts)")
    job = _driver(file).sched.submit(priv.mmu, priv.usage, engine, bos, duration, touch,
                                     requirements, file.client_id, jc)
    return {"job": job.seq, "engine": ENGINES[job.slot], "state": job.state}


def get_param(file: "DrmFile", param: int, pad: int) -> dict[str, Any]:
    """panfrost_ioctl_get_param."""
    _check_pad(pad)
    drv = _driver(file)
    names = {v: k for k, v in PARAMS.items()}
    name = names.get(param)
    if name is None:
        raise InvalidArgument(f"unknown param {param} (known: 0..{len(PARAMS) - 1}; HELP verb=GET_PARAM)")
    if name == "SYSTEM_TIMESTAMP":
        value = file.dev.clock.now_ns() * 24 // 1000  # 24 MHz ticks
    elif name == "ALLOWED_JM_CTX_PRIORITIES":
        value = sum(1 << p for p in JM_PRIORITIES.values())
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


def perfcnt(file: "DrmFile", **_: Any) -> dict[str, Any]:
    """PERFCNT_ENABLE / PERFCNT_DUMP: refused unless the unstable_ioctls parameter is set."""
    raise NotImplementedByKernel("perfcnt ioctls need panfrost.unstable_ioctls=1 (vdrm emulates no counters)")


def fault(file: "DrmFile", addr: int, exception: int, access: int, source_id: int) -> dict[str, Any]:
    """vdrm: a GPU page fault at ``addr`` in this client's address space."""
    drv = _driver(file)
    ctx = _priv(file).mmu
    drv.sched.update()
    as_nr = drv.slots.get(ctx)
    try:
        result = drv.mmu.handle_fault(as_nr, addr, fault_status(exception, access, source_id))
    finally:
        drv.slots.put(ctx)
    return {"as": result.as_nr, "addr": result.addr, "populated": int(result.populated)}


def advance(file: "DrmFile", by: int) -> dict[str, Any]:
    """vdrm: one step of the virtual clock (every client sees it); owner and root only."""
    drv = _driver(file)
    if file.uid not in (0, drv.owner_uid):
        raise AccessDenied(f"only the mount's owner (uid {drv.owner_uid}) and root may advance "
                           "the device-wide clock")
    now = drv.timeline.advance(by)
    return {"now_ns": now, "step_ns": by}


_HANDLE = Arg("handle", "u32", "a GEM handle of this client")
_PAD = Arg("pad", "u32", "must be 0", default=0)

PANFROST_IOCTLS: tuple[Ioctl, ...] = (
    Ioctl("CREATE_BO", (Arg("size", "size", "bytes (heaps round up to 2M)"),
                        Arg("flags", "flags", "NOEXEC, HEAP (HEAP needs NOEXEC)", default=0,
                            names=BO_FLAGS),
                        _PAD),
          create_bo, "Create a BO; answers its handle and its GPU VA in this client.",
          frozenset({"offset"})),
    Ioctl("MMAP_BO", (_HANDLE, Arg("flags", "u32", "must be 0", default=0)),
          mmap_bo, "The fake mmap offset of a BO (heap BOs are refused).", frozenset({"offset"})),
    Ioctl("GET_BO_OFFSET", (_HANDLE,), get_bo_offset, "The BO's GPU VA in this client.",
          frozenset({"offset"})),
    Ioctl("MADVISE", (_HANDLE, Arg("madv", "enum", "WILLNEED or DONTNEED",
                                   names={"WILLNEED": MADV_WILLNEED, "DONTNEED": MADV_DONTNEED})),
          madvise, "Mark a BO purgeable (DONTNEED) or needed again; retained=0 once purged."),
    Ioctl("WAIT_BO", (_HANDLE, _PAD,
                      Arg("timeout_ns", "s64", "absolute CLOCK_MONOTONIC deadline; 0 polls", default=0)),
          wait_bo, "Wait until no job uses the BO (EBUSY on a poll, ETIMEDOUT at the deadline)."),
    Ioctl("SUBMIT", (Arg("jc", "u64", "job chain GPU address, non-zero", default=1),
                     Arg("bo_handles", "list", "BOs the job uses (busy until it ends)", default=()),
                     Arg("requirements", "flags", "FS (fragment job), CYCLE_COUNT", default=0,
                         names=REQUIREMENTS),
                     Arg("out_sync", "u32", "sync object to signal (none exist: must be 0)", default=0),
                     Arg("jm_ctx_handle", "u32", "JM context (0 = the default one)", default=0),
                     _PAD,
                     Arg("engine", "enum", "vdrm: job slot, default from requirements",
                         default=DERIVED, names={e.upper(): i for i, e in enumerate(ENGINES)}),
                     Arg("duration", "duration", "vdrm: how long the job runs", default=DEFAULT_JOB_NS),
                     Arg("touch", "list", "vdrm: GPU addresses the job accesses, in order (faults)",
                         default=())),
          submit, "Run a job on an engine; BOs are busy and engine time accrues while it runs."),
    Ioctl("GET_PARAM", (Arg("param", "enum", "a PANFROST_PARAM_* name or number", names=PARAMS), _PAD),
          get_param, "Read a GPU parameter (the emulated GPU is a Mali-G52 2EE, RK3568)."),
    Ioctl("SET_LABEL_BO", (_HANDLE, _PAD,
                           Arg("label", "str", "the label (%20 for spaces); leave out to clear",
                               default=NULL_LABEL)),
          set_label_bo, "Label a BO (shown in debugfs gems)."),
    Ioctl("JM_CTX_CREATE", (Arg("priority", "enum", "LOW, MEDIUM or HIGH", default=JM_PRIORITIES["MEDIUM"],
                                names=JM_PRIORITIES),),
          jm_ctx_create, "Create a job-manager scheduling context (driver 1.5)."),
    Ioctl("JM_CTX_DESTROY", (_HANDLE, _PAD), jm_ctx_destroy, "Destroy a JM context (not 0)."),
    Ioctl("PERFCNT_ENABLE", (Arg("enable", "u32", "", default=0), Arg("counterset", "u32", "", default=0)),
          perfcnt, "Unstable ioctl: refused with ENOSYS, as without panfrost.unstable_ioctls."),
    Ioctl("PERFCNT_DUMP", (Arg("buf_ptr", "u64", "", default=0),),
          perfcnt, "Unstable ioctl: refused with ENOSYS, as without panfrost.unstable_ioctls."),
    Ioctl("FAULT", (Arg("addr", "u64", "GPU virtual address"),
                    Arg("exception", "enum", "exception type name or code", default=DEFAULT_FAULT_EXCEPTION,
                        names=EXCEPTION_CODES),
                    Arg("access", "enum", "ATOMIC, EXECUTE, READ or WRITE", default=DEFAULT_FAULT_ACCESS,
                        names=ACCESS_TYPES),
                    Arg("source_id", "u32", "the faulting unit's id", default=0)),
          fault, "vdrm: a GPU page fault in this client's address space (heaps grow 2M at a time).",
          frozenset({"addr"})),
    Ioctl("ADVANCE", (Arg("by", "duration", "how far to move the virtual clock, e.g. 16ms"),),
          advance, "vdrm: advance the virtual clock one step (jobs run, ground truth updates)."),
)
