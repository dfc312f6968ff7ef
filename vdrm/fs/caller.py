"""Who sent the FUSE request being handled, and the open flags pyfuse3 cannot set.

A write to a DRM node is an ioctl, and its reply belongs to the thread that wrote it:
several processes sharing one open file (inherited, dup'd, passed) must each read their
own replies, as each gets its own ioctl's result from the kernel. pyfuse3 3.5 passes no
``RequestContext`` to ``read``, ``write`` or ``flush``, but every request's header carries
the sender's thread id, uid and gid; :file:`_caller.c` keeps a copy of the header of the
request being processed (how, and why that is exact, is in its comment).

The same shim adds two flags to OPEN and OPENDIR replies (:func:`open_flags`): no FLUSH
on close for files whose close vdrm does not need to see, and a listing the kernel may
cache for directories vdrm invalidates exactly (:meth:`vdrm.fs.tree.Tree.listing_cached`).

Import order matters: the shim must be loaded, with ``RTLD_GLOBAL``, before ``pyfuse3``
is, or pyfuse3 binds to libfuse directly and the shim sees nothing. ``vdrm.fs`` imports
this module first, and it is the only package that imports pyfuse3. :func:`active` says
whether it worked (it is false until the first request arrives); where it did not, every
caller reads as :data:`UNKNOWN` and an open file has one shared reply stream, as before.

:func:`sender` must be called before the handler's first ``await``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sender:
    """The thread that sent a request: ``tid`` 0 is unknown (no header, or a kernel request)."""

    tid: int
    uid: int
    gid: int


UNKNOWN = Sender(0, 0, 0)

_shim = None
_bound_too_late = "pyfuse3" in sys.modules  # imported before vdrm.fs: the shim cannot take effect
if not _bound_too_late:
    _flags = sys.getdlopenflags()
    try:
        sys.setdlopenflags(_flags | os.RTLD_GLOBAL | os.RTLD_NOW)
        from vdrm.fs import _caller as _shim  # type: ignore[attr-defined, no-redef]
    except ImportError as e:  # not built (a source tree without `pip install`)
        log.debug("per-writer routing is off: %s", e)
        _shim = None
    finally:
        sys.setdlopenflags(_flags)


def active() -> bool:
    """Whether request headers are seen (false before the first request, or if not loaded)."""
    return _shim is not None and _shim.seen() > 0


def why_inactive() -> str:
    """One line for the log when :func:`active` is false after requests were served."""
    if _bound_too_late:
        return "pyfuse3 was imported before vdrm.fs, so the request-header shim could not be bound"
    if _shim is None:
        return "the request-header shim vdrm.fs._caller is not built (pip install the package)"
    return "pyfuse3 does not call fuse_session_process_buf through the dynamic linker"


NOFLUSH, CACHE_READDIR, KEEP_CACHE = 1, 2, 4  # what open_flags() can add to a reply


def open_flags(fh: int, flags: int) -> None:
    """Have the OPEN or OPENDIR reply for ``fh`` also set ``flags`` (:data:`NOFLUSH`,
    :data:`CACHE_READDIR`, :data:`KEEP_CACHE`), which pyfuse3's FileInfo cannot express.
    Call it after the handler's last await. Without the shim, nothing is added: the
    kernel then sends FLUSH and re-reads listings, which costs requests, never exactness."""
    if _shim is not None and flags:
        _shim.open_flags(fh, flags)


def sender() -> Sender:
    """The sender of the request being handled; call it before the handler's first await."""
    if _shim is None:
        return UNKNOWN
    _opcode, _len, _unique, _nodeid, uid, gid, pid = _shim.current()
    return Sender(pid, uid, gid) if pid else UNKNOWN

