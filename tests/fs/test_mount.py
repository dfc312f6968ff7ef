"""Real-mount tests: vdrm mounted by ``mount.py --daemon`` and driven from bash as a user would.

Every test here runs against a real FUSE mount of the real ``PanfrostDevice``; the shared
mount (fixture ``mnt``) fails a test during which the daemon logged a traceback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fs.conftest import (MOUNT_PY, ROOT, TIMEOUT, Daemon, lazy_unmount, make_mountpoint, mounted,
                               remove_mountpoint, wait_for)

PDEV = "fde60000.gpu"

# Open renderD128 as fd 3 and make one 8 MiB heap BO with its first 2 MiB faulted in.
HEAP_CLIENT = """
exec 3<>"$MNT/dev/dri/renderD128"
echo 'CREATE_BO size=8M flags=HEAP,NOEXEC' >&3; read -r reply <&3
case "$reply" in "ok handle=1 offset=0x"*) ;; *) echo "CREATE_BO: $reply" >&2; exit 1;; esac
echo 'FAULT addr=0x2000000' >&3; read -r reply <&3
case "$reply" in ok*) ;; *) echo "FAULT: $reply" >&2; exit 1;; esac
"""


def fdinfo_value(text: str, key: str) -> str:
    m = re.search(rf"^{re.escape(key)}:\t(.*)$", text, re.MULTILINE)
    assert m, f"no {key} in:\n{text}"
    return m.group(1)


def proc_dir_gone(mnt: Daemon, pid: int) -> bool:
    return not (mnt.path / "proc" / str(pid)).exists()


def holders(mnt: Daemon) -> set[str]:
    return set(os.listdir(mnt.path / "proc"))


def background(mnt: Daemon, script: str) -> subprocess.Popen:
    """Start a bash client that does ``script`` then waits on stdin (close stdin to end it)."""
    return subprocess.Popen(["bash", "-euo", "pipefail", "-c", script + "\necho ready\nread -r _ || true\n"],
                            env={**os.environ, "MNT": str(mnt.path)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"client failed: {line}{err}")


def finish(proc: subprocess.Popen) -> None:
    """End a background client (close its stdin; kill it if need be) and close its pipes."""
    try:
        if proc.poll() is None:
            proc.communicate(input="\n", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# -- the session from the issue ----------------------------------------------------------------


def test_the_bash_session_from_the_issue(mnt: Daemon) -> None:
    """CREATE_BO answers handle 1 at 0x2000000, a fault makes 2 MiB of 8 MiB resident, and closing the fd ends the client."""
    out = mnt.sh("""
        exec 3<>"$MNT/dev/dri/renderD128"
        echo 'CREATE_BO size=8M flags=HEAP,NOEXEC' >&3; read -r reply <&3; echo "$reply"
        echo 'FAULT addr=0x2000000' >&3; read -r reply <&3; echo "$reply"
        grep memory "$MNT/proc/$$/fdinfo/3"
        echo "pid=$$"
        exec 3>&-
        test ! -e "$MNT/proc/$$" && echo gone
    """).stdout
    lines = out.splitlines()
    assert lines[0] == "ok handle=1 offset=0x2000000"
    assert lines[1].startswith("ok")
    assert "drm-total-memory:\t8 MiB" in lines
    assert "drm-resident-memory:\t2 MiB" in lines
    assert lines[-1] == "gone"


def test_the_client_passes_to_the_child_once_its_opener_exits(mnt: Daemon) -> None:
    """debugfs clients names the opener, then the child that inherited the fd once the opener is gone and the child makes a request."""
    out = mnt.sh("""
        clients="$MNT/sys/kernel/debug/dri/128/clients"
        bash -c '
            exec 3<>"$MNT/dev/dri/renderD128"
            echo "opener=$$"
            ( sleep 0.3; echo VERSION >&3; read -r r <&3; echo "child=$BASHPID"; cat "$1" ) &
            echo VERSION >&3; read -r r <&3; cat "$1"
        ' _ "$clients"
        wait; sleep 0.6
    """).stdout
    opener = int(re.search(r"opener=(\d+)", out).group(1))
    child = int(re.search(r"child=(\d+)", out).group(1))
    before, after = out.split(f"child={child}")
    assert re.search(rf"^\s*\S+\s+{opener}\s+128\b", before, re.M), before
    assert re.search(rf"^\s*\S+\s+{child}\s+128\b", after, re.M), after
    assert not re.search(rf"^\s*\S+\s+{opener}\s+128\b", after, re.M), after


def test_fdinfo_header_lines_are_the_real_ones(mnt: Daemon) -> None:
    """pos, flags, mnt_id and ino in vdrm's fdinfo equal what the host kernel reports for the same fd."""
    out = mnt.sh("""
        exec 3<>"$MNT/dev/dri/renderD128"
        echo ===; cat "$MNT/proc/$$/fdinfo/3"; echo ===; cat "/proc/$$/fdinfo/3"
    """).stdout
    _, ours, real = out.split("===\n")
    assert ours.splitlines()[:4] == real.splitlines()[:4]
    assert fdinfo_value(ours, "drm-driver") == "panfrost"
    assert ours.endswith("\n") and len(ours) < 4096


