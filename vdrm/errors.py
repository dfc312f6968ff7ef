"""The engine's exceptions: one class per errno the emulated kernel returns.

Every failure inside ``vdrm.mm``, ``vdrm.drm``, ``vdrm.panfrost`` and ``vdrm.kernel`` is
raised as a subclass of :class:`VdrmError`. Each class carries the errno the kernel would
return (``EINVAL``, ``ENOMEM`` ...), so the edges convert it exactly once: the request
protocol turns it into ``error ENAME message`` and the FUSE adapter into
``FUSEError(errno)``. The message says what was wrong in words a user can act on.
"""

from __future__ import annotations

import errno as _errno


class VdrmError(Exception):
    """Base class: an operation the emulated kernel refuses. Never a vdrm bug."""

    errno: int = _errno.EIO

    @property
    def errname(self) -> str:
        """The errno's symbolic name, e.g. ``"EINVAL"``."""
        return _errno.errorcode.get(self.errno, f"E{self.errno}")


class InvalidArgument(VdrmError):
    """EINVAL: an argument breaks the kernel's rules (bad flags, sizes, offsets, state)."""

    errno = _errno.EINVAL


class NoEntry(VdrmError):
    """ENOENT: no such handle, name, object or mapping."""

    errno = _errno.ENOENT


class OutOfMemory(VdrmError):
    """ENOMEM: the emulated RAM (or a non-blocking allocation) could not be satisfied."""

    errno = _errno.ENOMEM


class NoSpace(VdrmError):
    """ENOSPC: an address range allocator (GPU VA, mmap offsets) has no hole big enough."""

    errno = _errno.ENOSPC


class Busy(VdrmError):
    """EBUSY: the object is in use and the caller asked not to wait."""

    errno = _errno.EBUSY


class TimedOut(VdrmError):
    """ETIMEDOUT: a wait reached its deadline with the object still busy."""

    errno = _errno.ETIMEDOUT


class AccessDenied(VdrmError):
    """EACCES: the operation is not allowed on this kind of object (e.g. vmap of sparse)."""

    errno = _errno.EACCES


class Exists(VdrmError):
    """EEXIST: the thing to create is already there (e.g. a populated sparse range)."""

    errno = _errno.EEXIST


class TooBig(VdrmError):
    """E2BIG: an argument is longer than the kernel accepts (e.g. a BO label)."""

    errno = _errno.E2BIG


class TooManyFiles(VdrmError):
    """EMFILE: the daemon's cap on open DRM clients is reached (:mod:`vdrm.drm.limits`)."""

    errno = _errno.EMFILE


class NoDevice(VdrmError):
    """ENODEV: a referenced device-side object (e.g. a sync object) does not exist."""

    errno = _errno.ENODEV


class NotSupported(VdrmError):
    """EOPNOTSUPP: the emulated configuration cannot do this."""

    errno = _errno.EOPNOTSUPP


class NotImplementedByKernel(VdrmError):
    """ENOSYS: the kernel would refuse the call outright (e.g. unstable perfcnt ioctls)."""

    errno = _errno.ENOSYS


class BadAddress(VdrmError):
    """EFAULT: a GPU or user address does not point at anything usable."""

    errno = _errno.EFAULT


class OperationNotPermitted(VdrmError):
    """EPERM: the caller may not do this (mmap of a NO_MMAP BO, a priority it lacks the right to)."""

    errno = _errno.EPERM


class Canceled(VdrmError):
    """ECANCELED: the target can take no more work (a Panthor group that timed out or faulted)."""

    errno = _errno.ECANCELED


class KernelBug(VdrmError):
    """EIO: an internal invariant broke (a kernel WARN/BUG); tests turn these into failures."""

    errno = _errno.EIO


class WouldBlock(Exception):
    """Not an error: the call must wait until the device clock reaches ``until_ns``.

    Raised by waits (WAIT_BO) on a real clock; the I/O layer sleeps and calls again.
    """

    def __init__(self, until_ns: int):
        super().__init__(f"would block until {until_ns} ns")
        self.until_ns = until_ns
