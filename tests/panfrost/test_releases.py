"""Every kernel dialect exact (issue 12): the release table, and each numbered row checked per dialect.

The ioctl rows go through the request protocol (the text path), as a client sends them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vdrm.drm.releases import CORE
from vdrm.fs import protocol
from vdrm.kernel.bug import CUT_HERE, END_TRACE
from vdrm.kernel.printk import KernelLog
from vdrm.kernel.clock import VirtualClock
from vdrm.mm.scatterlist import SgAppendTable, sg_alloc_append_table_from_pages
from vdrm.panfrost.gem import BO_HEAP, BO_NOEXEC
from vdrm.panfrost.releases import PANFROST

from .conftest import MiB, ioctl, make_device

OLDEST, NEWEST = PANFROST.oldest, PANFROST.newest
README = Path(__file__).resolve().parents[2] / "README.md"


def send(dev, file, line: str) -> bytes:
    """One request line through the protocol against ``dev``'s ioctl table."""
    return protocol.handle(dev.ioctls, file, line.encode()).line


# -- the table itself -----------------------------------------------------------------------


def test_table_spans_6_6_to_7_0_and_every_row_names_its_source():
    """The emulated releases run 6.6..6.19 then 7.0; every row has a summary and a source."""
    assert OLDEST == (6, 6) and NEWEST == (7, 0) and (6, 19) in PANFROST.releases
    for feature in PANFROST:
        assert feature.summary and len(feature.source) > 20, feature.name
    assert {f.name for f in CORE} <= {f.name for f in PANFROST}


def test_readme_dialect_table_is_the_release_table():
    """The README's dialect table is exactly what the release table renders."""
    assert PANFROST.markdown() in README.read_text()


@pytest.mark.parametrize("release, version", [((6, 6), (1, 2)), ((6, 12), (1, 2)), ((6, 13), (1, 3)),
                                              ((6, 16), (1, 3)), ((6, 17), (1, 4)), ((6, 18), (1, 4)),
                                              ((6, 19), (1, 5)), ((7, 0), (1, 6))])
def test_driver_version_per_release(release, version):
    """Row 3: VERSION reports 1.3 from 6.13, 1.4 from 6.17, 1.5 from 6.19 and 1.6 in 7.0."""
    dev = make_device(kernel=release)
    f = dev.open(128)
    assert send(dev, f, "VERSION").startswith(f"ok major={version[0]} minor={version[1]} patchlevel=0 ".encode())


# -- row 1: engine lines with profiling off -------------------------------------------------


@pytest.mark.parametrize("release, shown", [((6, 7), True), ((6, 8), True), ((6, 9), True), ((6, 10), False),
                                            ((6, 18), False), ((7, 0), False)])
def test_engine_lines_with_profiling_off(release, shown):
    """Row 1: drm-engine-/drm-cycles- are printed with profiling off until 6.9, hidden from 6.10."""
    dev = make_device(kernel=release, profiling=False)
    f = dev.open(128)
    text = dev.fdinfo(f)
    assert ("drm-engine-fragment:\t0 ns\ndrm-cycles-fragment:\t0\n" in text) is shown
    assert "drm-maxfreq-fragment:\t800000000 Hz\n" in text


# -- row 4: version-gated ioctls, oldest and newest dialect -----------------------------------


GATED = (
    ("SET_CLIENT_NAME name=x", "ok"),
    ("CREATE_BO size=4096 flags=NOEXEC", "ok"),  # handle 1 for the ones below
    ("SET_LABEL_BO handle=1 label=x", "ok"),
    ("JM_CTX_CREATE priority=LOW", "ok handle=1"),
    ("JM_CTX_DESTROY handle=1", "ok"),
    ("GET_PARAM param=SYSTEM_TIMESTAMP_FREQUENCY", "ok param=SYSTEM_TIMESTAMP_FREQUENCY value=24000000"),
    ("GET_PARAM param=SYSTEM_TIMESTAMP", "ok param=SYSTEM_TIMESTAMP"),
    ("GET_PARAM param=ALLOWED_JM_CTX_PRIORITIES", "ok param=ALLOWED_JM_CTX_PRIORITIES value=7"),
    ("GET_PARAM param=SELECTED_COHERENCY", "ok param=SELECTED_COHERENCY value=31"),
    ("SUBMIT requirements=FS,CYCLE_COUNT", "ok job="),
    ("CREATE_BO size=4096 flags=NOEXEC,WB_MMAP", "ok handle=2"),
    ("QUERY_BO_INFO handle=2", "ok create_flags=5 extra_flags=0"),
    ("SYNC_BO handle=2 type=CPU_CACHE_FLUSH_AND_INVALIDATE size=4096", "ok"),
)


def test_gated_ioctls_on_the_newest_dialect():
    """Row 4: on 7.0 every version-gated ioctl, parameter and flag works."""
    dev = make_device(kernel=NEWEST)
    f = dev.open(128)
    for line, reply in GATED:
        assert send(dev, f, line).startswith(reply.encode()), line


