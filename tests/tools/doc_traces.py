#!/usr/bin/env python3
"""Build the fixture traces in fixtures/traces/ from the kernel's own fdinfo examples.

Run ``python tests/tools/doc_traces.py fixtures/traces`` to rewrite them; the test suite
checks that the files equal what this script builds, so each fixture can be read back to
its source here. Every trace has two samples one second apart:

- sample 0 is the example exactly as its source prints it (key set, values, header lines;
  the key/value separator is the tab the kernel's ``drm_printf("%s:\\t...")`` writes, where
  the documentation indents with spaces for typesetting);
- sample 1 has the same key set, with only the counters (engine ns, cycles, total cycles)
  advanced by the amounts in ``ADVANCE`` — a second of work, so the ground truth has a
  utilisation to compare with. No key is added or dropped.

Sources (the kernel documentation where it has an example; it has none for amdgpu, msm
and v3d, so those come from the kernel itself, as said per trace):

``i915``     Documentation/gpu/i915.rst, "i915 DRM client usage stats implementation"
``xe``       Documentation/gpu/xe/xe-drm-usage-stats.rst, which includes the DOC comment of
             drivers/gpu/drm/xe/xe_drm_client.c ("DRM Client usage stats")
``panthor``  Documentation/gpu/panthor.rst, "Panthor DRM client usage stats implementation"
``msm``      no example in Documentation/gpu: the example output of the merged commit that
             added msm's fdinfo (Rob Clark, "drm/msm: Add fdinfo", 2022)
``v3d``      no example in Documentation/gpu: the example output of the merged commit
             "drm/v3d: Use drm_show_memory_stats()" (Maíra Canal, 2024)
``amdgpu``   no example in Documentation/gpu (amdgpu.rst's 2022 proposal was not merged): the
             lines amdgpu_show_fdinfo() in drivers/gpu/drm/amd/amdgpu/amdgpu_fdinfo.c prints,
             in its order and spacing (``drm-memory-gtt: \\t``), with example values

The sysfs identity is minimal and factual: the driver's name, the device name (the PCI
slot of the example's ``drm-pdev``; for platform GPUs a real SoC's GPU address), and for
PCI devices the vendor's PCI id. Emulated pids sit above PID_MAX_LIMIT (4194304).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

PID_BASE = 4194304
SECOND = 1_000_000_000

# (name, description, device, driver, pci vendor or None, comm, lines of sample 0)
EXAMPLES = {
    "i915": ("i915: the example of Documentation/gpu/i915.rst (render, copy, video x2, video-enhance)",
             "0000:00:02.0", "i915", "0x8086", "glxgears", """\
pos:    0
flags:  0100002
mnt_id: 21
drm-driver: i915
drm-pdev:   0000:00:02.0
drm-client-id:      7
drm-engine-render:  9288864723 ns
drm-engine-copy:    2035071108 ns
drm-engine-video:   0 ns
drm-engine-capacity-video:   2
drm-engine-video-enhance:   0 ns
"""),
    "xe": ("xe: the example of xe_drm_client.c's DOC (Documentation/gpu/xe): cycles over total cycles, no engine ns",
           "0000:03:00.0", "xe", "0x8086", "vkcube", """\
pos:    0
flags:  0100002
mnt_id: 26
ino:    685
drm-driver:     xe
drm-client-id:  3
drm-pdev:       0000:03:00.0
drm-total-system:       0
drm-shared-system:      0
drm-active-system:      0
drm-resident-system:    0
drm-purgeable-system:   0
drm-total-gtt:  192 KiB
drm-shared-gtt: 0
drm-active-gtt: 0
drm-resident-gtt:       192 KiB
drm-total-vram0:        23992 KiB
drm-shared-vram0:       16 MiB
drm-active-vram0:       0
drm-resident-vram0:     23992 KiB
drm-total-stolen:       0
drm-shared-stolen:      0
drm-active-stolen:      0
drm-resident-stolen:    0
drm-cycles-rcs: 28257900
drm-total-cycles-rcs:   7655183225
drm-cycles-bcs: 0
drm-total-cycles-bcs:   7655183225
drm-cycles-vcs: 0
drm-total-cycles-vcs:   7655183225
drm-engine-capacity-vcs:        2
drm-cycles-vecs:        0
drm-total-cycles-vecs:  7655183225
drm-engine-capacity-vecs:       2
drm-cycles-ccs: 0
drm-total-cycles-ccs:   7655183225
drm-engine-capacity-ccs:        4
"""),
    "panthor": ("panthor: the example of Documentation/gpu/panthor.rst (one engine, 'panthor')",
                "fb000000.gpu", "panthor", None, "glmark2-es2", """\
