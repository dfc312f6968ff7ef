"""``kcmp(pid, pid, KCMP_FILE, a, b)`` for fds A B C of PID, and the per-process files htop reads.

usage: kcmp_probe.py PID A B C -- prints ``kcmp A B=<result>`` (a negative errno on failure)
for each pair and with a closed fd 99, then ``statm=``, ``io=`` (its keys), ``cgroup=``,
``environ=`` (the first variable), ``vmrss=`` (status) and ``rss_pages=`` (stat's rss).
"""

from __future__ import annotations

import ctypes
import sys

SYS_KCMP, KCMP_FILE = 312, 0
_libc = ctypes.CDLL(None, use_errno=True)


def kcmp(pid: int, a: int, b: int) -> int:
    r = _libc.syscall(SYS_KCMP, pid, pid, KCMP_FILE, a, b)
    return r if r >= 0 else -ctypes.get_errno()


def main() -> None:
    pid, a, b, c = (int(x) for x in sys.argv[1:5])
    for x, y in ((a, b), (a, c), (b, c), (a, 99)):
        print(f"kcmp {x} {y}={kcmp(pid, x, y)}")
    proc = f"/proc/{pid}"
    print("statm=" + open(f"{proc}/statm").read().strip())
    print("io=" + " ".join(line.split(":")[0] for line in open(f"{proc}/io")))
    print("cgroup=" + open(f"{proc}/cgroup").read().strip())
    print("environ=" + open(f"{proc}/environ", "rb").read().split(b"\0")[0].decode())
    status = dict(line.split(":", 1) for line in open(f"{proc}/status"))
    print("vmrss=" + status["VmRSS"].strip())
    print("rss_pages=" + open(f"{proc}/stat").read().rpartition(")")[2].split()[21])


if __name__ == "__main__":
    main()
