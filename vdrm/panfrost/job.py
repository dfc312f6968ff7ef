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
  moves in steps, at job completion, and only ever goes up (durations are never negative).
* A job still running :data:`JOB_TIMEOUT_NS` (the kernel's ``JOB_TIMEOUT_MS``, 500 ms)
  after it started **times out** (``panfrost_job_timedout``): the kernel logs
  ``gpu sched timeout, js=..., config=..., status=..., head=..., tail=..., sched_job=...``
  with ``dev_err``, resets the GPU, and the job ends in error (state ``timedout``): its
  BOs go idle and lose the job's references, so a closed client's pages are freed at
  that moment. A timed-out job adds no engine time (the kernel accounts time only in the
  done path). Where vdrm differs: the reset does not disturb jobs running on the other
  slots (the kernel stops and resubmits them), and ``config``/``status`` are the values
  ``panfrost_job_hw_submit`` writes for this GPU, not a register read. ``job_timeout_ns``
  may be changed per device (a scenario keeping a BO busy for an hour on the virtual
  clock); 0 disables the timeout.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from vdrm.errors import VdrmError
from vdrm.kernel.printk import KERN_ERR
from vdrm.panfrost.mmu import DEFAULT_FAULT_ACCESS, DEFAULT_FAULT_EXCEPTION, fault_status

if TYPE_CHECKING:
    from vdrm.kernel.clock import Clock
    from vdrm.panfrost.gem import PanfrostBo
    from vdrm.panfrost.mmu import AsSlots, Mmu, MmuContext

ENGINES = ("fragment", "vertex-tiler", "compute-only")
NUM_JOB_SLOTS = len(ENGINES)
JS_FRAGMENT, JS_VERTEX_TILER, JS_COMPUTE = range(NUM_JOB_SLOTS)
FDINFO_ENGINES = ENGINES[:2]  # panfrost_show_fdinfo reports the first two

JOB_TIMEOUT_NS = 500_000_000  # JOB_TIMEOUT_MS in panfrost_job.c

# JS_CONFIG as panfrost_job_hw_submit writes it on a G52 (the AS number is or'ed in):
# THREAD_PRI(8) | START_FLUSH_CLEAN_INVALIDATE | END_FLUSH_CLEAN_INVALIDATE | FLUSH_REDUCTION
_JS_CONFIG = (8 << 16) | (3 << 8) | (3 << 12) | (1 << 14)
_JS_STATUS_ACTIVE = 0x08

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
    jc: int = 0
    start_ns: int | None = None
    end_ns: int | None = None
    state: str = "queued"  # queued, running, done, failed, timedout
    is_profiled: bool = False
    error: str | None = None

    @property
    def engine(self) -> str:
        return ENGINES[self.slot]


class Scheduler:
    """The three job slots and their queues; advances lazily to the clock's now."""

    def __init__(self, clock: "Clock", slots: "AsSlots", mmu: "Mmu", *,
                 profiling: Callable[[], bool], frequency_hz: Callable[[int], int],
                 job_timeout_ns: int = JOB_TIMEOUT_NS):
        if job_timeout_ns < 0:
            raise ValueError(f"job timeout {job_timeout_ns} ns is negative")
        self.job_timeout_ns = job_timeout_ns
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
        self.jobs_timedout = 0
        self.resets = 0
        self._in_flight: dict[int, int] = {}  # id(ctx) -> its jobs queued or running

    def submit(self, ctx: "MmuContext", usage: EngineUsage, slot: int, bos: list["PanfrostBo"],
               duration_ns: int, touches: list[int], requirements: int, client_id: int,
               jc: int = 0) -> Job:
        """Queue a job; its BOs are busy (and referenced) from now until it ends."""
        if not 0 <= slot < NUM_JOB_SLOTS:
            raise ValueError(f"job slot {slot} does not exist")
        if duration_ns < 0:
            raise ValueError(f"job duration {duration_ns} ns is negative")
        self.update()
        self._seq += 1
        job = Job(self._seq, ctx, usage, slot, bos, duration_ns, touches, self.clock.now_ns(),
                  requirements, client_id, jc)
        for bo in bos:
            bo.get()
            bo.gpu_usecount += 1
        self._in_flight[id(ctx)] = self._in_flight.get(id(ctx), 0) + 1
        self.queues[slot].append(job)
        self.update()
        return job

    def update(self) -> None:
        """Process every job start and end up to the clock's current time, in time order."""
        if not self._in_flight:  # no job queued or running: there is no event to process
            return
        now = self.clock.now_ns()
        while True:
            event = self._next_event()
            if event is None or event[0] > now:
                return
            when, slot, kind = event
            self._last_event_ns = when
            if kind == "end":
                job = self.running[slot]
                if job.state == "running" and job.end_ns - job.start_ns < job.duration_ns:
                    self._timedout(job, when)
                else:
                    self._finish(job, when, "done")
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
        timeout = self.job_timeout_ns
        job.end_ns = when + (min(job.duration_ns, timeout) if timeout else job.duration_ns)
        for addr in job.touches:
            if job.ctx.is_mapped(addr):
                continue
            try:
                self.mmu.handle_fault(as_nr, addr, fault_status(DEFAULT_FAULT_EXCEPTION, DEFAULT_FAULT_ACCESS))
            except VdrmError as err:
                job.error = str(err)
                self._finish(job, when, "failed")
                return

    def _timedout(self, job: Job, when: int) -> None:
        """``panfrost_job_timedout``: log, reset the GPU, and end the job in error."""
        as_nr = max(job.ctx.as_nr, 0)
        head = job.jc & 0xFFFFFFFF
        self.mmu._dev_printk(
            KERN_ERR, f"gpu sched timeout, js={job.slot}, config=0x{_JS_CONFIG | as_nr:x}, "
            f"status=0x{_JS_STATUS_ACTIVE:x}, head=0x{head:x}, tail=0x{head:x}, "
            f"sched_job={_hashed_pointer(job.seq)}")
        self.resets += 1
        job.error = f"timed out after {self.job_timeout_ns // 1_000_000} ms (GPU reset)"
        self._finish(job, when, "timedout")

    def _finish(self, job: Job, when: int, state: str) -> None:
        job.end_ns = when
        job.state = state
        self.running[job.slot] = None
        self.free_at[job.slot] = when
        if job.is_profiled and state == "done":
            elapsed = when - job.start_ns
            job.usage.elapsed_ns[job.slot] += elapsed
            job.usage.cycles[job.slot] += elapsed * self._frequency_hz(job.slot) // 1_000_000_000
        self.slots.put(job.ctx)
        if job.ctx.destroyed and job.ctx.as_count == 0:
            self.slots.release(job.ctx)
        self._ended(job)
        self.history.append(job)
        if state == "done":
            self.jobs_done += 1
        elif state == "timedout":
            self.jobs_timedout += 1
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
                t = max(t, job.submit_ns) + self._runtime(job)
                if bo in job.bos:
                    latest = max(latest, t)
            running = self.running[slot]
            if running is not None and bo in running.bos:
                latest = max(latest, running.end_ns)
        return latest

    def _ended(self, job: Job) -> None:
        """A job left the slots: its BOs lose its references, its client a job in flight."""
        for bo in job.bos:
            bo.gpu_usecount -= 1
            bo.put()
        job.bos = []
        key = id(job.ctx)
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    def in_flight(self, ctx: "MmuContext") -> int:
        """How many of ``ctx``'s jobs are queued or running."""
        self.update()
        return self._in_flight.get(id(ctx), 0)

    def _runtime(self, job: Job) -> int:
        """How long ``job`` occupies its slot once started (the timeout cuts it short)."""
        timeout = self.job_timeout_ns
        return min(job.duration_ns, timeout) if timeout else job.duration_ns

    def cancel_file(self, ctx: "MmuContext") -> None:
        """A file closed: its queued jobs are dropped (running ones finish normally)."""
        for slot in range(NUM_JOB_SLOTS):
            kept = deque()
            for job in self.queues[slot]:
                if job.ctx is ctx:
                    job.error = "file closed before the job ran"
                    job.start_ns = job.end_ns = self.clock.now_ns()
                    job.state = "failed"
                    self._ended(job)
                    self.jobs_failed += 1
                else:
                    kept.append(job)
            self.queues[slot] = kept

    def jobs_in_flight(self) -> list[Job]:
        out = [j for j in self.running if j is not None]
        for q in self.queues:
            out.extend(q)
        return out


def _hashed_pointer(seq: int) -> str:
    """What ``%p`` prints: a hashed pointer (stable per job, never a real address)."""
    return f"{(seq * 0x9E3779B1) & 0xFFFFFFFF:016x}"
