"""Panfrost's ioctls in binary: every one through drm_ioctl, the same answers as the text door, bad input."""

from __future__ import annotations

import errno

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.drm.uapi_client import BinaryClient
from vdrm.drm.ioctl import drm_ioctl
from vdrm.drm.uapi import ioc
from vdrm.fs import protocol
from vdrm.panfrost import debugfs
from vdrm.panfrost.mmu import DEFAULT_FAULT_ACCESS, DEFAULT_FAULT_EXCEPTION

from .conftest import MiB, make_device

# One session, written once for both doors: (verb, text arguments, binary fields).
SESSION = [
    ("CREATE_BO", "size=8M flags=HEAP|NOEXEC", {"size": 8 * MiB, "flags": 3}),
    ("CREATE_BO", "size=1M", {"size": MiB}),
    ("GET_BO_OFFSET", "handle=2", {"handle": 2}),
    ("MMAP_BO", "handle=2", {"handle": 2}),
    ("MMAP_BO", "handle=1", {"handle": 1}),  # a heap: EINVAL
    ("GET_PARAM", "param=GPU_PROD_ID", {"param": 0}),
    ("GET_PARAM", "param=99", {"param": 99}),  # EINVAL
    ("FAULT", "addr=0x2000000", {"addr": 0x2000000, "exception": DEFAULT_FAULT_EXCEPTION,
                                 "access": DEFAULT_FAULT_ACCESS}),
    ("FAULT", "addr=0x2000000", {"addr": 0x2000000, "exception": DEFAULT_FAULT_EXCEPTION,
                                 "access": DEFAULT_FAULT_ACCESS}),  # populated already: silent success
    ("FAULT", "addr=0x2000000 exception=0", {"addr": 0x2000000}),  # not a page fault
    ("JM_CTX_CREATE", "priority=LOW", {"priority": 0}),
    ("JM_CTX_CREATE", "priority=7", {"priority": 7}),  # EINVAL
    ("WAIT_BO", "handle=1", {"handle": 1}),
    ("ADVANCE", "by=5ms", {"by": 5_000_000}),
    ("MADVISE", "handle=2 madv=DONTNEED", {"handle": 2, "madv": 1}),
    ("MADVISE", "handle=9 madv=WILLNEED", {"handle": 9, "madv": 0}),  # ENOENT
    ("JM_CTX_DESTROY", "handle=1", {"handle": 1}),
    ("JM_CTX_DESTROY", "handle=0", {"handle": 0}),  # EINVAL
    ("PERFCNT_ENABLE", "enable=1", {"enable": 1}),  # ENOSYS
    ("PERFCNT_DUMP", "buf_ptr=0x1000", {"buf_ptr": 0x1000}),  # ENOSYS
    ("GEM_CLOSE", "handle=2", {"handle": 2}),
]


def _text_results(reply: protocol.ParsedReply) -> dict[str, int]:
    out = {}
    for key, value in reply.fields.items():
        try:
            out[key] = int(value, 0)
        except ValueError:
            pass
    return out


def test_text_and_binary_give_the_same_answers_and_the_same_device():
    """Run the session once per door on two identical devices: same errnos, results, fdinfo and gems."""
    a, b = make_device(), make_device()
    fa, fb = a.open(128, pid=7, comm="demo"), b.open(128, pid=7, comm="demo")
    client = BinaryClient()
    for verb, line, fields in SESSION:
        reply = protocol.parse_reply(protocol.handle(a.ioctls, fa, f"{verb} {line}".encode()).line)
        ret, out = client.call(fb, verb, **fields)
        if reply.ok:
            assert ret == 0, (verb, line, ret)
            struct = b.ioctls[verb].struct
            expected = _text_results(reply)
            for f in struct:
                if f.is_output and f.result_key in expected:
                    assert out[f.name] == expected[f.result_key], (verb, f.name)
        else:
            assert ret == -getattr(errno, reply.errname), (verb, line, reply)
    assert a.fdinfo(fa) == b.fdinfo(fb)
    assert debugfs.gems(a) == debugfs.gems(b)


@pytest.fixture
def dev():
    return make_device()


