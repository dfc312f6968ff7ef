"""The ioctl table (``struct drm_ioctl_desc``), the one dispatch, and ``drm_ioctl()``.

Mirrors ``drivers/gpu/drm/drm_ioctl.c`` (6.6 .. 7.0): the core ioctls, the permission
check (``drm_ioctl_permit``), and the binary entry point that decodes a request number.

**One declaration, two doors.** Each ioctl is one :class:`Ioctl`: its name, its typed
:class:`Arg` s (the text grammar, :mod:`vdrm.drm.grammar`), its request number and struct
layout (:mod:`vdrm.drm.uapi`, the kernel's field names), its ``drm_ioctl_desc`` flags,
``since`` (a feature of the driver's release table, asked with ``Driver.has``) and its
handler. The text protocol (:mod:`vdrm.fs.protocol`) parses a line into a
:class:`Request`; :func:`drm_ioctl` decodes a binary struct from user memory into the same
:class:`Request`; both call :func:`dispatch`, the one place that checks ``since`` and the
flags and calls the handler. Handlers take the :class:`~vdrm.drm.file.DrmFile` and keyword
arguments, raise :mod:`vdrm.errors` and return a dict of results.

How struct fields and arguments meet: an input field and the argument of the same name
are one value. Fields that only carry a length for a pointer (``bo_handle_count``) have no
argument; arguments marked ``vdrm_only`` (SUBMIT's ``engine``/``duration``/``touch``) have
no field, and binary callers get their defaults. Output fields take the handler's result
of their name (or ``Field.result``); output string buffers (VERSION) take a string result.
:func:`build_table` refuses a declaration where these do not match.

``drm_ioctl`` as the kernel does it (6.6+):

* a request whose type is not ``'d'`` is ENOTTY; every other unknown number is EINVAL: past
  the core table or a hole in it, past the driver's table (DRM_COMMAND_BASE 0x40 ..
  DRM_COMMAND_END 0xa0), or an ioctl the emulated release does not have yet (``since``);
* the user's size rules: the kernel reads ``_IOC_SIZE(cmd)`` bytes if both the user's and
  the kernel's numbers have ``IOC_IN``, zero-fills up to the larger of the two sizes, and
  writes back ``_IOC_SIZE(cmd)`` bytes if both have ``IOC_OUT`` -- so an older, shorter
  struct gets zeros for the new fields (SUBMIT grew from 40 to 48 bytes in 1.5) and a
  longer one gets its extra bytes back unchanged;
* the copy-out happens whether the handler succeeded or not, and a failed copy-out makes
  the result EFAULT even though the handler's work stands (a BO created whose handle could
  not be returned stays in the file until it closes, as in the kernel);
* a number the release lacks is EINVAL before anything is read; a bad struct pointer is
  EFAULT before the flags are checked; a refused call (EACCES) never reads the pointers
  *inside* the struct. Those (``bo_handles``, ``label``) are read after the checks but
  before the handler's own, so a request both invalid and faulting answers EFAULT where
  the kernel's handler might answer EINVAL first.

Sources followed (facts, not code): ``drm_ioctl()``, ``drm_ioctl_permit()``, the
``drm_ioctls[]`` flags, ``drm_getcap``, ``drm_setclientcap``, ``drm_setversion``,
``drm_copy_field`` and ``drm_getunique`` from a 6.6 ``drivers/gpu/drm/drm_ioctl.c``;
``drm_auth.c`` (torvalds/linux) for GET_MAGIC/AUTH_MAGIC and master handling; struct
layouts from ``include/uapi/drm/drm.h`` and ``panfrost_drm.h`` (torvalds/linux, plus the
1.4/1.5 additions in the project's kernel reference, section 3.1, and the JM context
series on dri-devel, Sep 2025: the merged ``drm_panfrost_jm_ctx_create`` is 8 bytes).

Differences from the kernel, on purpose: core ioctls vdrm does not declare (legacy, mode
setting, SYNCOBJ) answer EINVAL as a hole in the table would; PRIME_HANDLE_TO_FD /
FD_TO_HANDLE check their arguments and then answer EOPNOTSUPP, because installing a
dma-buf fd in the caller needs the process bridge.
"""

from __future__ import annotations

