"""The daemon: command line, mount, serve until a signal, unmount.

``python mount.py MOUNTPOINT [options]`` builds a :class:`~vdrm.drm.gpu.DeviceConfig`
and a machine of one or more GPUs (``--gpus``, :mod:`vdrm.drivers`) from the options, mounts the tree with pyfuse3 (``fsname=vdrm``, ``default_permissions``,
``allow_other``) and serves it in the foreground until SIGINT (Ctrl-C), SIGTERM or SIGHUP,
then unmounts. ``--daemon`` forks first and returns once the mount is ready; the exit
status says whether it is (the child reports readiness, or its error, through a pipe).

A mount point left behind by a daemon that died without unmounting (SIGKILL) is found in
``/proc/self/mountinfo`` and its connection probed with ``statfs(2)``, which FUSE never
caches: a dead connection answers ENOTCONN at once, even while the kernel's attribute
cache still answers ``stat`` for up to 300 s (the daemon's static entries). A stale vdrm
mount is then lazily unmounted, with a message, before mounting again. A live mount is
never taken over; neither is one whose daemon does not answer the probe within
:data:`PROBE_TIMEOUT` seconds (stopped or hung: the message gives the connection's
``/sys/fs/fuse/connections/<dev>/waiting`` count where fusectl is mounted, and
``echo 1 > .../abort`` is the way to end it).

``--run [options] -- COMMAND ARGS...`` mounts on a private temporary directory instead
and runs COMMAND in a private mount namespace that shows the emulated device in place of
the system's (:mod:`vdrm.fs.runner`).

Exit status: 0 after a clean unmount (or, with ``--daemon``, once the mount is ready),
1 when mounting or serving failed, 2 for bad options. With ``--run``: COMMAND's status,
128+N if signal N killed it, 125 when vdrm failed, 126/127 when COMMAND cannot be
executed / is not found.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import gc
import logging
import os
import re
import shutil
import signal
import socket
import stat
import sys
from typing import Callable, Sequence

import pyfuse3
import trio

from vdrm import drivers
from vdrm.drm import grammar
from vdrm.drm.gpu import DeviceConfig, GpuDevice, Machine
from vdrm.drm.limits import Limits
from vdrm.errors import InvalidArgument, VdrmError
from vdrm.fs import bridge as fs_bridge
from vdrm.fs.operations import Operations, send_invalidations
from vdrm.fs.permissions import NodeAccess, group_id
from vdrm.fs.procfs import ProcessTable, ScenarioProcessTable
from vdrm.fs.tree import Tree
from vdrm.kernel.releases import parse_release, release_name
from vdrm.scenario import bundled
from vdrm.scenario.load import ScenarioError
from vdrm.scenario.load import load as load_scenario
from vdrm.scenario.run import Scenario

log = logging.getLogger("vdrm")

MNT_DETACH = 2
PROBE_TIMEOUT = 2.0  # seconds a live daemon has to answer the statfs probe
FUSECTL = "/sys/fs/fuse/connections"
MOUNT_OPTIONS = frozenset({"fsname=vdrm", "subtype=vdrm", "default_permissions", "allow_other"})
MAX_TASKS = 32  # pyfuse3 worker tasks; fewer is faster; blocked reads hold at most 8 (vdrm.fs.waits)
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)



class UsageError(Exception):
    """A bad option value; exit status 2."""


class MountError(Exception):
    """The mount could not be made; exit status 1."""


# -- options --------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``--ram``: a size as :func:`vdrm.drm.grammar.parse_size` reads it (``4G``, ``0x40000000``)."""
    try:
        return grammar.parse_size(text, "--ram")
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: {e}") from None