def test_malformed_requests_get_einval_and_the_client_carries_on(mnt: Daemon) -> None:
    """Unknown verbs, bad keys and numbers, binary garbage and a megabyte line each get one 'error EINVAL' reply."""
    out = mnt.sh("""
        exec 3<>"$MNT/dev/dri/renderD128"
        for req in 'FROB' 'CREATE_BO' 'CREATE_BO size=banana' 'CREATE_BO size=1M extra=1' 'GEM_CLOSE handle=1 handle=2'; do
            echo "$req" >&3; read -r reply <&3; echo "$reply"
        done
        printf 'A\\x01\\x02\\xff\\n' >&3; read -r reply <&3; echo "$reply"
        echo 'VERSION' >&3; read -r reply <&3; echo "$reply"
    """).stdout.splitlines()
    assert len(out) == 7
    for reply in out[:6]:
        assert reply.startswith("error EINVAL "), reply
    assert "unknown verb" in out[0]
    assert out[6].startswith("ok ") and "name=panfrost" in out[6]


def test_a_megabyte_line_gets_one_einval(mnt: Daemon) -> None:
    """A 1 MiB request line written at once gets exactly one 'error EINVAL' reply, and the next request works."""
    script = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
assert os.write(fd, b"x" * (1 << 20) + b"\\n") == (1 << 20) + 1
os.write(fd, b"VERSION\\n")
replies = []
while (chunk := os.read(fd, 1 << 16)):
    replies.append(chunk.decode())
print("".join(replies), end="")
"""
    result = subprocess.run([sys.executable, "-c", script, str(mnt.path / "dev/dri/renderD128")],
                            capture_output=True, text=True, timeout=TIMEOUT)
    replies = result.stdout.splitlines()
    assert len(replies) == 2, replies
    assert replies[0].startswith("error EINVAL ") and "longer than" in replies[0]
    assert replies[1].startswith("ok ")


def test_a_read_without_a_pending_reply_is_end_of_file(mnt: Daemon) -> None:
    """Reading a node with no reply queued returns at once with nothing (EOF), never blocking."""
    out = mnt.sh("""
        exec 3<>"$MNT/dev/dri/renderD128"
        start=$(date +%s%N); n=$(cat <&3 | wc -c); end=$(date +%s%N)
        echo "$n $(( (end - start) / 1000000 ))"
    """, timeout=10).stdout.split()
    assert out[0] == "0" and int(out[1]) < 2000


def test_poll_says_readable_once_a_reply_is_queued(mnt: Daemon) -> None:
    """poll(2) on a node is not readable before a request, readable after it, and a waiter sharing the fd is woken."""
    script = f"""
import os, select, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
p = select.poll(); p.register(fd, select.POLLIN)
assert p.poll(0) == [], "readable before any request"
child = os.fork()
if child == 0:
    t = time.monotonic(); r = p.poll(10000)
    os._exit(0 if r and time.monotonic() - t < 5 else 1)
time.sleep(0.3)
os.write(fd, b"VERSION\\n")
_, status = os.waitpid(child, 0)
assert status == 0, "the child's poll was not woken"
assert p.poll(0) == [(fd, select.POLLIN)]
assert os.read(fd, 4096).startswith(b"ok ")
assert p.poll(0) == []
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script, str(mnt.path / "dev/dri/renderD128")],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.stdout.strip() == "ok", result.stderr


