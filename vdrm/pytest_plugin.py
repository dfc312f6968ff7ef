"""The ``vdrm`` pytest fixture: a parser's own test suite gets an emulated GPU in one line.

Installed with the package as a ``pytest11`` entry point (or enabled with
``-p vdrm.pytest_plugin``), it gives every test a ``vdrm`` fixture::

    def test_my_parser_sees_the_game(vdrm):
        dev = vdrm.mount("busy-game")               # a bundled scenario, a file, or toml="..."
        dev.step("1s")                              # one virtual clock step
        out = dev.run(["my-gpu-top", "--json"])     # a program inside the device's namespace
        truth = dev.truth()                         # the whole device's ground truth
        report = dev.call(mylib.sample, "/proc")    # Python code against the namespace's /proc

How it works. :meth:`Vdrm.mount` starts ``vdrm run [options] -- python -m
vdrm.pytest_plugin``: the runner mounts the device and starts an *agent* inside the
private mount namespace, where ``/proc``, ``/dev/dri``, ``/sys/class/drm`` and
``/sys/kernel/debug`` are the emulated device's (:mod:`vdrm.fs.runner`). The test talks
to the agent over its stdin and stdout (length-prefixed pickles), so nothing about the
namespace is re-implemented here and the device lives, with its clock, for as long as the
test needs it. Through the agent:

- :meth:`Device.run` runs a program in the namespace (``subprocess.run``, output captured);
- :meth:`Device.call` calls a Python function in the agent's process: the way to test a
  parser that is a Python library, against exactly the ``/proc`` a program would see.
  The function and its arguments and result are pickled, so it must be importable by
  name (a module-level function of the test module or of the library: the agent gets the
  test process's ``sys.path``);
- :meth:`Device.step` writes a duration to ``vdrm-clock``; :meth:`Device.truth` reads
  the ground truth (:mod:`vdrm.truth`).

:attr:`Device.mountpoint` is the tree itself, readable from the test process too (the
agent's namespace is not needed for it): ``Device.mountpoint + "/proc"`` lists every
process, but its ``fd/<n>`` links name ``/dev/dri/renderD128`` in *your* namespace, so a
parser that stats them belongs in :meth:`Device.call`.

Where ``/dev/fuse`` is missing the test is skipped with that reason (a machine without
the capability); any other failure to mount fails the test with vdrm's own message.
Devices are unmounted when the test ends.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

_FRAME = struct.Struct("!I")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class AgentError(Exception):
    """The device's agent failed or went away (its stderr is in the message)."""


# -- the wire: length-prefixed pickles --------------------------------------------------


def _send(stream: Any, message: Any) -> None:
    data = pickle.dumps(message)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def _receive(stream: Any) -> Any:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise EOFError
    (size,) = _FRAME.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


# -- the test side ------------------------------------------------------------------------