def test_gated_ioctls_on_the_oldest_dialect():
    """Row 4: on 6.6 each of them is EINVAL (drm_ioctl's answer, the param default, the flag mask)."""
    dev = make_device(kernel=OLDEST)
    f = dev.open(128)
    for line, _ in GATED:
        reply = send(dev, f, line)
        if line == "CREATE_BO size=4096 flags=NOEXEC":
            assert reply.startswith(b"ok handle=1")
        else:
            assert reply.startswith(b"error EINVAL "), (line, reply)
    assert "drm-client-name" not in dev.fdinfo(f) and f.client_name is None


@pytest.mark.parametrize("release, ok", [((6, 12), False), ((6, 13), True)])
def test_cycle_count_and_timestamps_arrive_in_6_13(release, ok):
    """Row 4: SUBMIT CYCLE_COUNT and the timestamp params are EINVAL before 6.13 (driver 1.3)."""
    dev = make_device(kernel=release)
    f = dev.open(128)
    assert send(dev, f, "SUBMIT requirements=CYCLE_COUNT").startswith(b"ok" if ok else b"error EINVAL")
    assert send(dev, f, "GET_PARAM param=SYSTEM_TIMESTAMP").startswith(b"ok" if ok else b"error EINVAL")
    assert send(dev, f, "SUBMIT requirements=FS").startswith(b"ok")


def test_set_label_bo_arrives_in_6_17_and_jm_contexts_in_6_19():
    """Row 4: SET_LABEL_BO is EINVAL on 6.16 and works on 6.17; JM_CTX_CREATE is EINVAL on 6.18."""
    for release, label, ctx in (((6, 16), False, False), ((6, 17), True, False), ((6, 18), True, False),
                                ((6, 19), True, True)):
        dev = make_device(kernel=release)
        f = dev.open(128)
        send(dev, f, "CREATE_BO size=4096")
        assert send(dev, f, "SET_LABEL_BO handle=1 label=a").startswith(b"ok" if label else b"error EINVAL")
        assert send(dev, f, "JM_CTX_CREATE").startswith(b"ok" if ctx else b"error EINVAL")


def test_high_priority_needs_cap_sys_nice_or_master():
    """ALLOWED_JM_CTX_PRIORITIES: LOW|MEDIUM for a user, plus HIGH for root or the DRM master."""
    dev = make_device(kernel=(6, 19))
    user = dev.open(128, uid=1000)
    assert send(dev, user, "GET_PARAM param=ALLOWED_JM_CTX_PRIORITIES").endswith(b"value=3\n")
    master = dev.open(0, uid=1000)
    assert master.is_master
    assert send(dev, master, "GET_PARAM param=ALLOWED_JM_CTX_PRIORITIES").endswith(b"value=7\n")


# -- row 6: fault access names ----------------------------------------------------------------


@pytest.mark.parametrize("release, name", [((6, 15), "UNKNOWN"), ((6, 16), "ATOMIC"), ((6, 18), "ATOMIC")])
def test_atomic_access_is_named_from_6_16(release, name):
    """Row 6: the G52 has the AArch64 MMU flag from 6.16, so access type 0 prints ATOMIC."""
    dev = make_device(kernel=release)
    f = dev.open(128)
    assert send(dev, f, "FAULT addr=0x1000 access=ATOMIC").startswith(b"error ENOENT")
    assert f"access type 0x0: {name}\n" in dev.log.text()


# -- row 7: the not-heap WARNING block ------------------------------------------------------------


def test_not_heap_fault_logs_a_warning_block():
    """Row 7: a fault in a non-heap BO logs cut-here, the message, WARNING ... [panfrost], a call trace, end."""
    dev = make_device(kernel=(6, 18))
    f = dev.open(128)
    ioctl(f, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    assert send(dev, f, "FAULT addr=0x2000000").startswith(b"error EINVAL")
    lines = [line.split("] ", 1)[1] for line in dev.log.text().splitlines()]
    start = lines.index(CUT_HERE)
    assert lines[start + 1] == "panfrost fde60000.gpu: matching BO is not heap type (GPU VA = 2000000)"
    assert re.fullmatch(r"WARNING: CPU: 0 PID: \d+ at drivers/gpu/drm/panfrost/panfrost_mmu\.c:\d+ "
                        r"panfrost_mmu_irq_handler_thread\+0x[0-9a-f]+/0x[0-9a-f]+ \[panfrost\]", lines[start + 2])
    assert lines[start + 3].startswith("Modules linked in: panfrost")
    assert "Comm: irq/45-panfrost Not tainted 6.18.0" in lines[start + 4]
    trace = lines.index("Call trace:")
    assert lines[trace + 1].startswith(" panfrost_mmu_irq_handler_thread+") and lines[trace + 1].endswith("[panfrost]")
    assert lines[trace + 5].startswith(" ret_from_fork+") and lines[trace + 6] == END_TRACE
    assert lines[trace + 7].startswith("panfrost fde60000.gpu: Unhandled Page fault in AS0")
    send(dev, f, "FAULT addr=0x2000000")
    assert "Tainted: G        W" in dev.log.text().split(END_TRACE)[1]  # the second WARN is tainted


# -- row 8: scatterlist WARNs -----------------------------------------------------------------------


def _table_with_one_entry() -> SgAppendTable:
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, [10], 0, 4096, 0xFFFFFFFF, 4)
    return append


