"""The namespace runner: run an unmodified program against the emulated device.

``python mount.py --run [options] -- COMMAND ARGS...`` does, in order:

1. makes a private temporary directory and forks the daemon, which mounts there with
   ``all_pids`` (every real process has a ``proc/<pid>/``; see :mod:`vdrm.fs.tree`) and
   reports readiness through a pipe. The daemon runs in its own session, so a Ctrl-C
   meant for COMMAND does not reach it, and dies with the runner (``PR_SET_PDEATHSIG``);
2. forks COMMAND's process, which enters a new mount namespace before ``exec`` —
   ``unshare(CLONE_NEWNS)`` as root; ``unshare(CLONE_NEWUSER | CLONE_NEWNS)`` with
   ``0 <uid> 1`` maps otherwise (as ``unshare -rm``: COMMAND is root only inside it) —,
   makes every mount private (nothing propagates back to the host) and grafts parts of
   the tree over the system's directories (:data:`GRAFTS`):

   ==========================  ==========================================
   ``/dev/dri``                ``dev/dri``: ``card0`` and ``renderD128``, opened as on
                               the mount (a new DRM client each); the process bridge
                               makes them character devices 226:<minor> to ``stat``
                               and answers their ``ioctl`` s (``dev/dri-nodes``, stat
                               only, where the bridge cannot run)
   ``/sys/class/drm``          ``sys/class/drm``
   ``/sys/devices/platform/``  the GPU's platform device (``fde60000.gpu``), where the
   ``<pdev>``                  ``sys/class/drm`` links lead
   ``/sys/dev/char/226:<m>``   the ``sys/dev/char`` links
   ``/sys/kernel/debug``       the emulated debugfs (``dri/128/vdrm-clock`` advances the
                               virtual clock, ``vdrm-clients/<id>/truth.json``)
   ``/proc``                   ``proc`` (the host's ``/proc/sys`` bound inside it)
   ==========================  ==========================================

   A target that does not exist on the host (no ``/dev/dri`` on a machine without a GPU)
   is made in a tmpfs laid over its parent, into which every other entry of the parent
   is bound back (directories and files) or copied (symlinks). ``$VDRM_MOUNT`` names the
   mount point, whose ``dev/dri/renderD128`` COMMAND opens to be a DRM client itself;
   Before ``exec`` it installs the process bridge's seccomp filter and sends its listener
   to the daemon over a Unix socket pair made before both forks (:mod:`vdrm.bridge`,
   :mod:`vdrm.fs.bridge`): COMMAND, its threads and its children then find the GPU with
   libdrm, ``fstat`` it as a character device and call ``ioctl(2)`` on it;
3. waits for COMMAND, stops the daemon (SIGTERM: it unmounts), removes the directory
   and returns COMMAND's exit status, or 128+N if a signal N killed it.

While COMMAND runs the runner ignores SIGINT and SIGQUIT (they reach COMMAND, which
shares the terminal's process group) and passes SIGTERM and SIGHUP on to it.

Exit statuses of the runner's own: :data:`EXIT_VDRM` (125) when vdrm failed (bad options
or scenario, the mount, the namespace), 126 when COMMAND cannot be executed, 127 when it
is not found — as ``env`` and ``timeout`` do. The child reports a failure before ``exec``
through a close-on-exec pipe, so COMMAND's own 125..127 are never mistaken for them.

Nothing here touches the mount from the daemon's process: the grafts are made by the
child, and the daemon keeps reading the host's ``/proc`` (its namespace has no grafts).

Limits, by design or not yet done:

- Tools that find GPUs through udev do not find this one (libdrm's sysfs walk does).
  The bridge's own limits are in :mod:`vdrm.bridge.supervisor` and the README.
- ``/proc/<pid>/fd`` lists vdrm fds only, so ``/dev/stdin``, ``/dev/fd/<n>`` and bash's
  ``<(...)`` (links into ``/proc/self/fd``) do not resolve inside for other fds.
- ``/proc/<pid>/{exe,cwd,root}`` are ordinary symlinks, and the per-process copies are
  read by the daemon (see :mod:`vdrm.fs.tree`); ``environ``, ``io`` and ``maps`` are
  owner-only there instead of procfs's ptrace checks.
- Unprivileged, mounting goes through the setuid ``fusermount3`` (``auto_unmount``) and
  needs user namespaces; the emulated processes are shown owned by the user, so their
  ``fd/`` can be entered.
- If the runner is SIGKILLed the daemon still unmounts (it gets SIGTERM on its parent's
  death), but the empty temporary directory stays behind.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Callable, Sequence

from vdrm.bridge import seccomp
from vdrm.drm.gpu import as_machine

if TYPE_CHECKING:
    from vdrm.drm.gpu import GpuDevice, Machine
    from vdrm.scenario.run import Scenario


EXIT_VDRM = 125  # vdrm itself failed: nothing ran
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_NOSUID, MS_NODEV = 0x2, 0x4
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 10.0  # seconds the daemon gets to unmount after SIGTERM

# The tree's directories grafted over the system's, in this order (/proc last: the
# grafting reads the host's /proc). Paths relative to the mount point; {pdev} filled in,
# once per GPU.
GRAFTS = (
    ("dev/dri", "/dev/dri"),
    ("sys/class/drm", "/sys/class/drm"),
    ("sys/devices/platform/{pdev}", "/sys/devices/platform/{pdev}"),
    ("sys/kernel/debug", "/sys/kernel/debug"),
)
DRM_MAJOR = 226

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


class SetupError(Exception):
    """The namespace for COMMAND could not be made (``unshare``, a mount)."""


# -- system calls ------------------------------------------------------------------------


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda v: v.encode() if v is not None else None)
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
           f"mount {source or fstype or ''} on {target}")


def bind(source: str, target: str, *, recursive: bool = False) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))


# -- COMMAND's namespace ------------------------------------------------------------------


def enter_namespace(mountpoint: str, pdevs: Sequence[str], *, bridged: bool = True) -> None:
    """Make this process's private mount namespace, with the devices grafted in (child only).

    ``pdevs``: every GPU's platform device. ``bridged``: ``/dev/dri`` holds the mount's
    openable nodes (the bridge makes them character devices to stat and ioctl); otherwise
    the stat-only ``dev/dri-nodes``."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        unshare(CLONE_NEWNS)
    else:
        try:
            unshare(CLONE_NEWUSER | CLONE_NEWNS)
        except SetupError as e:
            raise SetupError(f"{e} (unprivileged user namespaces may be disabled here: "
                             "run as root, or allow them, e.g. sysctl user.max_user_namespaces)") from None
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing of ours propagates to the host
    for source, target in GRAFTS:
        if source == "dev/dri" and not bridged:
            source = "dev/dri-nodes"
        for pdev in (pdevs if "{pdev}" in source else pdevs[:1]):
            graft(f"{mountpoint}/{source.format(pdev=pdev)}", target.format(pdev=pdev))
    _graft_char_links(mountpoint)
    bind("/proc/sys", f"{mountpoint}/proc/sys", recursive=True)  # carried along by the rbind
    bind(f"{mountpoint}/proc", "/proc", recursive=True)


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise SetupError(f"{path}: {e.strerror}") from None


