"""Panthor's rows of the kernel release table, merged with the DRM core's.

:data:`PANTHOR` answers :meth:`PanthorDriver.has` and the driver version
(``DRM_IOCTL_VERSION``) of each emulated release, with the machinery of
:mod:`vdrm.kernel.releases` that Panfrost's table uses. Panthor was merged in 6.10, so
its releases are 6.10 .. 7.0.

Datings: the driver version of each change is the kernel's own changelog (the "PanCSF
driver version" comment above ``panthor_drm_driver`` in ``panthor_drv.c``: 1.1
TIMESTAMP_INFO; 1.2 GROUP_PRIORITIES_INFO and REALTIME; 1.3 GROUP_STATE_INNOCENT; 1.4
BO_SET_LABEL; 1.5 SET_USER_MMIO_OFFSET; 1.6 BO_WB_MMAP, BO_SYNC, BO_QUERY_INFO and
``selected_coherency``). The release each landed in is what the source column says: the
fdinfo rows follow ``kernel-reference.md`` (section 4.5); the rest is vdrm's reading of
when the series were queued, not checked against a pull request where the column says
so. The 1.6 series is Faith Ekstrand's and Boris Brezillon's that also brought Panfrost's
1.6, which reached Linus in "[git pull] drm for 7.0-rc1".
"""

from __future__ import annotations

from vdrm.drm.releases import CORE, RELEASES
from vdrm.kernel.releases import Feature, ReleaseTable

FDINFO = "fdinfo"
PROFILING_SYSFS = "profiling-sysfs"
TIMESTAMP_INFO = "dev-query-timestamp-info"
GROUP_PRIORITIES_INFO = "dev-query-group-priorities-info"
GROUP_STATE_INNOCENT = "group-state-innocent"
FDINFO_INTERNAL_MEMORY = "fdinfo-internal-memory"
BO_SET_LABEL = "bo-set-label"
SET_USER_MMIO_OFFSET = "set-user-mmio-offset"
BO_WB_MMAP = "bo-wb-mmap"
BO_SYNC = "bo-sync"
BO_QUERY_INFO = "bo-query-info"
SELECTED_COHERENCY = "gpu-info-selected-coherency"

_UNCHECKED = "release is vdrm's reading of when the series was queued (no pull request checked)"
_PULL_7_0 = "\"[git pull] drm for 7.0-rc1\", with Panfrost's 1.6 (same series)"

PANTHOR_FEATURES: tuple[Feature, ...] = (
    Feature(FDINFO, (6, 11),
            "Panthor fdinfo: drm-engine-panthor, drm-cycles-panthor, maxfreq, curfreq and memory lines",
            "panthor_show_fdinfo() in panthor_drv.c; kernel-reference.md 4.5 (6.11+)"),
    Feature(PROFILING_SYSFS, (6, 11),
            "sysfs profiling: a mask, bit 0 cycles, bit 1 timestamps",
            "Documentation/ABI/testing/sysfs-driver-panthor-profiling; kernel-reference.md 4.5 (6.11+)"),
    Feature(TIMESTAMP_INFO, (6, 11),
            "DEV_QUERY TIMESTAMP_INFO",
            f"\"drm/panthor: Add DEV_QUERY_TIMESTAMP_INFO dev query\" (Mary Guillemard); {_UNCHECKED}",
            driver_version=(1, 1)),
    Feature(GROUP_PRIORITIES_INFO, (6, 12),
            "DEV_QUERY GROUP_PRIORITIES_INFO and group priority REALTIME",
            f"\"drm/panthor: Add DEV_QUERY_GROUP_PRIORITIES_INFO dev query\", \"drm/panthor: Add "
            f"PANTHOR_GROUP_PRIORITY_REALTIME group priority\" (Mary Guillemard); {_UNCHECKED}",
            driver_version=(1, 2)),
    Feature(GROUP_STATE_INNOCENT, (6, 13),
            "GROUP_GET_STATE flag INNOCENT",
            f"\"drm/panthor: Report innocent groups\" (Boris Brezillon, via drm-misc-fixes); {_UNCHECKED}",
            driver_version=(1, 3)),
    Feature(FDINFO_INTERNAL_MEMORY, (6, 15),
            "fdinfo panthor-resident-memory and panthor-active-memory (kernel-owned BOs)",
            "commit 434e5ca5b5d7 \"drm/panthor: Expose size of driver internal BO's over fdinfo\" "
            "(backported to 6.14.y); kernel-reference.md 4.5"),
    Feature(BO_SET_LABEL, (6, 16),
            "BO_SET_LABEL ioctl",
            f"\"drm/panthor: Add driver IOCTL for setting BO labels\" (Adrián Larumbe); {_UNCHECKED}",
            driver_version=(1, 4)),
    Feature(SET_USER_MMIO_OFFSET, (6, 16),
            "SET_USER_MMIO_OFFSET ioctl",
            f"\"drm/panthor: Add an ioctl to set the user MMIO offset\" (Boris Brezillon); {_UNCHECKED}",
            driver_version=(1, 5)),
    Feature(BO_WB_MMAP, (7, 0),
            "BO_CREATE flag WB_MMAP",
            f"\"drm/panthor: Add flag to map GEM object Write-Back Cacheable\" (Faith Ekstrand); {_PULL_7_0}",
            driver_version=(1, 6)),
    Feature(BO_SYNC, (7, 0),
            "BO_SYNC ioctl",
            f"\"drm/panthor: Add a PANTHOR_BO_SYNC ioctl\" (Faith Ekstrand); {_PULL_7_0}",
            driver_version=(1, 6)),
    Feature(BO_QUERY_INFO, (7, 0),
            "BO_QUERY_INFO ioctl",
            f"\"drm/panthor: Add an ioctl to query BO flags\" (Boris Brezillon); {_PULL_7_0}",
            driver_version=(1, 6)),
    Feature(SELECTED_COHERENCY, (7, 0),
            "GPU_INFO selected_coherency",
            f"\"drm/panthor: Expose the selected coherency protocol to the UMD\" (Boris Brezillon); {_PULL_7_0}",
            driver_version=(1, 6)),
)

PANTHOR = ReleaseTable([r for r in RELEASES if r >= (6, 10)], PANTHOR_FEATURES,
                       base_driver_version=(1, 0)).merged(CORE)

KERNEL_VERSIONS = PANTHOR.releases