import errno as _errno
import re
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from vdrm.drm import auth, gem, grammar, releases
from vdrm.drm.uaccess import USER_ADDR_MAX, UserMemory, copy_from_user, copy_to_user
from vdrm.drm.uapi import (DRM_COMMAND_BASE, DRM_COMMAND_END, DRM_IO, DRM_IOCTL_BASE, DRM_IOR,
                           DRM_IOW, DRM_IOWR, IOC_IN, IOC_OUT, Field, IoctlNumber, Struct,
                           UserArray, UserBuffer, UserBytes, UserString, ioc_nr, ioc_size, ioc_type)
from vdrm.errors import (AccessDenied, BadAddress, InvalidArgument, NoEntry, NotSupported,
                         VdrmError)

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile

ARG_KINDS = grammar.KINDS

# drm_ioctl_desc flags (include/drm/drm_ioctl.h)
DRM_AUTH = 0x1
DRM_MASTER = 0x2
DRM_ROOT_ONLY = 0x4
DRM_UNLOCKED = 0x10  # legacy: every modern ioctl is unlocked; kept for the table's look
DRM_RENDER_ALLOW = 0x20
FLAG_NAMES = {"AUTH": DRM_AUTH, "MASTER": DRM_MASTER, "ROOT_ONLY": DRM_ROOT_ONLY,
              "UNLOCKED": DRM_UNLOCKED, "RENDER_ALLOW": DRM_RENDER_ALLOW}

RENDER_MINOR_BASE = 128  # minors 128..191 are render nodes


@dataclass(frozen=True)
class Arg:
    """One input of an ioctl: a struct field's value, or a vdrm-only knob (``vdrm_only``)."""

    name: str
    kind: str
    doc: str = ""
    default: Any = None  # None: the argument is required
    names: Mapping[str, int] = field(default_factory=dict)  # for flags / enum
    vdrm_only: bool = False  # no struct field: binary callers get the default

    def __post_init__(self) -> None:
        if self.kind not in ARG_KINDS:
            raise ValueError(f"unknown argument kind {self.kind!r}")

    @property
    def required(self) -> bool:
        return self.default is None

    def parse(self, text: str) -> Any:
        """The value of ``text`` for this argument (:data:`vdrm.drm.grammar.PARSERS`)."""
        return grammar.parse_value(self, text)

    def default_value(self) -> Any:
        """The declared default as the handler receives it (a fresh list for lists)."""
        if isinstance(self.default, str) and self.kind != "str":
            return self.parse(self.default)
        if self.kind == "list":
            return list(self.default)
        return self.default


@dataclass(frozen=True)
class Ioctl:
    """``struct drm_ioctl_desc``: a named request, its arguments, number, flags and handler."""

    name: str
    args: tuple[Arg, ...]
    handler: Callable[..., dict[str, Any]]
    doc: str
    hex_results: frozenset[str] = frozenset()  # result keys printed as 0x... (addresses)
    number: IoctlNumber | None = None  # None: a text-only request (tests, HELP)
    flags: int = DRM_RENDER_ALLOW  # every Panfrost ioctl's; core ioctls declare theirs
    since: str | None = None  # a feature of the driver's release table; None: always there

    def arg(self, name: str) -> Arg | None:
        for a in self.args:
            if a.name == name:
                return a
        return None

    @property
    def cmd(self) -> int | None:
        """The request code userspace passes to ioctl(2), e.g. 0xC0186442 for CREATE_BO."""
        return self.number.cmd if self.number else None

    @property
    def struct(self) -> Struct | None:
        return self.number.struct if self.number else None

    @property
    def flag_names(self) -> str:
        return "|".join(n for n, v in FLAG_NAMES.items() if self.flags & v) or "0"


@dataclass(frozen=True)
class Request:
    """A decoded request, text or binary: the ioctl and its arguments, every one present.

    A binary request's user-pointer arguments are :class:`UserRead` s until
    :func:`dispatch` has admitted the call: the kernel copies them in from the handler,
    after ``drm_ioctl_permit``, so a refused call never touches them.
    """

    ioctl: Ioctl
    args: dict[str, Any]


@dataclass(frozen=True)
class UserRead:
    """An argument still in user memory: ``read()`` copies it in (BadAddress: EFAULT)."""

    read: Callable[[], Any]


# -- the one dispatch -------------------------------------------------------------------


def is_render_client(file: "DrmFile") -> bool:
    return file.minor >= RENDER_MINOR_BASE


