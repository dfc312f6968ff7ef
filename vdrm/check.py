"""``vdrm check``: a parser's report against the ground truth, one line per mismatch.

The report is a small JSON document that a parser prints, or that a few lines of glue
make from its output (``REPORT_SCHEMA``)::

    {"clients": [
      {"drm-client-id": 4,                 # required (also accepted: "client_id")
       "minor": 128,                       # optional: the DRM minor (0 card0, 128 renderD128 ...)
       "pid": 1234,                        # optional: the owning pid, or "pids": [..]
       "engines": {"fragment": 0.649},     # optional: utilisation over the last clock step, 0..1
                                           #   (null: the parser shows nothing for that engine)
       "memory": {"resident": 115245056}}  # optional: bytes per category of region "memory";
    ]}                                     #   or {"<region>": {"<category>": bytes}, ...}

The truth is a ``vdrm truth`` document (:mod:`vdrm.truth`). Clients are matched on
(minor, drm-client-id) (on the id alone when the report gives no minor). Checked:

- every true client is reported, and no other;
- the truth's pid is among the reported ones;
- each engine's utilisation within ``--utilisation-tolerance`` (absolute, default
  0.005); an engine left out counts as 0, and null (nothing shown) is right only while
  profiling is off (fdinfo then has no engine keys). Where the truth is negative (engine time that
  went backwards, which drm-usage-stats allows) 0 is accepted: the usual clamp;
- each memory category the report gives, within ``--memory-tolerance`` (bytes with an
  optional K/M/G, or a percentage of the true value; default 0: fdinfo prints KiB).

Known parser quirks (``--expect NAME``, repeatable) turn a behaviour that would be a
mismatch into the expected one (:data:`QUIRKS`):

``kcmp-dedup``
    nvtop's dedup: any kcmp error counts as "duplicate", so where kcmp is refused
    (containers) only the first DRM fd of each process is counted. Missing clients are
    accepted when another client of the same pid was reported.
``u32-client-id``
    the client id parsed into 32 bits: nvtop truncates (``strtoul`` into ``unsigned``),
    qmassa rejects the file. An id past 2**32 may be reported truncated, or not at all.
``engines-summed``
    every engine summed into one (igt gputop's and nvtop's "gfx"), and discarded when the
    sum is more than the wall time: the report has one engine, of any name, equal to the
    sum of the true utilisations, or null when that sum is above 1.

Exit status: 0 everything agrees, 1 mismatches, 2 bad input (unreadable or malformed
report or truth, bad options).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Sequence

U32 = 1 << 32
QUIRKS = {
    "kcmp-dedup": "only the first DRM fd of each pid is counted (nvtop where kcmp fails)",
    "u32-client-id": "drm-client-id kept in 32 bits: truncated (nvtop) or the client dropped (qmassa)",
    "engines-summed": "all engines summed into one, null when the sum exceeds the wall time (gputop, nvtop)",
}
DEFAULT_UTILISATION_TOLERANCE = 0.005
EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2


class ReportError(Exception):
    """The report or the truth is not what the schema says."""


@dataclass(frozen=True)
class Tolerance:
    """How far a memory value may be from the truth: bytes, or a fraction of the truth."""

    size: int = 0
    fraction: float | None = None

    def allows(self, reported: int, true: int) -> bool:
        limit = self.fraction * abs(true) if self.fraction is not None else self.size
        return abs(reported - true) <= limit

    def __str__(self) -> str:
        if self.fraction is not None:
            return f"±{self.fraction * 100:g}%"
        return f"±{self.size} B" if self.size else "exact"


@dataclass(frozen=True)
class Mismatch:
    """One disagreement, with the tolerance that applied."""

    client: str  # "client 4 (minor 128, pid 1234)"
    what: str
    tolerance: str

    def __str__(self) -> str:
        return f"{self.client}: {self.what} [tolerance: {self.tolerance}]"


# -- reading ------------------------------------------------------------------------------


def _client_id(entry: dict[str, Any]) -> int:
    value = entry.get("drm-client-id", entry.get("client_id"))
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReportError(f"a client has no integer drm-client-id: {json.dumps(entry)[:120]}")
    return value


def read_report(doc: Any) -> list[dict[str, Any]]:
    """The report's clients, validated against the schema."""
    if not isinstance(doc, dict) or not isinstance(doc.get("clients"), list):
        raise ReportError('the report is not {"clients": [...]}')
    clients = []
    for entry in doc["clients"]:
        if not isinstance(entry, dict):
            raise ReportError(f"a client is not an object: {entry!r}")
        cid = _client_id(entry)
        pids = entry.get("pids", [entry["pid"]] if "pid" in entry else None)
        engines = entry.get("engines", {})
        memory = entry.get("memory", {})
        if not isinstance(engines, dict) or not all(v is None or isinstance(v, (int, float))
                                                     for v in engines.values()):
            raise ReportError(f"client {cid}: engines must map engine names to utilisation numbers or null")
        if not isinstance(memory, dict):
            raise ReportError(f"client {cid}: memory must be an object")
        if memory and all(isinstance(v, int) for v in memory.values()):
            memory = {"memory": memory}
        for region, categories in memory.items():
            if not isinstance(categories, dict) or not all(isinstance(v, int) for v in categories.values()):
                raise ReportError(f"client {cid}: memory of region {region!r} must map categories to bytes")
        clients.append({"id": cid, "minor": entry.get("minor"), "pids": pids, "engines": engines,
                        "memory": memory})
    return clients