def test_wait_bo_blocks_the_read_until_the_job_is_done(mnt: Daemon) -> None:
    """WAIT_BO on a BO that a running 400 ms job uses: the reply is read only when the job ends, answering ok."""
    out = mnt.sh("""
        exec 3<>"$MNT/dev/dri/renderD128"
        echo 'CREATE_BO size=1M' >&3; read -r reply <&3
        echo 'SUBMIT jc=0x1000 bo_handles=1 duration=400ms' >&3; read -r reply <&3; echo "$reply"
        start=$(date +%s%N)
        echo 'WAIT_BO handle=1 timeout_ns=9223372036854775807' >&3; read -r reply <&3
        echo "$reply $(( ($(date +%s%N) - start) / 1000000 ))"
    """).stdout.splitlines()
    assert out[0].startswith("ok job=") and out[0].endswith("state=running")
    reply, elapsed_ms = out[1].rsplit(" ", 1)
    assert reply == "ok"
    assert 300 <= int(elapsed_ms) < 5000


def test_an_endless_job_times_out_and_the_gpu_is_reset(mnt: Daemon) -> None:
    """A job of 2**63-1 ns ends after the kernel's 500 ms job timeout: WAIT_BO answers ok and dmesg has the timeout line."""
    out = mnt.sh("""
        exec 3<>"$MNT/dev/dri/renderD128"
        echo 'CREATE_BO size=1M' >&3; read -r reply <&3
        echo 'SUBMIT bo_handles=1 engine=FRAGMENT duration=9223372036854775807' >&3; read -r reply <&3
        echo 'WAIT_BO handle=1 timeout_ns=9223372036854775807' >&3; read -r reply <&3; echo "$reply"
        grep -c 'gpu sched timeout, js=0' "$MNT/dmesg"
    """).stdout.splitlines()
    assert out[0] == "ok"
    assert int(out[1]) >= 1


def test_a_private_namespace_can_bind_mount_the_tree(mnt: Daemon, tmp_path: Path) -> None:
    """A process that bind-mounts dev/dri and proc in its own mount namespace sees its client under /proc as usual."""
    target = tmp_path / "dri"
    target.mkdir()
    out = mnt.sh(f"""
        unshare -m --propagation private bash -euo pipefail -c '
            mount --bind "$MNT/dev/dri" {target}
            exec 3<>{target}/renderD128
            echo "CREATE_BO size=4M" >&3; read -r reply <&3
            mount --bind "$MNT/proc" /proc
            grep -E "^drm-(client-id|total-memory)" /proc/$$/fdinfo/3
            readlink /proc/$$/fd/3
        '
    """).stdout.splitlines()
    assert out[0].startswith("drm-client-id:\t")
    assert out[1:] == ["drm-total-memory:\t4 MiB", "/dev/dri/renderD128"]


# -- proc/ -----------------------------------------------------------------------------------------


def test_proc_fd_lists_links_to_the_nodes(mnt: Daemon) -> None:
    """ls -l proc/<pid>/fd shows each vdrm fd as an lrwx link to /dev/dri/renderD128 or /dev/dri/card0."""
    out = mnt.sh("""
        exec 3<>"$MNT/dev/dri/renderD128" 5<>"$MNT/dev/dri/card0" 6<"$MNT/dev/dri/card0"
        ls -l "$MNT/proc/$$/fd"
        readlink "$MNT/proc/$$/fd/3" "$MNT/proc/$$/fd/5"
        ls "$MNT/proc/$$/fdinfo" | tr '\\n' ' '
    """).stdout
    assert re.search(r"^lrwx------ 1 root root 64 .* 3 -> /dev/dri/renderD128$", out, re.MULTILINE), out
    assert re.search(r"^lrwx------ 1 root root 64 .* 5 -> /dev/dri/card0$", out, re.MULTILINE), out
    assert re.search(r"^lr-x------ 1 root root 64 .* 6 -> /dev/dri/card0$", out, re.MULTILINE), out
    assert "/dev/dri/renderD128\n/dev/dri/card0\n" in out
    assert out.splitlines()[-1].split() == ["3", "5", "6"]