pos:    0
flags:  02400002
mnt_id: 29
ino:    491
drm-driver:     panthor
drm-client-id:  10
drm-engine-panthor:     111110952750 ns
drm-cycles-panthor:     94439687187
drm-maxfreq-panthor:    1000000000 Hz
drm-curfreq-panthor:    1000000000 Hz
drm-total-memory:       16480 KiB
drm-shared-memory:      0
drm-active-memory:      16200 KiB
drm-resident-memory:    16480 KiB
drm-purgeable-memory:   0
"""),
    "msm": ("msm: the example output of the commit that added msm's fdinfo (no example in Documentation/gpu)",
            "3d00000.gpu", "msm", None, "glmark2", """\
pos:    0
flags:  02400002
mnt_id: 21
ino:    162
drm-driver:     msm
drm-client-id:  7
drm-engine-gpu: 1734371319 ns
drm-cycles-gpu: 1153645024
drm-maxfreq-gpu:        800000000 Hz
"""),
    "v3d": ("v3d: the example output of the commit 'drm/v3d: Use drm_show_memory_stats()' (no example in "
            "Documentation/gpu)", "fec00000.v3d", "v3d", None, "computecloth", """\
pos:    0
flags:  02400002
mnt_id: 25
ino:    521
drm-driver:     v3d
drm-client-id:  81
drm-engine-bin:         4916187 ns
v3d-jobs-bin:   98 jobs
drm-engine-render:      154563573 ns
v3d-jobs-render:        98 jobs
drm-engine-tfu:         10574 ns
v3d-jobs-tfu:   1 jobs
drm-engine-csd:         0 ns
v3d-jobs-csd:   0 jobs
drm-engine-cache_clean:         0 ns
v3d-jobs-cache_clean:   0 jobs
drm-engine-cpu:         0 ns
v3d-jobs-cpu:   0 jobs
drm-total-memory:       15168 KiB
drm-shared-memory:      9336 KiB
drm-active-memory:      0
"""),
    "amdgpu": ("amdgpu: the lines amdgpu_show_fdinfo() prints (no example in Documentation/gpu), example values",
               "0000:03:00.0", "amdgpu", "0x1002", "supertuxkart", """\