@pytest.fixture
def file(dev):
    return dev.open(128, pid=5, comm="app")


@pytest.fixture
def client():
    return BinaryClient()


def test_create_bo_in_binary_lands_at_32_mib(file, client):
    """The issue's example in binary: an 8 MiB HEAP|NOEXEC is handle 1 at 0x2000000."""
    ret, out = client.call(file, "CREATE_BO", size=8 * MiB, flags=3)
    assert (ret, out["handle"], out["offset"]) == (0, 1, 0x2000000)


def test_submit_reads_bo_handles_and_wait_bo_sees_them_busy(dev, file, client):
    """SUBMIT takes bo_handle_count handles at bo_handles; WAIT_BO polls EBUSY until the job ends."""
    client.call(file, "CREATE_BO", size=MiB)
    client.call(file, "CREATE_BO", size=MiB)
    handles = client.array([1, 2])
    assert client.call(file, "SUBMIT", jc=0x1000, bo_handles=handles, bo_handle_count=2)[0] == 0
    assert client.call(file, "WAIT_BO", handle=2)[0] == -errno.EBUSY
    assert client.call(file, "WAIT_BO", handle=2, timeout_ns=dev.clock.now_ns() + 1)[0] == -errno.ETIMEDOUT
    dev.advance(10_000_000)
    assert client.call(file, "WAIT_BO", handle=2)[0] == 0


def test_submit_with_unmapped_bo_handles_is_efault_and_runs_nothing(dev, file, client):
    """bo_handles pointing at unmapped memory: EFAULT, no job queued, no BO busy, nothing leaked."""
    client.call(file, "CREATE_BO", size=MiB)
    free = dev.pages.free_pages
    ret, _ = client.call(file, "SUBMIT", jc=0x1000, bo_handles=0xdead0000, bo_handle_count=1)
    assert ret == -errno.EFAULT
    assert dev.driver.sched.jobs_in_flight() == []
    assert not file.handles.lookup(1).is_active()
    assert dev.pages.free_pages == free


def test_submit_with_a_count_past_the_array_is_efault(dev, file, client):
    """A count larger than the mapped array reads past its end: EFAULT."""
    client.call(file, "CREATE_BO", size=MiB)
    ret, _ = client.call(file, "SUBMIT", jc=0x1000, bo_handles=client.array([1]), bo_handle_count=4096)
    assert ret == -errno.EFAULT and dev.driver.sched.jobs_in_flight() == []


def test_submit_with_an_absurd_count_is_enomem_without_reading(dev, file, client):
    """A count of 2^32-1 handles is refused as the kernel's allocation would be: ENOMEM, nothing read."""
    reads = client.mem.reads
    ret, _ = client.call(file, "SUBMIT", jc=0x1000, bo_handles=client.array([1]), bo_handle_count=0xFFFFFFFF)
    assert ret == -errno.ENOMEM
    assert client.mem.reads == reads + 1  # only the struct itself


def test_submit_in_syncs_are_read_and_refused(file, client):
    """in_syncs is read (EFAULT if unmapped); a sync object vdrm does not have is ENOENT."""
    assert client.call(file, "SUBMIT", jc=1, in_syncs=0xdead0000, in_sync_count=1)[0] == -errno.EFAULT
    assert client.call(file, "SUBMIT", jc=1, in_syncs=client.array([3]), in_sync_count=1)[0] == -errno.ENOENT


def test_set_label_bo_reads_the_string_and_null_clears(dev, file, client):
    """SET_LABEL_BO copies a NUL-terminated label; NULL clears it; it shows in debugfs gems."""
    client.call(file, "CREATE_BO", size=MiB)
    assert client.call(file, "SET_LABEL_BO", handle=1, label=client.string("tiler heap"))[0] == 0
    assert file.handles.lookup(1).label == "tiler heap"
    assert "tiler heap" in debugfs.gems(dev)
    assert client.call(file, "SET_LABEL_BO", handle=1, label=0)[0] == 0
    assert file.handles.lookup(1).label is None


