"""Building a scenario on a device and playing its timeline.

:class:`Scenario` opens the scenario's clients, creates their BOs, shares them, faults in
heap residency and applies madvise, all through the same ioctl handlers a real client
reaches, so a scenario exercises exactly the code real clients do. Jobs and events are
put on the machine's timeline (:meth:`GpuDevice.schedule`) at ``clock start + at``;
a repeated job schedules its next run when it is submitted, so a long timeline costs
nothing until the clock gets there.

Emulated processes (:class:`EmulatedProcess`) carry what ``/proc/<pid>`` shows for them:
``stat``, ``status``, ``statm``, ``io``, ``environ``, ``cgroup``, ``comm``, ``cmdline`` (each
in the kernel's format, so tools that read them do not drop the process) and their DRM fds with the header values of
fdinfo (``pos``, ``flags``, ``mnt_id``, ``ino``). All opens of one node share its inode
number, as with a real character device (``renderD128`` is 531 and ``card0`` 530, the
numbers of the kernel documentation's example; a second GPU's nodes are 540 + minor).

The runner talks to each GPU through the driver-neutral :class:`~vdrm.drm.gpu.GpuDevice`
interface (``create_bo``, ``fault``, ``submit`` ...): the same scenario verbs play on any
driver, and a client's ``node`` picks its GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vdrm import drivers
from vdrm.drm import gem
from vdrm.drm.file import DrmFile
from vdrm.drm.gpu import DeviceConfig, GpuDevice
from vdrm.drm.limits import Limits
from vdrm.errors import VdrmError
from vdrm.kernel.printk import KERN_INFO
from vdrm.scenario.load import DEFAULT_FD_FLAGS, SZ_2M, ScenarioSpec, gc_paused

NODE_INO = {0: 530, 128: 531}
PAGE_SIZE = 4096
CLK_TCK = 100


def node_ino(minor: int) -> int:
    return NODE_INO.get(minor, 540 + minor)


def node_path(minor: int) -> str:
    return f"/dev/dri/card{minor}" if minor < 128 else f"/dev/dri/renderD{minor}"


@dataclass
class EmulatedFd:
    """One fd of an emulated process: the client behind it and its fdinfo header values."""

    fd: int
    file: DrmFile
    flags: int
    mnt_id: int
    pos: int = 0
    node_ino: int | None = None  # the scenario's inode number for the node, if it sets one

    @property
    def ino(self) -> int:
        return self.node_ino or node_ino(self.file.minor)

    @property
    def target(self) -> str:
        return node_path(self.file.minor)


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
    """A :class:`ScenarioSpec` built on a fresh virtual-clock machine (one GPU per ``gpus``)."""

    def __init__(self, spec: ScenarioSpec, *, limits: Limits | None = None, owner_uid: int = 0):
        """``limits`` and ``owner_uid`` are the daemon's (its options), not the scenario's."""
        self.spec = spec
        d = spec.device
        self.machine = drivers.build(DeviceConfig(
            kernel=d.kernel, heap_backing=d.heap_backing, ram_size=d.ram_size, as_slots=d.as_slots,
            clock="virtual", seed=d.seed, fragmentation=d.fragmentation,
            first_client_id=d.first_client_id, profiling=d.profiling,
            clock_start_ns=spec.clock_start, size_units=d.size_units, fdinfo_revision=d.fdinfo_revision,
            job_timeout_ns=d.job_timeout_ns, limits=limits or Limits(), owner_uid=owner_uid),
            d.gpus)
        self.device: GpuDevice = self.machine.device  # card0
        for gpu in self.machine.devices:
            for engine, hz in d.maxfreq.items():
                if engine in gpu.ENGINES:
                    gpu.set_frequency(gpu.ENGINES.index(engine), hz)
            for engine, hz in d.curfreq.items():
                if engine in gpu.ENGINES:
                    gpu.set_frequency(gpu.ENGINES.index(engine), hz, current_only=True)
        self.clients: dict[str, DrmFile] = {}
        self.handles: dict[tuple[str, str], int] = {}  # (client id, BO id) -> handle
        self.heaps: dict[str, tuple[str, int]] = {}  # heap id -> (client id, heap handle)
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
            file = self.machine.open(c.minor, pid=opener.pid if opener else 0,
                                    comm=opener.comm if opener else "", uid=opener.uid if opener else 0)
            if c.name:
                file.set_client_name(c.name)
            gpu = self.machine.of(file)
            for engine, (ns, cycles) in c.usage.items():
                gpu.set_engine_usage(file, gpu.ENGINES.index(engine), ns, cycles)
            self.clients[c.id] = file
        for c in spec.clients:
            file = self.clients[c.id]
            gpu = self.machine.of(file)
            if c.queues:
                gpu.setup_client(file, c.queues)
            for bo in c.bos:
                self.handles[(c.id, bo.id)] = gpu.create_bo(file, bo.size, bo.flags, bo.label)
            for heap in c.heaps:
                self.heaps[heap.id] = (c.id, gpu.create_heap(file, heap.chunk_size, heap.initial_chunks,
                                                             heap.max_chunks, heap.target_in_flight))
        for c in spec.clients:
            for bo in c.bos:
                if not bo.share_with:
                    continue
                name = gem.flink(self.clients[c.id], self.handles[(c.id, bo.id)])
                for other in bo.share_with:
                    self.handles[(other, bo.id)] = gem.gem_open(self.clients[other], name)[0]
        for c in spec.clients:
            file = self.clients[c.id]
            gpu = self.machine.of(file)
            for bo in c.bos:
                base = self.va(c.id, bo.id)
                for block in range(bo.resident // SZ_2M):
                    gpu.fault(file, base + block * SZ_2M)
                if bo.madvise:
                    gpu.madvise(file, self.handles[(c.id, bo.id)], bo.madvise == "DONTNEED")
                if bo.purged:
                    gpu.purge(file, self.handles[(c.id, bo.id)])
        for p in spec.processes:
            proc = EmulatedProcess(p.pid, p.ppid, p.comm, p.cmdline, p.uid, p.gid, spec.clock_start)
            for fd, client_id in sorted(p.fds.items()):
                file = self.clients[client_id]
                proc.fds[fd] = EmulatedFd(fd, file, p.fd_flags.get(fd, DEFAULT_FD_FLAGS), spec.mnt_id,
                                          node_ino=spec.inodes.get(file.minor))
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
        return self.machine.of(file).bo_va(file, self.handles[(client_id, bo_id)])

    # -- the timeline ---------------------------------------------------------------------

    def _submit(self, job, remaining: int) -> None:
        file = self.clients.get(job.client)
        if file is None or file.closed:
            return
        handles = [self.handles[(job.client, b)] for b in job.bos]
        touch = [(self.va(job.client, bo) if bo else 0) + off for bo, off in job.touch]
        gpu = self.machine.of(file)
        gpu.submit(file, gpu.ENGINES.index(job.engine), handles, job.duration, touch)
        for heap in job.tiler_oom:
            self._tiler_oom(heap, job.line)
        if remaining > 1:
            at = self.device.clock.now_ns() + job.every
            self.device.schedule(at, lambda: self._submit(job, remaining - 1))

    def _tiler_oom(self, heap_id: str, line: int) -> None:
        """One tiler out-of-memory event; at the heap's limits the kernel says no (ENOMEM),
        which the firmware handles by waiting: logged, as the story goes on."""
        client_id, handle = self.heaps[heap_id]
        file = self.clients[client_id]
        if file.closed:
            return
        try:
            self.machine.of(file).grow_heap(file, handle)
        except VdrmError as err:
            self.machine.log.printk(KERN_INFO, f"vdrm: scenario tiler_oom at line {line}: {err}")

    def _event(self, event) -> None:
        file = self.clients.get(event.client) if event.client else None
        if event.client and (file is None or file.closed):
            return
        gpus = [self.machine.of(file)] if file is not None else list(self.machine.devices)
        if event.kind == "engine_skew":
            for engine, delta in event.value.items():
                gpus[0].skew_engine(file, gpus[0].ENGINES.index(engine), delta)
        elif event.kind == "profiling":
            for gpu in gpus:
                gpu.set_profiling(event.value)
        elif event.kind == "curfreq":
            for gpu in gpus:
                for engine, hz in event.value.items():
                    if engine in gpu.ENGINES:
                        gpu.set_frequency(gpu.ENGINES.index(engine), hz, current_only=True)
        elif event.kind == "close_client":
            for proc in self.processes.values():
                for fd in [fd for fd, efd in proc.fds.items() if efd.file is file]:
                    del proc.fds[fd]
                    self.closed_fds.append((proc.pid, fd))
            self.machine.release(file)
        elif event.kind == "madvise":
            handle = self.handles[(event.client, event.value["bo"])]
            gpus[0].madvise(file, handle, event.value["madv"] == "DONTNEED")
        elif event.kind == "tiler_oom":
            self._tiler_oom(event.value, event.line)
        elif event.kind == "fault":
            bo, off = event.value
            try:
                gpus[0].fault(file, (self.va(event.client, bo) if bo else 0) + off)
            except VdrmError as err:  # a terminal fault is part of the story, not an error
                self.machine.log.printk(KERN_INFO, f"vdrm: scenario fault at line {event.line}: {err}")
