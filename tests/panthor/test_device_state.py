"""A state machine over Panthor's uAPI: any order of operations keeps the books, leaks nothing."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from .conftest import MiB, make_device, request


class PanthorMachine(RuleBasedStateMachine):
    """Clients make VMs, BOs, bindings, groups, jobs and heaps and close, in any order."""

    backing = "sparse"

    def __init__(self):
        super().__init__()
        self.dev = make_device(ram_size=48 * MiB, heap_backing=self.backing, profiling=3)
        self.free_at_start = self.dev.pages.free_pages
        self.files = []

    def _do(self, i, line):
        if self.files:
            reply = request(self.dev, self.files[i % len(self.files)], line)
            assert reply.startswith(("ok", "error E")), reply  # never a crash (EIO) reply
            assert not reply.startswith("error EIO"), reply

    @rule()
    def open(self):
        if len(self.files) < 3:
            self.files.append(self.dev.open(128))

    @rule(i=st.integers(0, 2))
    def close(self, i):
        if self.files:
            self.dev.release(self.files.pop(i % len(self.files)))

    @rule(i=st.integers(0, 2))
    def vm_create(self, i):
        self._do(i, "VM_CREATE")

    @rule(i=st.integers(0, 2), vm=st.integers(1, 3))
    def vm_destroy(self, i, vm):
        self._do(i, f"VM_DESTROY id={vm}")

    @rule(i=st.integers(0, 2), pages=st.integers(1, 512), vm=st.integers(0, 2))
    def bo_create(self, i, pages, vm):
        self._do(i, f"BO_CREATE size={pages * 4096} exclusive_vm_id={vm}")

    @rule(i=st.integers(0, 2), h=st.integers(1, 4), vm=st.integers(1, 3), va=st.integers(0, 64),
          npages=st.integers(1, 64), off=st.integers(0, 8), asynchronous=st.booleans())
    def bind(self, i, h, vm, va, npages, off, asynchronous):
        flags = "flags=ASYNC " if asynchronous else ""
        self._do(i, f"VM_BIND vm_id={vm} {flags}bo_handle={h} bo_offset={off * 4096} "
                    f"va={(va + 1) * 0x10000} size={npages * 4096}")

    @rule(i=st.integers(0, 2), vm=st.integers(1, 3), va=st.integers(0, 64), npages=st.integers(1, 128))
    def unbind(self, i, vm, va, npages):
        self._do(i, f"VM_BIND vm_id={vm} op=UNMAP va={(va + 1) * 0x10000} size={npages * 4096}")

    @rule(i=st.integers(0, 2), h=st.integers(1, 4))
    def gem_close(self, i, h):
        self._do(i, f"GEM_CLOSE handle={h}")

    @rule(i=st.integers(0, 2), vm=st.integers(1, 3))
    def group_create(self, i, vm):
        self._do(i, f"GROUP_CREATE vm_id={vm} queues=4096")

    @rule(i=st.integers(0, 2), g=st.integers(1, 3), ms=st.integers(0, 20))
    def submit(self, i, g, ms):
        self._do(i, f"GROUP_SUBMIT group_handle={g} duration={ms}ms")

    @rule(i=st.integers(0, 2), g=st.integers(1, 3))
    def group_destroy(self, i, g):
        self._do(i, f"GROUP_DESTROY group_handle={g}")

    @rule(i=st.integers(0, 2), vm=st.integers(1, 3), n=st.integers(1, 3), mx=st.integers(1, 6))
    def heap_create(self, i, vm, n, mx):
        self._do(i, f"TILER_HEAP_CREATE vm_id={vm} initial_chunk_count={n} chunk_size=512K max_chunks={mx}")

    @rule(i=st.integers(0, 2), vm=st.integers(1, 3), heap=st.integers(0, 2), rp=st.integers(0, 2))
    def oom(self, i, vm, heap, rp):
        self._do(i, f"TILER_OOM heap={(vm << 16) | heap} renderpasses_in_flight={rp}")

    @rule(i=st.integers(0, 2), vm=st.integers(1, 3), heap=st.integers(0, 2))
    def heap_destroy(self, i, vm, heap):
        self._do(i, f"TILER_HEAP_DESTROY handle={(vm << 16) | heap}")

    @rule(ms=st.integers(0, 30))
    def advance(self, ms):
        self.dev.advance(ms * 1_000_000)

    @invariant()
    def books_balance(self):
        """Internal memory is what groups and heaps hold; bound BOs are resident; refcounts positive."""
        for f in self.files:
            resident, _ = self.dev.driver.internal_memory(f)
            expect = 0
            for g in f.driver_priv.groups.values():
                expect += sum(bo.size for bo in g.internal_bos())
            for vm in f.driver_priv.vms.values():
                assert not vm.destroyed
                for a, b in zip(vm.mappings, vm.mappings[1:]):
                    assert a.end <= b.va  # never overlapping
                for m in vm.mappings:
                    assert m.bo.refcount > 0 and m.bo.pages is not None
                if vm.heaps:
                    expect += vm.heaps.ctx_bo.size
                    for heap in vm.heaps.heaps.values():
                        assert 1 <= heap.chunk_count <= heap.max_chunks
                        expect += heap.chunk_size * heap.chunk_count
            assert resident == expect
        for obj in self.dev.drm.iter_objects():
            assert obj.refcount > 0

    def teardown(self):
        for f in self.files:
            self.dev.release(f)
        assert self.dev.pages.free_pages == self.free_at_start, "pages leaked"
        assert not list(self.dev.drm.iter_objects()), "objects leaked"


class DensePanthorMachine(PanthorMachine):
    backing = "dense"


TestPanthorSparse = PanthorMachine.TestCase
TestPanthorSparse.settings = settings(max_examples=40, stateful_step_count=40, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])
TestPanthorDense = DensePanthorMachine.TestCase
TestPanthorDense.settings = TestPanthorSparse.settings