def test_a_label_running_into_unmapped_memory_is_efault_and_changes_nothing(file, client):
    """A label without a NUL before the end of its mapping: EFAULT, the old label stays."""
    client.call(file, "CREATE_BO", size=MiB)
    client.call(file, "SET_LABEL_BO", handle=1, label=client.string("old"))
    unterminated = client.mem.alloc(b"x" * 100)
    assert client.call(file, "SET_LABEL_BO", handle=1, label=unterminated)[0] == -errno.EFAULT
    assert client.call(file, "SET_LABEL_BO", handle=1, label=0xdead0000)[0] == -errno.EFAULT
    assert file.handles.lookup(1).label == "old"


def test_a_label_of_4096_bytes_is_e2big(file, client):
    """A 4096-byte label (no room for the NUL in PANFROST_BO_LABEL_MAXLEN) is E2BIG."""
    client.call(file, "CREATE_BO", size=MiB)
    assert client.call(file, "SET_LABEL_BO", handle=1, label=client.string("y" * 4096))[0] == -errno.E2BIG
    assert client.call(file, "SET_LABEL_BO", handle=1, label=client.string("y" * 4095))[0] == 0


def test_get_param_into_read_only_memory_is_efault(file, client):
    """GET_PARAM whose struct cannot be written back is EFAULT (a read-only struct)."""
    struct = file.dev.ioctls["GET_PARAM"].struct
    addr = client.mem.alloc(struct.pack({"param": 0}), writable=False)
    assert drm_ioctl(file, file.dev.ioctls["GET_PARAM"].cmd, addr, client.mem) == -errno.EFAULT


def test_fault_grows_a_heap_in_binary(dev, file, client):
    """vdrm's FAULT struct: a fault in a heap populates 2 MiB, answers the AS and the block address."""
    client.call(file, "CREATE_BO", size=8 * MiB, flags=3)
    ret, out = client.call(file, "FAULT", addr=0x2000000 + 4096 * 3, exception=0xC3, access=3)
    assert ret == 0 and out["populated"] == 1 and out["addr"] == 0x2000000
    assert "drm-resident-memory:\t2 MiB" in dev.fdinfo(file)
    assert client.call(file, "FAULT", addr=0x2000000, pad=1)[0] == -errno.EINVAL


def test_advance_in_binary_moves_the_virtual_clock(dev, file, client):
    """vdrm's ADVANCE struct: the clock moves by 'by' and now_ns comes back."""
    before = dev.clock.now_ns()
    ret, out = client.call(file, "ADVANCE", by=16_000_000)
    assert ret == 0 and out["now_ns"] == before + 16_000_000


def test_panfrost_ioctls_work_on_card0_too(dev, client):
    """Every Panfrost ioctl is DRM_RENDER_ALLOW and also allowed on the primary node."""
    card = dev.open(0, pid=3, comm="x", uid=1000)
    assert client.call(card, "CREATE_BO", size=MiB)[0] == 0


# -- hostile structs ------------------------------------------------------------------------

_NAMES = sorted(name for name, ioctl in make_device().ioctls.items() if ioctl.number)  # binary ones


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(st.tuples(st.sampled_from(_NAMES), st.integers(0, 3), st.integers(0, 80),
                                st.binary(max_size=80)), min_size=1, max_size=12))
def test_random_structs_never_crash_and_closing_frees_everything(calls):
    """Any ioctl with any direction, size and bytes answers 0 or -errno; closing the file frees it all."""
    dev = make_device()
    free = dev.pages.free_pages
    file = dev.open(128, pid=9, comm="fuzz")
    client = BinaryClient()
    # a mapped scratch area, so some random pointers land on real memory
    client.mem.map(0x7000_0000, 0x1000, data=bytes(range(256)) * 16)
    for name, direction, size, data in calls:
        nr = dev.ioctls[name].number.nr
        addr = client.mem.alloc(data.ljust(size, b"\0") or 1)
        ret = drm_ioctl(file, ioc(direction, 0x64, nr, size), addr, client.mem)
        assert ret <= 0 and (ret == 0 or -ret in errno.errorcode), (name, ret)
    dev.release(file)
    dev.advance(10**12)  # let any job still running end
    assert not list(dev.drm.iter_objects())
    assert dev.pages.free_pages == free