def parse_kernel(text: str) -> tuple[int, int]:
    try:
        release = parse_release(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a kernel version like 6.18") from None
    if release not in _all_kernels():
        raise argparse.ArgumentTypeError(f"kernel {text} is not emulated (choose from {_kernels()})")
    return release


def _all_kernels() -> list[tuple[int, int]]:
    return sorted({v for cls in drivers.DRIVERS.values() for v in cls.KERNEL_VERSIONS})


def _kernels() -> str:
    return ", ".join(release_name(r) for r in _all_kernels())


def parse_gpus(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in drivers.DRIVERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: GPUs are driver names from {', '.join(drivers.DRIVERS)}, "
                                         "comma-separated, card0 first")
    return names


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode such as 0660")
    return value


def _group(text: str) -> int:
    if text.isdigit():
        return int(text)
    gid = group_id(text, -1)
    if gid < 0:
        raise argparse.ArgumentTypeError(f"no group {text!r} on this host")
    return gid


def node_access(args: argparse.Namespace) -> NodeAccess:
    """The DRM nodes' modes and groups the options ask for."""
    default = NodeAccess.udev_default()
    return NodeAccess(card_mode=getattr(args, "card_mode", default.card_mode),
                      card_gid=getattr(args, "card_group", default.card_gid),
                      render_mode=default.render_mode, render_gid=default.render_gid)


def build_parser(prog: str = "mount.py") -> argparse.ArgumentParser:
    """The options of ``mount.py`` (and of ``vdrm mount`` / ``vdrm run``, as ``prog``)."""
    defaults = DeviceConfig()
    newest = release_name(_all_kernels()[-1])
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Mount vdrm: an emulated Arm Mali GPU (Panfrost) with a fake /dev/dri, "
                    "/proc/<pid>/fdinfo, /sys/class/drm and debugfs, over FUSE.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""\
the tree, relative to MOUNTPOINT:
  dev/dri/card0, dev/dri/renderD128     each open is a new DRM client; write request
                                        lines, read one reply line per request
  dev/dri-nodes/{{card0,renderD128}}      the same nodes as character devices 226:N, for
                                        stat only (--run binds dev/dri at /dev/dri, and
                                        its process bridge makes those nodes 226:N)
  proc/<pid>/fd/<n>, fdinfo/<n>         every real process holding a vdrm fd
  proc/<pid>/{{stat,status,comm,cmdline}}
  sys/class/drm/{{card0,renderD128}}      -> sys/devices/platform/<pdev>/drm/...
  sys/devices/platform/<pdev>/profiling  write 1 or 0 to turn engine usage keys on/off
  sys/kernel/debug/dri/{{0,128}}/         debugfs (gems, clients, ...)
  dmesg                                 the kernel log (tail -f follows it)

example:
  python mount.py /tmp/vdrm --daemon --log-file /tmp/vdrm.log
  exec 3<>/tmp/vdrm/dev/dri/renderD128
  echo 'CREATE_BO size=8M flags=HEAP,NOEXEC' >&3; read -r reply <&3; echo "$reply"
  echo 'FAULT addr=0x2000000' >&3; read -r reply <&3
  grep memory /tmp/vdrm/proc/$$/fdinfo/3
  echo HELP >&3; read -r reply <&3; echo "$reply"
  exec 3>&-
  kill $(pgrep -f 'mount.py /tmp/vdrm')    # or Ctrl-C in the foreground: unmounts

running a tool against the device (a private mount namespace, see --run):
  python mount.py --run --scenario fixtures/scenarios/busy-game.toml -- ./my-gpu-top --once
  inside: /proc lists every process plus the scenario's, their DRM fds resolve to
  /dev/dri/renderD128 (226:128); advance the virtual clock with
  echo 1s > /sys/kernel/debug/dri/128/vdrm-clock; $VDRM_MOUNT is the mount itself.

exit status: 0 clean unmount (--daemon: mount ready), 1 mount or serving failed,
2 bad options. With --run: COMMAND's status (128+N if killed by signal N), 125 vdrm
failed (bad options or scenario, mount, namespace), 126 COMMAND not executable,
127 COMMAND not found.""")
    parser.add_argument("mountpoint", metavar="MOUNTPOINT", nargs="?",
                        help="an existing directory to mount on (not with --run)")
    device = parser.add_argument_group("the emulated device")
    device.add_argument("--gpus", type=parse_gpus, default=("panfrost",), metavar="DRIVER[,DRIVER]",
                        help="the GPUs, card0/renderD128 first, then card1/renderD129: "
                             f"{', '.join(drivers.DRIVERS)} (default panfrost; e.g. panfrost,panthor)")
    device.add_argument("--kernel", type=parse_kernel, default=defaults.kernel, metavar="VERSION",
                        help=f"kernel whose ioctls, fdinfo and debugfs dialect to speak: {_kernels()}; "
                             f"the newest is {newest} (default {release_name(defaults.kernel)})")
    device.add_argument("--heap-backing", choices=("sparse", "dense"), default=defaults.heap_backing,
                        help="heap BO pages: 'sparse' as the 2025 RFC (pages only where faulted), "
                             f"'dense' as mainline (default {defaults.heap_backing})")
    device.add_argument("--ram", type=parse_size, default=defaults.ram_size, metavar="SIZE",
                        help="emulated RAM, with a K, M or G suffix (default %dG)" % (defaults.ram_size >> 30))
    device.add_argument("--as-slots", type=_positive, default=defaults.as_slots, metavar="N",
                        help=f"hardware GPU address-space slots (default {defaults.as_slots})")
    device.add_argument("--clock", choices=("real", "virtual"), default=defaults.clock,
                        help="'real': CLOCK_MONOTONIC; 'virtual': time moves only when a scenario "
                             f"advances it (default {defaults.clock})")
    device.add_argument("--seed", type=int, default=defaults.seed,
                        help=f"page allocator placement seed (default {defaults.seed})")
    device.add_argument("--fragmentation", type=_fraction, default=defaults.fragmentation, metavar="F",
                        help="physical memory fragmentation, 0 (contiguous) to 1 (scattered) "
                             f"(default {defaults.fragmentation})")
    device.add_argument("--first-client-id", type=_positive, default=defaults.first_client_id, metavar="N",
                        help="first drm-client-id handed out (e.g. 4294967290 to cross u32) "
                             f"(default {defaults.first_client_id})")
    device.add_argument("--profiling", action="store_true", default=defaults.profiling,
                        help="start with sysfs profiling on (drm-engine-* and drm-cycles-* keys)")
    device.add_argument("--scenario", metavar="FILE",
                        help="serve a scenario: a file, or a bundled one by name (busy-game; "
                             "'vdrm scenarios' lists them): its processes appear in "
                             "proc/ beside the real ones, its [device] table replaces the device "
                             "options above, and the clock is virtual (advance it through "
                             "sys/kernel/debug/dri/128/vdrm-clock or the ADVANCE request)")
    limits, access = Limits(), NodeAccess.udev_default()
    caps = parser.add_argument_group("limits (see vdrm/drm/limits.py) and permissions")
    caps.add_argument("--max-clients", type=_positive, default=limits.clients, metavar="N",
                      help=f"open DRM clients at most; one more open(2) is EMFILE (default {limits.clients})")
    caps.add_argument("--max-bos", type=_positive, default=limits.bos, metavar="N",
                      help=f"BOs on the device at most; CREATE_BO past it is ENOMEM (default {limits.bos})")
    caps.add_argument("--max-bos-per-client", type=_positive, default=limits.bos_per_client, metavar="N",
                      help=f"GEM handles per client; one more is ENOSPC (default {limits.bos_per_client})")
    caps.add_argument("--max-jobs-per-client", type=_positive, default=limits.jobs_per_client, metavar="N",
                      help=f"jobs in flight per client; SUBMIT past it is ENOMEM (default {limits.jobs_per_client})")
    caps.add_argument("--max-label-bytes", type=parse_size, default=limits.label_bytes, metavar="SIZE",
                      help=f"bytes of BO labels on the device; SET_LABEL_BO past it is ENOMEM "
                           f"(default {limits.label_bytes >> 20}M)")
    caps.add_argument("--reply-bytes", type=parse_size, default=limits.reply_bytes, metavar="SIZE",
                      help="unread replies kept per open file; older ones become one ENOBUFS line "
                           f"(default {limits.reply_bytes >> 10}K)")
    caps.add_argument("--card-mode", type=_mode, default=access.card_mode, metavar="MODE",
                      help=f"dev/dri/card0's mode, octal (default {access.card_mode:04o}, as udev sets it)")
    caps.add_argument("--card-group", type=_group, default=access.card_gid, metavar="GROUP",
                      help="dev/dri/card0's group, a name or gid (default video)")
    daemon = parser.add_argument_group("the daemon")
    daemon.add_argument("--daemon", action="store_true",
                        help="detach; return once the mount is ready (exit status says whether it is)")
    daemon.add_argument("--run", action="store_true",
                        help="'--run [options] -- COMMAND ARGS...': mount on a private temporary "
                             "directory, run COMMAND in a private mount namespace where /proc, /dev/dri, "
                             "/sys/class/drm and /sys/kernel/debug show the emulated device, unmount "
                             "when it exits and exit with its status (see vdrm/fs/runner.py)")
    daemon.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                        help="log messages at this level and above (default info; with --run warning)")
    daemon.add_argument("--log-file", metavar="FILE",
                        help="append the log here (default: stderr; with --daemon: nowhere)")
    return parser


def make_device(args: argparse.Namespace) -> tuple[Machine, Scenario | None]:
    """The device the options describe: a scenario's (its [device] table wins) or one
    built from the device options; the limits (--max-*) and the owner apply to both.
    Raises ScenarioError, UsageError or VdrmError."""
    if args.scenario is not None:
        config = build_config(args)  # the daemon's own caps and owner apply to a scenario too
        scenario = Scenario(load_scenario(bundled.resolve(args.scenario)), limits=config.limits,
                            owner_uid=config.owner_uid)
        gc.freeze()  # what the scenario built lives on: keep collections from rescanning it
        return scenario.machine, scenario
    return drivers.build(build_config(args), getattr(args, "gpus", ("panfrost",))), None


def build_config(args: argparse.Namespace) -> DeviceConfig:
    """The device options as a :class:`DeviceConfig`."""
    return DeviceConfig(kernel=args.kernel, heap_backing=args.heap_backing, ram_size=args.ram,
                        as_slots=args.as_slots, clock=args.clock, seed=args.seed,
                        fragmentation=args.fragmentation, first_client_id=args.first_client_id,
                        profiling=args.profiling, owner_uid=os.getuid(),
                        limits=Limits(clients=args.max_clients, bos=args.max_bos,
                                      bos_per_client=args.max_bos_per_client,
                                      label_bytes=args.max_label_bytes,
                                      jobs_per_client=args.max_jobs_per_client,
                                      reply_bytes=args.reply_bytes))


# -- mount table -----------------------------------------------------------------------


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_at(mountpoint: str) -> list[tuple[str, str]]:
    """``(fstype, source)`` of every mount stacked on ``mountpoint``, oldest first."""
    return [(fstype, source) for fstype, source, _ in _mounts_at(mountpoint)]


def _mounts_at(mountpoint: str) -> list[tuple[str, str, str]]:
    """``(fstype, source, "major:minor")`` of every mount stacked on ``mountpoint``."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            fields, rest = head.split(" "), tail.split(" ")
            if len(fields) > 4 and len(rest) > 1 and _unescape(fields[4]) == mountpoint:
                found.append((rest[0], _unescape(rest[1]), fields[2]))
    return found


def probe_connection(mountpoint: str, timeout: float = PROBE_TIMEOUT) -> int | None:
    """``statfs`` the mount: None if its daemon answered, the errno if it failed
    (ENOTCONN: the daemon is gone), ETIMEDOUT if it did not answer in ``timeout`` s."""
    import threading

    result: list[int | None] = []

    def probe() -> None:
        try:
            os.statvfs(mountpoint)
            result.append(None)
        except OSError as e:
            result.append(e.errno)

    thread = threading.Thread(target=probe, name="vdrm-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else errno.ETIMEDOUT


def _waiting(dev: str) -> str:
    """What fusectl says of connection ``dev`` ("0:40" -> connections/40/waiting)."""
    try:
        with open(f"{FUSECTL}/{dev.partition(':')[2]}/waiting") as f:
            return f"{f.read().strip()} requests waiting in {FUSECTL}/{dev.partition(':')[2]}"
    except OSError:
        return "fusectl not mounted"


def _umount_lazy(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


def recover_stale(mountpoint: str, say: Callable[[str], None]) -> bool:
    """Lazily unmount a vdrm mount left stale at ``mountpoint``; True if there was one.

    A live mount there is an error (another daemon serves it), as is a stale mount of
    some other filesystem.
    """
    recovered = False
    while _mounts_at(mountpoint):
        fstype, source, dev = _mounts_at(mountpoint)[-1]
        failed = probe_connection(mountpoint)
        if failed is None:
            raise MountError(f"{mountpoint} is already a mount point ({fstype} {source}); "
                             "is another vdrm serving it?")
        if failed == errno.ETIMEDOUT:
            raise MountError(f"{mountpoint} is a {fstype} mount whose daemon does not answer "
                             f"({_waiting(dev)}); stopped or hung? (write 1 to its fusectl abort, "
                             "then umount -l)")
        if failed != errno.ENOTCONN:
            raise MountError(f"{mountpoint}: {os.strerror(failed)}")
        if source != "vdrm":
            raise MountError(f"{mountpoint} holds a stale {fstype} mount of {source}, not vdrm's; "
                             "unmount it yourself (umount -l)")
        _umount_lazy(mountpoint)
        say(f"vdrm: {mountpoint} was left stale by a vdrm daemon that died without unmounting "
            "(Transport endpoint is not connected); lazily unmounted it")
        recovered = True
    return recovered


# -- serving -----------------------------------------------------------------------------


FUSE_DEVICE = "/dev/fuse"
_USERNS_KNOBS = (("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces is 0"),
                 ("/proc/sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone is 0"),
                 ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
                  "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)"))


def fuse_problem(*, namespaces: bool = False, device: str = FUSE_DEVICE) -> str | None:
    """What keeps this user from mounting (and, with ``namespaces``, from running a command
    in a user namespace), as one sentence saying what is missing; None if nothing."""
    containers = "in a container: docker/podman run --device /dev/fuse --cap-add SYS_ADMIN"
    if not os.path.exists(device):
        return f"there is no {device} (modprobe fuse; {containers})"
    if os.getuid() == 0:
        return None
    if not os.access(device, os.R_OK | os.W_OK):
        st = os.stat(device)
        return (f"{device} is not usable by uid {os.getuid()} (mode {st.st_mode & 0o777:04o}, owner uid "
                f"{st.st_uid}): a normal user mounts only where it is 0666, as Debian and Ubuntu ship it "
                "(chmod 0666 /dev/fuse), or run as root")
    fusermount = shutil.which("fusermount3")
    if fusermount is None or not os.stat(fusermount).st_mode & stat.S_ISUID:
        return "a normal user mounts through the setuid fusermount3 (Debian package fuse3), which is missing here"
    if namespaces:
        for path, bad, why in _USERNS_KNOBS:
            try:
                with open(path) as f:
                    if f.read().strip() == bad:
                        return f"'--run' as a normal user needs user namespaces, and {why}; run as root"
            except OSError:
                continue
    return None


def mount_options(uid: int | None = None, fuse_conf: str = "/etc/fuse.conf") -> frozenset[str]:
    """The FUSE options a user's mount gets: :data:`MOUNT_OPTIONS`, except that a normal
    user mounts through the setuid ``fusermount3``, which allows ``allow_other`` only with
    ``user_allow_other`` in ``/etc/fuse.conf`` (without it only that user sees the mount)."""
    if (os.getuid() if uid is None else uid) == 0:
        return MOUNT_OPTIONS
    try:
        with open(fuse_conf) as f:
            allowed = any(line.split("#")[0].strip() == "user_allow_other" for line in f)
    except OSError:
        allowed = False
    return MOUNT_OPTIONS if allowed else MOUNT_OPTIONS - {"allow_other"}



def serve(mountpoint: str, device: GpuDevice | Machine, ready: Callable[[], None] = lambda: None,
          scenario: Scenario | None = None, *, all_pids: bool = False,
          options: frozenset[str] = MOUNT_OPTIONS, bridge: "socket.socket | None" = None,
          access: NodeAccess | None = None) -> None:
    """Mount ``device``'s tree at ``mountpoint`` and serve until a signal; then unmount.

    ``all_pids``: every real process in ``proc/`` (the namespace runner's tree).
    ``bridge``: a socket on which the runner's COMMAND sends its seccomp listener; its
    intercepted calls are then answered here (:mod:`vdrm.fs.bridge`).
    """
    procfs: ProcessTable | ScenarioProcessTable
    procfs = ProcessTable(lambda ino: tree.is_open_ino(ino), mountpoint=mountpoint, all_pids=all_pids)
    # A normal user's mount (and the unprivileged runner's) must let that user enter the
    # emulated processes' fd/ and write vdrm-clock: the tree's own files are then theirs.
    owner = (os.getuid(), os.getgid()) if os.getuid() != 0 else None
    if scenario is not None:
        procfs = ScenarioProcessTable(procfs, scenario, owner=owner)
    if access is None and all_pids:  # --run serves one user's tool: both nodes theirs to open
        access = NodeAccess(card_mode=0o666, render_mode=0o666)
    tree = Tree(device, procfs, all_pids=all_pids, access=access, owner=owner or (0, 0))
    ops = Operations(tree, notify=send_invalidations)
    try:
        pyfuse3.init(ops, mountpoint, set(options))
    except RuntimeError as e:
        raise MountError(f"cannot mount on {mountpoint}: {e}") from None
    log.info("mounted vdrm on %s (pid %d)", mountpoint, os.getpid())

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            ops.start(nursery)

            async def session() -> None:
                await pyfuse3.main(min_tasks=1, max_tasks=MAX_TASKS)
                nursery.cancel_scope.cancel()  # unmounted from outside

            with trio.open_signal_receiver(*_SIGNALS) as signals:
                nursery.start_soon(session)
                await trio.lowlevel.checkpoint()
                supervisor = (fs_bridge.start(bridge, tree, mountpoint, nursery, ops.settle)
                              if bridge is not None else None)
                ready()
                async for signum in signals:
                    log.info("%s: unmounting %s", signal.Signals(signum).name, mountpoint)
                    if supervisor is not None:
                        supervisor.stop()
                    ops.stop()
                    pyfuse3.terminate()
                    break

    clean = False
    try:
        trio.run(run)
        clean = True
    finally:
        pyfuse3.close(unmount=True)
        if clean:
            log.info("unmounted %s", mountpoint)


def _setup_logging(level: str, log_file: str | None, *, quiet: bool) -> None:
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper()))
    fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if log_file:
        handler: logging.Handler = logging.FileHandler(log_file)
    elif quiet:
        handler = logging.NullHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.addHandler(handler)