def graft(source: str, target: str) -> None:
    """Bind directory ``source`` at ``target``, making ``target`` if the host has none."""
    if os.path.isdir(target):
        bind(source, target)
        return
    parent, name = os.path.split(target)
    if not os.path.isdir(parent):
        raise SetupError(f"cannot graft {target}: {parent} does not exist")
    shadow(parent, {name: source}, skip=lambda n: False)


def _graft_char_links(mountpoint: str) -> None:
    """``/sys/dev/char/226:<minor>``: the host's entries for major 226 give way to ours."""
    ours = {name: os.readlink(f"{mountpoint}/sys/dev/char/{name}")
            for name in os.listdir(f"{mountpoint}/sys/dev/char")}
    if os.path.isdir("/sys/dev/char"):
        shadow("/sys/dev/char", {}, skip=lambda n: n.startswith(f"{DRM_MAJOR}:"), links=ours)


def shadow(directory: str, binds: dict[str, str], *, skip, links: dict[str, str] | None = None) -> None:
    """Lay a tmpfs over ``directory`` holding what it held, plus ``binds`` and ``links``.

    The host's entries are reached through a descriptor opened before the tmpfs covers
    them: directories and files are bound back (submounts included), symlinks copied;
    names in ``binds``/``links`` or for which ``skip`` is true are left out.
    """
    links = links or {}
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    try:
        old = f"/proc/self/fd/{fd}"
        names = sorted(os.listdir(old))
        mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
        for name in names:
            if name in binds or name in links or skip(name):
                continue
            src, dst = f"{old}/{name}", f"{directory}/{name}"
            try:
                st = os.lstat(src)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(src), dst)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(dst, 0o755)
                else:
                    os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644))
                bind(src, dst, recursive=True)
            except (OSError, SetupError) as e:  # one unreachable entry must not stop the run
                print(f"vdrm: {dst} left out of the namespace: {e}", file=sys.stderr)
        for name, src in binds.items():
            os.mkdir(f"{directory}/{name}", 0o755)
            bind(src, f"{directory}/{name}")
        for name, target in links.items():
            os.symlink(target, f"{directory}/{name}")
    finally:
        os.close(fd)