def read_truth(doc: Any) -> list[dict[str, Any]]:
    """The truth document's clients (a ``vdrm truth`` document, or a list of truth.json)."""
    clients = doc.get("clients") if isinstance(doc, dict) else doc
    if not isinstance(clients, list) or not all(isinstance(c, dict) and "drm-client-id" in c for c in clients):
        raise ReportError("the truth is not a vdrm truth document (vdrm truth prints one)")
    return clients


def _true_memory(truth: dict[str, Any]) -> dict[str, dict[str, int]]:
    memory = truth.get("memory", {})
    if memory and all(isinstance(v, int) for v in memory.values()):
        return {"memory": memory}
    return memory


# -- comparing ----------------------------------------------------------------------------


def compare(report: Any, truth: Any, *, expect: Sequence[str] = (),
            utilisation_tolerance: float = DEFAULT_UTILISATION_TOLERANCE,
            memory_tolerance: Tolerance = Tolerance()) -> list[Mismatch]:
    """Every mismatch between a report and a truth document (both as parsed JSON)."""
    unknown = set(expect) - set(QUIRKS)
    if unknown:
        raise ReportError(f"unknown quirk {', '.join(sorted(unknown))} (known: {', '.join(QUIRKS)})")
    quirks = set(expect)
    reported = read_report(report)
    true_clients = read_truth(truth)
    mismatches: list[Mismatch] = []
    used: set[int] = set()

    def find(t: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        tid, tminor = t["drm-client-id"], t.get("minor")
        ids = {tid, tid % U32} if "u32-client-id" in quirks else {tid}
        for i, r in enumerate(reported):
            if i not in used and r["id"] in ids and (r["minor"] is None or tminor is None or r["minor"] == tminor):
                return i, r
        return None

    found: dict[int, dict[str, Any]] = {}
    for t in true_clients:
        match = find(t)
        if match is not None:
            used.add(match[0])
            found[t["drm-client-id"]] = match[1]
    reported_pids = {t.get("pid") for t in true_clients if t["drm-client-id"] in found}

    for t in true_clients:
        tid = t["drm-client-id"]
        name = f"client {tid} (minor {t.get('minor')}, pid {t.get('pid')})"
        r = found.get(tid)
        if r is None:
            mismatches.extend(_missing(t, name, reported, used, quirks, reported_pids))
            continue
        if r["pids"] is not None and t.get("pid") not in r["pids"]:
            mismatches.append(Mismatch(name, f"reported with pids {r['pids']}, truth pid {t.get('pid')}", "exact"))
        mismatches.extend(_engines(t, r, name, quirks, utilisation_tolerance))
        mismatches.extend(_memory(t, r, name, memory_tolerance))
    for i, r in enumerate(reported):
        if i not in used:
            mismatches.append(Mismatch(f"client {r['id']} (minor {r['minor']})",
                                       "reported, but the device has no such client", "exact"))
    return mismatches


def _missing(t: dict[str, Any], name: str, reported: list[dict[str, Any]], used: set[int],
             quirks: set[str], reported_pids: set[Any]) -> list[Mismatch]:
    tid = t["drm-client-id"]
    if "kcmp-dedup" in quirks and t.get("pid") in reported_pids:
        return []  # expected: the pid's first fd stood for all of its clients
    if tid >= U32 and "u32-client-id" in quirks:
        return []  # expected: qmassa drops the whole file
    truncated = [r for i, r in enumerate(reported) if i not in used and r["id"] == tid % U32 != tid]
    if truncated:
        used.add(reported.index(truncated[0]))
        return [Mismatch(name, f"reported as drm-client-id {tid % U32}: truncated to 32 bits "
                               "(--expect u32-client-id if that is intended)", "exact")]
    hint = " (--expect kcmp-dedup if only one fd per pid is counted)" if t.get("pid") in reported_pids else ""
    return [Mismatch(name, f"missing from the report{hint}", "exact")]


def _engines(t: dict[str, Any], r: dict[str, Any], name: str, quirks: set[str], tol: float) -> list[Mismatch]:
    true = {e: row.get("utilisation") for e, row in t.get("engines", {}).items()}
    if any(v is None for v in true.values()):
        return []  # no clock step yet: nothing to compare
    given = r["engines"]
    out = []
    if "engines-summed" in quirks:
        total = sum(true.values())
        if len(given) > 1:
            return [Mismatch(name, f"{len(given)} engines reported ({', '.join(given)}), "
                                   "but engines-summed expects one", "exact")]
        value = next(iter(given.values()), 0.0)
        label = next(iter(given), "summed engines")
        if total > 1.0:
            if value is not None:
                out.append(Mismatch(name, f"{label} utilisation {value:.4f}, but the sum {total:.4f} exceeds "
                                          "the wall time and engines-summed discards it (null)", "exact"))
        elif value is None or abs(value - total) > tol:
            out.append(Mismatch(name, f"{label} utilisation {_num(value)}, truth (sum of "
                                      f"{', '.join(true)}) {total:.4f}", f"±{tol:g}"))
        return out
    for engine, value in true.items():
        got = given.get(engine, 0.0)
        if got is None and t.get("profiling") is False and value == 0:
            continue  # profiling off: no engine keys to read, showing nothing is right
        if value < 0:
            if got is None or not (value - tol <= got <= tol):
                out.append(Mismatch(name, f"{engine} utilisation {_num(got)}, truth {value:.4f} "
                                          "(engine time went backwards)", f"±{tol:g}, or 0 (clamped)"))
        elif got is None or abs(got - value) > tol:
            out.append(Mismatch(name, f"{engine} utilisation {_num(got)}, truth {value:.4f}", f"±{tol:g}"))
    for engine in given:
        if engine not in true:
            out.append(Mismatch(name, f"engine {engine!r} reported, but the client has no such engine "
                                      f"(it has {', '.join(true) or 'none'})", "exact"))
    return out


def _memory(t: dict[str, Any], r: dict[str, Any], name: str, tol: Tolerance) -> list[Mismatch]:
    true = _true_memory(t)
    out = []
    for region, categories in r["memory"].items():
        for category, value in categories.items():
            expected = true.get(region, {}).get(category)
            label = category if region == "memory" else f"{region} {category}"
            if expected is None:
                out.append(Mismatch(name, f"memory {label} reported, but the truth has no such category", "exact"))
            elif not tol.allows(value, expected):
                out.append(Mismatch(name, f"memory {label} {value} B, truth {expected} B "
                                          f"({value - expected:+d} B)", str(tol)))
    return out


def _num(value: Any) -> str:
    return "null" if value is None else f"{value:.4f}"


# -- the command ---------------------------------------------------------------------------


def parse_tolerance(text: str) -> Tolerance:
    """``0``, ``4K``, ``1M``, or ``0.5%``."""
    text = text.strip()
    if text.endswith("%"):
        try:
            return Tolerance(fraction=float(text[:-1]) / 100)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    from vdrm.drm import grammar
    from vdrm.errors import VdrmError

    try:
        return Tolerance(size=grammar.parse_size(text, "--memory-tolerance"))
    except VdrmError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _load(path: str, what: str) -> Any:
    try:
        if path == "-":
            return json.load(sys.stdin)
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise ReportError(f"cannot read the {what} {path}: {e.strerror}") from None
    except ValueError as e:
        raise ReportError(f"the {what} {path} is not JSON: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    quirks = "\n".join(f"  {name:<15} {text}" for name, text in QUIRKS.items())
    parser = argparse.ArgumentParser(
        prog="vdrm check", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare what a parser reported with vdrm's ground truth: one line per mismatch.",
        epilog=f"""\
the report (JSON; see vdrm/check.py):
  {{"clients": [{{"drm-client-id": 4, "minor": 128, "pid": 1234,
                 "engines": {{"fragment": 0.649}}, "memory": {{"resident": 115245056}}}}]}}

the truth: --truth FILE (what 'vdrm truth' printed), --mount MOUNTPOINT, or, with neither,
the live device ('vdrm run' namespace or $VDRM_MOUNT).

quirks (--expect NAME):
{quirks}

exit status: 0 all agree, 1 mismatches, 2 bad input or options.

example:
  vdrm run --scenario busy-game -- sh -c 'echo 1s > /sys/kernel/debug/dri/128/vdrm-clock; \\
      my-gpu-top --json | my-glue > r.json; vdrm check r.json'""")
    parser.add_argument("report", metavar="REPORT", help="the parser's report (- for stdin)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--truth", metavar="FILE", help="a 'vdrm truth' document (- for stdin)")
    source.add_argument("--mount", metavar="MOUNTPOINT", help="read the truth from this vdrm mount")
    parser.add_argument("--expect", action="append", default=[], choices=sorted(QUIRKS), metavar="QUIRK",
                        help=f"a parser quirk to expect ({', '.join(QUIRKS)}); repeatable")
    parser.add_argument("--utilisation-tolerance", type=float, default=DEFAULT_UTILISATION_TOLERANCE,
                        metavar="X", help=f"absolute, on the 0..1 scale (default {DEFAULT_UTILISATION_TOLERANCE})")
    parser.add_argument("--memory-tolerance", type=parse_tolerance, default=Tolerance(), metavar="SIZE|P%",
                        help="bytes (K/M/G suffixes) or a percentage of the truth (default 0: exact)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print mismatches only, no summary line")
    args = parser.parse_args(argv)
    if args.report == "-" and args.truth == "-":
        parser.error("the report and the truth cannot both be stdin")
    try:
        report = _load(args.report, "report")
        if args.truth:
            truth = _load(args.truth, "truth")
        else:
            from vdrm import truth as _truth

            root = _truth.live_root(args.mount)
            if root is None:
                raise ReportError("no truth: give --truth FILE or --mount MOUNTPOINT, or run inside 'vdrm run'")
            try:
                truth = _truth.from_tree(root)
            except _truth.TruthError as e:
                raise ReportError(str(e)) from None
        mismatches = compare(report, truth, expect=args.expect, utilisation_tolerance=args.utilisation_tolerance,
                             memory_tolerance=args.memory_tolerance)
    except ReportError as e:
        print(f"vdrm check: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for m in mismatches:
        print(m)
    if not args.quiet:
        n = len(read_truth(truth))
        if mismatches:
            print(f"vdrm check: {len(mismatches)} mismatch{'es' if len(mismatches) != 1 else ''} "
                  f"({n} true client{'s' if n != 1 else ''})")
        else:
            print(f"vdrm check: ok, {n} client{'s agree' if n != 1 else ' agrees'}"
                  + (f" (expecting {', '.join(args.expect)})" if args.expect else ""))
    return EXIT_MISMATCH if mismatches else EXIT_OK