class Device:
    """One mounted device and the agent inside its namespace."""

    def __init__(self, process: subprocess.Popen, stderr: Any, hello: dict[str, Any]):
        self._process = process
        self._stderr = stderr
        self.mountpoint: str = hello["mount"]
        self.agent_pid: int = hello["pid"]
        self.closed = False

    @property
    def proc(self) -> str:
        """The tree's ``proc/`` seen from the test process (every real process is there)."""
        return os.path.join(self.mountpoint, "proc")

    def _ask(self, *request: Any) -> Any:
        if self.closed:
            raise AgentError("the device is closed")
        try:
            _send(self._process.stdin, request)
            ok, value = _receive(self._process.stdout)
        except (EOFError, BrokenPipeError, OSError):
            raise AgentError(f"vdrm's agent died:\n{self.stderr()}") from None
        if not ok:
            raise value
        return value

    def run(self, args: Sequence[str] | str, *, input: str | None = None, timeout: float = 60,
            check: bool = False, env: dict[str, str] | None = None, cwd: str | None = None,
            shell: bool = False) -> subprocess.CompletedProcess:
        """``subprocess.run(args)`` inside the namespace, text output captured."""
        result = self._ask("run", args, dict(input=input, timeout=timeout, env=env, cwd=cwd, shell=shell))
        if check:
            result.check_returncode()
        return result

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` in a Python process inside the namespace; its result
        (or its exception, raised here)."""
        return self._ask("call", func, args, kwargs)

    def step(self, duration: str | int) -> None:
        """One virtual clock step: ``"16ms"``, ``"1s"``, or an int of nanoseconds."""
        self._ask("step", f"{duration}ns" if isinstance(duration, int) else str(duration))

    def truth(self) -> dict[str, Any]:
        """The whole device's ground truth over the last clock step (:mod:`vdrm.truth`)."""
        return self._ask("truth")

    def client_truth(self, client_id: int) -> dict[str, Any]:
        """One client's ground truth, by ``drm-client-id``."""
        for client in self.truth()["clients"]:
            if client["drm-client-id"] == client_id:
                return client
        raise KeyError(f"no DRM client {client_id} on this device")

    def stderr(self) -> str:
        """What vdrm (the runner, the daemon, the agent) printed so far."""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        """Stop the agent; the runner then unmounts. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            _send(self._process.stdin, ("quit",))
            self._process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            self._process.wait(STOP_TIMEOUT)
        self._process.stdout.close()
        self._stderr.close()


class Vdrm:
    """The ``vdrm`` fixture: mounts devices for one test, and unmounts them after it."""

    def __init__(self, tmp_path: Path):
        self._tmp = tmp_path
        self.devices: list[Device] = []

    def mount(self, scenario: str | os.PathLike | None = None, *, toml: str | None = None,
              trace: str | os.PathLike | None = None, options: Sequence[str] = ()) -> Device:
        """A device serving ``scenario`` (a bundled name such as ``"busy-game"`` or a file),
        or the scenario text ``toml``, or a recorded ``trace`` (a bundled name such as
        ``"i915"`` or a file, played by ``vdrm replay``), or (none) the default device;
        ``options`` are ``vdrm run``'s (``["--kernel", "6.6"]``). Skips the test where
        /dev/fuse is missing."""
        if not os.path.exists("/dev/fuse"):
            pytest.skip("vdrm needs FUSE and this machine has no /dev/fuse "
                        "(containers: --device /dev/fuse --cap-add SYS_ADMIN)")
        if sum(x is not None for x in (scenario, toml, trace)) > 1:
            raise ValueError("give one of a scenario, toml= or trace=")
        if trace is not None:
            device = start(list(options), replay=os.fspath(trace))
            self.devices.append(device)
            return device
        argv = list(options)
        if toml is not None:
            path = self._tmp / f"vdrm-inline-{len(self.devices)}.toml"
            path.write_text(toml)
            scenario = path
        if scenario is not None:
            argv += ["--scenario", os.fspath(scenario)]
        device = start(argv)
        self.devices.append(device)
        return device

    def close(self) -> None:
        for device in self.devices:
            device.close()


def start(options: Sequence[str], replay: str | None = None) -> Device:
    """``vdrm run OPTIONS -- python -m vdrm.pytest_plugin`` (``vdrm replay TRACE OPTIONS
    -- ...`` with ``replay``), once its agent said hello."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p or ".") for p in sys.path)
    stderr = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "vdrm", *(["replay", replay] if replay else ["run"]), *options, "--",
         sys.executable, "-m", "vdrm.pytest_plugin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env)
    try:
        ok, hello = _receive(process.stdout)
    except EOFError:
        status = process.wait(STOP_TIMEOUT)
        stderr.seek(0)
        why = stderr.read().decode(errors="replace").strip()
        stderr.close()
        process.stdout.close()
        process.stdin.close()
        what = f"replay {replay}" if replay else "run"
        raise AgentError(f"vdrm {what} {' '.join(options)} failed (exit status {status}): {why}") from None
    return Device(process, stderr, hello)


@pytest.fixture
def vdrm(tmp_path: Path):
    """Mount emulated GPUs for this test: ``dev = vdrm.mount("busy-game")``."""
    factory = Vdrm(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vdrm: the test uses the vdrm fixture (an emulated GPU)")


# -- the agent side (inside the namespace) -------------------------------------------------


def _clock_file() -> str:
    import glob

    found = sorted(glob.glob("/sys/kernel/debug/dri/*/vdrm-clock"))
    if not found:
        raise AgentError("no /sys/kernel/debug/dri/*/vdrm-clock in this namespace")
    return found[0]


def _serve(request: tuple) -> Any:
    verb = request[0]
    if verb == "run":
        _, args, kw = request
        return subprocess.run(args, capture_output=True, text=True, **kw)
    if verb == "call":
        _, func, args, kwargs = request
        return func(*args, **kwargs)
    if verb == "step":
        with open(_clock_file(), "w") as f:
            f.write(request[1] + "\n")
        return None
    if verb == "truth":
        from vdrm import truth

        return truth.from_tree("/")
    raise AgentError(f"unknown request {verb!r}")


def agent(stdin: Any = None, stdout: Any = None) -> int:
    """Answer the test's requests until it says quit (or goes away)."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    sys.stdout = sys.stderr  # a print() in called code must not corrupt the wire
    _send(stdout, (True, {"mount": os.environ.get("VDRM_MOUNT", ""), "pid": os.getpid()}))
    while True:
        try:
            request = _receive(stdin)
        except EOFError:
            return 0
        if request[0] == "quit":
            return 0
        try:
            reply = (True, _serve(request))
            data = pickle.dumps(reply)
        except BaseException as e:  # noqa: BLE001 - the test process re-raises it
            try:
                data = pickle.dumps((False, e))
            except Exception:  # noqa: BLE001 - an unpicklable exception: its text
                data = pickle.dumps((False, AgentError(f"{type(e).__name__}: {e}")))
        stdout.write(_FRAME.pack(len(data)) + data)
        stdout.flush()


if __name__ == "__main__":
    from vdrm.pytest_plugin import agent as _agent  # pickles name vdrm.pytest_plugin, not __main__

    sys.exit(_agent())