def permit(flags: int, file: "DrmFile") -> None:
    """``drm_ioctl_permit``: AccessDenied (EACCES) unless the caller may run ``flags``.

    In the kernel's order: ROOT_ONLY needs CAP_SYS_ADMIN (vdrm: uid 0); AUTH needs an
    authenticated primary client (render clients pass); MASTER the current master;
    without RENDER_ALLOW render clients are refused.
    """
    if flags & DRM_ROOT_ONLY and file.uid != 0:
        raise AccessDenied("needs CAP_SYS_ADMIN (DRM_ROOT_ONLY)")
    if flags & DRM_AUTH and not is_render_client(file) and not file.authenticated:
        raise AccessDenied("this card0 client is not authenticated (DRM_AUTH: GET_MAGIC, then the "
                           "master's AUTH_MAGIC)")
    if flags & DRM_MASTER and not auth.is_current_master(file):
        raise AccessDenied("only the DRM master may do this (DRM_MASTER)")
    if not flags & DRM_RENDER_ALLOW and is_render_client(file):
        raise AccessDenied("not allowed on a render node (no DRM_RENDER_ALLOW; use card0)")


def available(file: "DrmFile", ioctl: Ioctl) -> bool:
    """Whether the emulated release has ``ioctl`` (``since`` in the driver's release table)."""
    return ioctl.since is None or file.dev.driver.has(ioctl.since)


def dispatch(file: "DrmFile", request: Request) -> dict[str, Any]:
    """Run one decoded request: ``since``, then the flags, then the handler.

    Raises the handler's :class:`~vdrm.errors.VdrmError` (or WouldBlock) unchanged; the
    caller (text protocol or :func:`drm_ioctl`) converts it to its reply, once.
    """
    ioctl = request.ioctl
    if not available(file, ioctl):
        raise InvalidArgument(f"{ioctl.name} does not exist in this kernel release "
                              f"(it arrives with {ioctl.since})")
    permit(ioctl.flags, file)
    args = {k: v.read() if isinstance(v, UserRead) else v for k, v in request.args.items()}
    return ioctl.handler(file, **args)


# -- the table ----------------------------------------------------------------------------


class IoctlTable(dict):
    """``name -> Ioctl`` in declaration order, plus the binary index ``by_nr``."""

    def __init__(self) -> None:
        super().__init__()
        self.by_nr: dict[int, Ioctl] = {}

    def lookup_nr(self, nr: int) -> Ioctl | None:
        return self.by_nr.get(nr)


_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_KEY = re.compile(r"[a-z][a-z0-9_]*")
_FLAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")  # engine names have a dash

# which C types can carry which argument kinds (a pointer field carries list / str)
_FIELD_KINDS: Mapping[str, frozenset[str]] = {
    "u8": frozenset({"u32", "enum"}),  # the handler refuses a text value above 255
    "u32": frozenset({"u32", "flags", "enum", "size"}),
    "u64": frozenset({"u64", "size", "flags", "enum", "u32"}),
    "s64": frozenset({"s64", "duration"}),
    "s32": frozenset({"s64", "u32"}),
}


def _check_default(arg: Arg) -> None:
    """A default must have the handler's type; it may lie outside what a user can type
    (``engine=-1``: derive it), so that a handler can tell "left out" apart."""
    default = arg.default_value()
    if arg.kind == "str":
        if not isinstance(default, str):
            raise TypeError("not a str")
        return
    for value in default if arg.kind == "list" else [default]:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{value!r} is not an int")


def _check_struct(ioctl: Ioctl) -> None:
    struct = ioctl.struct
    where = f"{ioctl.name}"
    if struct is None:
        bad = [a.name for a in ioctl.args if not a.vdrm_only]
        if bad:
            raise ValueError(f"{where}: arguments {bad} have no struct (DRM_IO) to travel in")
        return
    counts = struct.count_fields
    for arg in ioctl.args:
        f = struct.field(arg.name)
        if arg.vdrm_only:
            if f is not None:
                raise ValueError(f"{where}.{arg.name}: vdrm-only, but {struct.name} has that field")
            continue
        if f is None:
            raise ValueError(f"{where}.{arg.name}: no field of that name in {struct.name} "
                             "(declare it vdrm_only if binary callers take the default)")
        if not f.is_input:
            raise ValueError(f"{where}.{arg.name}: {struct.name}.{f.name} is an output field")
        if f.pointer is not None:
            want = {"list": "UserArray", "str": "UserString/UserBytes"}.get(arg.kind)
            ok = (arg.kind == "list" and isinstance(f.pointer, UserArray)) or \
                 (arg.kind == "str" and isinstance(f.pointer, (UserString, UserBytes))) or \
                 (arg.kind in ("u64",) and type(f.pointer).__name__ == "UserAddress")
            if not ok:
                raise ValueError(f"{where}.{arg.name}: a {arg.kind} cannot travel in pointer "
                                 f"{type(f.pointer).__name__} (want {want or 'a plain field'})")
        elif arg.kind not in _FIELD_KINDS.get(f.ctype, frozenset()):
            raise ValueError(f"{where}.{arg.name}: a {arg.kind} cannot travel in a {f.ctype} field")
    for f in struct:
        if f.name in counts or not f.is_input or isinstance(f.pointer, UserBuffer):
            continue
        if ioctl.arg(f.name) is None:
            raise ValueError(f"{where}: {struct.name}.{f.name} is an input field without an argument")


