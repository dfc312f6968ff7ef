"""``python -m vdrm.fuzz``: soak-and-fuzz the real mount, then fuzz scenario files; print figures.

Exit status 0 when the run ends with 0 tracebacks, 0 EIO, 0 hangs, 0 pages leaked, no
client left and the daemon's RSS back within ``--rss-bound`` of its size after warm-up;
1 otherwise. Needs root for the several users (unprivileged runs use one user).
"""

from __future__ import annotations

import argparse
import sys

from vdrm.fuzz import scenario, soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdrm.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="request lines to send (default 1000000)")
    parser.add_argument("--workers", type=int, default=12, help="client processes at once (default 12)")
    parser.add_argument("--kill-interval", type=float, default=0.25,
                        help="seconds between SIGKILLs of a random client (default 0.25)")
    parser.add_argument("--scenarios", type=int, default=27000, help="scenario mutants (default 27000; 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rss-bound", type=int, default=64,
                        help="MiB the daemon's RSS may grow from warm-up to the end (default 64)")
    parser.add_argument("--json", action="store_true", help="print the soak's figures as JSON too")
    args = parser.parse_args(argv)
    ok = True
    if args.lines:
        say = (lambda text: print(text, end="", file=sys.stderr, flush=True)) if sys.stderr.isatty() else (lambda text: None)
        figures = soak.soak(args.lines, workers=args.workers, kill_interval=args.kill_interval, seed=args.seed, say=say)
        print("\nsoak: " + figures.report())
        if args.json:
            print(soak.as_json(figures))
        ok = (figures.tracebacks == 0 and figures.eio == 0 and figures.hangs == 0 and figures.pages_leaked == 0
              and figures.clients_left == 0 and figures.rss_growth_kib <= args.rss_bound << 10)
    if args.scenarios:
        f = scenario.run(args.scenarios, args.seed)
        print(f"scenarios: {f.mutants} mutants, {f.loaded} loaded, {f.refused} refused "
              f"({f.refused_without_line} without a line), {f.tracebacks} tracebacks")
        for example in f.examples:
            print(example)
        ok = ok and f.tracebacks == 0 and f.refused_without_line == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
