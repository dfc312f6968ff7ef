"""The whole benchmark in one run: figures, targets, a table, JSON and a PNG.

``python -m vdrm.bench`` runs every part (a few minutes on a 2-vCPU VM), prints a table,
writes ``bench-results/bench-<UTC time>.json`` (and ``bench-results/latest.json``) and,
when matplotlib is installed (``pip install -e .[bench]``), ``bench-results/memory.png``
comparing the bookkeeping of sparse and dense heaps.

Parts (see each module): 1 :mod:`.memory`, 2 and 4 (engine) :mod:`.speed`, 3, 4 (mount)
and 5 :mod:`.mounted`, 6 :mod:`.bridge` (one intercepted call under ``--run``). Every comparison is a ratio measured side by side in this run.
``--quick`` runs every part at small sizes (what the smoke test does); ``--only`` picks
parts.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from vdrm.bench import bridge, memory, mounted, speed
from vdrm.bench.common import ROOT, cpu_ticks, machine, pin_clients, steal_share

PARTS = ("memory", "engine", "mount", "scale", "concurrency", "bridge")

# Targets of issues 6 and 11.
TARGET_FDINFO_OVER_CEILING = 2.0
TARGET_FDINFO_OVER_KERNEL = 0.3  # the stretch target
TARGET_REQUEST_OVER_CEILING = 0.8
TARGET_WALK_OVER_CEILING = 1.5
TARGET_SCALE_COST_RATIO = 1.3
TARGET_FAULT_OVER_ROUND_TRIP = 0.5
TARGET_MOUNT_10K_SECONDS = 3.0


def _mib(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB"


def _bytes(n: float) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n:.0f} B"


def _per_page(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def run(parts: tuple[str, ...] = PARTS, *, quick: bool = False,
        say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``parts`` and return every figure plus the targets (JSON-ready)."""
    results: dict[str, Any] = {"machine": machine(), "quick": quick, "steal": {}}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        say(f"[{name}] ...")
        start, ticks = time.perf_counter(), cpu_ticks()
        value = fn()
        stolen = results["steal"][name] = steal_share(ticks, cpu_ticks())
        say(f"[{name}] done in {time.perf_counter() - start:.1f} s (CPU steal {stolen:.1%})")
        return value

    if "memory" in parts:
        results["memory"] = step("1 memory", lambda: memory.run(
            sizes=(8 << 20, 64 << 20) if quick else memory.SIZES))
    if "engine" in parts:
        results["engine"] = step("2 engine speed", lambda: speed.run(quick=quick))
    if "mount" in parts:
        results["mount"] = step("3 through the mount", lambda: mounted.basic(
            batch=20 if quick else 300, repeats=3 if quick else 9,
            walk_clients=20 if quick else 1000, walk_repeats=2 if quick else 5))
    if "scale" in parts:
        results["scale_engine"] = step("4 scale (engine)", lambda: speed.scale(
            large=100 if quick else 10_000, batch=30 if quick else 300, repeats=3 if quick else 9))
        results["scale_mount"] = step("4 scale (mount)", lambda: mounted.scale(
            large=50 if quick else 10_000, batch=20 if quick else 300, repeats=3 if quick else 9))
        results["walk_large"] = step("4 scale (/proc walk)", lambda: mounted.large_walk(
            clients=200 if quick else 10_000, repeats=1 if quick else 2))
    if "concurrency" in parts:
        results["concurrency"] = step("5 concurrency", lambda: mounted.concurrency(
            processes=(1, 2) if quick else (1, 2, 8, 32), seconds=0.3 if quick else 1.5,
            repeats=1 if quick else 3))
    if "bridge" in parts:
        results["bridge"] = step("6 process bridge", lambda: bridge.run(
            calls=200 if quick else 5000, repeats=1 if quick else 3))
    results["targets"] = targets(results)
    return results


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 6 that the parts run can judge: figure, target, met."""
    out = []

    def add(name: str, value: float, target: float, met: bool, unit: str = "") -> None:
        out.append({"target": name, "value": value, "limit": target, "met": bool(met), "unit": unit,
                    "at_least": ">=" in name})

    if "memory" in r:
        t = r["memory"]["targets"]
        v = t["sparse_python_bytes_per_resident_page"]
        add("sparse heap: vdrm bytes per resident page", v["value"], v["target"], v["met"], "B")
        v = t["sparse_python_bytes_per_empty_heap"]
        add("sparse heap: vdrm bytes per empty heap BO (backing)", v["value"], v["target"], v["met"], "B")
    if "mount" in r:
        f = mounted.fault_vs_round_trip(r["mount"])
        r["fault_vs_round_trip"] = f
        add("2 MiB fault / ceiling FUSE round trip", f["fault_over_ceiling_round_trip"],
            TARGET_FAULT_OVER_ROUND_TRIP, f["fault_over_ceiling_round_trip"] <= TARGET_FAULT_OVER_ROUND_TRIP)
    if "mount" in r:
        mt = r["mount"]
        for key, name, limit in (("fdinfo_read", "fdinfo open-read-close / ceiling (>=)", TARGET_FDINFO_OVER_CEILING),
                                 ("kernel_fdinfo", "fdinfo open-read-close / the kernel's own (>=, stretch)",
                                  TARGET_FDINFO_OVER_KERNEL),
                                 ("request", "request round trip / ceiling (>=)", TARGET_REQUEST_OVER_CEILING)):
            if key in mt:
                add(name, mt[key]["ratio"], limit, mt[key]["ratio"] >= limit)
    walks = [r[k]["proc_walk"] if k == "mount" else r[k] for k in ("mount", "walk_large") if k in r]
    for w in walks:
        add(f"/proc walk over {w['clients']} clients / ceiling (>=)", w["ratio"], TARGET_WALK_OVER_CEILING,
            w["ratio"] >= TARGET_WALK_OVER_CEILING)
    if len(walks) == 2:
        cost = walks[1]["us_per_client"] / walks[0]["us_per_client"]
        add(f"/proc walk cost per client, {walks[1]['clients']} / {walks[0]['clients']} clients", cost,
            TARGET_SCALE_COST_RATIO, cost <= TARGET_SCALE_COST_RATIO)
    if "walk_large" in r:
        w = r["walk_large"]
        add(f"scenario of {w['clients']} clients mounted in (s)", w["mount_seconds"], TARGET_MOUNT_10K_SECONDS,
            w["mount_seconds"] <= TARGET_MOUNT_10K_SECONDS, " s")
    for part, label in (("scale_engine", "engine"), ("scale_mount", "mount")):
        if part in r:
            for key in ("fdinfo", "version_request", "bo_request", "request"):
                if key in r[part]:
                    c = r[part][key]["cost_ratio"]
                    add(f"scale ({label}): {key} cost, {r[part]['large_clients']} / "
                        f"{r[part]['small_clients']} clients", c, TARGET_SCALE_COST_RATIO,
                        c <= TARGET_SCALE_COST_RATIO)
    return out


def table(r: dict[str, Any]) -> str:
    """The printed report."""
    lines: list[str] = []
    m = r["machine"]
    lines.append(f"vdrm benchmark — {m['time_utc']}, Python {m['python']}, {m['cpus']} CPUs, "
                 f"kernel {m['kernel']}, load {m['load_average']:.2f}{' (quick)' if r.get('quick') else ''}")
    if r.get("steal"):
        worst = max(r["steal"], key=r["steal"].get)
        lines.append(f"CPU steal (time the hypervisor gave to other guests): at most {r['steal'][worst]:.1%}, "
                     f"in [{worst}]; ratios from a part with more than a few % are not worth comparing")
    if m.get("daemon_cpus"):
        lines.append(f"placement: daemons on CPU {m['daemon_cpus']}, benchmark and its clients on CPU {m['client_cpus']}")
    if "memory" in r:
        lines += ["", "1. Heap BO bookkeeping (vdrm = tracemalloc of the BO and its backing; "
                      "backing = less the bare object; kernel = kernel_bookkeeping_bytes)",
                  f"{'size':>8} {'backing':>7} {'resident':>9} {'vdrm':>10} {'backing':>10} "
                  f"{'B/page':>7} {'kernel':>10} {'B/page':>7}"]
        for row in r["memory"]["rows"]:
            lines.append(f"{_mib(row['size']):>8} {row['backing']:>7} {row['residency'] * 100:>8g}% "
                         f"{_bytes(row['python_bytes']):>10} {_bytes(row['backing_bytes']):>10} "
                         f"{_per_page(row['backing_per_page']):>7} {_bytes(row['kernel_bytes']):>10} "
                         f"{_per_page(row['kernel_per_page']):>7}")
    if "engine" in r:
        e = r["engine"]
        lines += ["", "2. Engine speed (median of repeats)"]
        for backing, per_s in e["fault_per_s"].items():
            lines.append(f"  2 MiB heap fault ({backing}):      {per_s:10.0f} /s  ({1e6 / per_s:7.1f} us)")
        for npages, v in e["sg_build_per_s"].items():
            lines.append(f"  sg table of {int(npages):>7} pages ({v['entries']} entries): {v['per_s']:10.1f} /s  "
                         f"({1e6 / v['per_s']:9.1f} us)")
        for nbos, per_s in e["fdinfo_per_s"].items():
            lines.append(f"  fdinfo render, {int(nbos):>5} BOs:     {per_s:10.0f} /s  ({1e6 / per_s:7.1f} us)")
    if "fault_vs_round_trip" in r:
        f = r["fault_vs_round_trip"]
        lines.append(f"  side by side (part 3): sparse 2 MiB fault {f['fault_us']:.0f} us vs ceiling FUSE round trip "
                     f"{f['ceiling_round_trip_us']:.0f} us (x{f['fault_over_ceiling_round_trip']:.2f}); "
                     f"vdrm round trip {f['vdrm_round_trip_us']:.0f} us (x{f['fault_over_vdrm_round_trip']:.2f})")
    if "mount" in r:
        mt = r["mount"]
        lines += ["", "3. Through the mount, beside the ceiling (pyfuse3 minimal fs), median of repeats",
                  f"  {'operation':<38}{'vdrm':>12}{'ceiling':>12}{'ratio':>8}"]
        for key, name in (("fdinfo_read", "fdinfo open-read-close /s"), ("request", "request round trip /s")):
            lines.append(f"  {name:<38}{mt[key]['rate']:>12.0f}{mt[key]['reference_rate']:>12.0f}"
                         f"{mt[key]['ratio']:>8.2f}")
        if "kernel_fdinfo" in mt:
            k = mt["kernel_fdinfo"]
            lines.append(f"  {'fdinfo /s vs the kernel /proc/self':<38}{k['rate']:>12.0f}{k['reference_rate']:>12.0f}"
                         f"{k['ratio']:>8.2f}")
        for w in [mt["proc_walk"]] + ([r["walk_large"]] if "walk_large" in r else []):
            lines.append(f"  {'/proc walk, ' + str(w['clients']) + ' clients (s)':<38}{w['seconds']:>12.3f}"
                         f"{w['reference_seconds']:>12.3f}{w['ratio']:>8.2f}"
                         + (f"   {w['us_per_client']:.0f} us/client, mounted in {w['mount_seconds']:.2f} s"
                            if "us_per_client" in w else ""))
    for part, label in (("scale_engine", "engine"), ("scale_mount", "mount")):
        if part in r:
            s = r[part]
            lines += ["", f"4. Scale ({label}): {s['small_clients']} clients against {s['large_clients']} "
                          f"clients x {s['bos_per_client']} BOs (cost ratio large/small)"]
            for key in ("fdinfo", "version_request", "bo_request", "request"):
                if key in s:
                    lines.append(f"  {key:<18} small {s[key]['reference_rate']:10.0f} /s  large "
                                 f"{s[key]['rate']:10.0f} /s  cost ratio {s[key]['cost_ratio']:.2f}")
            if "python_bytes_per_client" in s:
                lines.append(f"  Python memory: {_bytes(s['python_bytes_per_client'])} per client, "
                             f"{_bytes(s['python_bytes_per_bo'])} per 4 KiB BO")
            if "rss_per_client" in s:
                lines.append(f"  daemon RSS: {_bytes(s['rss_per_client'])} per client, "
                             f"{_bytes(s['rss_per_bo'])} per 4 KiB BO "
                             f"(RSS {_bytes(s['rss_clients_and_bos'])} in all)")
    if "concurrency" in r:
        lines += ["", "5. Concurrency: request round trips /s, N client processes at once",
                  f"  {'N':>4}{'vdrm':>12}{'ceiling':>12}{'ratio':>8}{'vdrm vs N=1':>13}"]
        for n, v in r["concurrency"].items():
            lines.append(f"  {n:>4}{v['rate']:>12.0f}{v['reference_rate']:>12.0f}{v['ratio']:>8.2f}"
                         f"{v['vs_one_process']:>13.2f}")
    if "bridge" in r:
        b = r["bridge"]
        lines += ["", "6. Process bridge: one call under mount.py --run (Python probe, best of runs)",
                  f"  {'call':<40}{'us':>9}{'added us':>10}"]
        for key, us in b["under_runner_us"].items():
            added = b["added_us"].get(key)
            lines.append(f"  {key:<40}{us:>9.1f}{'' if added is None else f'{added:10.1f}'}")
    if r.get("targets"):
        lines += ["", "Targets"]
        for t in r["targets"]:
            cmp = ">=" if t.get("at_least") else "<="
            lines.append(f"  [{'met ' if t['met'] else 'MISS'}] {t['target']}: {t['value']:.2f}{t['unit']} "
                         f"(target {cmp} {t['limit']:g}{t['unit']})")
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> str:
    """The memory comparison as a PNG; a note instead when matplotlib is missing."""
    if "memory" not in r:
        return "no memory figures: no plot"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e .[bench]): no plot"
    rows = r["memory"]["rows"]
    sizes = sorted({row["size"] for row in rows})
    floor = 256  # bytes: where 0 B (no backing yet) is drawn on the log axis
    top = max(max(row["python_bytes"], row["kernel_bytes"]) for row in rows) * 2
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 4), sharey=True)
    if len(sizes) == 1:
        axes = [axes]
    for ax, size in zip(axes, sizes):
        for backing, marker in (("sparse", "o"), ("dense", "s")):
            pts = sorted((row["residency"], row) for row in rows if row["size"] == size and row["backing"] == backing)
            xs = [max(p[0] * 100, 0.1) for p in pts]
            ax.plot(xs, [max(p[1]["python_bytes"], floor) for p in pts], marker=marker, linestyle="-",
                    label=f"{backing}: vdrm (Python)")
            ax.plot(xs, [max(p[1]["kernel_bytes"], floor) for p in pts], marker=marker, alpha=0.45, linestyle="--",
                    label=f"{backing}: kernel-equivalent")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(floor / 1.5, top)  # both limits: a bare bottom= would freeze the top at this panel's data
        ax.set_title(f"heap BO of {_mib(size)}")
        ax.set_xlabel("residency, % (0 % drawn at 0.1 %)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"bookkeeping bytes (0 B drawn at {floor} B)")
    axes[-1].legend(fontsize=7)
    fig.suptitle("Heap BO bookkeeping: sparse (RFC) vs dense (mainline)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdrm.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every part at small sizes (a smoke run)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the scheduler place daemons and clients (default: daemons on the last CPU, "
                             "the benchmark and its clients on the others)")
    parser.add_argument("--out", default=str(ROOT / "bench-results"), help="directory for JSON and PNG")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and any(p in args.only for p in ("mount", "scale", "concurrency")):
        print("note: the mount parts need FUSE; they mount as this user (allow_other may need root)")
    saved = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if not args.no_pin:
        pin_clients()
    try:
        results = run(tuple(args.only), quick=args.quick)
    finally:
        if saved is not None:
            os.sched_setaffinity(0, saved)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = json.dumps(results, indent=1)
    (out / f"bench-{stamp}.json").write_text(text)
    (out / "latest.json").write_text(text)
    report = table(results)
    (out / "latest.txt").write_text(report + "\n")
    print()
    print(report)
    print()
    print(plot(results, out / "memory.png"))
    print(f"results: {out / f'bench-{stamp}.json'}")
    return 0