def check_declaration(ioctl: Ioctl) -> None:
    """ValueError for a declaration neither door could serve (see :func:`build_table`)."""
    if not _NAME.fullmatch(ioctl.name):
        raise ValueError(f"ioctl name {ioctl.name!r} is not an upper-case name")
    seen: set[str] = set()
    for arg in ioctl.args:
        if not _KEY.fullmatch(arg.name) or arg.name in seen:
            raise ValueError(f"{ioctl.name}: argument {arg.name!r} is not a unique lower-case name")
        seen.add(arg.name)
        if arg.kind in ("flags", "enum"):
            upper = [n.upper() for n in arg.names]
            if not arg.names or len(set(upper)) != len(upper) or not all(map(_FLAG_NAME.fullmatch, arg.names)):
                raise ValueError(f"{ioctl.name}.{arg.name}: {arg.kind} needs unique names")
            if not all(isinstance(v, int) and 0 <= v <= grammar.U32_MAX for v in arg.names.values()):
                raise ValueError(f"{ioctl.name}.{arg.name}: {arg.kind} values must be u32")
        if not arg.required:
            try:
                _check_default(arg)
            except (VdrmError, TypeError, ValueError) as e:
                raise ValueError(f"{ioctl.name}.{arg.name}: bad default {arg.default!r}: {e}") from None
    for key in ioctl.hex_results:
        if not _KEY.fullmatch(key):
            raise ValueError(f"{ioctl.name}: hex result {key!r} is not a lower-case name")
    if ioctl.flags & ~sum(FLAG_NAMES.values()):
        raise ValueError(f"{ioctl.name}: unknown drm_ioctl_desc flag bits 0x{ioctl.flags:x}")
    if ioctl.since is not None and not (isinstance(ioctl.since, str) and ioctl.since):
        raise ValueError(f"{ioctl.name}: since is a feature name or None")
    if ioctl.number is not None:
        _check_struct(ioctl)


def build_table(*ioctl_groups: Iterable[Ioctl]) -> IoctlTable:
    """Merge groups of ioctls (core, driver, vdrm's own) into one checked table.

    Raises ValueError for: a name or a request number declared twice; a name that is not
    upper case; argument names that are not unique lower-case names; flags or enums
    without unique names and u32 values; a default of the wrong kind or that does not
    parse; unknown flag bits; and, for ioctls with a struct, an input field without an
    argument or an argument without a field (unless a pointer's count or ``vdrm_only``),
    or a kind that cannot travel in its field's C type.
    """
    table = IoctlTable()
    for group in ioctl_groups:
        for ioctl in group:
            check_declaration(ioctl)
            if ioctl.name in table:
                raise ValueError(f"ioctl {ioctl.name} declared twice")
            if ioctl.number is not None:
                nr = ioctl.number.nr
                if nr in table.by_nr:
                    raise ValueError(f"ioctl {ioctl.name}: number 0x{nr:02x} is already "
                                     f"{table.by_nr[nr].name}")
                table.by_nr[nr] = ioctl
            table[ioctl.name] = ioctl
    return table


# -- the binary door ----------------------------------------------------------------------


