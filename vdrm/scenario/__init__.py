"""Scenarios: reproducible machines of emulated processes, clients, BOs and jobs.

A scenario file (TOML, read with the standard library) describes a device, its clients
with their BOs, the processes whose fds reach those clients, and a job timeline on the
virtual clock. :func:`~vdrm.scenario.load.load` validates it (errors name the file, the
line and what is wrong) and :class:`~vdrm.scenario.run.Scenario` builds it on a machine of one or two GPUs
(:mod:`vdrm.drivers`), talking to each through :class:`~vdrm.drm.gpu.GpuDevice`, and plays
its timeline as the clock moves.

The same file at the same virtual time always gives the same bytes in every file of the
tree: pids, inode numbers, mount ids and fd flags all come from the file or from fixed
defaults, never from the host.

Emulated pids cannot collide with real ones: the file says ``pid = N`` and the process
appears as ``PID_BASE + N`` with ``PID_BASE = 4194304``, the kernel's ``PID_MAX_LIMIT``
on 64-bit machines, above which no real pid can ever exist.
"""
