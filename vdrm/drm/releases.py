"""The DRM core's rows of the kernel release table (see :mod:`vdrm.kernel.releases`).

What the core (``drm_file.c``, ``drm_ioctl.c``, ``drm_debugfs.c``, ``drm_gem.c``,
``drm_gem_shmem_helper.c``) changed between the releases vdrm emulates. A driver's table
merges these rows with its own (:meth:`ReleaseTable.merged`); code below the driver
layer (the fdinfo printer, the shmem helper) asks :func:`core_has` with the release it is
rendering for.

Each row's ``source`` is what its dating was checked against: the dri-devel pull request
whose shortlog carries the commit into that release, or (marked "reference") the dating
in ``kernel-reference.md`` with the commit title found in the kernel sources.
"""

from __future__ import annotations

from vdrm.kernel.releases import Feature, Release, ReleaseTable

# Every release vdrm emulates, oldest first: Panfrost's fdinfo dialects start at 6.6 (no
# fdinfo yet) and the newest kernel sources in reach are 7.0's ("[git pull] drm for
# 7.0-rc1", Dave Airlie, 2026-02-11, based on 6.19-rc7).
RELEASES: tuple[Release, ...] = (
    (6, 6), (6, 7), (6, 8), (6, 9), (6, 10), (6, 11), (6, 12), (6, 13), (6, 14), (6, 15),
    (6, 16), (6, 17), (6, 18), (6, 19), (7, 0),
)

FILE_OWNER_UPDATE = "drm-file-owner-update"
FDINFO_EXACT_UNITS = "fdinfo-exact-size-units"
FDINFO_SHARED_EXPORTED = "fdinfo-shared-when-exported"
CLIENT_NAME = "set-client-name"
FDINFO_OPTIONAL_MEMORY = "fdinfo-optional-memory-lines"
SHMEM_PIN_COUNT = "shmem-print-pages-pin-count"
DEBUGFS_CLIENTS_ID = "debugfs-clients-id"

CORE_FEATURES: tuple[Feature, ...] = (
    Feature(FILE_OWNER_UPDATE, (6, 4),
            "an ioctl from another process makes it the file's owner (pid, comm) unless the file was master",
            "\"drm: Update file owner during use\" (Tvrtko Ursulin): drm_file_update_pid() in drm_file.c, "
            "called first thing in drm_ioctl_kernel() (drm_ioctl.c); reference (6.4)"),
    Feature(FDINFO_EXACT_UNITS, (6, 7),
            "fdinfo sizes use KiB/MiB only for exact multiples (1536 prints as 1536)",
            "print_size() in drm_file.c (Tvrtko Ursulin, Sep 2023); reference (6.7)"),
    Feature(FDINFO_SHARED_EXPORTED, (6, 9),
            "an exported (dma-buf) BO counts as shared in fdinfo",
            "\"drm: add drm_gem_object_is_shared_for_memory_stats() helper\" (drm_gem.h: "
            "handle_count > 1 || dma_buf); reference (6.9)"),
    Feature(CLIENT_NAME, (6, 13),
            "SET_CLIENT_NAME ioctl, fdinfo drm-client-name, debugfs clients name column",
            "\"drm: add DRM_SET_CLIENT_NAME ioctl\", \"drm: use drm_file client_name in fdinfo\" "
            "(Pierre-Eric Pelloux-Prayer), [PULL] drm-misc-next-2024-10-09 \"drm-misc-next for v6.13\""),
    Feature(FDINFO_OPTIONAL_MEMORY, (6, 14),
            "fdinfo drm-active/resident/purgeable printed only when some BO is in that state",
            "\"drm: make drm-active- stats optional\" (Yunxiang Li), \"[git pull] drm next for 6.14-rc1\" "
            "(drm-next-2025-01-17)"),
    Feature(SHMEM_PIN_COUNT, (6, 16),
            "shmem print_info shows pages_pin_count",
            "\"refactor shmem helper page pinning\" in \"[git pull] drm for 6.16-rc1\" (drm-next-2025-05-28), "
            "drm_gem_shmem_print_info() in drm_gem_shmem_helper.c"),
    Feature(DEBUGFS_CLIENTS_ID, (6, 17),
            "debugfs clients gains the client id column",
            "\"drm/debugfs: Output client_id in in drm_clients_info\" (Pierre-Eric Pelloux-Prayer), "
            "[PULL] drm-misc-next-2025-06-12 \"first drm-misc-next PR for 6.17\" (drm_debugfs.c)"),
)

CORE = ReleaseTable(RELEASES, CORE_FEATURES)


def core_has(feature: str, release: Release) -> bool:
    """Whether the DRM core of kernel ``release`` has ``feature`` (a name above)."""
    return CORE.has(feature, release)