def decode(ioctl: Ioctl, kdata: bytes, mem: UserMemory) -> tuple[Request, dict[str, int]]:
    """The :class:`Request` a binary struct carries, and its raw field values.

    Pointer fields become :class:`UserRead` s of ``mem``, read once the call is admitted;
    vdrm-only arguments take their defaults.
    """
    struct = ioctl.struct
    values = struct.unpack(kdata[:struct.size]) if struct else {}
    args: dict[str, Any] = {}
    for arg in ioctl.args:
        f = struct.field(arg.name) if struct and not arg.vdrm_only else None
        if f is None:
            args[arg.name] = arg.default_value()
        elif f.pointer is not None:
            args[arg.name] = UserRead(partial(f.pointer.read, mem, values[f.name], values))
        else:
            args[arg.name] = values[f.name]
    return Request(ioctl, args), values


def encode(ioctl: Ioctl, values: dict[str, int], results: Mapping[str, Any], mem: UserMemory) -> bytes:
    """The struct to copy back: output fields from ``results``, string buffers written."""
    struct = ioctl.struct
    if struct is None:
        return b""
    out = dict(values)
    for f in struct:
        if not f.is_output and not isinstance(f.pointer, UserBuffer):
            continue
        key = f.result_key
        if key not in results:
            continue
        if isinstance(f.pointer, UserBuffer):
            f.pointer.write(mem, values[f.name], out, results[key])
        else:
            out[f.name] = int(results[key])
    return struct.pack(out)


def drm_ioctl(file: "DrmFile", cmd: int, argp: int, mem: UserMemory) -> int:
    """``drm_ioctl()``: run binary request ``cmd`` with its struct at user address ``argp``.

    ``mem`` is the caller's memory (:class:`~vdrm.drm.uaccess.UserMemory`). Returns 0 or a
    negative errno, as the kernel's ``drm_ioctl`` does (``-errno.EINVAL`` ...): every
    :class:`~vdrm.errors.VdrmError` is converted here. :class:`~vdrm.errors.WouldBlock`
    (WAIT_BO on the real clock) is raised through, for the caller to wait without blocking
    others and call again; any other exception is a vdrm bug, also raised through.

    The caller owns the fd-level view: ``file`` is the DRM file behind the fd (a dup'd fd
    is the same file); the bridge turns the return value into the syscall's result.
    """
    cmd &= 0xFFFF_FFFF  # unsigned int cmd
    argp &= USER_ADDR_MAX  # unsigned long arg
    if ioc_type(cmd) != DRM_IOCTL_BASE:
        return -_errno.ENOTTY
    table = file.dev.ioctls if file.dev.ioctls is not None else core_table()
    ioctl = table.lookup_nr(ioc_nr(cmd))
    if ioctl is None or ioctl.number is None or not available(file, ioctl):
        return -_errno.EINVAL
    drv_size = ioctl.number.size
    in_size = out_size = ioc_size(cmd)
    if not cmd & ioctl.number.cmd & IOC_IN:
        in_size = 0
    if not cmd & ioctl.number.cmd & IOC_OUT:
        out_size = 0
    ksize = max(in_size, out_size, drv_size)
    try:
        kdata = copy_from_user(mem, argp, in_size)
    except BadAddress:
        return -_errno.EFAULT
    kdata += bytes(ksize - in_size)
    ret = 0
    try:
        request, values = decode(ioctl, kdata, mem)
        results = dispatch(file, request)
        kdata = encode(ioctl, values, results, mem) + kdata[drv_size:]
    except VdrmError as e:
        ret = -e.errno
    try:
        copy_to_user(mem, argp, kdata[:out_size])
    except BadAddress:
        ret = -_errno.EFAULT
    return ret


# -- the core ioctls ---------------------------------------------------------------------