# -- running ------------------------------------------------------------------------------


def run(command: Sequence[str], device: "GpuDevice | Machine", scenario: "Scenario | None" = None, *,
        log_level: str = "warning", log_file: str | None = None) -> int:
    """Mount, run ``command`` in its namespace, unmount; COMMAND's exit status."""
    # mkdtemp makes it 0700: no other user reaches the mount, which mirrors every
    # process's files (and is mounted allow_other as root).
    base = tempfile.mkdtemp(prefix="vdrm-run-")
    mountpoint = os.path.join(base, "mnt")
    os.mkdir(mountpoint, 0o755)
    daemon = None
    why_not = seccomp.supported()
    if why_not:
        print(f"vdrm: {why_not}: programs see /dev/dri for stat only (no open or ioctl)", file=sys.stderr)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if not why_not else (None, None)
    try:
        daemon = _start_daemon(mountpoint, device, scenario, log_level, log_file, ours, theirs)
        if ours is not None:
            ours.close()
        if daemon is None:
            return EXIT_VDRM
        pdevs = [gpu.platform_device for gpu in as_machine(device).devices]
        return _run_command(command, mountpoint, pdevs, theirs)
    finally:
        for end in (ours, theirs):
            if end is not None:
                end.close()
        if daemon is not None:
            _stop_daemon(daemon, mountpoint)
        shutil.rmtree(base, ignore_errors=True)


def _start_daemon(mountpoint: str, device: "GpuDevice | Machine", scenario: "Scenario | None",
                  log_level: str, log_file: str | None, bridge: socket.socket | None,
                  other_end: socket.socket | None) -> int | None:
    """Fork the daemon; its pid once the mount is ready, None (after saying why) if not.

    It runs in its own session (the terminal's Ctrl-C is COMMAND's, not the daemon's),
    gets SIGTERM if the runner dies (so it still unmounts), and keeps stderr: warnings
    and tracebacks are worth seeing.
    """
    from vdrm.fs import daemon as _daemon

    def run(ready: Callable[[], None]) -> None:
        _daemon._setup_logging(log_level, log_file, quiet=False)
        options = _daemon.MOUNT_OPTIONS
        if os.getuid() != 0:
            # Mount through the setuid fusermount3 (auto_unmount makes libfuse use it even
            # where /dev/fuse is not open to users); it allows allow_other only by
            # /etc/fuse.conf, and COMMAND runs as this same user anyway.
            options = (options - {"allow_other"}) | {"auto_unmount"}
        _daemon.serve(mountpoint, device, ready, scenario, all_pids=True, options=options, bridge=bridge)

    def in_child() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if other_end is not None:
            other_end.close()  # the daemon must see EOF if COMMAND never sends its listener

    pid, why = _daemon.fork_daemon(run, keep_stderr=True, in_child=in_child)
    if pid is None:
        print(f"vdrm: cannot mount: {why}", file=sys.stderr)
    return pid


