"""What one daemon lets its clients hold: caps that keep its memory bounded.

The kernel has no such caps of its own: it runs out of memory (``ENOMEM``), out of ids
(``ENOSPC``) or out of file descriptors (``EMFILE``) when a client asks for too much. A
user-space emulator pays far more per object (about 5 KiB of Python per client and 3 KiB
per BO), so vdrm sets explicit limits and answers their exhaustion the way the kernel
answers its own:

======================  ========  =========================================================
limit                   default   when reached
======================  ========  =========================================================
``clients``             1024      open(2) of a DRM node: ``EMFILE`` (as RLIMIT_NOFILE would)
``bos``                 65536     CREATE_BO / GEM_OPEN anywhere on the device: ``ENOMEM``
``bos_per_client``      16384     a new handle in one client: ``ENOSPC`` (its handle space)
``label_bytes``         1 MiB     SET_LABEL_BO past this many label bytes per client: ``ENOMEM``
``jobs_per_client``     256       SUBMIT with this many of the client's jobs in flight: ``ENOMEM``
``reply_bytes``         64 KiB    unread replies kept per open file; older ones are dropped
                                  and replaced by one ``error ENOBUFS`` line
``ram_size`` (--ram)    64 GiB    the emulated RAM cannot be made larger (its page map costs
                                  one byte per page: 16 MiB at the cap)
======================  ========  =========================================================

With every default reached the daemon holds at most about 1024 × 69 KiB (clients with
full reply queues) + 65536 × 3 KiB (BOs) + 1024 × 1 MiB of labels in the very worst
case; the label cap is per client so a single client stays near 17 MiB + 1 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass

from vdrm.errors import InvalidArgument

MAX_RAM_SIZE = 64 << 30  # bytes of emulated RAM at most (one map byte per 4 KiB page)


@dataclass(frozen=True)
class Limits:
    """The caps of one device (see the module documentation for what each answers)."""

    clients: int = 1024
    bos: int = 65536
    bos_per_client: int = 16384
    label_bytes: int = 1 << 20
    jobs_per_client: int = 256
    reply_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        for name in ("clients", "bos", "bos_per_client", "label_bytes", "jobs_per_client", "reply_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgument(f"limit {name} must be a positive integer, not {value!r}")
