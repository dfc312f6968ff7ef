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

    def _file(self, i):
        return self.files[i % len(self.files)] if self.files else None

    def _do(self, i, line):
        f = self._file(i)
        if f is not None:
            reply = request(self.dev, f, line)
            assert reply.startswith(("ok", "error E")), reply
            assert not reply.startswith("error EIO"), reply  # never a crash reply

    def _pick(self, i, what, k):
        """An id the file has (k-th of them), or one it does not have when it has none."""
        f = self._file(i)
        if f is None:
            return 99
        priv = f.driver_priv
        ids = sorted({"vm": priv.vms, "group": priv.groups}.get(what, {}) if what != "bo"
                     else [h for h, _ in f.handles.items()])
        if what == "heap":
            ids = sorted((vm.id << 16) | h for vm in priv.vms.values() if vm.heaps for h in vm.heaps.heaps)
        return ids[k % len(ids)] if ids else 99

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

    @rule(i=st.integers(0, 2), k=st.integers(0, 3))
    def vm_destroy(self, i, k):
        self._do(i, f"VM_DESTROY id={self._pick(i, 'vm', k)}")

    @rule(i=st.integers(0, 2), pages=st.integers(1, 512), k=st.integers(0, 3), exclusive=st.booleans())
    def bo_create(self, i, pages, k, exclusive):
        vm = self._pick(i, "vm", k) if exclusive else 0
        self._do(i, f"BO_CREATE size={pages * 4096} exclusive_vm_id={vm}")

    @rule(i=st.integers(0, 2), kb=st.integers(0, 3), kv=st.integers(0, 3), va=st.integers(0, 64),
          npages=st.integers(1, 64), off=st.integers(0, 8), asynchronous=st.booleans())
    def bind(self, i, kb, kv, va, npages, off, asynchronous):
        flags = "flags=ASYNC " if asynchronous else ""
        self._do(i, f"VM_BIND vm_id={self._pick(i, 'vm', kv)} {flags}bo_handle={self._pick(i, 'bo', kb)} "
                    f"bo_offset={off * 4096} va={(va + 1) * 0x10000} size={npages * 4096}")

    @rule(i=st.integers(0, 2), kv=st.integers(0, 3), va=st.integers(0, 64), npages=st.integers(1, 128))
    def unbind(self, i, kv, va, npages):
        self._do(i, f"VM_BIND vm_id={self._pick(i, 'vm', kv)} op=UNMAP va={(va + 1) * 0x10000} "
                    f"size={npages * 4096}")

    @rule(i=st.integers(0, 2), kb=st.integers(0, 3))
    def gem_close(self, i, kb):
        self._do(i, f"GEM_CLOSE handle={self._pick(i, 'bo', kb)}")

    @rule(i=st.integers(0, 2), kv=st.integers(0, 3), nq=st.integers(1, 3))
    def group_create(self, i, kv, nq):
        self._do(i, f"GROUP_CREATE vm_id={self._pick(i, 'vm', kv)} queues={','.join(['4096'] * nq)}")

    @rule(i=st.integers(0, 2), kg=st.integers(0, 3), q=st.integers(0, 2), ms=st.integers(0, 20))
    def submit(self, i, kg, q, ms):
        self._do(i, f"GROUP_SUBMIT group_handle={self._pick(i, 'group', kg)} queue_index={q} duration={ms}ms")

    @rule(i=st.integers(0, 2), kg=st.integers(0, 3))
    def group_destroy(self, i, kg):
        self._do(i, f"GROUP_DESTROY group_handle={self._pick(i, 'group', kg)}")

    @rule(i=st.integers(0, 2), kv=st.integers(0, 3), n=st.integers(1, 3), mx=st.integers(1, 6))
    def heap_create(self, i, kv, n, mx):
        self._do(i, f"TILER_HEAP_CREATE vm_id={self._pick(i, 'vm', kv)} initial_chunk_count={n} "
                    f"chunk_size=512K max_chunks={mx}")

    @rule(i=st.integers(0, 2), kh=st.integers(0, 3), rp=st.integers(0, 2))
    def oom(self, i, kh, rp):
        self._do(i, f"TILER_OOM heap={self._pick(i, 'heap', kh)} renderpasses_in_flight={rp}")

    @rule(i=st.integers(0, 2), kh=st.integers(0, 3))
    def heap_destroy(self, i, kh):
        self._do(i, f"TILER_HEAP_DESTROY handle={self._pick(i, 'heap', kh)}")

    @rule(i=st.integers(0, 2), bad=st.sampled_from(["VM_DESTROY id=77", "GROUP_SUBMIT group_handle=77",
                                                    "TILER_OOM heap=0x4d0000", "VM_BIND vm_id=77 op=UNMAP va=0x10000 size=4K",
                                                    "GROUP_CREATE vm_id=77", "BO_CREATE size=0"]))
    def bad_request(self, i, bad):
        """Requests naming what does not exist fail cleanly and change nothing."""
        self._do(i, bad)

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
