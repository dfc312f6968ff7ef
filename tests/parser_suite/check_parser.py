"""A parser author's tests, written against the vdrm pytest plugin's one fixture.

The parser is ``fdinfo_top`` (tests/tools/fdinfo_top.py), used both ways a real project
would: as a program run inside the device's namespace, and as a Python library called
against the namespace's /proc.
"""

import json
import sys

import fdinfo_top
import pytest

BUSY_GAME_TOML = '''
description = "one client on the fragment engine, half busy"
[device]
profiling = true
[[client]]
id = "app"
name = "inline-app"
[[client.bo]]
id = "buf"
size = "6M"
[[process]]
pid = 5801
comm = "inline-app"
fds = { 3 = "app" }
[[job]]
client = "app"
engine = "fragment"
at = "0ms"
every = "10ms"
count = 1000
duration = "5ms"
'''


def test_program_agrees_with_the_truth(vdrm):
    dev = vdrm.mount("busy-game")
    out = dev.run([sys.executable, fdinfo_top.__file__, "--clock-step", "1s"], check=True)
    [client] = json.loads(out.stdout)["clients"]
    [truth] = dev.truth()["clients"]
    assert client["client_id"] == truth["drm-client-id"]
    for engine, row in truth["engines"].items():
        assert client["engines"][engine]["utilisation"] == pytest.approx(row["utilisation"])


def test_library_against_the_namespace_proc(vdrm):
    dev = vdrm.mount(toml=BUSY_GAME_TOML)
    before = dev.call(fdinfo_top.sample)
    dev.step("1s")
    after = dev.call(fdinfo_top.sample)
    [key] = after
    usage = fdinfo_top.utilisation(before[key], after[key], 1_000_000_000)
    [truth] = dev.truth()["clients"]
    assert usage["client_name"] == "inline-app"
    assert usage["pids"] == [4194304 + 5801]  # emulated pids sit above PID_MAX_LIMIT
    assert usage["engines"]["fragment"]["utilisation"] == pytest.approx(truth["engines"]["fragment"]["utilisation"])
    assert usage["memory"]["memory"]["total"] == truth["memory"]["total"] == 6 << 20


def test_clock_steps_move_the_truth(vdrm):
    dev = vdrm.mount("busy-game", options=["--log-level", "warning"])
    dev.step("500ms")
    first = dev.truth()
    dev.step(250_000_000)
    second = dev.truth()
    assert first["clock"]["step_ns"] == 500_000_000
    assert second["clock"]["now_ns"] == 750_000_000
    assert dev.client_truth(1)["engines"]["fragment"]["busy_ns"] > first["clients"][0]["engines"]["fragment"]["busy_ns"]


def test_errors_come_back_as_exceptions(vdrm):
    dev = vdrm.mount()
    with pytest.raises(FileNotFoundError):
        dev.run(["no-such-gpu-top"])
    with pytest.raises(ZeroDivisionError):
        dev.call(divmod, 1, 0)


def test_a_recorded_trace_of_another_driver(vdrm):
    dev = vdrm.mount(trace="xe")
    before = dev.call(fdinfo_top.sample)
    dev.step("1s")
    after = dev.call(fdinfo_top.sample)
    [key] = after
    usage = fdinfo_top.utilisation(before[key], after[key], 1_000_000_000)
    [truth] = dev.truth()["clients"]
    assert usage["driver"] == truth["drm-driver"] == "xe"
    assert usage["engines"]["rcs"]["utilisation"] == truth["engines"]["rcs"]["utilisation"] == 0.25