def test_stat_reports_the_right_types_and_modes(mnt: Daemon) -> None:
    """stat shows directories, regular files and symlinks with procfs and sysfs modes and the holder's ownership."""
    out = mnt.sh(f"""
        exec 3<>"$MNT/dev/dri/renderD128"
        cd "$MNT"
        echo $$
        stat -c '%n|%F|%a|%U' dev/dri dev/dri/renderD128 dev/dri/card0 proc proc/$$ proc/$$/fd proc/$$/fd/3 \\
            proc/$$/fdinfo proc/$$/fdinfo/3 proc/$$/stat proc/$$/status proc/$$/comm proc/$$/cmdline \\
            sys/class/drm/renderD128 sys/devices/platform/{PDEV}/profiling sys/kernel/debug dmesg
    """).stdout
    pid, _, rest = out.partition("\n")
    rest = rest.replace(f"proc/{pid}|", "proc/PID|").replace(f"proc/{pid}/", "proc/PID/")
    got = {line.split("|")[0]: tuple(line.split("|")[1:]) for line in rest.splitlines()}
    expected = {
        "dev/dri": ("directory", "755", "root"),
        "dev/dri/renderD128": ("regular empty file", "666", "root"),
        "dev/dri/card0": ("regular empty file", "660", "root"),  # udev: root:video 0660
        "proc": ("directory", "555", "root"),
        "proc/PID": ("directory", "555", "root"),
        "proc/PID/fd": ("directory", "500", "root"),
        "proc/PID/fd/3": ("symbolic link", "700", "root"),
        "proc/PID/fdinfo": ("directory", "555", "root"),
        "proc/PID/fdinfo/3": ("regular file", "444", "root"),  # its exact size: reads may be page-cached
        "proc/PID/stat": ("regular empty file", "444", "root"),
        "proc/PID/status": ("regular empty file", "444", "root"),
        "proc/PID/comm": ("regular empty file", "444", "root"),
        "proc/PID/cmdline": ("regular empty file", "444", "root"),
        "sys/class/drm/renderD128": ("symbolic link", "777", "root"),
        f"sys/devices/platform/{PDEV}/profiling": ("regular file", "644", "root"),
        "sys/kernel/debug": ("directory", "700", "root"),
    }
    for path, want in expected.items():
        assert got.get(path) == want, (path, got.get(path))
    assert got["dmesg"][0] in ("regular file", "regular empty file")


def test_directory_entries_carry_their_types(mnt: Daemon) -> None:
    """readdir gives DT_DIR for proc/<pid>, DT_REG for fdinfo entries and DT_LNK for fd and sys/class/drm entries."""
    script = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.readdir.argtypes = libc.closedir.argtypes = [ctypes.c_void_p]
def types(path):
    d = libc.opendir(path.encode()); out = {}
    while True:
        e = libc.readdir(d)
        if not e: break
        out[e.contents.d_name.decode()] = e.contents.d_type
    libc.closedir(d); return out
mnt, pid = sys.argv[1], str(os.getpid())
fd = os.open(mnt + "/dev/dri/renderD128", os.O_RDWR)
DT_DIR, DT_REG, DT_LNK = 4, 8, 10
assert types(mnt + "/proc")[pid] == DT_DIR
assert types(mnt + f"/proc/{pid}/fdinfo")[str(fd)] == DT_REG
assert types(mnt + f"/proc/{pid}/fd")[str(fd)] == DT_LNK
assert set(types(mnt + "/sys/class/drm").items()) >= {("card0", DT_LNK), ("renderD128", DT_LNK)}
assert types(mnt + "/dev/dri")["renderD128"] == DT_REG
assert types(mnt + "/dev")["dri"] == DT_DIR
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script, str(mnt.path)], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.stdout.strip() == "ok", result.stderr


def test_several_processes_and_dup_fds(mnt: Daemon) -> None:
    """Clients in several processes have distinct drm-client-ids, and a dup'd fd shows the same id as its original."""
    clients = [background(mnt, HEAP_CLIENT + "exec 4>&3\nexec 7<>\"$MNT/dev/dri/card0\"\n") for _ in range(3)]
    try:
        for c in clients:
            wait_ready(c)
        assert {str(c.pid) for c in clients} <= holders(mnt)
        ids = set()
        for c in clients:
            info = {fd: (mnt.path / f"proc/{c.pid}/fdinfo/{fd}").read_text() for fd in (3, 4, 7)}
            assert fdinfo_value(info[3], "drm-client-id") == fdinfo_value(info[4], "drm-client-id")
            assert fdinfo_value(info[3], "drm-resident-memory") == "2 MiB"
            assert fdinfo_value(info[7], "drm-client-id") != fdinfo_value(info[3], "drm-client-id")
            assert fdinfo_value(info[7], "drm-total-memory") == "0"
            ids |= {fdinfo_value(info[3], "drm-client-id"), fdinfo_value(info[7], "drm-client-id")}
        assert len(ids) == 6
    finally:
        for c in clients:
            finish(c)
    for c in clients:
        wait_for(lambda: proc_dir_gone(mnt, c.pid), what=f"proc/{c.pid} to vanish")


