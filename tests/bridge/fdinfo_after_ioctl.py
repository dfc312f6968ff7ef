"""After each binary CREATE_BO, this process's fdinfo says so at once: the memory it
shows, and the ``st_size`` a ``stat`` reports (vdrm gives the exact size, and the kernel
caches it).

Prints ``rounds=N`` and ``stale=M`` (M should be 0), and the first stale case it met.
"""

from __future__ import annotations

import fcntl
import os
import sys

from gpu_client import CREATE_BO, CreateBo

UNITS = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def total_memory(text: bytes) -> int:
    for line in text.decode().splitlines():
        key, _, value = line.partition(":")
        if key == "drm-total-memory":
            number, _, unit = value.strip().partition(" ")
            return int(number) * UNITS[unit]
    raise AssertionError(f"no drm-total-memory in {text!r}")


def main() -> int:
    fd = os.open("/dev/dri/renderD128", os.O_RDWR)
    path = f"/proc/self/fdinfo/{fd}"
    stale, first, total = 0, "", 0
    rounds = 12
    for i in range(rounds):
        with open(path, "rb") as f:  # the kernel now holds its size and pages
            f.read()
        os.stat(path)
        size = 4096 * 10 ** (i % 5)  # the text's length changes with the digits
        fcntl.ioctl(fd, CREATE_BO, CreateBo(size=size, flags=0))
        total += size
        st_size = os.stat(path).st_size
        with open(path, "rb") as f:
            text = f.read()
        if st_size != len(text) or total_memory(text) != total:
            stale += 1
            first = first or (f"round {i}: st_size {st_size}, text {len(text)} bytes, "
                              f"total {total_memory(text)} for {total}")
    print(f"rounds={rounds}")
    print(f"stale={stale}")
    if first:
        print(f"first={first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