def test_continuing_with_zero_pages_and_an_offset_warns():
    """Row 8: a continuing call with n_pages=0 and offset!=0 is EINVAL and logs the kernel's WARN_ON."""
    log = KernelLog(VirtualClock())
    append = _table_with_one_entry()
    with pytest.raises(Exception, match="WARNs") as err:
        sg_alloc_append_table_from_pages(append, [], 512, 0, 0xFFFFFFFF, 0, log=log)
    assert err.value.errno == 22
    text = log.text()
    assert CUT_HERE in text and "at lib/scatterlist.c:" in text and "sg_alloc_append_table_from_pages+" in text
    assert append.sgt.orig_nents == 1 and append.sgt.entry(0).length == 4096  # state unchanged


def test_max_segment_below_a_page_warns_and_silent_refusals_stay_silent():
    """Row 8: max_segment < PAGE_SIZE WARNs; n_pages=0 on a fresh table and offset >= PAGE_SIZE do not."""
    log = KernelLog(VirtualClock())
    with pytest.raises(Exception, match="WARNs"):
        sg_alloc_append_table_from_pages(SgAppendTable(), [1], 0, 4096, 100, 0, log=log)
    assert log.text().count(CUT_HERE) == 1
    for pages, offset in (([], 0), ([1], 4096)):
        with pytest.raises(Exception):
            sg_alloc_append_table_from_pages(SgAppendTable(), pages, offset, 4096, 0xFFFFFFFF, 0, log=log)
    assert log.text().count(CUT_HERE) == 1


# -- row 9: kernel-doc-example truth ---------------------------------------------------------------


def test_docs_revision_truth_counts_what_its_fdinfo_prints():
    """Row 9: with fdinfo_revision=docs the truth's active equals the fdinfo's (whole BO sizes)."""
    dev = make_device(kernel=(6, 7), fdinfo_revision="docs")
    f = dev.open(128)
    ioctl(f, "CREATE_BO", size=8 * MiB, flags=BO_HEAP | BO_NOEXEC)
    ioctl(f, "SUBMIT", bo_handles=[1], duration=10**9)
    assert "drm-active-memory:\t8 MiB\n" in dev.fdinfo(f)
    assert dev.truth(f)["memory"]["active"] == 8 * MiB


# -- row 10: who owns a client ---------------------------------------------------------------------


def test_ioctl_from_another_process_moves_the_owner():
    """Row 10: update_pid makes the caller the owner (debugfs clients, sched_ctxs, truth); master files keep theirs."""
    dev = make_device(kernel=(6, 19))
    f = dev.open(128, pid=100, comm="parent")
    assert f.update_pid(101, "child") and not f.update_pid(101, "child")
    files = dev.debugfs_files()
    assert "               child   101 128" in files["clients"]()
    assert "pid      101 command child:" in files["sched_ctxs"]()
    assert (dev.truth(f)["pid"], dev.truth(f)["comm"]) == (101, "child")
    master = dev.open(0, pid=200, comm="Xorg")
    assert not master.update_pid(201, "other") and master.pid == 200


# -- row 4 on the binary path ------------------------------------------------------------------


def test_gated_ioctls_in_binary_on_the_oldest_and_newest_dialect():
    """Row 4 (binary): drm_ioctl answers -EINVAL on 6.6 and 0 on 7.0 for the gated numbers, params and flags."""
    from tests.drm.uapi_client import BinaryClient

    client = BinaryClient()
    for release, ok in ((OLDEST, False), (NEWEST, True)):
        dev = make_device(kernel=release)
        f = dev.open(128)
        assert client.call(f, "CREATE_BO", size=4096, flags=BO_NOEXEC)[0] == 0
        calls = [("SET_LABEL_BO", {"handle": 1, "label": client.string("x")}),
                 ("SET_CLIENT_NAME", {"name_len": 1, "name": client.string("x")}),
                 ("JM_CTX_CREATE", {"priority": 0}),
                 ("QUERY_BO_INFO", {"handle": 1}),
                 ("GET_PARAM", {"param": 42}),  # SYSTEM_TIMESTAMP_FREQUENCY
                 ("GET_PARAM", {"param": 44}),  # SELECTED_COHERENCY
                 ("SUBMIT", {"jc": 1, "requirements": 2}),  # CYCLE_COUNT
                 ("CREATE_BO", {"size": 4096, "flags": BO_NOEXEC | 4})]  # WB_MMAP
        for name, fields in calls:
            ret, _ = client.call(f, name, **fields)
            assert ret == (0 if ok else -22), (release, name, ret)
