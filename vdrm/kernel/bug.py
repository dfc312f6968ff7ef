"""``WARN()`` and ``WARN_ON()`` (``include/asm-generic/bug.h``, ``kernel/panic.c``): the block
they leave in the kernel log.

A warning with a message (``WARN``, ``dev_WARN``) prints ``------------[ cut here ]------------``
and the message first (``__warn_printk``); then ``__warn()`` prints ``WARNING: CPU: %d PID: %d
at <file>:<line> <function>+<offset>/<size> [<module>]``, the modules list, the registers
(``show_regs``: the ``CPU:``/``Hardware name:`` lines, ``pstate``, ``pc``, ``lr``, ``sp`` and
``x29``..``x0`` on arm64), the ``Call trace:`` with one indented frame per line, and
``---[ end trace 0000000000000000 ]---`` (the trace id has printed as zeros since 5.19).
``WARN_ON(cond)`` prints the cut line and the block, without a message. The shape follows a
real Panfrost warning on arm64 quoted on dri-devel ("matching BO is not heap type" backtrace,
Khadas VIM3, 5.9-rc5).

What vdrm cannot know it makes up, and says so here: the emulated CPU is 0, the register
values are zeros (there is no CPU state to show), the ``+offset/size`` of each frame and the
source line are vdrm's own constants per call site (:class:`WarnSite`), not the offsets of
any real build, and the task is the one the caller names (an IRQ thread for the GPU, or the
process that made the call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vdrm.kernel.printk import KERN_WARNING

if TYPE_CHECKING:
    from vdrm.kernel.printk import KernelLog

CUT_HERE = "------------[ cut here ]------------"
END_TRACE = "---[ end trace 0000000000000000 ]---"
HARDWARE_NAME = "Rockchip RK3568 EVB1 DDR4 V10 Board (DT)"
MODULES = "panfrost drm_shmem_helper gpu_sched drm_kms_helper drm"


@dataclass(frozen=True)
class Frame:
    """One ``Call trace:`` line: ``function+0xoffset/0xsize [module]``."""

    function: str
    offset: int
    size: int
    module: str | None = None

    def __str__(self) -> str:
        mod = f" [{self.module}]" if self.module else ""
        return f"{self.function}+0x{self.offset:x}/0x{self.size:x}{mod}"


@dataclass(frozen=True)
class WarnSite:
    """Where a WARN fires: source file and line, and the call trace (innermost first).

    The line and the frame offsets are vdrm's (documented in the module docstring)."""

    file: str
    line: int
    frames: tuple[Frame, ...]


@dataclass(frozen=True)
class Task:
    """The task that hit the warning, as ``show_regs`` names it."""

    pid: int
    comm: str


def warn_text(site: WarnSite, task: Task, message: str | None = None, *, release: str = "6.18.0",
              tainted: bool = False) -> list[str]:
    """The records of one warning: ``[cut here, message]`` then the block, one string each.

    ``tainted``: an earlier WARN set TAINT_WARN (``__warn`` taints only after printing, so
    the first block says ``Not tainted``)."""
    first = site.frames[0]
    taint = "Tainted: G        W         " if tainted else "Not tainted"
    regs = [f"x{n:<2d}: {0:016x} x{n - 1:<2d}: {0:016x}" for n in range(29, 0, -2)]
    block = [
        f"WARNING: CPU: 0 PID: {task.pid} at {site.file}:{site.line} {first}",
        f"Modules linked in: {MODULES}",
        f"CPU: 0 UID: 0 PID: {task.pid} Comm: {task.comm[:15]} {taint} {release} #1",
        f"Hardware name: {HARDWARE_NAME}",
        "pstate: 60400009 (nZCv daif +PAN -UAO -TCO -DIT -SSBS BTYPE=--)",
        f"pc : {first}",
        f"lr : {site.frames[1] if len(site.frames) > 1 else first}",
        f"sp : {0:016x}",
        *regs,
        "Call trace:",
        *(f" {frame}" for frame in site.frames),
        END_TRACE,
    ]
    head = [CUT_HERE] + ([message] if message is not None else [])
    return head + ["\n".join(block)]


def warn(log: "KernelLog", site: WarnSite, task: Task, message: str | None = None, *,
         release: str = "6.18.0") -> None:
    """``WARN(1, message)`` (or ``WARN_ON`` without one): log the whole block at KERN_WARNING."""
    for record in warn_text(site, task, message, release=release, tainted=log.tainted_warn):
        log.printk(KERN_WARNING, record)
    log.tainted_warn = True
