"""Building a scenario on a device and playing its timeline.

:class:`Scenario` opens the scenario's clients, creates their BOs, shares them, faults in
heap residency and applies madvise, all through the same ioctl handlers a real client
reaches, so a scenario exercises exactly the code real clients do. Jobs and events are
put on the device's timeline (:meth:`PanfrostDevice.schedule`) at ``clock start + at``;
a repeated job schedules its next run when it is submitted, so a long timeline costs
nothing until the clock gets there.

Emulated processes (:class:`EmulatedProcess`) carry what ``/proc/<pid>`` shows for them:
``stat``, ``status``, ``statm``, ``io``, ``environ``, ``cgroup``, ``comm``, ``cmdline`` (each
in the kernel's format, so tools that read them do not drop the process) and their DRM fds with the header values of
fdinfo (``pos``, ``flags``, ``mnt_id``, ``ino``). All opens of one node share its inode
number, as with a real character device (``renderD128`` is 531 and ``card0`` 530, the
numbers of the kernel documentation's example).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vdrm.drm.file import DrmFile
from vdrm.errors import VdrmError
from vdrm.kernel.printk import KERN_INFO
from vdrm.panfrost import ioctl as pf
from vdrm.panfrost.device import DeviceConfig, PanfrostDevice
from vdrm.panfrost.gem import SZ_2M
from vdrm.scenario.load import DEFAULT_FD_FLAGS, ScenarioSpec, gc_paused

NODE_INO = {0: 530, 128: 531}
PAGE_SIZE = 4096
NODE_PATH = {0: "/dev/dri/card0", 128: "/dev/dri/renderD128"}
CLK_TCK = 100


@dataclass
class EmulatedFd:
    """One fd of an emulated process: the client behind it and its fdinfo header values."""

    fd: int
    file: DrmFile
    flags: int
    mnt_id: int
    pos: int = 0

    @property
    def ino(self) -> int:
        return NODE_INO[self.file.minor]

    @property
    def target(self) -> str:
        return NODE_PATH[self.file.minor]


@dataclass
class EmulatedProcess:
    """A process that exists only in the scenario, with ``/proc/<pid>`` contents."""

    pid: int
    ppid: int
    comm: str
    cmdline: tuple[str, ...]
    uid: int
    gid: int
    start_ns: int
    fds: dict[int, EmulatedFd] = field(default_factory=dict)

    def stat(self) -> str:
        """``/proc/<pid>/stat``: 52 fields, ``pid (comm) state ppid ...``."""
        starttime = self.start_ns * CLK_TCK // 1_000_000_000
        size, resident = self.STATM_PAGES[:2]
        fields = [str(self.pid), f"({self.comm})", "S", str(self.ppid), str(self.pid), str(self.pid),
                  "0", "-1", "4194560", "0", "0", "0", "0", "0", "0", "0", "0", "20", "0", "1", "0",
                  str(starttime), str(size * PAGE_SIZE), str(resident), "18446744073709551615"] + ["0"] * 27
        return " ".join(fields) + "\n"

    def status(self) -> str:
        """``/proc/<pid>/status`` in 6.x's layout, its memory lines agreeing with statm."""
        u, g = self.uid, self.gid
        size, resident, shared, text, _lib, data, _dt = (n * PAGE_SIZE // 1024 for n in self.STATM_PAGES)
        kb = lambda key, value: f"{key}:\t{value:8d} kB\n"  # noqa: E731 - procfs's own padding
        memory = (kb("VmPeak", size) + kb("VmSize", size) + kb("VmLck", 0) + kb("VmPin", 0)
                  + kb("VmHWM", resident) + kb("VmRSS", resident) + kb("RssAnon", resident - shared)
                  + kb("RssFile", shared) + kb("RssShmem", 0) + kb("VmData", data) + kb("VmStk", 132)
                  + kb("VmExe", text) + kb("VmLib", 0) + kb("VmPTE", 128) + kb("VmSwap", 0)
                  + kb("HugetlbPages", 0))
        zero = "0000000000000000"
        return (f"Name:\t{self.comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{self.pid}\nNgid:\t0\n"
                f"Pid:\t{self.pid}\nPPid:\t{self.ppid}\nTracerPid:\t0\nUid:\t{u}\t{u}\t{u}\t{u}\n"
                f"Gid:\t{g}\t{g}\t{g}\t{g}\nFDSize:\t64\nGroups:\t\nNStgid:\t{self.pid}\nNSpid:\t{self.pid}\n"
                f"NSpgid:\t{self.pid}\nNSsid:\t{self.pid}\nKthread:\t0\n{memory}CoreDumping:\t0\n"
                f"THP_enabled:\t1\nThreads:\t1\nSigQ:\t0/63448\nSigPnd:\t{zero}\nShdPnd:\t{zero}\n"
                f"SigBlk:\t{zero}\nSigIgn:\t{zero}\nSigCgt:\t{zero}\nCapInh:\t{zero}\nCapPrm:\t{zero}\n"
                f"CapEff:\t{zero}\nCapBnd:\t000001ffffffffff\nCapAmb:\t{zero}\nNoNewPrivs:\t0\n"
                f"Seccomp:\t0\nSeccomp_filters:\t0\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n"
                f"Mems_allowed:\t00000001\nMems_allowed_list:\t0\nvoluntary_ctxt_switches:\t0\n"
                f"nonvoluntary_ctxt_switches:\t0\n")

    # A mid-sized userspace process's memory, in pages: what statm shows for every
    # emulated process (its GPU memory is in fdinfo, not here).
    STATM_PAGES = (65536, 8192, 4096, 64, 0, 16384, 0)  # size resident shared text lib data dt

    def statm(self) -> str:
        """``/proc/<pid>/statm``: seven page counts (``lib`` and ``dt`` always 0 since 2.6)."""
        return " ".join(str(n) for n in self.STATM_PAGES) + "\n"

    def io(self) -> str:
        """``/proc/<pid>/io``: no I/O done (an emulated process never reads or writes)."""
        keys = ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes", "cancelled_write_bytes")
        return "".join(f"{k}: 0\n" for k in keys)

    def environ(self) -> bytes:
        """``/proc/<pid>/environ``: NUL-terminated ``NAME=value`` strings."""
        home = "/root" if self.uid == 0 else f"/home/{self.uid}"
        env = (f"HOME={home}", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8")
        return b"".join(e.encode() + b"\0" for e in env)

    def cgroup(self) -> str:
        """``/proc/<pid>/cgroup``: the unified (v2) hierarchy's one line."""
        return f"0::/user.slice/user-{self.uid}.slice\n"

    def cmdline_bytes(self) -> bytes:
        return b"".join(a.encode() + b"\0" for a in self.cmdline)


class Scenario:
    """A :class:`ScenarioSpec` built on a fresh virtual-clock device."""

    def __init__(self, spec: ScenarioSpec):
        self.spec = spec
        d = spec.device
        self.device = PanfrostDevice(DeviceConfig(
            kernel=d.kernel, heap_backing=d.heap_backing, ram_size=d.ram_size, as_slots=d.as_slots,
            clock="virtual", seed=d.seed, fragmentation=d.fragmentation,
            first_client_id=d.first_client_id, profiling=d.profiling,
            clock_start_ns=spec.clock_start, size_units=d.size_units, fdinfo_revision=d.fdinfo_revision,
            job_timeout_ns=d.job_timeout_ns))
        drv = self.device.driver
        for slot, hz in d.maxfreq.items():
            drv.max_freq_hz[slot] = drv.cur_freq_hz[slot] = hz
        for slot, hz in d.curfreq.items():
            drv.cur_freq_hz[slot] = hz
        self.clients: dict[str, DrmFile] = {}
        self.handles: dict[tuple[str, str], int] = {}  # (client id, BO id) -> handle
        self.processes: dict[int, EmulatedProcess] = {}
        self.closed_fds: list[tuple[int, int]] = []  # (pid, fd) closed by events, for the mount's cache
        with gc_paused():
            self._build()

    # -- building -------------------------------------------------------------------------

    def _build(self) -> None:
        spec = self.spec
        openers: dict[str, Any] = {}  # client id -> the first process holding it
        for proc in spec.processes:
            for client_id in proc.fds.values():
                openers.setdefault(client_id, proc)
        for c in spec.clients:
            opener = openers.get(c.id)
            file = self.device.open(c.minor, pid=opener.pid if opener else 0,
                                    comm=opener.comm if opener else "", uid=opener.uid if opener else 0)
            if c.name:
                file.set_client_name(c.name)
            usage = file.driver_priv.usage
            for slot, (ns, cycles) in c.usage.items():
                usage.elapsed_ns[slot], usage.cycles[slot] = ns, cycles
            self.clients[c.id] = file
        for c in spec.clients:
            file = self.clients[c.id]
            for bo in c.bos:
                handle = pf.create_bo(file, bo.size, bo.flags, 0)["handle"]
                self.handles[(c.id, bo.id)] = handle
                if bo.label is not None:
                    pf.set_label_bo(file, handle, 0, bo.label)
        for c in spec.clients:
            for bo in c.bos:
                if not bo.share_with:
                    continue
                from vdrm.drm import gem

                name = gem.flink(self.clients[c.id], self.handles[(c.id, bo.id)])
                for other in bo.share_with:
                    self.handles[(other, bo.id)] = gem.gem_open(self.clients[other], name)[0]
        for c in spec.clients:
            for bo in c.bos:
                base = self.va(c.id, bo.id)
                for block in range(bo.resident // SZ_2M):
                    pf.fault(self.clients[c.id], base + block * SZ_2M, 0xC3, 3, 0)
                if bo.madvise:
                    pf.madvise(self.clients[c.id], self.handles[(c.id, bo.id)], 1 if bo.madvise == "DONTNEED" else 0)
                if bo.purged:
                    handle = self.handles[(c.id, bo.id)]
                    self.device.driver.purge(self.clients[c.id].handles.lookup(handle))
        for p in spec.processes:
            proc = EmulatedProcess(p.pid, p.ppid, p.comm, p.cmdline, p.uid, p.gid, spec.clock_start)
            for fd, client_id in sorted(p.fds.items()):
                proc.fds[fd] = EmulatedFd(fd, self.clients[client_id], p.fd_flags.get(fd, DEFAULT_FD_FLAGS),
                                          spec.mnt_id)
            self.processes[p.pid] = proc
        start = spec.clock_start
        for job in spec.jobs:
            self.device.schedule(start + job.at, lambda job=job: self._submit(job, job.count))
        for event in spec.events:
            self.device.schedule(start + event.at, lambda event=event: self._event(event))
        self.device.run_due()

    def va(self, client_id: str, bo_id: str) -> int:
        """The GPU VA of BO ``bo_id`` in client ``client_id``."""
        file = self.clients[client_id]
        bo = file.handles.lookup(self.handles[(client_id, bo_id)])
        return bo.mapping_for(file.driver_priv.mmu).iova

    # -- the timeline ---------------------------------------------------------------------

    def _submit(self, job, remaining: int) -> None:
        file = self.clients.get(job.client)
        if file is None or file.closed:
            return
        handles = [self.handles[(job.client, b)] for b in job.bos]
        touch = [(self.va(job.client, bo) if bo else 0) + off for bo, off in job.touch]
        pf.submit(file, 1, handles, 1 if job.engine == 0 else 0, 0, 0, 0, job.engine, job.duration, touch)
        if remaining > 1:
            at = self.device.clock.now_ns() + job.every
            self.device.schedule(at, lambda: self._submit(job, remaining - 1))

    def _event(self, event) -> None:
        dev = self.device
        file = self.clients.get(event.client) if event.client else None
        if event.client and (file is None or file.closed):
            return
        if event.kind == "engine_skew":
            usage = file.driver_priv.usage
            for slot, delta in event.value.items():
                usage.elapsed_ns[slot] = max(0, usage.elapsed_ns[slot] + delta)
        elif event.kind == "profiling":
            dev.driver.profiling = event.value
        elif event.kind == "curfreq":
            for slot, hz in event.value.items():
                dev.driver.cur_freq_hz[slot] = hz
        elif event.kind == "close_client":
            for proc in self.processes.values():
                for fd in [fd for fd, efd in proc.fds.items() if efd.file is file]:
                    del proc.fds[fd]
                    self.closed_fds.append((proc.pid, fd))
            dev.release(file)
        elif event.kind == "madvise":
            handle = self.handles[(event.client, event.value["bo"])]
            pf.madvise(file, handle, 1 if event.value["madv"] == "DONTNEED" else 0)
        elif event.kind == "fault":
            bo, off = event.value
            try:
                pf.fault(file, (self.va(event.client, bo) if bo else 0) + off, 0xC3, 3, 0)
            except VdrmError as err:  # a terminal fault is part of the story, not an error
                dev.log.printk(KERN_INFO, f"vdrm: scenario fault at line {event.line}: {err}")