# -- both doors, any session ------------------------------------------------------------------

_HANDLES = st.integers(0, 5)
_OPS = st.one_of(
    st.tuples(st.just("CREATE_BO"), st.fixed_dictionaries({
        "size": st.sampled_from([0, 4096, 12288, MiB, 3 * MiB, 8 * MiB]), "flags": st.integers(0, 4)})),
    st.tuples(st.just("GET_BO_OFFSET"), st.fixed_dictionaries({"handle": _HANDLES})),
    st.tuples(st.just("MMAP_BO"), st.fixed_dictionaries({"handle": _HANDLES, "flags": st.sampled_from([0, 1])})),
    st.tuples(st.just("MADVISE"), st.fixed_dictionaries({"handle": _HANDLES, "madv": st.integers(0, 2)})),
    st.tuples(st.just("GEM_CLOSE"), st.fixed_dictionaries({"handle": _HANDLES})),
    st.tuples(st.just("GET_PARAM"), st.fixed_dictionaries({"param": st.integers(0, 50)})),
    st.tuples(st.just("WAIT_BO"), st.fixed_dictionaries({"handle": _HANDLES})),
    st.tuples(st.just("JM_CTX_CREATE"), st.fixed_dictionaries({"priority": st.integers(0, 3)})),
    st.tuples(st.just("JM_CTX_DESTROY"), st.fixed_dictionaries({"handle": st.integers(0, 3)})),
    st.tuples(st.just("ADVANCE"), st.fixed_dictionaries({"by": st.sampled_from([0, 1000, 5_000_000, -1])})),
    st.tuples(st.just("FAULT"), st.fixed_dictionaries({
        "addr": st.integers(0x1FF_0000, 0x300_0000), "exception": st.sampled_from([0xC1, 0xC3, 0xC8]),
        "access": st.integers(0, 3)})),
    st.tuples(st.just("SUBMIT"), st.fixed_dictionaries({
        "jc": st.sampled_from([0, 0x1000]), "bo_handles": st.lists(_HANDLES, max_size=3),
        "requirements": st.integers(0, 3), "jm_ctx_handle": st.integers(0, 2)})),
    st.tuples(st.just("SET_LABEL_BO"), st.fixed_dictionaries({
        "handle": _HANDLES, "label": st.one_of(st.none(), st.text(alphabet="abc xyz", max_size=8))})),
)


def _text_line(verb, args):
    parts = [verb]
    for key, value in args.items():
        if key == "label":
            if value is not None:
                parts.append("label=" + protocol.encode_value(value) if value else "label=")
        elif isinstance(value, list):
            parts.append(f"{key}={','.join(map(str, value))}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _binary_fields(client, verb, args):
    fields = dict(args)
    if verb == "SUBMIT":
        handles = fields.pop("bo_handles")
        fields["bo_handles"] = client.array(handles) if handles else 0
        fields["bo_handle_count"] = len(handles)
    if verb == "SET_LABEL_BO":
        label = fields.pop("label")
        fields["label"] = 0 if label is None else client.string(label)
    return fields


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_OPS, min_size=1, max_size=15))
def test_any_session_gives_the_same_answers_through_both_doors(ops):
    """Random sessions on twin devices: every errno and output field agrees, and so do fdinfo and gems."""
    a, b = make_device(), make_device()
    fa, fb = a.open(128, pid=7, comm="demo"), b.open(128, pid=7, comm="demo")
    client = BinaryClient()
    for verb, args in ops:
        line = _text_line(verb, args)
        reply = protocol.parse_reply(protocol.handle(a.ioctls, fa, line.encode()).line)
        ret, out = client.call(fb, verb, **_binary_fields(client, verb, args))
        if reply.ok:
            assert ret == 0, (line, ret)
            expected = _text_results(reply)
            for f in b.ioctls[verb].struct:
                if f.is_output and f.result_key in expected:
                    assert out[f.name] == expected[f.result_key], (line, f.name)
        else:
            assert ret == -getattr(errno, reply.errname), (line, reply)
    assert a.fdinfo(fa) == b.fdinfo(fb)
    assert debugfs.gems(a) == debugfs.gems(b)