def test_a_fork_inherited_fd_shows_the_parents_client(mnt: Daemon) -> None:
    """A child that inherited the parent's fd has its own proc entry whose fdinfo shows the parent's client."""
    out = mnt.sh("""
        exec 3<>"$MNT/dev/dri/renderD128"
        echo 'CREATE_BO size=4M' >&3; read -r reply <&3
        grep drm-client-id "$MNT/proc/$$/fdinfo/3"
        bash -c 'grep drm-client-id "$MNT/proc/$$/fdinfo/3"; readlink "$MNT/proc/$$/fd/3"; test -d "$MNT/proc/$PPID" && echo parent-listed'
    """).stdout.splitlines()
    assert out[0] == out[1] and out[0].startswith("drm-client-id:\t")
    assert out[2:] == ["/dev/dri/renderD128", "parent-listed"]


def test_proc_files_mirror_the_real_process(mnt: Daemon) -> None:
    """proc/<pid>/{comm,cmdline,stat,status} are the real process's files."""
    client = background(mnt, 'exec 3<>"$MNT/dev/dri/renderD128"')
    try:
        wait_ready(client)
        ours, real = mnt.path / f"proc/{client.pid}", Path(f"/proc/{client.pid}")
        assert (ours / "comm").read_bytes() == real.joinpath("comm").read_bytes() == b"bash\n"
        assert (ours / "cmdline").read_bytes() == real.joinpath("cmdline").read_bytes()
        assert (ours / "stat").read_text().split()[:5] == real.joinpath("stat").read_text().split()[:5]
        assert (ours / "stat").read_text().startswith(f"{client.pid} (bash) ")
        ours_status = dict(l.split(":", 1) for l in (ours / "status").read_text().splitlines())
        assert ours_status["Pid"].strip() == str(client.pid) and ours_status["Name"].strip() == "bash"
    finally:
        finish(client)


def test_entries_belong_to_the_holders_uid(mnt: Daemon) -> None:
    """A process of another user has its proc entries owned by its uid, and that user cannot read root's fdinfo."""
    root_client = background(mnt, 'exec 3<>"$MNT/dev/dri/renderD128"')
    try:
        wait_ready(root_client)
        out = mnt.sh(f"""
            setpriv --reuid=65534 --regid=65534 --clear-groups bash -c '
                exec 3<>"$MNT/dev/dri/renderD128"
                stat -c "%u %g %a" "$MNT/proc/$$" "$MNT/proc/$$/fdinfo/3" "$MNT/proc/$$/fd"
                grep -c drm-client-id "$MNT/proc/$$/fdinfo/3"
                cat "$MNT/proc/{root_client.pid}/fdinfo/3" 2>&1 || true
                ls "$MNT/proc/{root_client.pid}/fd" 2>&1 || true
            '
        """).stdout.splitlines()
        assert out[:3] == ["65534 65534 555", "65534 65534 444", "65534 65534 500"]
        assert out[3] == "1"
        assert "Permission denied" in out[4] and "Permission denied" in out[5]
    finally:
        finish(root_client)


# -- robustness -------------------------------------------------------------------------------------