# include/uapi/drm/drm.h (LP64 layouts)
DRM_VERSION = Struct("drm_version", (
    Field("version_major", "s32", "out", result="major"),
    Field("version_minor", "s32", "out", result="minor"),
    Field("version_patchlevel", "s32", "out", result="patchlevel"),
    Field("name_len", "u64", "inout"),
    Field("name", "u64", pointer=UserBuffer("name_len")),
    Field("date_len", "u64", "inout"),
    Field("date", "u64", pointer=UserBuffer("date_len")),
    Field("desc_len", "u64", "inout"),
    Field("desc", "u64", pointer=UserBuffer("desc_len")),
))
DRM_UNIQUE = Struct("drm_unique", (
    Field("unique_len", "u64", "inout"),
    Field("unique", "u64", pointer=UserBuffer("unique_len", whole=True)),
))
DRM_AUTH_OUT = Struct("drm_auth", (Field("magic", "u32", "out"),))  # GET_MAGIC's view
DRM_AUTH_IN = Struct("drm_auth", (Field("magic", "u32"),))  # AUTH_MAGIC's view
DRM_SET_VERSION = Struct("drm_set_version", (
    Field("drm_di_major", "s32", "inout"), Field("drm_di_minor", "s32", "inout"),
    Field("drm_dd_major", "s32", "inout"), Field("drm_dd_minor", "s32", "inout"),
))
DRM_GET_CAP = Struct("drm_get_cap", (Field("capability", "u64"), Field("value", "u64", "out")))
DRM_SET_CLIENT_CAP = Struct("drm_set_client_cap", (Field("capability", "u64"), Field("value", "u64")))
DRM_GEM_CLOSE = Struct("drm_gem_close", (Field("handle", "u32"), Field("pad", "u32")))
DRM_GEM_FLINK = Struct("drm_gem_flink", (Field("handle", "u32"), Field("name", "u32", "out")))
DRM_GEM_OPEN = Struct("drm_gem_open", (Field("name", "u32"), Field("handle", "u32", "out"),
                                       Field("size", "u64", "out")))
DRM_PRIME_HANDLE = Struct("drm_prime_handle", (Field("handle", "u32", "inout"), Field("flags", "u32"),
                                               Field("fd", "s32", "inout")))
DRM_SET_CLIENT_NAME = Struct("drm_set_client_name", (
    Field("name_len", "u64"),
    Field("name", "u64", pointer=UserBytes("name_len", limit=64)),
))

# capabilities (drm.h)
DRM_CAP_DUMB_BUFFER = 0x1
DRM_CAP_PRIME = 0x5
DRM_PRIME_CAP_IMPORT = 0x1
DRM_PRIME_CAP_EXPORT = 0x2
DRM_CAP_TIMESTAMP_MONOTONIC = 0x6
DRM_CAP_SYNCOBJ = 0x13
DRM_CAP_SYNCOBJ_TIMELINE = 0x14
DRM_CLOEXEC = 0o2000000  # O_CLOEXEC
DRM_RDWR = 0o2  # O_RDWR
DRM_IF_MAJOR, DRM_IF_MINOR = 1, 4


def _version(file: "DrmFile") -> dict[str, Any]:
    drv = file.dev.driver
    major, minor, patch = drv.version
    return {"major": major, "minor": minor, "patchlevel": patch, "name": drv.name,
            "date": drv.date, "desc": drv.desc}


def _get_cap(file: "DrmFile", capability: int) -> dict[str, Any]:
    """drm_getcap for a render-only driver (no DRIVER_MODESET): four caps, else EOPNOTSUPP."""
    features = file.dev.driver.driver_features
    if capability == DRM_CAP_TIMESTAMP_MONOTONIC:
        value = 1
    elif capability == DRM_CAP_PRIME:
        value = DRM_PRIME_CAP_IMPORT | DRM_PRIME_CAP_EXPORT
    elif capability == DRM_CAP_SYNCOBJ:
        value = int("SYNCOBJ" in features)
    elif capability == DRM_CAP_SYNCOBJ_TIMELINE:
        value = int("SYNCOBJ_TIMELINE" in features)
    elif "MODESET" not in features:
        raise NotSupported(f"capability 0x{capability:x} needs a mode-setting driver")
    else:
        raise InvalidArgument(f"unknown capability 0x{capability:x}")
    return {"value": value}


def _set_client_cap(file: "DrmFile", capability: int, value: int) -> dict[str, Any]:
    """drm_setclientcap: every client cap is about mode setting, which this driver lacks."""
    raise NotSupported(f"client capability {capability} needs a mode-setting driver")


def _set_version(file: "DrmFile", drm_di_major: int, drm_di_minor: int, drm_dd_major: int,
                 drm_dd_minor: int) -> dict[str, Any]:
    """drm_setversion: checks the requested interface and driver versions, answers the real ones.

    Interface 1.1 or later ties the master to the device: its unique name is set (what
    GET_UNIQUE answers afterwards).
    """
    drv = file.dev.driver
    results = {"drm_di_major": DRM_IF_MAJOR, "drm_di_minor": DRM_IF_MINOR,
               "drm_dd_major": drv.version[0], "drm_dd_minor": drv.version[1]}
    if drm_di_major != -1:
        if drm_di_major != DRM_IF_MAJOR or not 0 <= drm_di_minor <= DRM_IF_MINOR:
            raise InvalidArgument(f"interface {drm_di_major}.{drm_di_minor} is not 1.0 .. 1.{DRM_IF_MINOR}")
        if drm_di_minor >= 1:
            auth.set_busid(file)
    if drm_dd_major != -1:
        if drm_dd_major != drv.version[0] or not 0 <= drm_dd_minor <= drv.version[1]:
            raise InvalidArgument(f"driver {drm_dd_major}.{drm_dd_minor} is not "
                                  f"{drv.version[0]}.0 .. {drv.version[0]}.{drv.version[1]}")
    return results


