"""DRM fdinfo (``drm_show_fdinfo``, ``drm_show_memory_stats``, ``print_size``).

Renders what ``/proc/<pid>/fdinfo/<fd>`` shows for a DRM file, byte-exact, for a chosen
kernel version (``(major, minor)``). The eras that change the text:

* **≤ 6.6**: Panfrost has no ``show_fdinfo``; only the generic header lines appear (the
  DRM core's own ``drm-driver``/``drm-client-id`` lines need a driver hook in those
  kernels, so a Panfrost fd shows nothing DRM-specific at all).
* **6.5–6.6** ``print_size`` divides while the value is ≥ 1024 (truncating: 1536 → ``1 KiB``);
  **6.7+** divides only while the value is a non-zero exact multiple of 1024.
* **≤ 6.8** an object is shared when it has more than one handle; **6.9+** also when it
  was exported as a dma-buf.
* **≤ 6.13** ``resident``/``purgeable`` are printed as soon as any object has a status
  callback, and ``active`` always; **6.14+** each optional line appears only when some
  object actually reported that state (no objects: only total and shared).
* **6.13+** ``drm-client-name`` when userspace set one.

Each era is a row of :data:`vdrm.drm.releases.CORE`; the code asks the row, never
compares versions itself.

Line format: ``key:\\tvalue\\n`` (one tab). The generic header (``pos``, ``flags``,
``mnt_id``, ``ino``) comes from ``fs/proc/fd.c``; its values belong to the caller (the
open file), so they are arguments here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vdrm.drm import releases
from vdrm.drm.gem import OBJECT_ACTIVE, OBJECT_PURGEABLE, OBJECT_RESIDENT

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile
    from vdrm.drm.gem import GemObject

Version = tuple[int, int]

_UNITS = ("", " KiB", " MiB")


def format_size(size: int, version: Version, *, zero_has_unit: bool = False) -> str:
    """The value part of a memory line (``print_size``) in ``version``'s dialect.

    ``zero_has_unit`` is the intermediate revision the kernel documentation's example
    comes from, whose loop lacked the non-zero test, so 0 printed as ``0 MiB``.
    """
    unit = 0
    if releases.core_has(releases.FDINFO_EXACT_UNITS, version):
        while (size or zero_has_unit) and size % 1024 == 0 and unit < len(_UNITS) - 1:
            size //= 1024
            unit += 1
    else:
        while size >= 1024 and unit < len(_UNITS) - 1:
            size //= 1024
            unit += 1
    return f"{size}{_UNITS[unit]}"


def size_line(prefix: str, stat: str, region: str, size: int, version: Version, *,
              zero_has_unit: bool = False) -> str:
    """``drm_fdinfo_print_size``: ``<prefix>-<stat>-<region>:<tab><size><newline>``."""
    return f"{prefix}-{stat}-{region}:\t{format_size(size, version, zero_has_unit=zero_has_unit)}\n"


def header(*, pos: int, flags: int, mnt_id: int, ino: int) -> str:
    """The generic lines every fdinfo file starts with (``seq_show`` in fs/proc/fd.c)."""
    return f"pos:\t{pos}\nflags:\t0{flags:o}\nmnt_id:\t{mnt_id}\nino:\t{ino}\n"


@dataclass(frozen=True)
class MemoryStats:
    """``struct drm_memory_stats`` plus the status bits that decide which lines print."""

    shared: int = 0
    private: int = 0
    resident: int = 0
    purgeable: int = 0
    active: int = 0
    supported_status: int = 0

    @property
    def total(self) -> int:
        return self.shared + self.private


def is_shared(obj: "GemObject", version: Version) -> bool:
    """Shared for memory stats: more than one handle, or (6.9+) exported."""
    if obj.handle_count > 1:
        return True
    return releases.core_has(releases.FDINFO_SHARED_EXPORTED, version) and obj.exported


def memory_stats(file: "DrmFile", version: Version, *, use_rss: bool = True) -> MemoryStats:
    """Walk the file's handles (an object with two handles counts twice) and sum.

    ``use_rss=False`` is the revision before drivers had an ``rss`` callback: every
    category adds the object's full size.
    """
    shared = private = resident = purgeable = active = 0
    supported = 0
    any_status = False
    for _, obj in file.handles.items():
        add_size = obj.rss() if use_rss else None
        if add_size is None:
            add_size = obj.size
        if is_shared(obj, version):
            shared += obj.size
        else:
            private += obj.size
        if not obj.has_status():
            continue
        any_status = True
        status = obj.status()
        supported |= status
        if not status & OBJECT_RESIDENT:
            status &= ~OBJECT_PURGEABLE
        else:
            resident += add_size
        if obj.is_active():
            active += add_size
            supported |= OBJECT_ACTIVE
            status &= ~OBJECT_PURGEABLE
        if status & OBJECT_PURGEABLE:
            purgeable += add_size
    if not releases.core_has(releases.FDINFO_OPTIONAL_MEMORY, version):
        supported = (OBJECT_RESIDENT | OBJECT_PURGEABLE) if any_status else 0
    return MemoryStats(shared, private, resident, purgeable, active, supported)


def memory_lines(stats: MemoryStats, version: Version, region: str = "memory", *,
                 units: Version | None = None, zero_has_unit: bool = False) -> str:
    """``drm_print_memory_stats``: total, shared, [active], [resident], [purgeable].

    ``units`` picks the size-printing era independently of ``version`` (vdrm's switch to
    reproduce parsers' unit bugs); by default it follows ``version``.
    """
    units = units or version
    z = zero_has_unit
    out = [size_line("drm", "total", region, stats.total, units, zero_has_unit=z),
           size_line("drm", "shared", region, stats.shared, units, zero_has_unit=z)]
    if not releases.core_has(releases.FDINFO_OPTIONAL_MEMORY, version) or stats.supported_status & OBJECT_ACTIVE:
        out.append(size_line("drm", "active", region, stats.active, units, zero_has_unit=z))
    if stats.supported_status & OBJECT_RESIDENT:
        out.append(size_line("drm", "resident", region, stats.resident, units, zero_has_unit=z))
    if stats.supported_status & OBJECT_PURGEABLE:
        out.append(size_line("drm", "purgeable", region, stats.purgeable, units, zero_has_unit=z))
    return "".join(out)


def show_fdinfo(file: "DrmFile", version: Version) -> str:
    """``drm_show_fdinfo``: the DRM lines of ``file``'s fdinfo (after the generic header).

    Returns "" for kernels whose driver prints nothing (Panfrost before 6.7); the driver
    decides that through :meth:`Driver.has_fdinfo`.
    """
    driver = file.dev.driver
    if not driver.has_fdinfo(version):
        return ""
    out = [f"drm-driver:\t{driver.name}\n", f"drm-client-id:\t{file.client_id}\n"]
    if releases.core_has(releases.CLIENT_NAME, version) and file.client_name:
        out.append(f"drm-client-name:\t{file.client_name}\n")
    driver.show_fdinfo(file, out, version)
    return "".join(out)
