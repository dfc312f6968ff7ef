"""A state machine over the whole device: any order of client operations keeps the books."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vdrm.drm.fdinfo import memory_stats
from vdrm.errors import VdrmError
from vdrm.panfrost.gem import BO_HEAP, BO_NOEXEC, SZ_2M, MADV_DONTNEED, MADV_WILLNEED

from .conftest import MiB, ioctl, make_device

_SIZE_RE = re.compile(r"^drm-(\w+)-memory:\t(\d+)( KiB| MiB)?$", re.M)
_UNIT = {None: 1, " KiB": 1024, " MiB": 1 << 20}


def parse_memory(text: str) -> dict[str, int]:
    return {m[1]: int(m[2]) * _UNIT[m[3]] for m in _SIZE_RE.finditer(text)}


class DeviceMachine(RuleBasedStateMachine):
    """Clients create, fault, submit, share and close in any order on a small device."""

    backing = "sparse"

    def __init__(self):
        super().__init__()
        self.dev = make_device(ram_size=64 * MiB, kernel=(6, 18), heap_backing=self.backing)
        self.free_at_start = self.dev.pages.free_pages
        self.files = []

    @rule(minor=st.sampled_from([0, 128]))
    def open(self, minor):
        if len(self.files) < 4:
            self.files.append(self.dev.open(minor))

    @precondition(lambda self: self.files)
    @rule(i=st.integers(0, 3), pages=st.integers(1, 1024), kind=st.sampled_from(["heap", "noexec", "exec"]))
    def create(self, i, pages, kind):
        f = self.files[i % len(self.files)]
        flags = {"heap": BO_HEAP | BO_NOEXEC, "noexec": BO_NOEXEC, "exec": 0}[kind]
        try:
            ioctl(f, "CREATE_BO", size=pages * 4096, flags=flags)
        except VdrmError as err:
            assert err.errname in ("ENOMEM", "ENOSPC")

    @precondition(lambda self: self.files)
    @rule(i=st.integers(0, 3), where=st.integers(0, (64 * MiB) - 1))
    def fault(self, i, where):
        f = self.files[i % len(self.files)]
        try:
            ioctl(f, "FAULT", addr=0x2000000 + where)
        except VdrmError as err:
            assert err.errname in ("ENOENT", "EINVAL", "ENOMEM")

    @precondition(lambda self: self.files)
    @rule(i=st.integers(0, 3), handles=st.lists(st.integers(1, 6), max_size=3),
          fs=st.booleans(), touch=st.lists(st.integers(0, 16 * MiB), max_size=3))
    def submit(self, i, handles, fs, touch):
        f = self.files[i % len(self.files)]
        try:
            ioctl(f, "SUBMIT", bo_handles=handles, requirements=int(fs), duration=500_000,
                  touch=[0x2000000 + t for t in touch])
        except VdrmError as err:
            assert err.errname in ("ENOENT", "EINVAL")

    @precondition(lambda self: self.files)
    @rule(i=st.integers(0, 3), handle=st.integers(1, 6), dontneed=st.booleans())
    def madvise(self, i, handle, dontneed):
        f = self.files[i % len(self.files)]
        try:
            ioctl(f, "MADVISE", handle=handle, madv=MADV_DONTNEED if dontneed else MADV_WILLNEED)
        except VdrmError as err:
            assert err.errname in ("ENOENT", "EINVAL")

    @precondition(lambda self: len(self.files) >= 2)
    @rule(i=st.integers(0, 3), j=st.integers(0, 3), handle=st.integers(1, 6))
    def share(self, i, j, handle):
        a, b = self.files[i % len(self.files)], self.files[j % len(self.files)]
        try:
            name = ioctl(a, "GEM_FLINK", handle=handle)["name"]
            ioctl(b, "GEM_OPEN", name=name)
        except VdrmError as err:
            assert err.errname in ("ENOENT", "ENOSPC", "ENOMEM")

    @precondition(lambda self: self.files)
    @rule(i=st.integers(0, 3), handle=st.integers(1, 6))
    def close_handle(self, i, handle):
        f = self.files[i % len(self.files)]
        try:
            ioctl(f, "GEM_CLOSE", handle=handle)
        except VdrmError as err:
            assert err.errname == "ENOENT"

    @precondition(lambda self: self.files)
    @rule(i=st.integers(0, 3))
    def close_file(self, i):
        self.dev.release(self.files.pop(i % len(self.files)))

    @rule(ns=st.integers(0, 2_000_000), profiling=st.booleans())
    def tick(self, ns, profiling):
        self.dev.clock.advance(ns)
        self.dev.write_profiling(str(int(profiling)))

    @invariant()
    def books_balance(self):
        dev = self.dev
        resident_pages = 0
        for obj in dev.drm.iter_objects():
            assert obj.refcount > 0 and obj.handle_count >= 0
            if obj.is_heap:
                assert obj.heap_rss_size % SZ_2M == 0
                assert obj.heap_rss_size == len(obj.populated_blocks()) * SZ_2M
            resident_pages += obj.rss() // 4096
        assert dev.pages.total_pages - dev.pages.free_pages == resident_pages
        for f in self.files:
            stats = memory_stats(f, dev.kernel)
            assert stats.total == sum(obj.size for _, obj in f.handles.items())
            assert stats.resident <= stats.total
            numbers = parse_memory(dev.fdinfo(f))
            assert numbers["total"] == stats.total
            assert numbers.get("resident", 0) == stats.resident

    def teardown(self):
        for f in self.files:
            self.dev.release(f)
        self.dev.clock.advance(10**9)
        self.dev.update()
        assert list(self.dev.drm.iter_objects()) == []
        assert self.dev.pages.free_pages == self.free_at_start


class DenseDeviceMachine(DeviceMachine):
    """The same machine with mainline's dense heap backing."""

    backing = "dense"


_SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
DeviceMachine.TestCase.settings = _SETTINGS
DenseDeviceMachine.TestCase.settings = _SETTINGS
TestSparseDevice = DeviceMachine.TestCase
TestDenseDevice = DenseDeviceMachine.TestCase