def _get_unique(file: "DrmFile") -> dict[str, Any]:
    return {"unique": auth.unique(file)}


def _get_magic(file: "DrmFile") -> dict[str, Any]:
    return {"magic": auth.get_magic(file)}


def _auth_magic(file: "DrmFile", magic: int) -> dict[str, Any]:
    auth.auth_magic(file, magic)
    return {}


def _set_master(file: "DrmFile") -> dict[str, Any]:
    auth.set_master(file)
    return {}


def _drop_master(file: "DrmFile") -> dict[str, Any]:
    auth.drop_master(file)
    return {}


def advance(file: "DrmFile", by: int) -> dict[str, Any]:
    """vdrm's ADVANCE, the same on every driver: one step of the machine's virtual clock
    (every client of every GPU sees it); the mount's owner and root only."""
    drv = file.dev.driver
    if file.uid not in (0, drv.owner_uid):
        raise AccessDenied(f"only the mount's owner (uid {drv.owner_uid}) and root may advance "
                           "the device-wide clock")
    now = drv.timeline.advance(by)
    return {"now_ns": now, "step_ns": by}

def _gem_close(file: "DrmFile", handle: int, pad: int) -> dict[str, Any]:
    if pad:
        raise InvalidArgument("pad must be zero")
    gem.handle_delete(file, handle)
    return {}


def _gem_flink(file: "DrmFile", handle: int) -> dict[str, Any]:
    return {"name": gem.flink(file, handle)}


def _gem_open(file: "DrmFile", name: int) -> dict[str, Any]:
    handle, size = gem.gem_open(file, name)
    return {"handle": handle, "size": size}


def _prime_handle_to_fd(file: "DrmFile", handle: int, flags: int, fd: int) -> dict[str, Any]:
    """Checks like drm_gem_prime_handle_to_fd, then EOPNOTSUPP: no dma-buf fd can be made."""
    if flags & ~(DRM_CLOEXEC | DRM_RDWR):
        raise InvalidArgument(f"unknown flags 0x{flags:x} (DRM_CLOEXEC, DRM_RDWR)")
    file.handles.lookup(handle)
    raise NotSupported("vdrm cannot install a dma-buf fd in the caller (PRIME export is not emulated)")


def _prime_fd_to_handle(file: "DrmFile", handle: int, flags: int, fd: int) -> dict[str, Any]:
    raise NotSupported(f"fd {fd} is not a dma-buf vdrm knows (PRIME import is not emulated)")


def _set_client_name(file: "DrmFile", name: str) -> dict[str, Any]:
    file.set_client_name(name)
    return {}


_HANDLE = Arg("handle", "u32", "a GEM handle of this client")

