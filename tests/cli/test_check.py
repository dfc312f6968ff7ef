"""``vdrm check``: the comparison rules and quirks on hand-made reports, then real reports
from the project's own /proc-walking parser (tests/tools/fdinfo_top.py) under ``vdrm run``."""

from __future__ import annotations

import json
import sys

import pytest

from tests.cli.conftest import TOOLS, needs_fuse, vdrm
from vdrm.check import ReportError, Tolerance, compare, parse_tolerance


def truth_client(cid: int, *, pid: int = 100, minor: int = 128, fragment: float = 0.5, tiler: float = 0.25,
                 resident: int = 4 << 20, profiling: bool = True) -> dict:
    return {"drm-client-id": cid, "minor": minor, "pid": pid, "profiling": profiling,
            "engines": {"fragment": {"utilisation": fragment}, "vertex-tiler": {"utilisation": tiler}},
            "memory": {"total": 8 << 20, "shared": 0, "resident": resident, "purgeable": 0, "active": 0}}


def report_client(cid: int, *, fragment: float = 0.5, tiler: float = 0.25, **extra) -> dict:
    return {"drm-client-id": cid, "minor": 128, "engines": {"fragment": fragment, "vertex-tiler": tiler}, **extra}


def lines(report: dict, truth: list[dict], **kw) -> list[str]:
    return [str(m) for m in compare(report, {"clients": truth}, **kw)]


def test_an_agreeing_report_has_no_mismatch() -> None:
    """Same clients, utilisation within the tolerance, exact memory: nothing to say."""
    report = {"clients": [report_client(1, fragment=0.503, memory={"resident": 4 << 20})]}
    assert lines(report, [truth_client(1)]) == []


def test_each_mismatch_is_one_line_with_its_tolerance() -> None:
    """A wrong engine, a wrong memory value, a missing and an extra client: four lines, each naming its tolerance."""
    report = {"clients": [report_client(1, fragment=0.6, memory={"resident": 3 << 20}), report_client(9)]}
    out = lines(report, [truth_client(1), truth_client(2, pid=200)])
    assert out == [
        "client 1 (minor 128, pid 100): fragment utilisation 0.6000, truth 0.5000 [tolerance: ±0.005]",
        "client 1 (minor 128, pid 100): memory resident 3145728 B, truth 4194304 B (-1048576 B) [tolerance: exact]",
        "client 2 (minor 128, pid 200): missing from the report [tolerance: exact]",
        "client 9 (minor 128): reported, but the device has no such client [tolerance: exact]",
    ]


def test_tolerances_apply() -> None:
    """A wider utilisation tolerance and a percentage memory tolerance accept what the defaults refuse."""
    report = {"clients": [report_client(1, fragment=0.52, memory={"resident": (4 << 20) - 4096})]}
    assert len(lines(report, [truth_client(1)])) == 2
    assert lines(report, [truth_client(1)], utilisation_tolerance=0.03, memory_tolerance=parse_tolerance("1%")) == []
    assert parse_tolerance("4K") == Tolerance(size=4096)


def test_engine_time_going_backwards_accepts_the_clamp() -> None:
    """Where the truth is negative a clamped 0 agrees; the negative value itself agrees too; 0.3 does not."""
    truth = [truth_client(1, fragment=-0.5)]
    assert lines({"clients": [report_client(1, fragment=0.0)]}, truth) == []
    assert lines({"clients": [report_client(1, fragment=-0.5)]}, truth) == []
    [line] = lines({"clients": [report_client(1, fragment=0.3)]}, truth)
    assert "went backwards" in line and "or 0 (clamped)" in line


def test_profiling_off_accepts_showing_nothing() -> None:
    """With profiling off, null engines agree; with profiling on, null is a mismatch."""
    report = {"clients": [report_client(1, fragment=None, tiler=None)]}
    assert lines(report, [truth_client(1, fragment=0, tiler=0, profiling=False)]) == []
    assert len(lines(report, [truth_client(1, fragment=0, tiler=0)])) == 2


def test_quirk_kcmp_dedup() -> None:
    """One pid with two clients, only the first reported: a mismatch that hints at the quirk, accepted with it."""
    truth = [truth_client(1), truth_client(2)]
    report = {"clients": [report_client(1)]}
    [line] = lines(report, truth)
    assert "missing" in line and "--expect kcmp-dedup" in line
    assert lines(report, truth, expect=["kcmp-dedup"]) == []
    # a client of another pid is still required
    assert len(lines(report, [*truth, truth_client(3, pid=300)], expect=["kcmp-dedup"])) == 1


def test_quirk_u32_client_id() -> None:
    """An id past 2**32 reported truncated: named as such; accepted truncated or dropped with the quirk."""
    big = 4294967301
    truth = [truth_client(big)]
    truncated = {"clients": [report_client(5)]}
    [line] = lines(truncated, truth)
    assert "reported as drm-client-id 5: truncated to 32 bits" in line
    assert lines(truncated, truth, expect=["u32-client-id"]) == []
    assert lines({"clients": []}, truth, expect=["u32-client-id"]) == []
    assert lines({"clients": []}, [truth_client(7)], expect=["u32-client-id"]) != []


