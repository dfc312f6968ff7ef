"""Replies on a shared open file go back to their caller (issue 13, defect 8).

Against a real mount: processes that share one open DRM file (inherited over fork,
dup'd) each read their own replies, as each gets its own ioctl's result from the kernel,
and one writer's unterminated tail never merges with another's line. On main before the
per-writer routing, 8 processes on one inherited fd got thousands of replies of others.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from tests.fs.conftest import Daemon

ROUNDS = 150
PROCESSES = 8


def _round_trip(fd: int, line: bytes) -> bytes:
    os.write(fd, line)
    return os.read(fd, 4096)


def test_processes_on_one_inherited_fd_read_only_their_own_replies(mnt: Daemon) -> None:
    fd = os.open(mnt.path / "dev/dri/renderD128", os.O_RDWR)
    try:
        readers, pids = [], []
        for n in range(PROCESSES):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: HELP names the verb it describes, so a reply tells whose it is
                os.close(r)
                wrong = 0
                try:
                    first, second = ("VERSION", "GET_CAP") if n % 2 else ("GET_CAP", "VERSION")
                    for i in range(ROUNDS):
                        # one whole line and a held tail, which this process's next write completes
                        os.write(fd, f"HELP verb={first}\nHELP verb=".encode())
                        os.write(fd, f"{second}\n".encode())
                        for want in (first, second):
                            if not os.read(fd, 4096).startswith(f"ok verb={want} ".encode()):
                                wrong += 1
                finally:
                    os.write(w, str(wrong).encode())
                    os._exit(0)
            os.close(w)
            readers.append(r)
            pids.append(pid)
        wrong = []
        for r, pid in zip(readers, pids):
            os.waitpid(pid, 0)
            wrong.append(int(os.read(r, 64) or b"-1"))
            os.close(r)
        assert wrong == [0] * PROCESSES, f"replies that reached another process, per process: {wrong}"
    finally:
        os.close(fd)


def test_threads_of_one_process_each_read_their_own_reply(mnt: Daemon) -> None:
    fd = os.open(mnt.path / "dev/dri/renderD128", os.O_RDWR)
    errors: list[str] = []

    def worker(n: int) -> None:
        for _ in range(100):
            reply = _round_trip(fd, f"HELP verb={'VERSION' if n % 2 else 'GET_CAP'}\n".encode())
            if not reply.startswith(b"ok verb=" + (b"VERSION" if n % 2 else b"GET_CAP")):
                errors.append(reply.decode(errors="replace"))

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.close(fd)
    assert errors == []


def test_a_child_reads_the_reply_of_the_shell_that_wrote(mnt: Daemon) -> None:
    """``echo VERSION >&3; head -1 <&3``: the reader is the writer's child, so it may read it."""
    out = subprocess.run(["bash", "-c", 'exec 3<>"$MNT/dev/dri/renderD128"; echo VERSION >&3; head -c 4096 <&3'],
                         env={**os.environ, "MNT": str(mnt.path)}, capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("ok "), out
    # ...and the reply of a child that wrote and exited is the parent's to read
    out = subprocess.run(["bash", "-c", 'exec 3<>"$MNT/dev/dri/renderD128"; (echo VERSION >&3); read -r r <&3; echo "$r"'],
                         env={**os.environ, "MNT": str(mnt.path)}, capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("ok "), out


def test_an_unrelated_process_does_not_read_another_s_reply(mnt: Daemon) -> None:
    """Two siblings share the fd: what one wrote, the other reads as end-of-file."""
    fd = os.open(mnt.path / "dev/dri/renderD128", os.O_RDWR)
    try:
        wrote_r, wrote_w = os.pipe()
        first = os.fork()
        if first == 0:
            os.write(fd, b"VERSION\n")
            os.write(wrote_w, b"x")
            time.sleep(3)  # alive, holding its reply unread
            os._exit(0)
        os.read(wrote_r, 1)
        second = os.fork()
        if second == 0:
            os._exit(0 if os.read(fd, 4096) == b"" else 1)
        _, status = os.waitpid(second, 0)
        os.kill(first, 9)
        os.waitpid(first, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "a sibling read another live process's reply"
    finally:
        os.close(fd)
