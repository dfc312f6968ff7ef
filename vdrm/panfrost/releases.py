"""Panfrost's rows of the kernel release table, merged with the DRM core's.

:data:`PANFROST` answers :meth:`PanfrostDriver.has` and the driver version
(``DRM_IOCTL_VERSION``) for each emulated release; the README's dialect table is
:meth:`PANFROST.markdown() <vdrm.kernel.releases.ReleaseTable.markdown>`.

Datings follow the dri-devel pull requests that carried each commit into its release
(checked against the kernel sources and list archives in the search index); where the
issue that asked for this table (issue 12) and the sources disagree, the sources win:

* the uAPI 1.6 additions (WB_MMAP, SYNC_BO, QUERY_BO_INFO, SELECTED_COHERENCY) were
  queued in [PULL] drm-misc-next-2025-12-12, whose tag text says "for 6.19"; it was sent
  after 6.19's merge window had opened, and the commits reached Linus in
  "[git pull] drm for 7.0-rc1" ("panfrost: add bo sync ioctl"), so they are 7.0's;
* the JM context commits were merged for 6.19 with the comment "1.5" but still
  ``.minor = 4``; "drm/panfrost: Bump the minor version number" (Steven Price, same
  6.19 pull) made the driver report 1.5, so no release reports 1.4 with JM contexts.
"""

from __future__ import annotations

from vdrm.drm.releases import CORE, FDINFO_EXACT_UNITS, RELEASES  # noqa: F401 (re-exported)
from vdrm.kernel.releases import Feature, ReleaseTable

FDINFO = "fdinfo"
DEBUGFS_PROFILE = "debugfs-profile"
PROFILING_SYSFS = "profiling-sysfs"
FDINFO_ENGINE_NEEDS_PROFILING = "fdinfo-engine-lines-need-profiling"
TIMESTAMP_PARAMS = "param-system-timestamp"
SUBMIT_CYCLE_COUNT = "submit-cycle-count"
AARCH64_MMU = "g52-aarch64-mmu"
SET_LABEL_BO = "set-label-bo"
DEBUGFS_GEMS = "debugfs-gems"
JM_CONTEXTS = "jm-contexts"
DEBUGFS_SCHED_CTXS = "debugfs-sched-ctxs"
BO_WB_MMAP = "bo-wb-mmap"
SYNC_BO = "sync-bo"
QUERY_BO_INFO = "query-bo-info"
SELECTED_COHERENCY = "param-selected-coherency"

_PULL_6_7 = "Panfrost fdinfo series (Adrián Larumbe, Sep 2023); reference (6.7)"
_PULL_6_10 = ("[PULL] drm-misc-next-2024-03-28 \"drm-misc-next for v6.10-rc1\" and "
              "\"[git pull] drm for 6.10-rc1\" (drm-next-2024-05-15)")
_PULL_6_13 = "[PULL] drm-misc-next-2024-09-26 \"drm-misc-next for v6.13\""
_PULL_6_16 = "\"[git pull] drm for 6.16-rc1\" (drm-next-2025-05-28)"
_PULL_6_17 = "[PULL] drm-misc-next-2025-06-12 \"first drm-misc-next PR for 6.17\""
_PULL_6_19 = "[PULL] drm-misc-next-2025-10-02 \"First pull request for v6.19\""
_PULL_7_0 = ("[PULL] drm-misc-next-2025-12-12 (tagged \"for 6.19\", sent after its merge window) and "
             "\"[git pull] drm for 7.0-rc1\" (drm-next-2026-02-11: \"panfrost: add bo sync ioctl\")")

