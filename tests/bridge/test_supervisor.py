"""The bridge's parts without a mount: the filter, the supervisor's decisions, the caller's memory.

A forked child installs the filter, hands its listener over a socket pair (as the runner
does) and execs a small program; a :class:`Supervisor` with a fake host answers it. A
plain file plays the DRM node: the fake host says its inode is one.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys
import textwrap
from pathlib import Path

import pytest

from vdrm.bridge import ioctls, nodestat, seccomp
from vdrm.bridge.memory import ProcessMemory
from vdrm.bridge.supervisor import Supervisor
from vdrm.errors import BadAddress

pytestmark = pytest.mark.skipif(seccomp.supported() is not None, reason=str(seccomp.supported()))

NODE = nodestat.NodeStat(ino=531, mode=0o20666, uid=0, gid=0, rdev=os.makedev(226, 128), time_ns=10**18)


class FakeHost:
    """The node is ``node_path``'s inode; ioctls on it answer 7 and write b"answered"."""

    def __init__(self, node_path: Path):
        st = os.stat(node_path)
        self.fuse_dev, self._ino = st.st_dev, st.st_ino
        self.ioctls: list[int] = []

    def engine(self, fn, *args):
        return fn(*args)

    def node(self, ino):
        return NODE if ino == self._ino else None

    def kcmp(self, *args):
        return None

    def client_ino(self, tid, fd):
        try:
            ino = os.stat(f"/proc/{tid}/fd/{fd}").st_ino
        except OSError:
            return None
        return ino if ino == self._ino else None

    def ioctl(self, ino, cmd, argp, mem):
        self.ioctls.append(cmd)
        mem.write(argp, b"answered")
        return 7

    def ioctl_call(self, listener, note):
        ioctls.answer(listener, note, self)

    def listener_done(self, listener):
        os.close(listener)


CHILD = textwrap.dedent("""
    import ctypes, fcntl, os, stat, sys
    node = sys.argv[1]
    fd = os.open(node, os.O_RDWR)
    st = os.fstat(fd)
    print("fstat", stat.S_ISCHR(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev), st.st_ino)
    st = os.stat(node)
    print("stat", stat.S_ISCHR(st.st_mode), os.minor(st.st_rdev))
    print("other", stat.S_ISREG(os.stat(sys.executable).st_mode))
    buf = bytearray(8)
    print("ioctl", fcntl.ioctl(fd, 0xC0086444, buf), bytes(buf))
    r, w = os.pipe()
    try:
        fcntl.ioctl(r, 0xC0086444, bytearray(8))  # a 'd' ioctl on another fd: the kernel's
    except OSError as e:
        print("other_fd_ioctl", e.errno)
""")


def run_child(tmp_path: Path) -> tuple[str, FakeHost]:
    node = tmp_path / "renderD128"
    node.write_bytes(b"")
    host = FakeHost(node)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs
        try:
            ours.close()
            os.dup2(out_w, 1)
            listener = seccomp.install_filter()
            socket.send_fds(theirs, [b"l"], [listener])
            os.execv(sys.executable, [sys.executable, "-c", CHILD, str(node)])
        finally:
            os._exit(127)
    os.close(out_w)
    theirs.close()
    _, fds, _, _ = socket.recv_fds(ours, 16, 1)
    ours.close()
    supervisor = Supervisor(fds[0], host)
    thread = supervisor.start()
    with os.fdopen(out_r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    thread.join(10)
    assert not thread.is_alive(), "the supervisor ends when its last filtered process exits"
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out, host


def test_filter_notifies_drm_ioctls_and_stats_only(tmp_path: Path) -> None:
    """Under the filter, the node stats as 226:128 by fd and by path, a 'd' ioctl on it is
    the host's (result and written struct), and other files and fds stay the kernel's."""
    out, host = run_child(tmp_path)
    lines = out.splitlines()
    assert lines[0] == "fstat True 226 128 531"
    assert lines[1] == "stat True 128"
    assert lines[2] == "other True"
    assert lines[3] == "ioctl 7 b'answered'"
    assert lines[4] == "other_fd_ioctl 25"  # ENOTTY, from the kernel
    assert host.ioctls == [0xC0086444]


def test_filter_program_is_well_formed() -> None:
    """The BPF program is whole instructions, checks the architecture first and ends in returns."""
    program = seccomp.filter_program()
    assert len(program) % 8 == 0
    insns = [struct.unpack("<HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    assert insns[0] == (0x20, 0, 0, 4) and insns[1][3] == seccomp.AUDIT_ARCH_X86_64
    assert insns[-1][0] == 0x06 and insns[-2][0] == 0x06


def test_process_memory_reads_writes_and_faults() -> None:
    """copy_{from,to}_user over process_vm_readv/writev: whole ranges, EFAULT otherwise."""
    buf = ctypes.create_string_buffer(b"hello world\0", 16)
    mem = ProcessMemory(os.getpid())
    addr = ctypes.addressof(buf)
    assert mem.read(addr, 5) == b"hello"
    assert mem.read_string(addr) == b"hello world"
    mem.write(addr, b"HELLO")
    assert buf.value == b"HELLO world"
    with pytest.raises(BadAddress):
        mem.read(0x10, 8)
    with pytest.raises(BadAddress):
        mem.write(0x10, b"x")
    assert mem.read(0x10, 0) == b""


def test_stat_structs_have_the_kernels_sizes() -> None:
    """struct stat is 144 bytes with st_rdev at 40; struct statx is 256 with rdev at 128."""
    data = nodestat.pack_stat(NODE)
    assert len(data) == 144
    assert struct.unpack_from("<Q", data, 40)[0] == NODE.rdev
    assert struct.unpack_from("<I", data, 24)[0] == 0o20666
    x = nodestat.pack_statx(NODE)
    assert len(x) == 256
    assert struct.unpack_from("<II", x, 128) == (226, 128)
    assert struct.unpack_from("<H", x, 28)[0] == 0o20666


class PassThrough:
    """A host that owns nothing: every intercepted call goes back to the kernel."""

    fuse_dev = -1

    def engine(self, fn, *args):
        return fn(*args)

    def node(self, ino):
        return None

    def kcmp(self, *args):
        return None

    def ioctl_call(self, listener, note):
        seccomp.carry_on(listener, note.id)

    def listener_done(self, listener):
        os.close(listener)


def test_runner_under_another_listener_runs_without_the_bridge() -> None:
    """A runner started under a filter that already has a listener cannot install its own
    (the kernel allows one per chain): COMMAND still runs, with stat-only nodes, and says why."""
    root = Path(__file__).resolve().parents[2]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    err_r, err_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs
        try:
            ours.close()
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            listener = seccomp.install_filter()
            socket.send_fds(theirs, [b"l"], [listener])
            os.execv(sys.executable, [sys.executable, str(root / "mount.py"), "--run", "--",
                                      "stat", "-c", "%F", "/dev/dri/renderD128"])
        finally:
            os._exit(127)
    for fd in (out_w, err_w):
        os.close(fd)
    theirs.close()
    _, fds, _, _ = socket.recv_fds(ours, 16, 1)
    ours.close()
    thread = Supervisor(fds[0], PassThrough()).start()
    with os.fdopen(out_r) as out, os.fdopen(err_r) as err:
        stdout, stderr = out.read(), err.read()
    _, status = os.waitpid(pid, 0)
    thread.join(10)
    assert os.waitstatus_to_exitcode(status) == 0, stderr
    assert stdout == "character special file\n"
    assert "Device or resource busy" in stderr and "for stat only" in stderr
