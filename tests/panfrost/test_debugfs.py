"""debugfs text: the kernel's gems/clients/sched_ctxs layouts and vdrm's introspection."""

from __future__ import annotations

from vdrm.panfrost.gem import BO_HEAP, BO_NOEXEC, MADV_DONTNEED

from .conftest import MiB, ioctl, make_device

HEAP = BO_HEAP | BO_NOEXEC


def test_gems_layout_is_the_kernels():
    """gems: flags legend, 131-char header with columns at 0/32/48/64/80/96/114/126, rows, totals."""
    dev = make_device(kernel=(6, 18))
    f = dev.open(128, pid=812, comm="weston")
    ioctl(f, "CREATE_BO", size=8 * MiB, flags=HEAP)
    ioctl(f, "FAULT", addr=0x2000000)
    ioctl(f, "CREATE_BO", size=64 << 10, flags=BO_NOEXEC)
    ioctl(f, "SET_LABEL_BO", handle=2, label="vertex buffer")
    ioctl(f, "MADVISE", handle=2, madv=MADV_DONTNEED)
    ioctl(f, "GEM_FLINK", handle=2)
    lines = dev.debugfs_files()["gems"]().split("\n")
    assert lines[0] == "GEM state flags: imported (0x1), exported (0x2), purged (0x4), purgeable (0x8)"
    assert lines[1] == ""
    header = lines[2]
    assert len(header) == 131
    assert [header.index(c) for c in ("created-by", "global-name", "refcount", "size ", "resident-size",
                                       "file-offset", "state", "label")] == [0, 32, 48, 64, 80, 96, 114, 126]
    assert lines[3] == "-" * 131
    heap_row, vbo_row = lines[4], lines[5]
    assert heap_row.startswith("weston/812".ljust(32) + "0".ljust(16) + "2".ljust(16))
    assert heap_row[64:96] == str(8 * MiB).ljust(16) + str(2 * MiB).ljust(16)
    assert heap_row[96:114] == "0x" + "100000".ljust(16)
    assert heap_row[114:126] == "0x0         " and heap_row[126:] == ""
    assert vbo_row[32:48] == "1".ljust(16)
    assert vbo_row[114:] == "0x8         vertex buffer"
    assert lines[6] == "=" * 131
    assert lines[7] == f"Total size: {8 * MiB + 65536}, Total resident: {2 * MiB + 65536}, Total reclaimable: 65536"


def test_debugfs_files_follow_the_kernel_version():
    """gems appears in 6.17 and sched_ctxs in 6.19; clients grows name (6.13) and id (6.17) columns."""
    old = make_device(kernel=(6, 12)).debugfs_files()
    assert "gems" not in old and "sched_ctxs" not in old
    assert old["clients"]() == "             command  tgid dev master a   uid      magic\n"
    for version in ((6, 16), (6, 18)):
        dev = make_device(kernel=version)
        dev.open(0, pid=77, comm="Xorg")
        files = dev.debugfs_files()
        assert ("gems" in files) is (version >= (6, 17)) and "sched_ctxs" not in files
        head = files["clients"]().splitlines()[0]
        assert head.endswith("name" if version == (6, 16) else "id")
    dev = make_device(kernel=(6, 19))
    f = dev.open(0, pid=77, comm="Xorg")
    files = dev.debugfs_files()
    assert {"gems", "sched_ctxs", "clients", "gem_names"} <= set(files)
    rows = files["clients"]().splitlines()
    assert rows[1] == "Xorg".rjust(20) + "    77   0   y    y     0          0" + "<unset>".rjust(65) + "1".rjust(21)
    assert files["sched_ctxs"]() == "client_id        1 pid       77 command Xorg:\n JM context 0: priority NORMAL\n\n"
    f2 = dev.open(0)
    assert not f2.is_master and f.is_master


def test_sched_ctxs_cuts_the_command_to_15_characters():
    """sched_ctxs prints the task's comm, which the kernel keeps to TASK_COMM_LEN - 1 = 15 characters."""
    dev = make_device(kernel=(6, 19))
    dev.open(128, pid=9, comm="a-very-long-process-name")
    assert dev.debugfs_files()["sched_ctxs"]().startswith("client_id        1 pid        9 command a-very-long-pro:\n")


def test_vdrm_introspection_shows_blocks_sg_tables_and_vm():
    """vdrm-heaps lists populated blocks with their pfn runs; vdrm-vm shows the AS and mappings."""
    dev = make_device(fragmentation=0.0)
    f = dev.open(128, pid=5, comm="game")
    ioctl(f, "CREATE_BO", size=8 * MiB, flags=HEAP)
    ioctl(f, "FAULT", addr=0x2000000 + 4 * MiB)
    files = dev.debugfs_files()
    heaps = files["vdrm-heaps"]()
    assert "blocks=1/4 heap_rss_size=2097152" in heaps
    assert "block     2 [+0x400000] sgt nents=1 orig_nents=1" in heaps
    assert "(512 pages)" in heaps
    vm = files["vdrm-vm"]()
    assert "client 1 pid 5 game minor 128: AS0" in vm
    assert "0x0002000000-0x0002800000 handle 1 heap size=8388608 resident=2097152 active" in vm
    assert "total heap bookkeeping" in files["vdrm-bookkeeping"]()
    assert "free_pages" in files["vdrm-memory"]()
