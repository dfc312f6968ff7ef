"""The ioctl table (``struct drm_ioctl_desc``) and the DRM core's own ioctls.

pyfuse3 has no ioctl, so vdrm's clients send each ioctl as a request line (see
:mod:`vdrm.fs.protocol`). What an ioctl takes and returns is declared once here, as an
:class:`Ioctl` with typed :class:`Arg` s; the protocol parses a line against the
declaration and calls the handler with Python values. Handlers take the calling
:class:`~vdrm.drm.file.DrmFile` and keyword arguments, raise :mod:`vdrm.errors` on
failure, and return a dict of results (ints or strings) in reply order.

Argument kinds:

``u32`` / ``u64`` / ``s64``
    integers in decimal or ``0x`` hex, range-checked like the kernel struct field.
``size``
    a u64 byte count with an optional ``K``/``M``/``G`` suffix (powers of 1024).
``flags``
    names from ``Arg.names`` joined by ``,`` or ``|`` (or a plain number).
``enum``
    one name from ``Arg.names`` (or a plain number).
``duration``
    nanoseconds, with an optional ``ns``/``us``/``ms``/``s`` suffix.
``list``
    integers separated by ``,`` (may be empty).
``str``
    the rest of a ``key=value`` token; the protocol allows ``%XX`` escapes for spaces.

The generic DRM ioctls every driver gets live at the bottom of this module.

An ioctl a release does not have (``SET_CLIENT_NAME`` before 6.13) is refused the way
``drm_ioctl`` refuses a number past the end of its table or without a function: EINVAL
(its ``retcode`` starts as ``-EINVAL``; ``drm_ioctl()`` in ``drm_ioctl.c``).
:func:`require` is that check, keyed by a row of the driver's release table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from vdrm.drm import gem, releases

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile

ARG_KINDS = ("u32", "u64", "s64", "size", "flags", "enum", "duration", "list", "str")


@dataclass(frozen=True)
class Arg:
    """One input field of an ioctl."""

    name: str
    kind: str
    doc: str = ""
    default: Any = None  # None: the argument is required
    names: Mapping[str, int] = field(default_factory=dict)  # for flags / enum

    def __post_init__(self) -> None:
        if self.kind not in ARG_KINDS:
            raise ValueError(f"unknown argument kind {self.kind!r}")

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class Ioctl:
    """``struct drm_ioctl_desc``: a named request, its arguments and its handler."""

    name: str
    args: tuple[Arg, ...]
    handler: Callable[..., dict[str, Any]]
    doc: str
    hex_results: frozenset[str] = frozenset()  # result keys printed as 0x... (addresses)

    def arg(self, name: str) -> Arg | None:
        for a in self.args:
            if a.name == name:
                return a
        return None


def require(file: "DrmFile", feature: str, what: str) -> None:
    """EINVAL, as ``drm_ioctl`` answers an ioctl its kernel lacks, unless the emulated
    release has ``feature`` (``Driver.has``)."""
    from vdrm.errors import InvalidArgument

    if not file.dev.driver.has(feature):
        raise InvalidArgument(f"{what} is not in this kernel (it has no {feature}): drm_ioctl returns EINVAL")


def _gem_close(file: "DrmFile", handle: int, pad: int) -> dict[str, Any]:
    from vdrm.errors import InvalidArgument

    if pad:
        raise InvalidArgument("pad must be zero")
    gem.handle_delete(file, handle)
    return {}


def _gem_flink(file: "DrmFile", handle: int) -> dict[str, Any]:
    return {"name": gem.flink(file, handle)}


def _gem_open(file: "DrmFile", name: int) -> dict[str, Any]:
    handle, size = gem.gem_open(file, name)
    return {"handle": handle, "size": size}


def _set_client_name(file: "DrmFile", name: str) -> dict[str, Any]:
    require(file, releases.CLIENT_NAME, "DRM_IOCTL_SET_CLIENT_NAME")
    file.set_client_name(name)
    return {}


def _version(file: "DrmFile") -> dict[str, Any]:
    drv = file.dev.driver
    major, minor, patch = drv.version
    return {"major": major, "minor": minor, "patchlevel": patch, "name": drv.name,
            "date": drv.date, "desc": drv.desc}


CORE_IOCTLS: tuple[Ioctl, ...] = (
    Ioctl("GEM_CLOSE", (Arg("handle", "u32", "the handle to drop"),
                        Arg("pad", "u32", "must be 0", default=0)),
          _gem_close, "Drop a GEM handle; the object dies with its last reference."),
    Ioctl("GEM_FLINK", (Arg("handle", "u32", "the handle to name"),),
          _gem_flink, "Give the object a global name other clients can GEM_OPEN."),
    Ioctl("GEM_OPEN", (Arg("name", "u32", "a global name from GEM_FLINK"),),
          _gem_open, "Open a named object: a new handle to the same memory."),
    Ioctl("SET_CLIENT_NAME", (Arg("name", "str", "printable ASCII, no spaces, <= 64 bytes; empty clears", default=""),),
          _set_client_name, "Set drm-client-name (kernel 6.13+)."),
    Ioctl("VERSION", (), _version, "The driver's name and version."),
)