def _canonical(path: str) -> str:
    """The mount point as mountinfo spells it, resolved without touching the point itself
    (a stale mount there answers ENOTCONN to everything)."""
    path = os.path.abspath(path)
    head, tail = os.path.split(path)
    return os.path.join(os.path.realpath(head), tail) if tail else path


def _teller(log_file: str | None) -> Callable[[str], None]:
    """Tell the user on stderr, and the log file if there is one (else the log is stderr)."""

    def say(text: str) -> None:
        if log_file:
            print(text, file=sys.stderr, flush=True)
        log.warning("%s", text)

    return say


Build = Callable[[argparse.Namespace], "tuple[Machine, Scenario | None]"]


def main(argv: Sequence[str] | None = None, prog: str = "mount.py", build: Build | None = None) -> int:
    """``mount.py``; ``prog`` names it in messages, ``build`` replaces :func:`make_device`
    (``vdrm replay`` serves a trace through the same options and lifecycle)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    build = build or make_device
    if "--run" in argv[:argv.index("--") if "--" in argv else len(argv)]:
        return _main_run(argv, prog, build)
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.run or args.mountpoint is None:
        parser.error("a MOUNTPOINT is needed (or --run [options] -- COMMAND)")
    args.log_level = args.log_level or "info"
    problem = fuse_problem()
    if problem:
        print(f"vdrm: cannot mount: {problem}", file=sys.stderr)
        return 1
    try:
        device, scenario = build(args)
    except ScenarioError as e:
        print(f"vdrm: bad scenario, nothing mounted: {e}", file=sys.stderr)
        return 2
    except UsageError as e:
        parser.error(str(e))
    except VdrmError as e:
        parser.error(str(e))
    mountpoint = _canonical(args.mountpoint)
    if args.log_file:
        args.log_file = os.path.abspath(args.log_file)
    _setup_logging(args.log_level, args.log_file, quiet=False)
    try:
        recover_stale(mountpoint, _teller(args.log_file))
        if not os.path.isdir(mountpoint):
            raise MountError(f"{mountpoint} is not a directory")
    except MountError as e:
        print(f"vdrm: {e}", file=sys.stderr)
        return 1
    if args.daemon:
        return _daemonize(mountpoint, device, args, scenario)
    try:
        serve(mountpoint, device, scenario=scenario, access=node_access(args), options=mount_options())
    except MountError as e:
        print(f"vdrm: {e}", file=sys.stderr)
        return 1
    return 0


def _main_run(argv: list[str], prog: str = "mount.py", build: Build | None = None) -> int:
    """``--run [options] -- COMMAND ARGS...``: every failure of vdrm's own is status 125."""
    from vdrm.fs import runner

    split = argv.index("--") if "--" in argv else len(argv)
    options, command = argv[:split], argv[split + 1:]
    parser = build_parser(prog)
    try:
        args = parser.parse_args(options)
    except SystemExit as e:
        return runner.EXIT_VDRM if e.code else 0  # --help exits 0
    if args.mountpoint is not None or args.daemon:
        print("vdrm: --run makes its own private mount point; give no MOUNTPOINT or --daemon "
              "(did you forget '--' before the command?)", file=sys.stderr)
        return runner.EXIT_VDRM
    if not command:
        print(f"vdrm: --run needs a command: {prog} --run [options] -- COMMAND ARGS...", file=sys.stderr)
        return runner.EXIT_VDRM
    problem = fuse_problem(namespaces=True)
    if problem:
        print(f"vdrm: cannot run {command[0]}: {problem}", file=sys.stderr)
        return runner.EXIT_VDRM
    try:
        device, scenario = (build or make_device)(args)
    except ScenarioError as e:
        print(f"vdrm: bad scenario, nothing mounted: {e}", file=sys.stderr)
        return runner.EXIT_VDRM
    except VdrmError as e:
        print(f"vdrm: {e}", file=sys.stderr)
        return runner.EXIT_VDRM
    if args.log_file:
        args.log_file = os.path.abspath(args.log_file)
    _setup_logging(args.log_level or "warning", args.log_file, quiet=False)
    return runner.run(command, device, scenario, log_level=args.log_level or "warning",
                      log_file=args.log_file)


