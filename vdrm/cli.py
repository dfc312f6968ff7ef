"""The ``vdrm`` command: one entry point for everything a parser author does with vdrm.

``vdrm SUBCOMMAND --help`` documents each subcommand; ``python -m vdrm`` is the same
command. The subcommands reuse the code paths of ``mount.py`` rather than copies of
them: ``vdrm mount`` and ``vdrm run`` *are* :func:`vdrm.fs.daemon.main` (its option
parser, its exit statuses), under their own program names.

============  ==========================================================================
``mount``     ``vdrm mount MOUNTPOINT [options]``: ``mount.py``; 0 clean unmount (with
              ``--daemon``: mount ready), 1 mount or serving failed, 2 bad options
``run``       ``vdrm run [options] -- COMMAND``: ``mount.py --run``; COMMAND's status,
              128+N if signal N killed it, 125 vdrm failed, 126/127 COMMAND not
              executable / not found
``scenarios`` the bundled scenarios, one line each; 0
``truth``     the whole device's ground truth as one JSON document (:mod:`vdrm.truth`),
              of a mount, of ``vdrm run``'s namespace, or computed without a mount from
              a scenario and clock steps; 0, 1 no truth there, 2 bad options or scenario
``check``     a parser's report against the truth (:mod:`vdrm.check`); 0 all agree,
              1 mismatches (one line each), 2 bad input
``record``    sample this machine's DRM clients into a trace (:mod:`vdrm.record`)
``replay``    mount a trace (:mod:`vdrm.replay`), as ``mount`` / ``run`` do
============  ==========================================================================

Heavy imports (pyfuse3, trio) happen only in the subcommands that mount, so ``vdrm
scenarios``, ``vdrm check`` and ``vdrm record`` run where FUSE is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

from vdrm import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

SUBCOMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {}


def _subcommand(name: str, summary: str):
    def register(func: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        SUBCOMMANDS[name] = (summary, func)
        return func
    return register


def _say(text: str) -> None:
    print(f"vdrm: {text}", file=sys.stderr)


# -- mount, run ---------------------------------------------------------------------------


@_subcommand("mount", "mount the emulated device on a directory (as mount.py)")
def cmd_mount(argv: list[str]) -> int:
    from vdrm.fs import daemon

    return daemon.main(argv, prog="vdrm mount")


@_subcommand("run", "run a command where /proc, /dev/dri, /sys show the device (mount.py --run)")
def cmd_run(argv: list[str]) -> int:
    from vdrm.fs import daemon

    return daemon.main(["--run", *argv], prog="vdrm run")


# -- scenarios ----------------------------------------------------------------------------


@_subcommand("scenarios", "list the bundled scenarios, one line each")
def cmd_scenarios(argv: list[str]) -> int:
    from vdrm.scenario import bundled

    parser = argparse.ArgumentParser(
        prog="vdrm scenarios",
        description="List the bundled scenarios: name and the first sentence of its description. "
                    "Give the name to --scenario (vdrm run --scenario busy-game -- ...).")
    parser.add_argument("--paths", action="store_true", help="print each scenario's file instead of its summary")
    parser.add_argument("--traces", action="store_true",
                        help="list the bundled traces instead (vdrm replay NAME): one per driver, from the "
                             "kernel's fdinfo examples")
    args = parser.parse_args(argv)
    scenarios = bundled.bundled(traces=args.traces)
    width = max((len(s.name) for s in scenarios), default=0)
    for s in scenarios:
        print(f"{s.name:<{width}}  {s.path if args.paths else s.summary}")
    return EXIT_OK


# -- truth --------------------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """A duration in the request protocol's grammar (``16ms``, ``1s``, ``250000ns``)."""
    from vdrm.drm import grammar
    from vdrm.errors import VdrmError

    try:
        return grammar.parse_duration(text, "--step")
    except VdrmError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@_subcommand("truth", "print the whole device's ground truth as one JSON document")