def allocated_pages(mnt: Daemon) -> int:
    text = (mnt.path / "sys/kernel/debug/dri/0/vdrm-memory").read_text()
    return int(re.search(r"^allocated_pages (\d+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]


def test_a_killed_client_leaves_nothing_behind(mnt: Daemon) -> None:
    """A client SIGKILLed with faulted heap pages and an unread reply vanishes from proc and debugfs, its pages return, and others are untouched."""
    other = background(mnt, HEAP_CLIENT)
    try:
        wait_ready(other)
        pages_before = allocated_pages(mnt)
        victim = background(mnt, HEAP_CLIENT + "echo 'CREATE_BO size=16M' >&3\n")  # its reply is never read
        try:
            wait_ready(victim)
            assert allocated_pages(mnt) > pages_before
            assert f" {victim.pid} " in (mnt.path / "sys/kernel/debug/dri/0/clients").read_text()
            before = (mnt.path / f"proc/{other.pid}/fdinfo/3").read_text()
            victim.kill()
            victim.communicate(timeout=TIMEOUT)
        finally:
            finish(victim)
        wait_for(lambda: proc_dir_gone(mnt, victim.pid), what="the killed client's proc entry to vanish")
        wait_for(lambda: f" {victim.pid} " not in (mnt.path / "sys/kernel/debug/dri/0/clients").read_text(),
                 what="the killed client to leave debugfs clients")
        wait_for(lambda: allocated_pages(mnt) == pages_before, what="the killed client's pages to return")
        after = (mnt.path / f"proc/{other.pid}/fdinfo/3").read_text()
        for key in ("drm-client-id", "drm-total-memory", "drm-resident-memory"):
            assert fdinfo_value(after, key) == fdinfo_value(before, key)
    finally:
        finish(other)
    wait_for(lambda: proc_dir_gone(mnt, other.pid), what="the other client to go")


def test_many_processes_at_once(mnt: Daemon) -> None:
    """Eight processes opening, using and closing clients concurrently all succeed and leave no client behind."""
    loop = """
        for i in $(seq 15); do
            exec 3<>"$MNT/dev/dri/renderD128"
            echo 'CREATE_BO size=2M' >&3; read -r reply <&3
            case "$reply" in "ok handle=1 "*) ;; *) echo "bad: $reply" >&2; exit 1;; esac
            grep -q "drm-total-memory:.2 MiB" "$MNT/proc/$$/fdinfo/3"
            exec 3>&-
        done
    """
    procs = [subprocess.Popen(["bash", "-euo", "pipefail", "-c", loop], env={**os.environ, "MNT": str(mnt.path)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    wait_for(lambda: not any(str(p.pid) in holders(mnt) for p in procs), what="all clients gone")


def test_writes_to_read_only_paths_fail_and_the_mount_lives_on(mnt: Daemon) -> None:
    """Writing generated files, creating files or removing nodes fails with an errno, and the mount keeps serving."""
    out = mnt.sh(f"""
        exec 3<>"$MNT/dev/dri/renderD128"
        (echo x > "$MNT/proc/$$/stat") 2>&1 || true
        (touch "$MNT/dev/dri/renderD129") 2>&1 || true
        (rm -f "$MNT/dev/dri/card0") 2>&1 || true
        (mkdir "$MNT/dev/x") 2>&1 || true
        (echo x > "$MNT/sys/kernel/debug/dri/0/clients") 2>&1 || true
        echo VERSION >&3; read -r reply <&3; echo "$reply"
    """).stdout.splitlines()
    assert "Permission denied" in out[0]
    assert "No such file or directory" in out[1]
    assert "Operation not permitted" in out[2] and "Operation not permitted" in out[3]
    assert "Permission denied" in out[4]
    assert out[5].startswith("ok ")


# -- sys/ and the kernel log --------------------------------------------------------------------------


def test_sys_class_drm_looks_like_a_platform_gpu(mnt: Daemon) -> None:
    """sys/class/drm nodes link into the platform device, with device links, dev numbers and uevents."""
    out = mnt.sh("""
        cd "$MNT/sys/class/drm"
        readlink renderD128 card0
        basename "$(readlink -f renderD128/device)"
        cat renderD128/dev card0/dev
        cat renderD128/uevent
        ls renderD128/device/
    """).stdout
    assert out.startswith(f"../../devices/platform/{PDEV}/drm/renderD128\n../../devices/platform/{PDEV}/drm/card0\n"
                          f"{PDEV}\n226:128\n226:0\n")
    assert "MAJOR=226\nMINOR=128\nDEVNAME=dri/renderD128\nDEVTYPE=drm_minor\n" in out
    assert "profiling" in out.split()


def test_profiling_write_toggles_engine_lines(mnt: Daemon) -> None:
    """Writing 1 to profiling adds drm-engine-* lines to fdinfo, 0 removes them, and a bad value is EINVAL."""
    out = mnt.sh(f"""
        P="$MNT/sys/devices/platform/{PDEV}/profiling"
        exec 3<>"$MNT/dev/dri/renderD128"
        cat "$P"; grep -c '^drm-engine-' "$MNT/proc/$$/fdinfo/3" || true
        echo 1 > "$P"; cat "$P"; grep -c '^drm-engine-' "$MNT/proc/$$/fdinfo/3" || true
        echo 0 > "$P"; cat "$P"; grep -c '^drm-engine-' "$MNT/proc/$$/fdinfo/3" || true
        (echo banana > "$P") 2>&1 || true
        cat "$P"
    """).stdout.splitlines()
    assert out[:6] == ["0", "0", "1", "2", "0", "0"]
    assert "Invalid argument" in out[6]
    assert out[7] == "0"


def test_debugfs_files_are_complete_text(mnt: Daemon) -> None:
    """Every debugfs file reads completely despite st_size 0, and short ones end with a newline."""
    for minor in (0, 128):
        d = mnt.path / f"sys/kernel/debug/dri/{minor}"
        names = os.listdir(d)
        assert {"clients", "gems"} <= set(names)
        for name in names:
            if (d / name).is_dir():
                continue
            data = (d / name).read_bytes()
            assert os.stat(d / name).st_size == 0
            if 0 < len(data) < 4096:
                assert data.endswith(b"\n"), name


def test_a_bad_fault_is_logged_and_tail_f_follows_dmesg(mnt: Daemon) -> None:
    """A fault at an unmapped address writes the 'Unhandled Page fault in AS' block to dmesg, which a running tail -f prints."""
    tail = subprocess.Popen(["tail", "-n", "0", "-f", "-s", "0.1", str(mnt.path / "dmesg")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(tail.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        time.sleep(0.5)
        reply = mnt.sh("""
            exec 3<>"$MNT/dev/dri/renderD128"
            echo 'FAULT addr=0x7fff0000' >&3; read -r reply <&3; echo "$reply"
        """).stdout
        assert reply.startswith("error "), reply
        wait_for(lambda: any("Unhandled Page fault in AS" in line for line in seen), what="tail -f to print the fault")
    finally:
        tail.kill()
        tail.communicate()
        reader.join(timeout=TIMEOUT)
    log = (mnt.path / "dmesg").read_text()
    assert "Unhandled Page fault in AS" in log
    assert os.stat(mnt.path / "dmesg").st_size >= len(log.encode())


# -- the daemon's life -----------------------------------------------------------------------------------


def test_help_documents_every_option() -> None:
    """mount.py --help names every option and the emulated kernel versions."""
    out = subprocess.run([sys.executable, str(MOUNT_PY), "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0
    for option in ("--kernel", "--heap-backing", "--ram", "--as-slots", "--clock", "--seed", "--fragmentation",
                   "--profiling", "--scenario", "--daemon", "--log-level", "--log-file", "6.6", "6.18"):
        assert option in out.stdout, option


@pytest.mark.parametrize("args,message", [
    (["--scenario", "x.yaml"], "x.yaml: cannot read the scenario"),
    (["--kernel", "5.4"], "not emulated"),
    (["--ram", "lots"], "not a size"),
    (["--heap-backing", "wavy"], "invalid choice"),
])
def test_bad_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    """A bad option value exits with status 2 and says what was wrong, mounting nothing."""
    path = make_mountpoint()
    try:
        out = subprocess.run([sys.executable, str(MOUNT_PY), str(path), *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=TIMEOUT)
        assert out.returncode == 2
        assert message in out.stderr
        assert not mounted(path)
    finally:
        remove_mountpoint(path)


def test_options_reach_the_device(own_mount) -> None:  # type: ignore[no-untyped-def]
    """--kernel, --first-client-id and --profiling shape what the mounted device shows."""
    daemon = own_mount("--kernel", "6.12", "--first-client-id", "4294967290", "--profiling", "--ram", "256M")
    out = daemon.sh(f"""
        exec 3<>"$MNT/dev/dri/renderD128"
        cat "$MNT/sys/devices/platform/{PDEV}/profiling"
        cat "$MNT/proc/$$/fdinfo/3"
    """).stdout
    assert out.startswith("1\n")
    assert fdinfo_value(out, "drm-client-id") == "4294967290"
    assert "drm-engine-fragment" in out
    daemon.stop()


def test_sigterm_unmounts_cleanly(own_mount) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM to a daemon with a client attached unmounts and exits, leaving no mount behind."""
    daemon = own_mount()
    client = background(daemon, 'exec 3<>"$MNT/dev/dri/renderD128"')
    try:
        wait_ready(client)
        daemon.stop(signal.SIGTERM)
        assert not mounted(daemon.path)
        assert "unmounted" in daemon.log.read_text()
    finally:
        finish(client)


def test_foreground_ctrl_c_unmounts() -> None:
    """A foreground mount.py stops on SIGINT (Ctrl-C) with status 0 and leaves no mount."""
    path = make_mountpoint()
    proc = subprocess.Popen([sys.executable, str(MOUNT_PY), str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: mounted(path) or proc.poll() is not None, what="the foreground mount")
        assert mounted(path), proc.communicate()
        assert sorted(os.listdir(path)) == ["dev", "dmesg", "proc", "sys"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert not mounted(path)
    finally:
        if proc.poll() is None:
            proc.kill()
        lazy_unmount(path)
        remove_mountpoint(path)


def test_a_stale_mount_is_recovered_on_restart(own_mount) -> None:  # type: ignore[no-untyped-def]
    """After the daemon is SIGKILLed, the next start lazily unmounts the stale mount point, says so, and serves."""
    first = own_mount()
    first.stop(signal.SIGKILL)
    with pytest.raises(OSError) as e:
        os.listdir(first.path)
    assert e.value.errno == 107  # ENOTCONN
    second = own_mount(path=first.path)
    assert "left stale" in second.startup_output  # type: ignore[attr-defined]
    assert sorted(os.listdir(second.path)) == ["dev", "dmesg", "proc", "sys"]
    second.stop()


def test_a_stale_mount_is_recovered_while_stat_is_still_cached(own_mount) -> None:  # type: ignore[no-untyped-def]
    """A SIGKILLed daemon whose root attributes the kernel still caches (stat succeeds) is detected by statfs and recovered."""
    first = own_mount()
    assert (first.path / "dmesg").read_bytes() is not None
    os.stat(first.path)  # the root's attributes are now cached for 300 s
    first.stop(signal.SIGKILL)
    os.stat(first.path)  # still answered from the cache: this is what fooled the old check
    second = own_mount(path=first.path)
    assert "left stale" in second.startup_output  # type: ignore[attr-defined]
    assert sorted(os.listdir(second.path)) == ["dev", "dmesg", "proc", "sys"]
    second.stop()


def test_a_live_mount_is_not_taken_over(mnt: Daemon) -> None:
    """Starting a second daemon on a served mount point fails with status 1 and leaves the first one serving."""
    out = subprocess.run([sys.executable, str(MOUNT_PY), str(mnt.path), "--daemon"], cwd=ROOT,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 1
    assert "already a mount point" in out.stderr
    assert mnt.alive() and sorted(os.listdir(mnt.path)) == ["dev", "dmesg", "proc", "sys"]


_BUSY_BO = """
exec 3<>"$MNT/dev/dri/renderD128"
echo 'CREATE_BO size=4K' >&3; read -r reply <&3
for i in $(seq 40); do echo 'SUBMIT bo_handles=1 duration=400ms'; done >&3
for i in $(seq 40); do read -r reply <&3; done
"""


def test_a_sigkilled_waiter_dies_at_once(mnt: Daemon) -> None:
    """A process blocked reading a WAIT_BO reply (16 s of jobs ahead) is gone soon after SIGKILL, not after the wait."""
    proc = subprocess.Popen(["bash", "-c", _BUSY_BO + """
        echo "WAIT_BO handle=1 timeout_ns=$(( $(date +%s%N) * 0 + 9223372036854775807 ))" >&3
        echo waiting; read -r reply <&3; echo "$reply"
    """], env={**os.environ, "MNT": str(mnt.path)}, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting for its reply
        proc.kill()
        proc.wait(timeout=3)  # the kernel's FUSE read returns once vdrm answers EINTR
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_blocked_waiters_never_stall_other_clients(mnt: Daemon) -> None:
    """36 clients waiting in WAIT_BO (more than pyfuse3's 32 workers): other requests are still answered at once."""
    procs = [subprocess.Popen(["bash", "-c", _BUSY_BO + """
        echo 'WAIT_BO handle=1 timeout_ns=9223372036854775807' >&3
        echo waiting; read -r reply <&3 && echo "got $reply" || echo "read failed"
    """], env={**os.environ, "MNT": str(mnt.path)}, stdout=subprocess.PIPE, text=True) for _ in range(36)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "waiting"
        time.sleep(0.5)
        out = mnt.sh('cat "$MNT/sys/kernel/debug/dri/128/vdrm-memory" >/dev/null; stat -c %s "$MNT/dmesg"; echo served',
                     timeout=5).stdout
        assert out.strip().endswith("served")
        for p in procs:
            p.kill()
            p.wait(timeout=3)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
