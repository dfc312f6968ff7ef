"""``vdrm record`` and ``vdrm replay``: a recording of a vdrm mount replays to the same tree
at every step; each fixture trace replays under the runner with the project's own parser
agreeing with the replayed truth; the fixtures are what tests/tools/doc_traces.py builds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.cli.conftest import ROOT, TOOLS, needs_fuse, vdrm
from vdrm import replay
from vdrm.replay import Replay, TraceError, parse_fdinfo

TRACES = ROOT / "fixtures" / "traces"
FIXTURES = ("amdgpu", "i915", "xe", "msm", "v3d", "panthor")
DUMP = f"{sys.executable} {TOOLS}/tree_dump.py"


def dumps_across_steps(command: list[str], steps: int, step: str = "500ms") -> list[dict]:
    """Inside ``command`` (vdrm run/replay ... --): the tree dump, then a clock step, ``steps`` times."""
    script = "; ".join([f"{DUMP}; echo {step} > /sys/kernel/debug/dri/128/vdrm-clock"] * steps)
    result = vdrm(*command, "--", "bash", "-euo", "pipefail", "-c", script)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@needs_fuse
@pytest.mark.parametrize("scenario", ["busy-game", "dup-and-two-opens", "bug-inherited-fd", "shared-bo",
                                      "bug-card-and-render-node", "tiler-heap-growth", "two-gpus"])
def test_a_recorded_vdrm_mount_replays_identically_at_every_step(scenario: str, tmp_path: Path) -> None:
    """Record 4 samples across 500 ms clock steps; the replayed tree equals the original at each step, byte for byte."""
    trace = tmp_path / "trace.json"
    recorded = vdrm("run", "--scenario", scenario, "--", sys.executable, "-m", "vdrm", "record",
                    "-o", str(trace), "--samples", "4", "--clock-step", "500ms")
    assert recorded.returncode == 0, recorded.stderr
    original = dumps_across_steps(["run", "--scenario", scenario], 4)
    replayed = dumps_across_steps(["replay", str(trace)], 4)
    assert len(original) == len(replayed) == 4
    for i, (a, b) in enumerate(zip(original, replayed)):
        assert a == b, f"step {i}: " + ", ".join(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
    assert any(k.startswith("proc/") and "/fdinfo/" in k for k in original[0])
    if scenario in ("busy-game", "tiler-heap-growth"):
        assert original[0] != original[1], "the clock steps change the tree"


@needs_fuse
def test_replay_truth_matches_the_emulated_truth(tmp_path: Path) -> None:
    """The replayed busy game's truth over a step equals the emulated device's truth over the same step."""
    trace = tmp_path / "trace.json"
    assert vdrm("run", "--scenario", "busy-game", "--", sys.executable, "-m", "vdrm", "record",
                "-o", str(trace), "--samples", "2", "--clock-step", "1s").returncode == 0
    result = vdrm("replay", str(trace), "--", "bash", "-c",
                  f"echo 1s > /sys/kernel/debug/dri/128/vdrm-clock && {sys.executable} -m vdrm truth")
    assert result.returncode == 0, result.stderr
    [replayed] = json.loads(result.stdout)["clients"]
    [emulated] = json.loads(vdrm("truth", "--scenario", "busy-game", "--step", "1s").stdout)["clients"]
    for engine, row in emulated["engines"].items():
        assert replayed["engines"][engine]["utilisation"] == pytest.approx(row["utilisation"])
        assert replayed["engines"][engine]["busy_ns"] == row["busy_ns"]
    assert {k: replayed["memory"][k] for k in ("total", "resident")} == {k: emulated["memory"][k] for k in ("total", "resident")}


@needs_fuse
@pytest.mark.parametrize("name", FIXTURES)
def test_each_fixture_trace_agrees_with_the_projects_parser(name: str, tmp_path: Path) -> None:
    """Under ``vdrm replay NAME -- ...`` fdinfo_top's report passes vdrm check against the replayed truth."""
    report = tmp_path / "report.json"
    script = (f"{sys.executable} {TOOLS}/fdinfo_top.py --clock-step 1s | {sys.executable} {TOOLS}/check_report.py"
              f" > {report} && {sys.executable} -m vdrm check {report} && {sys.executable} -m vdrm truth")
    result = vdrm("replay", name, "--", "bash", "-euo", "pipefail", "-c", script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "vdrm check: ok, 1 client agrees" in result.stdout
    truth = json.loads(result.stdout.splitlines()[-1])
    [client] = truth["clients"]
    [parsed] = json.loads(report.read_text())["clients"]
    assert client["drm-driver"] == name
    busy = {e: u for e, u in parsed["engines"].items() if u}
    assert busy, "a second of work shows as utilisation"
    assert all(client["engines"][e]["utilisation"] == pytest.approx(u) for e, u in busy.items())


@needs_fuse
def test_fixture_traces_show_the_documented_text_byte_for_byte() -> None:
    """The i915 trace's fdinfo is the docs example with the kernel's tabs; its device is 0000:00:02.0."""
    result = vdrm("replay", "i915", "--", "bash", "-c",
                  "cat /proc/*/fdinfo/7; basename $(readlink /sys/class/drm/renderD128/device);"
                  " cat /sys/class/drm/renderD128/device/vendor")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("pos:\t0\nflags:\t0100002\nmnt_id:\t21\ndrm-driver:\ti915\ndrm-pdev:\t0000:00:02.0\n"
                             "drm-client-id:\t7\ndrm-engine-render:\t9288864723 ns\ndrm-engine-copy:\t2035071108 ns\n"
                             "drm-engine-video:\t0 ns\ndrm-engine-capacity-video:\t2\n"
                             "drm-engine-video-enhance:\t0 ns\n0000:00:02.0\n0x8086\n")


def test_the_fixture_traces_are_what_the_doc_script_builds() -> None:
    """fixtures/traces/*.json equal tests/tools/doc_traces.py's output: each is traceable to its kernel source."""
    sys.path.insert(0, str(TOOLS))
    try:
        import doc_traces
    finally:
        sys.path.remove(str(TOOLS))
    assert sorted(p.stem for p in TRACES.glob("*.json")) == sorted(FIXTURES)
    for name in FIXTURES:
        assert (TRACES / f"{name}.json").read_text() == doc_traces.render(name), name
        replay.check(json.loads((TRACES / f"{name}.json").read_text()))


@needs_fuse
def test_replay_mounts_on_a_directory(tmp_path: Path) -> None:
    """``vdrm replay TRACE MOUNTPOINT --daemon`` serves the recording there; the clock steps it; umount ends it."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    started = vdrm("replay", "panthor", str(mnt), "--daemon")
    assert started.returncode == 0, started.stderr
    try:
        [pid] = [p for p in os.listdir(mnt / "proc") if p.isdigit()]
        first = (mnt / "proc" / pid / "fdinfo" / "7").read_text()
        assert "drm-engine-panthor:\t111110952750 ns\n" in first
        (mnt / "sys/kernel/debug/dri/128/vdrm-clock").write_text("1s\n")
        second = (mnt / "proc" / pid / "fdinfo" / "7").read_text()
        assert "drm-engine-panthor:\t111710952750 ns\n" in second
        (mnt / "sys/kernel/debug/dri/128/vdrm-clock").write_text("1s\n")  # past the last sample: it stays
        assert (mnt / "proc" / pid / "fdinfo" / "7").read_text() == second
        truth = json.loads(vdrm("truth", str(mnt)).stdout)
        assert truth["clients"][0]["engines"]["panthor"]["utilisation"] == 0.0
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        for _ in range(100):
            if not os.path.ismount(mnt):
                break
            time.sleep(0.05)


def test_replay_and_record_errors(tmp_path: Path) -> None:
    """A file that is not a trace: 2 (mount) or 125 (run), with one line; record's bad options 2, unwritable output 1."""
    junk = tmp_path / "junk.json"
    junk.write_text('{"format": "something-else"}')
    result = vdrm("replay", str(junk), str(tmp_path))
    assert result.returncode == 2 and "bad trace, nothing mounted: not a vdrm trace" in result.stderr
    assert "Traceback" not in result.stderr
    assert vdrm("replay", str(tmp_path / "missing.json"), "--", "true").returncode == 125
    assert vdrm("replay").returncode == 2
    assert vdrm("record", "-o", str(tmp_path / "t.json"), "--samples", "0").returncode == 2
    assert vdrm("record", "-o", "/nonexistent/dir/t.json", "--samples", "1", "--interval", "0").returncode == 1


def test_record_as_a_normal_user_records_what_it_can_see() -> None:
    """As uid 65534, vdrm record runs (exit 0) over the host's /proc and /sys, skipping what it may not read."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become another user")
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                             "vdrm", "record", "-o", "-", "--samples", "2", "--interval", "0"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd="/", text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["recorded"]["uid"] == 65534 and len(trace["samples"]) == 2
    assert all(int(pid) != 1 for s in trace["samples"] for pid in s["processes"])  # root's processes stay unseen


def test_truth_from_cycles_and_capacity() -> None:
    """xe's cycles over total cycles, divided by capacity, and amdgpu's drm-memory alias, as the replay computes them."""
    text = (TRACES / "xe.json").read_text()
    played = Replay(json.loads(text))
    [file] = played.machine.files.values()
    assert played.truth(file)["engines"]["rcs"]["utilisation"] is None  # before the first step
    played.machine.advance(1_000_000_000)
    engines = played.truth(file)["engines"]
    assert engines["rcs"]["utilisation"] == 0.25 and engines["vcs"]["utilisation"] == 0.25
    assert engines["ccs"]["capacity"] == 4
    amd = parse_fdinfo("drm-driver:\tamdgpu\ndrm-memory-gtt: \t8192 KiB\ndrm-engine-gfx:\t5 ns\n")
    assert amd["memory"] == {"gtt": {"resident": 8 << 20}} and amd["engines"]["gfx"]["busy_ns"] == 5


def test_an_inconsistent_trace_is_refused() -> None:
    """A client naming an fd the sample does not hold is a TraceError, not a crash later."""
    trace = json.loads((TRACES / "msm.json").read_text())
    trace["samples"][1]["clients"][0]["fds"] = [[1, 99]]
    with pytest.raises(TraceError, match="sample 1 is inconsistent"):
        Replay(trace)


@needs_fuse
@pytest.mark.parametrize("scenario,shared", [("dup-and-two-opens", [[3, 4], [5]]), ("bug-inherited-fd", None)])
def test_record_groups_the_fds_that_share_a_client(scenario: str, shared, tmp_path: Path) -> None:
    """A dup'd fd and its original are one client, a second open another; an inherited fd joins its parent's client."""
    trace = tmp_path / "trace.json"
    assert vdrm("run", "--scenario", scenario, "--", sys.executable, "-m", "vdrm", "record", "-o", str(trace),
                "--samples", "1", "--description", "what ran").returncode == 0
    doc = json.loads(trace.read_text())
    assert doc["description"] == "what ran"
    clients = doc["samples"][0]["clients"]
    if shared is not None:
        assert sorted(sorted(fd for _, fd in c["fds"]) for c in clients) == shared
        assert len({pid for c in clients for pid, _ in c["fds"]}) == 1
    else:
        assert any(len({pid for pid, _ in c["fds"]}) == 2 for c in clients)
    for c in clients:
        for pid, fd in c["fds"]:
            text = doc["samples"][0]["processes"][str(pid)]["fds"][str(fd)]["fdinfo"]
            assert f"drm-client-id:\t{c['drm-client-id']}\n" in text


def _paths(node, path=()):
    """Every (container path, key) in a JSON tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield path, i
            yield from _paths(v, path + (i,))


@pytest.mark.parametrize("name", ["v3d", "xe"])
def test_a_damaged_trace_is_a_trace_error_never_a_crash(name: str) -> None:
    """Deleting any one field, or giving it the wrong type, either still replays or raises TraceError."""
    original = json.loads((TRACES / f"{name}.json").read_text())
    for path, key in list(_paths(original)):
        for damage in ("delete", "retype"):
            trace = json.loads(json.dumps(original))
            parent = trace
            for p in path:
                parent = parent[p]
            if damage == "delete":
                del parent[key]
            else:
                parent[key] = [] if not isinstance(parent[key], list) else "x"
            try:
                played = Replay(trace)
                played.machine.advance(1_000_000_000)
                for file in played.machine.files.values():
                    played.truth(file), played.fdinfo(file)
            except TraceError:
                pass


@needs_fuse
def test_record_only_reads(tmp_path: Path) -> None:
    """Under strace, recording a busy device opens nothing for writing but its output file, and makes, renames or deletes nothing."""
    out, log = tmp_path / "trace.json", tmp_path / "strace.log"
    script = (f"strace -f -qq -o {log} -e trace=openat,open,creat,unlink,unlinkat,rename,renameat2,mkdir,mkdirat,"
              f"truncate,ftruncate,chmod,fchmodat,chown,fchownat {sys.executable} -m vdrm record -o {out} "
              "--samples 3 --interval 0.05")
    result = vdrm("run", "--scenario", "demo", "--", "sh", "-c", script, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stderr
    assert len(json.loads(out.read_text())["samples"][0]["clients"]) == 2
    writes = [line for line in log.read_text().splitlines()
              if ("O_WRONLY" in line or "O_RDWR" in line or not ("open" in line or "O_RDONLY" in line))
              and "ENOENT" not in line and "+++" not in line and "---" not in line]
    assert writes == [w for w in writes if f'"{out}"' in w and "O_WRONLY" in w], writes
    assert len(writes) == 1


@needs_fuse
def test_a_client_gone_in_the_next_sample_vanishes_from_the_mount(tmp_path: Path) -> None:
    """The kernel may cache proc/ names: a process and fd absent from the next sample are gone after the step."""
    trace = json.loads((TRACES / "msm.json").read_text())
    trace["samples"][1]["processes"] = {}
    trace["samples"][1]["clients"] = []
    path = tmp_path / "gone.json"
    path.write_text(json.dumps(trace))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert vdrm("replay", str(path), str(mnt), "--daemon").returncode == 0
    try:
        [pid] = [p for p in os.listdir(mnt / "proc") if p.isdigit()]
        fdinfo = mnt / "proc" / pid / "fdinfo" / "7"
        assert "drm-engine-gpu:\t1734371319 ns" in fdinfo.read_text()
        assert os.readlink(mnt / "proc" / pid / "fd" / "7") == "/dev/dri/renderD128"
        (mnt / "sys/kernel/debug/dri/128/vdrm-clock").write_text("1s\n")
        assert not fdinfo.exists() and not (mnt / "proc" / pid).exists()
        assert [p for p in os.listdir(mnt / "proc") if p.isdigit()] == []
        assert os.listdir(mnt / "sys/kernel/debug/dri/128/vdrm-clients") == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