def _stop_daemon(pid: int, mountpoint: str) -> None:
    """SIGTERM the daemon and wait for it (it unmounts); SIGKILL and detach if it hangs."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    print(f"vdrm: the daemon (pid {pid}) did not stop; killing it and detaching {mountpoint}",
          file=sys.stderr)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    from vdrm.fs.daemon import _umount_lazy
    try:
        _umount_lazy(mountpoint)
    except OSError:
        pass


def _run_command(command: Sequence[str], mountpoint: str, pdevs: Sequence[str], bridge: socket.socket | None) -> int:
    """Fork COMMAND into its namespace and wait for it; its exit status (or ours)."""
    read_end, write_end = os.pipe()  # close-on-exec: EOF means exec succeeded
    forward = (signal.SIGTERM, signal.SIGHUP)
    # Hold the forwarded signals from before the fork until their handlers are in place:
    # a SIGTERM that arrives while COMMAND starts is then forwarded, not fatal to us.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, forward)
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(read_end)
        _child(command, mountpoint, pdevs, write_end, bridge)  # never returns

    os.close(write_end)
    if bridge is not None:
        bridge.close()  # the child holds it now
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGQUIT, *forward)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    for sig in forward:
        signal.signal(sig, lambda signum, frame: _forward(pid, signum))
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    try:
        _, wstatus = os.waitpid(pid, 0)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if report:
        kind, _, message = report.partition(":")
        print(f"vdrm: {message}", file=sys.stderr)
        return {"notfound": EXIT_NOT_FOUND, "noexec": EXIT_CANNOT_EXECUTE}.get(kind, EXIT_VDRM)
    if os.WIFSIGNALED(wstatus):
        return 128 + os.WTERMSIG(wstatus)
    return os.waitstatus_to_exitcode(wstatus)


def _hand_over_listener(bridge: socket.socket, mountpoint: str) -> None:
    """Install the bridge's seccomp filter on this process (and so on COMMAND and all it
    starts) and send its listener to the daemon, which answers the intercepted calls.

    Where no filter can be installed (this process already runs under a filter with a
    listener, e.g. a runner inside a runner: the kernel allows one per chain), COMMAND
    runs without the bridge, with the stat-only nodes at ``/dev/dri``, and says so."""
    try:
        listener = seccomp.install_filter()
    except seccomp.SeccompUnavailable as e:
        bridge.close()
        print(f"vdrm: {e}: programs see /dev/dri for stat only (no ioctl)", file=sys.stderr)
        bind(f"{mountpoint}/dev/dri-nodes", "/dev/dri")
        return
    try:
        socket.send_fds(bridge, [b"listener"], [listener])
    finally:
        os.close(listener)
        bridge.close()


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _child(command: Sequence[str], mountpoint: str, pdevs: Sequence[str], report_fd: int,
           bridge: socket.socket | None) -> None:
    """In COMMAND's process: the namespace, the seccomp filter, then exec; failures go to
    ``report_fd``."""
    kind, message = "setup", ""
    try:
        try:
            enter_namespace(mountpoint, pdevs, bridged=bridge is not None)
        except (SetupError, OSError) as e:
            raise SetupError(f"cannot set up the namespace for {command[0]}: {e}") from None
        if bridge is not None:
            _hand_over_listener(bridge, mountpoint)
        env = {**os.environ, "VDRM_MOUNT": mountpoint}
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvpe(command[0], list(command), env)
        except FileNotFoundError:
            kind, message = "notfound", f"{command[0]}: command not found"
        except OSError as e:
            kind, message = "noexec", f"{command[0]}: cannot execute: {e.strerror}"
    except BaseException as e:  # noqa: BLE001 - whatever it is, the runner must hear of it
        message = str(e) or type(e).__name__
    try:
        os.write(report_fd, f"{kind}:{message}".encode())
    finally:
        os._exit(EXIT_VDRM)
