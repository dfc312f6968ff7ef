"""The benchmark runs end to end at tiny sizes and reports figures of the right shape.

Structure only: no figure is compared with a speed or memory target here (style.md: speed
is measured by a benchmark that prints figures, never asserted in a timed test).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from vdrm.bench import memory, mounted, speed, suite
from vdrm.drm.limits import Limits

_FUSE = os.path.exists("/dev/fuse") and os.geteuid() == 0 and shutil.which("umount") is not None
needs_fuse = pytest.mark.skipif(not _FUSE, reason="real mounts need /dev/fuse and root")


def _is_rate(value: object) -> bool:
    return isinstance(value, float) and value > 0


def test_memory_rows_cover_every_size_backing_and_residency() -> None:
    """One row per (size, backing, residency), with byte counts and the two targets."""
    result = memory.run(sizes=(4 << 20, 8 << 20), residencies=(0.0, 0.5, 1.0))
    rows = result["rows"]
    assert len(rows) == 2 * 2 * 3
    for row in rows:
        assert row["python_bytes"] >= row["backing_bytes"] >= 0
        assert row["kernel_bytes"] >= 0
        assert (row["python_per_page"] is None) == (row["resident_pages"] == 0)
    full = [r for r in rows if r["residency"] == 1.0]
    assert all(r["resident_pages"] == r["size"] >> 12 for r in full)
    assert set(result["targets"]) == {"sparse_python_bytes_per_resident_page", "sparse_python_bytes_per_empty_heap"}


def test_engine_speed_reports_rates() -> None:
    """Faults, sg builds and fdinfo renders each come back as a positive rate."""
    result = speed.run(quick=True)
    assert set(result["fault_per_s"]) == {"sparse", "dense"}
    assert all(_is_rate(v) for v in result["fault_per_s"].values())
    assert all(_is_rate(v["per_s"]) and v["entries"] > 0 for v in result["sg_build_per_s"].values())
    assert all(_is_rate(v) for v in result["fdinfo_per_s"].values())


def test_engine_scale_compares_side_by_side() -> None:
    """Each scale comparison has both rates, a ratio and a cost ratio; memory per client and BO."""
    result = speed.scale(small=2, large=20, bos=2, batch=5, repeats=3)
    for key in ("fdinfo", "version_request", "bo_request"):
        c = result[key]
        assert _is_rate(c["rate"]) and _is_rate(c["reference_rate"])
        assert c["cost_ratio"] == pytest.approx(1 / c["ratio"])
        assert len(c["samples"]) == 3
    assert result["python_bytes_per_client"] > 0 and result["python_bytes_per_bo"] > 0


def test_engine_scale_goes_past_the_daemons_default_limits() -> None:
    """The scale run builds more clients and BOs than a mount lets its users hold."""
    limits = Limits()
    result = speed.scale(small=2, large=limits.clients + 1, bos=limits.bos // limits.clients + 1,
                         batch=5, repeats=1)
    assert result["large_clients"] == limits.clients + 1


def test_mounted_scale_goes_past_the_daemons_default_limits() -> None:
    """The mounted scale run's holders open more clients than a default mount allows."""
    result = mounted.scale(small=2, large=Limits().clients + 1, bos=1, batch=5, repeats=1)
    assert result["large_clients"] == Limits().clients + 1 and result["fdinfo"]["rate"] > 0


def test_scenario_text_declares_every_client_and_process(tmp_path: Path) -> None:
    """The generated scenario loads, with one process holding fd 3 on each client."""
    from vdrm.scenario.load import load

    spec = load(mounted.write_scenario(3, 2, str(tmp_path)))
    assert len(spec.clients) == 3 and len(spec.processes) == 3
    assert all(len(c.bos) == 2 for c in spec.clients)


@needs_fuse
def test_the_whole_suite_runs_quick_and_writes_json(tmp_path: Path) -> None:
    """``python -m vdrm.bench --quick`` parts all run; JSON, table and targets come out."""
    out = tmp_path / "results"
    assert suite.main(["--quick", "--out", str(out)]) == 0
    data = json.loads((out / "latest.json").read_text())
    for part in ("memory", "engine", "mount", "scale_engine", "scale_mount", "concurrency", "bridge"):
        assert part in data, part
    for key in ("fdinfo_read", "request", "proc_walk"):
        assert _is_rate(data["mount"][key]["rate"]) and _is_rate(data["mount"][key]["reference_rate"])
    assert {"1", "2"} <= set(data["concurrency"])
    assert all(isinstance(t["met"], bool) for t in data["targets"])
    assert "Targets" in (out / "latest.txt").read_text()
    # every part says how much CPU the hypervisor took meanwhile: what makes runs differ
    assert set(data["steal"]) >= {"1 memory", "2 engine speed", "3 through the mount"}
    assert all(0.0 <= share <= 1.0 for share in data["steal"].values())
    assert "CPU steal" in (out / "latest.txt").read_text()


def test_steal_is_the_stolen_share_of_the_cpu_ticks_between_two_readings() -> None:
    from vdrm.bench.common import cpu_ticks, steal_share

    assert steal_share((10, 1000), (60, 2000)) == 0.05
    assert steal_share((0, 0), (0, 0)) == 0.0
    steal, total = cpu_ticks()
    assert 0 <= steal <= total and total > 0


def test_compare_settles_each_side_before_timing_its_batch() -> None:
    """Every timed batch follows a tenth of a batch of untimed calls of its own side, and
    the sides alternate which goes first."""
    from itertools import groupby

    from vdrm.bench.common import compare

    calls: list[str] = []
    compare(lambda: calls.append("a"), lambda: calls.append("b"), batch=20, repeats=3, warmup=0)
    runs = [(side, len(list(group))) for side, group in groupby(calls)]
    assert runs == [("b", 22), ("a", 44), ("b", 44), ("a", 22)]  # b a | a b | b a
