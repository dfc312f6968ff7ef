"""Jobs, job slots and engine time (``panfrost_job.c``).

A job runs on one of three job slots (engines): ``fragment`` (JS0, jobs with the FS
requirement), ``vertex-tiler`` (JS1, everything else) and ``compute-only`` (JS2, only by
explicit request). Jobs on one slot run one after another, in submission order, across
all files; different slots run in parallel.

Nothing runs on a timer. A job has a duration; the :class:`Scheduler` works out, from the
device clock, which jobs have started and finished by "now" (:meth:`Scheduler.update`,
called at every entry point), processing start and end events in time order across the
slots. So with the virtual clock the timeline is exact and reproducible.

* At **start** the job's context takes an address space (``as_get``; when no slot can be
  had the job waits for the next job to end), then the GPU addresses the job touches are
  visited in order: an unmapped address faults (:class:`~vdrm.panfrost.mmu.Mmu`), and a
  terminal fault fails the job at once.
* From **submission** to **end** every BO the job references is busy: ``is_active`` is
  true (the job's fence sits in the BO's reservation object) and it holds a reference.
* At **end** (or failure) the AS is put, and, if profiling was on when the job started
  (``job->is_profiled``), the file's ``engine_usage`` gains the elapsed nanoseconds and
  the cycles at the engine's current frequency. As in the kernel, engine time therefore
  moves in steps, at job completion.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from vdrm.errors import VdrmError
from vdrm.panfrost.mmu import DEFAULT_FAULT_ACCESS, DEFAULT_FAULT_EXCEPTION, fault_status

if TYPE_CHECKING:
    from vdrm.kernel.clock import Clock
    from vdrm.panfrost.gem import PanfrostBo
    from vdrm.panfrost.mmu import AsSlots, Mmu, MmuContext

ENGINES = ("fragment", "vertex-tiler", "compute-only")
NUM_JOB_SLOTS = len(ENGINES)
JS_FRAGMENT, JS_VERTEX_TILER, JS_COMPUTE = range(NUM_JOB_SLOTS)
FDINFO_ENGINES = ENGINES[:2]  # panfrost_show_fdinfo reports the first two

REQ_FS = 1 << 0
REQ_CYCLE_COUNT = 1 << 1
REQUIREMENTS = {"FS": REQ_FS, "CYCLE_COUNT": REQ_CYCLE_COUNT}


@dataclass
class EngineUsage:
    """``struct panfrost_engine_usage``: per-file busy time and cycles per job slot."""

    elapsed_ns: list[int] = field(default_factory=lambda: [0] * NUM_JOB_SLOTS)
    cycles: list[int] = field(default_factory=lambda: [0] * NUM_JOB_SLOTS)


@dataclass(eq=False)
class Job:
    """One submitted job and its timeline."""

    seq: int
    ctx: "MmuContext"
    usage: EngineUsage
    slot: int
    bos: list["PanfrostBo"]
    duration_ns: int
    touches: list[int]
    submit_ns: int
    requirements: int = 0
    client_id: int = 0
    start_ns: int | None = None
    end_ns: int | None = None
    state: str = "queued"  # queued, running, done, failed
    is_profiled: bool = False
    error: str | None = None

    @property
    def engine(self) -> str:
        return ENGINES[self.slot]


class Scheduler:
    """The three job slots and their queues; advances lazily to the clock's now."""

    def __init__(self, clock: "Clock", slots: "AsSlots", mmu: "Mmu", *,
                 profiling: Callable[[], bool], frequency_hz: Callable[[int], int]):
        self.clock = clock
        self.slots = slots
        self.mmu = mmu
        self._profiling = profiling
        self._frequency_hz = frequency_hz
        self.queues: list[deque[Job]] = [deque() for _ in range(NUM_JOB_SLOTS)]
        self.running: list[Job | None] = [None] * NUM_JOB_SLOTS
        self.free_at = [0] * NUM_JOB_SLOTS
        self.history: deque[Job] = deque(maxlen=256)  # finished jobs, for introspection
        self._seq = 0
        self._last_event_ns = 0
        self.jobs_done = 0
        self.jobs_failed = 0

    def submit(self, ctx: "MmuContext", usage: EngineUsage, slot: int, bos: list["PanfrostBo"],
               duration_ns: int, touches: list[int], requirements: int, client_id: int) -> Job:
        """Queue a job; its BOs are busy (and referenced) from now until it ends."""
        self.update()
        self._seq += 1
        job = Job(self._seq, ctx, usage, slot, bos, duration_ns, touches, self.clock.now_ns(),
                  requirements, client_id)
        for bo in bos:
            bo.get()
            bo.gpu_usecount += 1
        self.queues[slot].append(job)
        self.update()
        return job

    def update(self) -> None:
        """Process every job start and end up to the clock's current time, in time order."""
        now = self.clock.now_ns()
        while True:
            event = self._next_event()
            if event is None or event[0] > now:
                return
            when, slot, kind = event
            self._last_event_ns = when
            if kind == "end":
                self._finish(self.running[slot], when, "done")
            else:
                self._start(self.queues[slot][0], when)

    def _next_event(self) -> tuple[int, int, str] | None:
        """The earliest event that can happen: ends first at equal times, so a freed AS
        can be taken; a start that has no AS to take waits for the next end."""
        candidates = []
        for slot in range(NUM_JOB_SLOTS):
            job = self.running[slot]
            if job is not None:
                candidates.append((job.end_ns, 0, slot))
            elif self.queues[slot]:
                head = self.queues[slot][0]
                candidates.append((max(head.submit_ns, self.free_at[slot], self._last_event_ns), 1, slot))
        for when, order, slot in sorted(candidates):
            if order == 0:
                return when, slot, "end"
            if self._can_start(self.queues[slot][0]):
                return when, slot, "start"
        return None

    def _can_start(self, job: Job) -> bool:
        if job.ctx.as_nr >= 0 or (~self.slots.alloc_mask & self.slots.present_mask):
            return True
        return any(c.as_count == 0 for c in self.slots.lru.values())

    def _start(self, job: Job, when: int) -> None:
        self.queues[job.slot].popleft()
        job.start_ns = when
        job.state = "running"
        job.is_profiled = self._profiling()
        as_nr = self.slots.get(job.ctx)
        self.running[job.slot] = job
        job.end_ns = when + job.duration_ns
        for addr in job.touches:
            if job.ctx.is_mapped(addr):
                continue
            try:
                self.mmu.handle_fault(as_nr, addr, fault_status(DEFAULT_FAULT_EXCEPTION, DEFAULT_FAULT_ACCESS))
            except VdrmError as err:
                job.error = str(err)
                self._finish(job, when, "failed")
                return

    def _finish(self, job: Job, when: int, state: str) -> None:
        job.end_ns = when
        job.state = state
        self.running[job.slot] = None
        self.free_at[job.slot] = when
        if job.is_profiled:
            elapsed = when - job.start_ns
            job.usage.elapsed_ns[job.slot] += elapsed
            job.usage.cycles[job.slot] += elapsed * self._frequency_hz(job.slot) // 1_000_000_000
        self.slots.put(job.ctx)
        if job.ctx.destroyed and job.ctx.as_count == 0:
            self.slots.release(job.ctx)
        for bo in job.bos:
            bo.gpu_usecount -= 1
            bo.put()
        self.history.append(job)
        if state == "done":
            self.jobs_done += 1
        else:
            self.jobs_failed += 1

    def idle_at(self, bo: "PanfrostBo") -> int | None:
        """When ``bo`` becomes idle if nothing else is submitted; None if it is idle now.

        Queued jobs' times are predicted from the slot timelines (a job that would fault
        ends earlier, so this is an upper bound).
        """
        if not bo.is_active():
            return None
        latest = 0
        for slot in range(NUM_JOB_SLOTS):
            t = self.running[slot].end_ns if self.running[slot] else max(self.free_at[slot], self.clock.now_ns())
            for job in self.queues[slot]:
                t = max(t, job.submit_ns) + job.duration_ns
                if bo in job.bos:
                    latest = max(latest, t)
            running = self.running[slot]
            if running is not None and bo in running.bos:
                latest = max(latest, running.end_ns)
        return latest

    def cancel_file(self, ctx: "MmuContext") -> None:
        """A file closed: its queued jobs are dropped (running ones finish normally)."""
        for slot in range(NUM_JOB_SLOTS):
            kept = deque()
            for job in self.queues[slot]:
                if job.ctx is ctx:
                    job.error = "file closed before the job ran"
                    job.start_ns = job.end_ns = self.clock.now_ns()
                    job.state = "failed"
                    for bo in job.bos:
                        bo.gpu_usecount -= 1
                        bo.put()
                    self.jobs_failed += 1
                else:
                    kept.append(job)
            self.queues[slot] = kept

    def jobs_in_flight(self) -> list[Job]:
        out = [j for j in self.running if j is not None]
        for q in self.queues:
            out.extend(q)
        return out