PANFROST_FEATURES: tuple[Feature, ...] = (
    Feature(FDINFO, (6, 7),
            "Panfrost fdinfo: engine, cycle, maxfreq, curfreq and memory lines (engine and cycles always)",
            f"panfrost_show_fdinfo() in panfrost_drv.c; {_PULL_6_7}"),
    Feature(DEBUGFS_PROFILE, (6, 7),
            "debugfs dri/<minor>/profile switches profiling",
            f"debugfs_create_atomic_t(\"profile\") in panfrost_debugfs.c; {_PULL_6_7}; removed by "
            f"\"drm/panfrost: Replace fdinfo's profiling debugfs knob with sysfs\", {_PULL_6_10}",
            removed=(6, 10)),
    Feature(PROFILING_SYSFS, (6, 10),
            "sysfs profiling attribute replaces the debugfs profile file",
            f"\"drm/panfrost: Replace fdinfo's profiling debugfs knob with sysfs\" (Adrián Larumbe), "
            f"profiling_show()/profiling_store() in panfrost_drv.c; {_PULL_6_10}"),
    Feature(FDINFO_ENGINE_NEEDS_PROFILING, (6, 10),
            "fdinfo drm-engine/drm-cycles lines only while profiling is on",
            f"\"drm/panfrost: Only display fdinfo's engine and cycle tags when profiling is on\" "
            f"(Adrián Larumbe), panfrost_gpu_show_fdinfo(); {_PULL_6_10}"),
    Feature(TIMESTAMP_PARAMS, (6, 13),
            "GET_PARAM SYSTEM_TIMESTAMP and SYSTEM_TIMESTAMP_FREQUENCY",
            f"\"drm/panfrost: Add SYSTEM_TIMESTAMP and SYSTEM_TIMESTAMP_FREQUENCY parameters\" "
            f"(Mary Guillemard), panfrost_ioctl_get_param(); {_PULL_6_13}",
            driver_version=(1, 3)),
    Feature(SUBMIT_CYCLE_COUNT, (6, 13),
            "SUBMIT requirement CYCLE_COUNT",
            f"\"drm/panfrost: Add cycle counter job requirement\" (Mary Guillemard), JOB_REQUIREMENTS "
            f"in panfrost_drv.c; {_PULL_6_13}",
            driver_version=(1, 3)),
    Feature(AARCH64_MMU, (6, 16),
            "the Mali-G52 has HW_FEATURE_AARCH64_MMU: fault logs name access type ATOMIC",
            f"\"drm/panfrost: Set HW_FEATURE_AARCH64_MMU feature flag on Bifrost models\" (Ariel "
            f"D'Alessandro), hw_features_g52 in panfrost_features.h, access_type_name() in "
            f"panfrost_mmu.c; {_PULL_6_16}"),
    Feature(SET_LABEL_BO, (6, 17),
            "SET_LABEL_BO ioctl",
            f"\"drm/panfrost: Add driver IOCTL for setting BO labels\" (Adrián Larumbe); {_PULL_6_17}",
            driver_version=(1, 4)),
    Feature(DEBUGFS_GEMS, (6, 17),
            "debugfs gems",
            f"\"drm/panfrost: show device-wide list of DRM GEM objects over DebugFS\" (Adrián Larumbe), "
            f"panfrost_gem_debugfs_print_bos() in panfrost_gem.c; {_PULL_6_17}"),
    Feature(JM_CONTEXTS, (6, 19),
            "JM_CTX_CREATE/JM_CTX_DESTROY, SUBMIT jm_ctx_handle, GET_PARAM ALLOWED_JM_CTX_PRIORITIES",
            f"\"drm/panfrost: Introduce uAPI for JM context creation\", \"drm/panfrost: Expose JM context "
            f"IOCTLs to UM\" (Boris Brezillon) and \"drm/panfrost: Bump the minor version number\" "
            f"(Steven Price); {_PULL_6_19}",
            driver_version=(1, 5)),
    Feature(DEBUGFS_SCHED_CTXS, (6, 19),
            "debugfs sched_ctxs",
            f"\"drm/panfrost: Display list of device JM contexts over debugfs\" (Boris Brezillon), "
            f"show_each_file() in panfrost_drv.c; {_PULL_6_19}"),
    Feature(BO_WB_MMAP, (7, 0),
            "CREATE_BO flag WB_MMAP",
            f"\"drm/panfrost: Add flag to map GEM object Write-Back Cacheable\" (Faith Ekstrand); {_PULL_7_0}",
            driver_version=(1, 6)),
    Feature(SYNC_BO, (7, 0),
            "SYNC_BO ioctl",
            f"\"drm/panfrost: Add a PANFROST_SYNC_BO ioctl\" (Faith Ekstrand); {_PULL_7_0}",
            driver_version=(1, 6)),
    Feature(QUERY_BO_INFO, (7, 0),
            "QUERY_BO_INFO ioctl",
            f"\"drm/panfrost: Add an ioctl to query BO flags\" (Boris Brezillon); {_PULL_7_0}",
            driver_version=(1, 6)),
    Feature(SELECTED_COHERENCY, (7, 0),
            "GET_PARAM SELECTED_COHERENCY",
            f"\"drm/panfrost: Expose the selected coherency protocol to the UMD\" (Boris Brezillon); "
            f"{_PULL_7_0}",
            driver_version=(1, 6)),
)

# 1.2 ("adds AFBC_FEATURES query") is what every emulated release before 6.13 reports.
PANFROST = ReleaseTable(RELEASES, PANFROST_FEATURES, base_driver_version=(1, 2)).merged(CORE)

KERNEL_VERSIONS = PANFROST.releases
