"""What one intercepted system call costs under ``mount.py --run`` (the process bridge).

``python -m vdrm.bench.bridge [--calls N]`` runs a probe (Python, so its own per-call
overhead is measured too and subtracted) twice: once outside any runner and once under
``mount.py --run``, where the seccomp filter is installed. It prints microseconds per call:

- ``ioctl GET_PARAM``: an intercepted DRM ioctl answered by the engine (the whole path:
  notification, fd check, the trio hop, the dispatch, the caller's memory);
- ``stat /dev/dri/renderD128``: a stat answered as a character device;
- ``stat /etc/passwd``: a stat the supervisor hands back to the kernel (what every other
  stat of a program under the runner pays);
- ``ioctl TCGETS``: an ioctl the filter lets through (type ``'T'``): the filter's own cost;
- ``text GET_PARAM``: the same request through the text protocol (write + read), for scale.

Outside the runner only the first two exist (no DRM node), which gives the baseline.
Each figure is the best of five rounds in each of ``--repeats`` runs (other load on the
machine only adds to them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

from vdrm.bench.common import ROOT

PROBE = textwrap.dedent('''
    import fcntl, json, os, struct, sys, termios, time
    n = int(sys.argv[1])
    out = {}
    def per_call(fn):
        fn()
        best = None
        for _ in range(5):  # the best of five rounds: the machine's noise only adds
            t = time.perf_counter_ns()
            for _ in range(n // 5):
                fn()
            us = (time.perf_counter_ns() - t) / (n // 5) / 1000
            best = us if best is None else min(best, us)
        return best
    r, w = os.pipe()
    def tcgets():
        try:
            fcntl.ioctl(r, termios.TCGETS, bytes(60))
        except OSError:
            pass
    out["ioctl TCGETS (not intercepted)"] = per_call(tcgets)
    out["stat /etc/passwd (handed back)"] = per_call(lambda: os.stat("/etc/passwd"))
    node = sys.argv[2]
    if os.path.exists(node):
        fd = os.open(node, os.O_RDWR)
        GET_PARAM = (3 << 30) | (16 << 16) | (ord("d") << 8) | 0x44
        buf = bytearray(16)
        if len(sys.argv) > 3:
            out["ioctl GET_PARAM (engine)"] = per_call(lambda: fcntl.ioctl(fd, GET_PARAM, buf))
            out["stat /dev/dri/renderD128 (answered)"] = per_call(lambda: os.stat(node))
        def text():
            os.write(fd, b"GET_PARAM param=GPU_PROD_ID\\n")
            os.read(fd, 256)
        out["text GET_PARAM (write+read)"] = per_call(text)
    print(json.dumps(out))
''')


def _probe(calls: int, *, under_runner: bool) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(PROBE)
    try:
        if under_runner:
            args = [sys.executable, str(ROOT / "mount.py"), "--run", "--", sys.executable, f.name,
                    str(calls), "/dev/dri/renderD128", "bridged"]
        else:
            args = [sys.executable, f.name, str(calls), "/nonexistent"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"bridge probe failed ({done.returncode}): {done.stderr.strip()}")
        return json.loads(done.stdout.splitlines()[-1])
    finally:
        os.unlink(f.name)


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: min(r[key] for r in runs) for key in runs[0]}


def run(calls: int = 2000, repeats: int = 3) -> dict[str, dict[str, float]]:
    """Microseconds per call, outside and under the runner (the best of ``repeats`` runs,
    alternated), and the difference."""
    outside_runs, inside_runs = [], []
    for _ in range(repeats):
        outside_runs.append(_probe(calls, under_runner=False))
        inside_runs.append(_probe(calls, under_runner=True))
    outside, inside = _best(outside_runs), _best(inside_runs)
    added = {k: inside[k] - outside[k] for k in inside if k in outside}
    return {"outside_us": outside, "under_runner_us": inside, "added_us": added}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdrm.bench.bridge", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per measure (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each probe, the best kept (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    result = run(args.calls, args.repeats)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'call (Python probe, µs per call)':42} {'outside':>9} {'--run':>9} {'added':>9}")
    for key, value in result["under_runner_us"].items():
        before = result["outside_us"].get(key)
        added = result["added_us"].get(key)
        print(f"{key:42} {before if before is not None else float('nan'):9.1f} {value:9.1f} "
              f"{added if added is not None else float('nan'):9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