def fork_daemon(run: Callable[[Callable[[], None]], None], *, keep_stderr: bool = False,
                in_child: Callable[[], None] = lambda: None) -> tuple[int | None, str]:
    """Fork a detached child that calls ``run(ready)``; ``ready()`` tells the waiting parent.

    The parent gets ``(pid, "")`` once the child called ``ready``, or ``(None, why)`` when
    the child failed first (its exception's text) or died. The child runs in its own
    session from ``/`` with stdin, stdout (and stderr unless ``keep_stderr``) on
    ``/dev/null``; ``in_child`` runs right after ``setsid``. The child never returns.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            report = pipe.read().decode(errors="replace")
        if report.startswith("ready"):
            return pid, ""
        os.waitpid(pid, 0)
        return None, report.strip() or "the daemon died before the mount was ready"

    status = 1
    try:
        os.close(read_end)
        os.setsid()
        in_child()
        os.chdir("/")  # hold no directory busy
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1) if keep_stderr else (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        pipe = os.fdopen(write_end, "wb", buffering=0)

        def ready() -> None:
            pipe.write(b"ready\n")
            pipe.close()

        try:
            run(ready)
            status = 0
        except BaseException as e:  # noqa: BLE001 - report everything to the waiting parent
            reported = not pipe.closed
            if reported:
                pipe.write(str(e).encode() or type(e).__name__.encode())
            # the parent prints a reported failure; on a shared stderr once is enough
            log.log(logging.DEBUG if reported and keep_stderr else logging.ERROR,
                    "the daemon failed", exc_info=True)
    finally:
        os._exit(status)


def _daemonize(mountpoint: str, device: Machine, args: argparse.Namespace,
               scenario: Scenario | None = None) -> int:
    """Fork; the parent returns 0 once the child's mount is ready, 1 with its error."""

    def run(ready: Callable[[], None]) -> None:
        _setup_logging(args.log_level, args.log_file, quiet=True)
        serve(mountpoint, device, ready, scenario, access=node_access(args), options=mount_options())

    pid, why = fork_daemon(run)
    if pid is None:
        print(f"vdrm: {why}", file=sys.stderr)
        return 1
    print(f"vdrm: serving {mountpoint} (daemon pid {pid})")
    return 0