pos:    0
flags:  02100002
mnt_id: 27
ino:    1033
pasid:  32770
drm-driver:     amdgpu
drm-pdev:       0000:03:00.0
drm-client-id:  41
drm-memory-vram:        262144 KiB
drm-memory-gtt: \t8192 KiB
drm-memory-cpu: \t0 KiB
amd-memory-visible-vram:        131072 KiB
amd-evicted-vram:       0 KiB
amd-evicted-visible-vram:       0 KiB
amd-requested-vram:     262144 KiB
amd-requested-visible-vram:     131072 KiB
amd-requested-gtt:      8192 KiB
drm-engine-gfx: 84412345678 ns
"""),
}

# What one second adds, per counter key (everything else stays as printed).
ADVANCE = {
    "i915": {"drm-engine-render": 400_000_000, "drm-engine-copy": 50_000_000},
    "xe": {"drm-cycles-rcs": 250_000_000, "drm-total-cycles-rcs": 1_000_000_000,
           "drm-total-cycles-bcs": 1_000_000_000, "drm-total-cycles-vcs": 1_000_000_000,
           "drm-cycles-vcs": 500_000_000, "drm-total-cycles-vecs": 1_000_000_000,
           "drm-total-cycles-ccs": 1_000_000_000},
    "panthor": {"drm-engine-panthor": 600_000_000, "drm-cycles-panthor": 600_000_000},
    "msm": {"drm-engine-gpu": 300_000_000, "drm-cycles-gpu": 240_000_000},
    "v3d": {"drm-engine-bin": 100_000_000, "drm-engine-render": 450_000_000, "v3d-jobs-bin": 60,
            "v3d-jobs-render": 60},
    "amdgpu": {"drm-engine-gfx": 700_000_000},
}

_LINE = re.compile(r"([^:\s]+):( ?\t| +)(.*)")


def kernel_text(doc: str) -> str:
    """The example with the kernel's separator: ``key:\\tvalue`` (a literal ``: \\t`` kept)."""
    out = []
    for line in doc.splitlines():
        m = _LINE.fullmatch(line)
        if m is None:
            raise ValueError(f"not a key: value line: {line!r}")
        sep = " \t" if m.group(2) == " \t" else "\t"
        out.append(f"{m.group(1)}:{sep}{m.group(3)}\n")
    return "".join(out)


def advanced(text: str, deltas: dict[str, int]) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        key, sep, rest = line.partition(":")
        if key in deltas:
            lead = rest[:len(rest) - len(rest.lstrip())]
            number, space, unit = rest.strip().partition(" ")
            line = f"{key}:{lead}{int(number) + deltas[key]}{space}{unit}".rstrip() + "\n"
        out.append(line)
    return "".join(out)


def trace(name: str) -> dict:
    description, device, driver, vendor, comm, doc = EXAMPLES[name]
    text0 = kernel_text(doc)
    text1 = advanced(text0, ADVANCE[name])
    client_id = int(re.search(r"drm-client-id:\s+(\d+)", text0).group(1))
    pid = PID_BASE + 1000 + sorted(EXAMPLES).index(name)
    fd = 7
    cmdline = comm + "\0"
    stat = (f"{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0 "
            "18446744073709551615" + " 0" * 27 + "\n")
    status = (f"Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\n"
              "PPid:\t1\nTracerPid:\t0\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n"
              "FDSize:\t64\nGroups:\t\nThreads:\t1\n")
    pci = vendor is not None
    uevent = f"DRIVER={driver}\n" + (f"PCI_SLOT_NAME={device}\n" if pci else "")
    link = (f"../../../{device}" if not pci else f"../../../{device}")
    nodes = [{"name": n, "minor": m,
              "class_link": f"../../devices/{'pci0000:00' if pci else 'platform'}/{device}/drm/{n}",
              "dev": f"226:{m}\n", "uevent": f"MAJOR=226\nMINOR={m}\nDEVNAME=dri/{n}\nDEVTYPE=drm_minor\n"}
             for n, m in (("card0", 0), ("renderD128", 128))]

    def sample(t: int, text: str) -> dict:
        return {"t_ns": t,
                "processes": {str(pid): {"stat": stat, "status": status, "comm": comm + "\n", "cmdline": cmdline,
                                         "fds": {str(fd): {"target": "/dev/dri/renderD128", "fdinfo": text}}}},
                "clients": [{"minor": 128, "drm-client-id": client_id, "fds": [[pid, fd]]}]}

    return {"format": "vdrm-trace/1", "description": description,
            "recorded": {"by": "tests/tools/doc_traces.py", "kernel": "documentation", "uid": 1000,
                         "interval_ns": SECOND},
            "devices": [{"name": device, "link": link, "uevent": uevent,
                         "attributes": {"vendor": vendor + "\n"} if pci else {}, "nodes": nodes}],
            "samples": [sample(0, text0), sample(SECOND, text1)]}


def render(name: str) -> str:
    return json.dumps(trace(name), indent=1) + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fixtures/traces")
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(EXAMPLES):
        (out / f"{name}.json").write_text(render(name))
        print(out / f"{name}.json")