def test_quirk_engines_summed() -> None:
    """One summed engine agrees with the quirk; above the wall time it must be null (discarded)."""
    truth = [truth_client(1, fragment=0.5, tiler=0.25)]
    summed = {"clients": [{"drm-client-id": 1, "engines": {"gfx": 0.75}}]}
    assert len(lines(summed, truth)) == 3  # two engines read as 0, one unknown engine
    assert lines(summed, truth, expect=["engines-summed"]) == []
    busy = [truth_client(1, fragment=0.8, tiler=0.6)]
    assert lines({"clients": [{"drm-client-id": 1, "engines": {"gfx": None}}]}, busy, expect=["engines-summed"]) == []
    [line] = lines({"clients": [{"drm-client-id": 1, "engines": {"gfx": 1.4}}]}, busy, expect=["engines-summed"])
    assert "discards it" in line


def test_bad_input_is_refused() -> None:
    """A report that is not the schema, and an unknown quirk, raise ReportError."""
    for bad in ({}, {"clients": [{"engines": {}}]}, {"clients": [{"drm-client-id": 1, "engines": {"f": "x"}}]},
                {"clients": [{"drm-client-id": 1, "memory": {"memory": {"total": "1"}}}]}):
        with pytest.raises(ReportError):
            compare(bad, {"clients": []})
    with pytest.raises(ReportError, match="unknown quirk"):
        compare({"clients": []}, {"clients": []}, expect=["lenient"])


def test_the_command_exit_statuses(tmp_path) -> None:
    """0 when all agree, 1 with mismatches (printed), 2 for unreadable or malformed input."""
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"clients": [truth_client(1)]}))
    good, bad, junk = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "junk.json"
    good.write_text(json.dumps({"clients": [report_client(1)]}))
    bad.write_text(json.dumps({"clients": [report_client(1, fragment=0.9)]}))
    junk.write_text("{not json")
    ok = vdrm("check", str(good), "--truth", str(truth))
    assert ok.returncode == 0 and "ok, 1 client agrees" in ok.stdout
    wrong = vdrm("check", str(bad), "--truth", str(truth))
    assert wrong.returncode == 1 and "fragment utilisation 0.9000, truth 0.5000" in wrong.stdout
    assert vdrm("check", str(junk), "--truth", str(truth)).returncode == 2
    assert vdrm("check", str(tmp_path / "missing.json"), "--truth", str(truth)).returncode == 2
    assert vdrm("check", str(good), "--truth", str(truth), "--expect", "lenient").returncode == 2
    assert vdrm("check", str(good), env={"VDRM_MOUNT": ""}).returncode == 2  # no truth anywhere


# -- real reports -------------------------------------------------------------------------

PARSE = f"{sys.executable} {TOOLS}/fdinfo_top.py --clock-step 1s | {sys.executable} {TOOLS}/check_report.py"


@needs_fuse
@pytest.mark.parametrize("scenario", ["busy-game", "dup-and-two-opens", "bug-inherited-fd", "bug-client-id-past-u32",
                                      "bug-card-and-render-node", "idle-desktop", "profiling-off"])
def test_the_projects_parser_agrees_with_the_truth(scenario: str, tmp_path) -> None:
    """fdinfo_top's report, through the glue, passes vdrm check on the scenarios it handles right."""
    result = vdrm("run", "--scenario", scenario, "--", "bash", "-euo", "pipefail", "-c",
                  f"{PARSE} > {tmp_path}/r.json && {sys.executable} -m vdrm check {tmp_path}/r.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "vdrm check: ok" in result.stdout


@needs_fuse
def test_truncating_units_need_a_tolerance(tmp_path) -> None:
    """On old-kernel units the parser reads 2 MiB for 2052 KiB: a mismatch, unless a 1% tolerance is allowed."""
    script = (f"{PARSE} > {tmp_path}/r.json; {sys.executable} -m vdrm truth > {tmp_path}/t.json; "
              f"{sys.executable} -m vdrm check {tmp_path}/r.json")
    result = vdrm("run", "--scenario", "bug-old-kernel-units", "--", "bash", "-c", script)
    assert result.returncode == 1
    assert "memory resident 2097152 B, truth 2113536 B (-16384 B) [tolerance: exact]" in result.stdout
    again = vdrm("check", f"{tmp_path}/r.json", "--truth", f"{tmp_path}/t.json", "--memory-tolerance", "1%")
    assert again.returncode == 0, again.stdout


@needs_fuse
def test_a_kcmp_deduplicating_parser_is_caught_or_expected(tmp_path) -> None:
    """Dropping all but a pid's first client (nvtop under seccomp) fails the check, and passes with --expect kcmp-dedup."""
    drop = ("import json,sys; r=json.load(sys.stdin); seen=set(); out=[]\n"
            "for c in r['clients']:\n"
            "    if c['pids'][0] not in seen: seen.add(c['pids'][0]); out.append(c)\n"
            "json.dump({'clients': out}, sys.stdout)")
    script = (f"{PARSE} | {sys.executable} -c \"{drop}\" > {tmp_path}/r.json && "
              f"{sys.executable} -m vdrm truth > {tmp_path}/t.json")
    result = vdrm("run", "--scenario", "dup-and-two-opens", "--", "bash", "-euo", "pipefail", "-c", script)
    assert result.returncode == 0, result.stderr
    strict = vdrm("check", f"{tmp_path}/r.json", "--truth", f"{tmp_path}/t.json")
    assert strict.returncode == 1 and "--expect kcmp-dedup" in strict.stdout
    assert vdrm("check", f"{tmp_path}/r.json", "--truth", f"{tmp_path}/t.json", "--expect", "kcmp-dedup").returncode == 0