CORE_IOCTLS: tuple[Ioctl, ...] = (
    Ioctl("GEM_CLOSE", (_HANDLE, Arg("pad", "u32", "must be 0", default=0)),
          _gem_close, "Drop a GEM handle; the object dies with its last reference.",
          number=DRM_IOW(0x09, DRM_GEM_CLOSE), flags=DRM_RENDER_ALLOW),
    Ioctl("GEM_FLINK", (Arg("handle", "u32", "the handle to name"),),
          _gem_flink, "Give the object a global name other clients can GEM_OPEN (card0, authenticated).",
          number=DRM_IOWR(0x0a, DRM_GEM_FLINK), flags=DRM_AUTH),
    Ioctl("GEM_OPEN", (Arg("name", "u32", "a global name from GEM_FLINK"),),
          _gem_open, "Open a named object: a new handle to the same memory (card0, authenticated).",
          number=DRM_IOWR(0x0b, DRM_GEM_OPEN), flags=DRM_AUTH),
    Ioctl("SET_CLIENT_NAME", (Arg("name", "str", "printable ASCII, no spaces, <= 64 bytes; empty clears",
                                  default=""),),
          _set_client_name, "Set drm-client-name (kernel 6.13+).",
          number=DRM_IOWR(0xD1, DRM_SET_CLIENT_NAME), flags=DRM_RENDER_ALLOW, since=releases.CLIENT_NAME),
    Ioctl("VERSION", (), _version, "The driver's name and version.",
          number=DRM_IOWR(0x00, DRM_VERSION), flags=DRM_RENDER_ALLOW),
    Ioctl("GET_UNIQUE", (), _get_unique, "The master's bus id (card0; empty before SET_VERSION 1.1+).",
          number=DRM_IOWR(0x01, DRM_UNIQUE), flags=0),
    Ioctl("GET_MAGIC", (), _get_magic, "This card0 client's authentication token for AUTH_MAGIC.",
          number=DRM_IOR(0x02, DRM_AUTH_OUT), flags=0),
    Ioctl("GET_CAP", (Arg("capability", "u64", "a DRM_CAP_* number (0x5 PRIME, 0x6 TIMESTAMP_MONOTONIC, "
                                                "0x13 SYNCOBJ, 0x14 SYNCOBJ_TIMELINE)"),),
          _get_cap, "A device capability (a render-only GPU answers four; others EOPNOTSUPP).",
          number=DRM_IOWR(0x0c, DRM_GET_CAP), flags=DRM_RENDER_ALLOW),
    Ioctl("SET_CLIENT_CAP", (Arg("capability", "u64", "a DRM_CLIENT_CAP_* number"),
                             Arg("value", "u64", "the value", default=1)),
          _set_client_cap, "A client capability (card0; all are mode-setting ones: EOPNOTSUPP here).",
          number=DRM_IOW(0x0d, DRM_SET_CLIENT_CAP), flags=0),
    Ioctl("SET_VERSION", (Arg("drm_di_major", "s64", "interface major (1), -1: do not check", default=-1),
                          Arg("drm_di_minor", "s64", "interface minor (0..4)", default=-1),
                          Arg("drm_dd_major", "s64", "driver major, -1: do not check", default=-1),
                          Arg("drm_dd_minor", "s64", "driver minor", default=-1)),
          _set_version, "Ask for an interface version (master only); 1.1+ sets the unique name.",
          number=DRM_IOWR(0x07, DRM_SET_VERSION), flags=DRM_MASTER),
    Ioctl("AUTH_MAGIC", (Arg("magic", "u32", "another client's GET_MAGIC token"),),
          _auth_magic, "Authenticate the client holding that magic (master only).",
          number=DRM_IOW(0x11, DRM_AUTH_IN), flags=DRM_MASTER),
    Ioctl("SET_MASTER", (), _set_master, "Become DRM master again (card0; EBUSY while another is).",
          number=DRM_IO(0x1e), flags=0),
    Ioctl("DROP_MASTER", (), _drop_master, "Give up DRM master (card0; EINVAL if not master).",
          number=DRM_IO(0x1f), flags=0),
    Ioctl("PRIME_HANDLE_TO_FD", (_HANDLE, Arg("flags", "u32", "DRM_CLOEXEC|DRM_RDWR", default=0),
                                 Arg("fd", "u32", "out", default=0)),
          _prime_handle_to_fd, "Export a BO as a dma-buf fd: refused (EOPNOTSUPP), vdrm makes no fds.",
          number=DRM_IOWR(0x2d, DRM_PRIME_HANDLE), flags=DRM_RENDER_ALLOW),
    Ioctl("PRIME_FD_TO_HANDLE", (Arg("handle", "u32", "out", default=0),
                                 Arg("flags", "u32", "unused", default=0),
                                 Arg("fd", "u32", "a dma-buf fd")),
          _prime_fd_to_handle, "Import a dma-buf fd: refused (EOPNOTSUPP), vdrm knows none.",
          number=DRM_IOWR(0x2e, DRM_PRIME_HANDLE), flags=DRM_RENDER_ALLOW),
)
"""The DRM core's ioctls, as ``drm_ioctls[]`` declares them (6.13+ for SET_CLIENT_NAME)."""

_CORE_TABLE: list[IoctlTable] = []


def core_table() -> IoctlTable:
    """The core ioctls alone: what a device without a driver table answers."""
    if not _CORE_TABLE:
        _CORE_TABLE.append(build_table(CORE_IOCTLS))
    return _CORE_TABLE[0]
