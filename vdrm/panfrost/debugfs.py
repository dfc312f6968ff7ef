"""debugfs for the emulated device: the kernel's files, byte-exact, and vdrm's introspection.

The kernel's files under ``/sys/kernel/debug/dri/<minor>/`` (each present from the
kernel version that added it):

``clients`` (``drm_debugfs.c``)
    one row per open file, oldest first: command, tgid, minor, master, authenticated,
    uid, magic; 6.13+ adds the client name column (64 wide), 6.17+ the client id.
``gem_names`` (``drm_debugfs.c``)
    flink names: name, size, handle count, refcount.
``gems`` (Panfrost, 6.17+)
    every live BO in creation order with creator, flink name, refcount, size, resident
    size, mmap offset (pages), state flags and label, then the totals.
``sched_ctxs`` (Panfrost, 6.19+)
    per open file its JM contexts and their scheduler priority; the command is the
    owning task's ``comm`` (``TASK_COMM_LEN`` 16: at most 15 characters).
``profile`` (Panfrost, 6.7-6.9)
    the profiling switch before it moved to sysfs: a debugfs ``atomic_t`` (reads ``0\\n``
    or ``1\\n``; the FUSE side serves it as an attribute).

Which release has which file or column is a row of the release table
(:mod:`vdrm.panfrost.releases`), asked through :meth:`PanfrostDriver.has`.

vdrm's own files (``vdrm-*``) show what the kernel keeps to itself and a user of the
emulator wants to see: which 2 MiB blocks of each heap are populated and their sg tables,
each file's GPU VA map and AS slot, the kernel-equivalent bookkeeping of dense versus
sparse heap backing, the page allocator, and the job slots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from vdrm.drm import debugfs as core_debugfs
from vdrm.mm.page_alloc import PAGE_SHIFT
from vdrm.panfrost import releases
from vdrm.panfrost.drv import SCHED_PRIORITY_NAMES
from vdrm.panfrost.gem import MADV_DONTNEED, SZ_2M, PanfrostBo
from vdrm.panfrost.job import ENGINES
from vdrm.panfrost.mmu import iter_mappings

if TYPE_CHECKING:
    from vdrm.panfrost.device import PanfrostDevice

CLIENT_NAME_MAX_LEN = 64
TASK_COMM_LEN = 16  # include/linux/sched.h: comm holds 15 characters and a NUL
GEMS_WIDTH = 131
STATE_IMPORTED, STATE_EXPORTED, STATE_PURGED, STATE_PURGEABLE = 0x1, 0x2, 0x4, 0x8


def clients(dev: "PanfrostDevice") -> str:
    """``drm_clients_info`` (the DRM core's, :mod:`vdrm.drm.debugfs`)."""
    return core_debugfs.clients(dev.drm)


def gem_names(dev: "PanfrostDevice") -> str:
    """``drm_gem_name_info`` (the DRM core's, :mod:`vdrm.drm.debugfs`)."""
    return core_debugfs.gem_names(dev.drm)


def _state(bo: PanfrostBo) -> int:
    state = 0
    if bo.imported:
        state |= STATE_IMPORTED
    if bo.exported:
        state |= STATE_EXPORTED
    if bo.madv < 0:
        state |= STATE_PURGED
    elif bo.madv > 0:
        state |= STATE_PURGEABLE
    return state


def gems(dev: "PanfrostDevice") -> str:
    """Panfrost's ``gems`` (6.17+): every live BO, oldest first, and the totals."""
    out = ["GEM state flags: imported (0x1), exported (0x2), purged (0x4), purgeable (0x8)\n\n",
           f"{'created-by':<32}{'global-name':<16}{'refcount':<16}{'size':<16}{'resident-size':<16}"
           f"{'file-offset':<18}{'state':<12}label\n",
           "-" * GEMS_WIDTH + "\n"]
    total_size = total_resident = total_reclaimable = 0
    for bo in dev.drm.iter_objects():
        if bo.refcount == 0:
            continue
        creator = f"{bo.creator.comm}/{bo.creator.tgid}"[:31]
        resident = bo.rss()
        offset_pages = bo.vma_pgoff or 0
        out.append(f"{creator:<32}{bo.name:<16d}{bo.refcount:<16d}{bo.size:<16d}{resident:<16d}"
                   f"0x{offset_pages:<16x}0x{_state(bo):<10x}{bo.label or ''}\n")
        total_size += bo.size
        total_resident += resident
        if bo.madv > 0:
            total_reclaimable += resident
    out.append("=" * GEMS_WIDTH + "\n")
    out.append(f"Total size: {total_size}, Total resident: {total_resident}, "
               f"Total reclaimable: {total_reclaimable}\n")
    return "".join(out)


def sched_ctxs(dev: "PanfrostDevice") -> str:
    """Panfrost's ``sched_ctxs`` (1.5, 6.19+): each file's JM contexts."""
    out = []
    for file in dev.drm.files.values():
        out.append(f"client_id {file.client_id:8d} pid {file.pid:8d} command {core_debugfs.comm(file)}:\n")
        for handle, priority in sorted(file.driver_priv.jm_ctxs.items()):
            out.append(f" JM context {handle}: priority {SCHED_PRIORITY_NAMES.get(priority, 'UNKNOWN')}\n")
        out.append("\n")
    return "".join(out)


# -- vdrm's introspection ---------------------------------------------------------------


def vdrm_heaps(dev: "PanfrostDevice") -> str:
    """Every heap BO: populated 2 MiB blocks and each block's sg table."""
    out = [f"heap backing: {dev.config.heap_backing}\n"]
    for bo in dev.drm.iter_objects():
        if not isinstance(bo, PanfrostBo) or not bo.is_heap:
            continue
        blocks = bo.populated_blocks()
        vas = ", ".join(f"client {m.mmu.client_id} @ 0x{m.iova:x}" for m in bo.mappings) or "unmapped"
        out.append(f"\nBO {bo.creator.comm}/{bo.creator.tgid} label={bo.label or '-'} size={bo.size} "
                   f"blocks={len(blocks)}/{bo.nblocks} heap_rss_size={bo.heap_rss_size} ({vas})\n")
        for block in blocks:
            sgt = bo.block_sgt(block)
            runs = sgt.pfn_runs()
            out.append(f"  block {block:5d} [+0x{block * SZ_2M:x}] sgt nents={sgt.nents} "
                       f"orig_nents={sgt.orig_nents}\n")
            for pfn, npages in runs:
                out.append(f"    pfn 0x{pfn:x}-0x{pfn + npages - 1:x} ({npages} pages)\n")
    return "".join(out)


def vdrm_vm(dev: "PanfrostDevice") -> str:
    """Each file's GPU address space: AS slot, mappings, PTE counts."""
    drv = dev.driver
    out = [f"AS slots: {bin(drv.slots.present_mask).count('1')} present, alloc_mask=0x{drv.slots.alloc_mask:x}, "
           f"faulty_mask=0x{drv.slots.faulty_mask:x}, steals={drv.slots.steals}\n"]
    for file in dev.drm.files.values():
        ctx = file.driver_priv.mmu
        as_text = f"AS{ctx.as_nr}" if ctx.as_nr >= 0 else "no AS"
        out.append(f"\nclient {file.client_id} pid {file.pid} {file.comm or '<unknown>'} minor {file.minor}: "
                   f"{as_text} (as_count {ctx.as_count}), ptes 2M={ctx.pte_2m} 4K={ctx.pte_4k}\n")
        handles = {id(obj): h for h, obj in file.handles.items()}
        for mapping in iter_mappings(ctx):
            bo = mapping.bo
            kind = "heap" if bo.is_heap else ("noexec" if bo.noexec else "exec")
            extra = f" resident={bo.rss()}" if bo.is_heap else ""
            out.append(f"  0x{mapping.iova:010x}-0x{mapping.end:010x} handle {handles.get(id(bo), '-')} "
                       f"{kind} size={bo.size}{extra}{' active' if mapping.active else ''}\n")
    return "".join(out)


def vdrm_bookkeeping(dev: "PanfrostDevice") -> str:
    """Kernel-equivalent bookkeeping bytes per heap BO, in this device's backing."""
    out = [f"heap backing: {dev.config.heap_backing}\n",
           f"{'bo':<24}{'size':>14}{'resident':>14}{'bookkeeping':>14}{'per-resident-page':>20}\n"]
    total = 0
    for bo in dev.drm.iter_objects():
        if not isinstance(bo, PanfrostBo) or not bo.is_heap:
            continue
        cost = bo.kernel_bookkeeping_bytes()
        total += cost
        resident_pages = bo.heap_rss_size >> PAGE_SHIFT
        per_page = f"{cost / resident_pages:.2f}" if resident_pages else "-"
        name = f"{bo.creator.comm}/{bo.creator.tgid}"[:23]
        out.append(f"{name:<24}{bo.size:>14}{bo.heap_rss_size:>14}{cost:>14}{per_page:>20}\n")
    out.append(f"total heap bookkeeping: {total} bytes\n")
    return "".join(out)


def vdrm_memory(dev: "PanfrostDevice") -> str:
    """The emulated RAM: page allocator statistics and the shrinker."""
    s = dev.pages.stats()
    return (f"total_pages {s.total}\nfree_pages {s.free}\nallocated_pages {s.allocated}\n"
            f"allocations {s.allocations}\nfailures {s.failures}\nshrinker_calls {s.shrinker_calls}\n"
            f"purged_bos {dev.driver.purged}\n")


def vdrm_jobs(dev: "PanfrostDevice") -> str:
    """Job slots: the running and queued jobs, and the last finished ones."""
    sched = dev.driver.sched
    now = dev.clock.now_ns()
    out = [f"now {now} ns, profiling {int(dev.profiling)}, done {sched.jobs_done}, failed {sched.jobs_failed}\n"]
    for slot, engine in enumerate(ENGINES):
        running = sched.running[slot]
        out.append(f"{engine}: {'running job ' + str(running.seq) if running else 'idle'}, "
                   f"{len(sched.queues[slot])} queued\n")
    for job in list(sched.history)[-32:]:
        out.append(f"job {job.seq} client {job.client_id} {job.engine} {job.state} "
                   f"start {job.start_ns} end {job.end_ns}{' (' + job.error + ')' if job.error else ''}\n")
    return "".join(out)


def files(dev: "PanfrostDevice") -> dict[str, Callable[[], str]]:
    """The debugfs directory of ``dev`` for its kernel version: name -> renderer."""
    has = dev.driver.has
    table: dict[str, Callable[["PanfrostDevice"], str]] = {"clients": clients, "gem_names": gem_names}
    if has(releases.DEBUGFS_GEMS):
        table["gems"] = gems
    if has(releases.DEBUGFS_SCHED_CTXS):
        table["sched_ctxs"] = sched_ctxs
    table.update({"vdrm-heaps": vdrm_heaps, "vdrm-vm": vdrm_vm, "vdrm-bookkeeping": vdrm_bookkeeping,
                  "vdrm-memory": vdrm_memory, "vdrm-jobs": vdrm_jobs})
    return {name: (lambda fn=fn: fn(dev)) for name, fn in table.items()}