def cmd_truth(argv: list[str]) -> int:
    from vdrm import truth

    parser = argparse.ArgumentParser(
        prog="vdrm truth",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the ground truth of every DRM client (what a correct parser reports over "
                    "the last clock step) as one JSON document.",
        epilog="""\
where the truth comes from:
  vdrm truth MOUNTPOINT                    a running mount (vdrm mount)
  vdrm truth                               inside 'vdrm run' ($VDRM_MOUNT), or a namespace
                                           whose /sys/kernel/debug is vdrm's
  vdrm truth --scenario busy-game --step 1s [--step 16ms ...]
                                           no mount: build the scenario, take the clock steps

exit status: 0 printed, 1 no vdrm tree there, 2 bad options or scenario.
the document: see vdrm/truth.py (schema vdrm-truth/1).""")
    parser.add_argument("mountpoint", nargs="?", metavar="MOUNTPOINT", help="a vdrm mount point")
    parser.add_argument("--scenario", metavar="NAME", help="compute without a mount: a scenario file or bundled name")
    parser.add_argument("--step", type=parse_duration, action="append", default=[], metavar="DURATION",
                        help="with --scenario: one virtual clock step (repeatable, in order)")
    parser.add_argument("--indent", type=int, default=None, help="pretty-print with this indent")
    args = parser.parse_args(argv)
    if args.scenario and args.mountpoint:
        parser.error("give a MOUNTPOINT or --scenario, not both")
    if args.step and not args.scenario:
        parser.error("--step needs --scenario (a mounted device's clock is stepped through vdrm-clock)")
    if args.scenario:
        from vdrm.errors import VdrmError
        from vdrm.scenario import bundled
        from vdrm.scenario.load import ScenarioError, load
        from vdrm.scenario.run import Scenario

        try:
            scenario = Scenario(load(bundled.resolve(args.scenario)))
            for step in args.step:
                scenario.machine.advance(step)
        except (ScenarioError, VdrmError) as e:
            _say(f"bad scenario: {e}")
            return EXIT_USAGE
        doc = truth.from_device(scenario.machine)
    else:
        root = truth.live_root(args.mountpoint)
        if root is None:
            parser.error("no vdrm tree here: give a MOUNTPOINT, run inside 'vdrm run', or use --scenario")
        try:
            doc = truth.from_tree(root)
        except truth.TruthError as e:
            _say(str(e))
            return EXIT_FAILED
    json.dump(doc, sys.stdout, indent=args.indent)
    sys.stdout.write("\n")
    return EXIT_OK


# -- check --------------------------------------------------------------------------------


@_subcommand("check", "compare a parser's report with the truth; one line per mismatch")
def cmd_check(argv: list[str]) -> int:
    from vdrm import check

    return check.main(argv)


# -- record, replay -----------------------------------------------------------------------


@_subcommand("record", "record this machine's DRM clients and nodes into a trace (read-only)")
def cmd_record(argv: list[str]) -> int:
    from vdrm import record

    return record.main(argv)


REPLAY_HELP = """\
usage: vdrm replay TRACE MOUNTPOINT [--daemon] [--log-level L] [--log-file F]
       vdrm replay TRACE [--log-level L] -- COMMAND [ARGS...]

Mount a trace written by 'vdrm record': the recorded DRM clients (their fdinfo, stat,
status, comm, cmdline, shared fds) and DRM nodes (names, minors, device name, uevent,
PCI ids, profiling), byte for byte. The first sample shows at mount; each step of the
virtual clock (echo 1s > sys/kernel/debug/dri/<minor>/vdrm-clock), whatever its length,
shows the next. vdrm-clients/<id>/truth.json, 'vdrm truth' and 'vdrm check' work as for
the emulated GPUs: utilisation is over the recorded interval between the two samples.

With '-- COMMAND' it runs COMMAND as 'vdrm run' does, with /proc, /dev/dri,
/sys/class/drm and /sys/kernel/debug showing the recording.

Bundled traces (fixtures/traces, by name): {traces}

exit status: as 'vdrm mount' (0, 1 mount failed, 2 bad options or trace) and, with a
COMMAND, as 'vdrm run' (COMMAND's status, 125 vdrm failed, 126, 127).
"""


@_subcommand("replay", "mount a recorded trace, or run a command under it")
def cmd_replay(argv: list[str]) -> int:
    from vdrm import replay
    from vdrm.fs import daemon, runner

    from vdrm.scenario import bundled

    traces = ", ".join(t.name for t in bundled.bundled_traces()) or "none"
    if not argv or argv[0] in ("-h", "--help"):
        print(REPLAY_HELP.format(traces=traces), end="")
        return EXIT_OK if argv else EXIT_USAGE
    trace, rest = bundled.resolve_trace(argv[0]), argv[1:]
    running = "--" in rest
    try:
        played = replay.load(trace)
    except replay.TraceError as e:
        _say(f"bad trace, nothing mounted: {e}")
        return runner.EXIT_VDRM if running else EXIT_USAGE

    def build(args: argparse.Namespace):
        if args.scenario is not None:
            raise replay.TraceError("a replay serves its trace: --scenario does not apply")
        return played.machine, played

    prog = f"vdrm replay {argv[0]}"
    return daemon.main(["--run", *rest] if running else rest, prog=prog, build=build)


# -- the command ----------------------------------------------------------------------------


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [f"  {name:<{width}}  {summary}" for name, (summary, _) in SUBCOMMANDS.items()]
    return ("usage: vdrm [--version] [-h] SUBCOMMAND [ARGS...]\n\n"
            "vdrm: a virtual DRM device for testing GPU monitors and fdinfo parsers.\n\n"
            "subcommands (vdrm SUBCOMMAND --help for each):\n" + "\n".join(lines) + "\n\n"
            "example:\n"
            "  vdrm run --scenario busy-game -- sh -c 'my-gpu-top --json > report.json; vdrm check report.json'\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(_usage(), end="", file=sys.stderr)
        return EXIT_USAGE
    if argv[0] in ("-h", "--help", "help"):
        print(_usage(), end="")
        return EXIT_OK
    if argv[0] == "--version":
        print(f"vdrm {__version__}")
        return EXIT_OK
    entry = SUBCOMMANDS.get(argv[0])
    if entry is None:
        _say(f"unknown subcommand {argv[0]!r} (one of: {', '.join(SUBCOMMANDS)}; vdrm --help)")
        return EXIT_USAGE
    try:
        return entry[1](argv[1:])
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILED
