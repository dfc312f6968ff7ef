"""Unmodified programs under ``mount.py --run`` reach the emulated GPU through open, fstat and ioctl.

Each test runs real programs inside the runner's namespace: Debian's ``drmdevice``, a C
client built here against libdrm and once more statically with raw ``ioctl(2)``
(``gpu_client.c``), and a Python client using ``fcntl.ioctl`` with ctypes structs
(``gpu_client.py``). The daemon's stderr must stay free of errors and tracebacks.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tools.under_vdrm import under_vdrm
from vdrm.bridge import seccomp
from vdrm.panfrost.device import DeviceConfig, PanfrostDevice

HERE = Path(__file__).resolve().parent
EMULATED = 4194304

pytestmark = pytest.mark.skipif(seccomp.supported() is not None, reason=str(seccomp.supported()))


def _build(out: Path, *flags: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: the README's test command installs it")
    cmd = ["gcc", "-O1", "-Wall", "-o", str(out), str(HERE / "gpu_client.c"), *flags, "-lpthread"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The C client built against libdrm and statically with raw ioctls (paths by name)."""
    base = tmp_path_factory.mktemp("clients")
    base.chmod(0o755)
    pkg = subprocess.run(["pkg-config", "--cflags", "--libs", "libdrm"], capture_output=True, text=True)
    if pkg.returncode != 0:
        pytest.fail("libdrm-dev is missing: the README's test command installs it")
    return {"libdrm": str(_build(base / "gpu-client-libdrm", "-DWITH_LIBDRM", *pkg.stdout.split())),
            "static": str(_build(base / "gpu-client-static", "-static"))}


def run(script: str, *options: str, scenario: str | None = None, timeout: float = 90) -> str:
    """Run ``script`` under the runner; its stdout, after checking the run was clean."""
    result = under_vdrm(scenario, script, *options, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr and " ERROR " not in result.stderr, result.stderr
    return result.stdout


def values(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def driver_version(kernel: tuple[int, int]) -> str:
    return "%d.%d.%d" % PanfrostDevice(DeviceConfig(kernel=kernel)).driver.version


def check_basic(v: dict[str, str], kernel: tuple[int, int] = (6, 18)) -> None:
    """What gpu_client basic (and gpu_client.py) must have seen."""
    assert (v["chr"], v["rdev"]) == ("1", "226:128")
    assert v["driver"] == "panfrost" and v["version"] == driver_version(kernel)
    assert v["prod_id"] == "0x7402"
    assert v["heap_offset"] == "0x2000000"
    assert v["fault_populated"] == "1"
    assert v["zero_size"] == "-1 errno=22"
    assert v["drm-driver"] == "panfrost"
    # an 8 MiB heap with one 2 MiB block faulted in, and a 1 MiB BO
    assert v["drm-total-memory"] == "9 MiB"
    assert v["drm-resident-memory"] == "3 MiB"


def test_drmdevice_lists_the_platform_device() -> None:
    """Debian's drmdevice finds one platform device, /gpu@fde60000 with the RK3568 Mali
    compatibles, with both nodes, and opens each."""
    out = run("drmdevice")
    assert "--- Devices reported 1 ---" in out
    assert "nodes[0] /dev/dri/card0" in out and "nodes[2] /dev/dri/renderD128" in out
    assert "bustype 0002" in out and "fullname\t/gpu@fde60000" in out
    assert "rockchip,rk3568-mali" in out and "arm,mali-bifrost" in out
    assert "--- Opening device node /dev/dri/renderD128 ---" in out


def test_nodes_stat_as_character_devices() -> None:
    """stat of the nodes, of their by-path links and of an open fd via /proc says 226:<minor>."""
    out = run("""
        stat -c '%F %t:%T' /dev/dri/card0 /dev/dri/renderD128
        stat -L -c '%F %t:%T' /dev/dri/by-path/platform-fde60000.gpu-render
        exec 3<>/dev/dri/renderD128
        stat -L -c '%F %t:%T' /proc/self/fd/3
        "$PYTHON" -c 'import os; s = os.stat(3); print(s.st_rdev == os.makedev(226, 128), oct(s.st_mode))'
        stat -c '%F' /etc/passwd
    """)
    assert out.splitlines() == ["character special file e2:0", "character special file e2:80",
                                "character special file e2:80", "character special file e2:80",
                                "True 0o20666", "regular file"]


@pytest.mark.parametrize("kernel", [(6, 18), (6, 10)], ids=["6.18", "6.10"])
def test_libdrm_client(clients: dict[str, str], kernel: tuple[int, int]) -> None:
    """A libdrm program finds the GPU with drmGetDevices2 and runs VERSION, GET_PARAM,
    CREATE_BO, FAULT, SUBMIT and WAIT_BO; its own fdinfo shows the BOs."""
    v = values(run(f"{clients['libdrm']} basic", "--kernel", "%d.%d" % kernel))
    assert v["devices"] == "1" and v["fullname"] == "/gpu@fde60000" and v["node"] == "/dev/dri/renderD128"
    check_basic(v, kernel)
    assert v["bad_pointer"] == "-1 errno=14"
    assert "FAILED" not in v


def test_static_client_with_raw_ioctls(clients: dict[str, str]) -> None:
    """A statically linked program with raw ioctl(2) and no libdrm gets the same answers."""
    assert b"ld-linux" not in Path(clients["static"]).read_bytes()[:4096]  # no ELF interpreter
    v = values(run(f"{clients['static']} basic"))
    check_basic(v)
    assert v["bad_pointer"] == "-1 errno=14" and "FAILED" not in v


def test_python_client_with_fcntl_ioctl() -> None:
    """Python's fcntl.ioctl with ctypes structs reaches the engine the same way."""
    v = values(run(f'"$PYTHON" {HERE / "gpu_client.py"}'))
    check_basic(v)


def test_bad_input_gets_the_kernels_errnos_and_leaks_nothing() -> None:
    """Unknown numbers, a short struct, bad pointers (the struct, SUBMIT's bo_handles, a
    label past the end of user space) get the kernel's answers; the client serves on, and
    once closed nothing is left: no client, no page."""
    out = run(f"""
        "$PYTHON" {HERE / "gpu_client.py"} bad
        D=/sys/kernel/debug/dri/128
        for i in $(seq 100); do [ "$(tail -n +2 $D/clients | wc -l)" = 0 ] && break; sleep 0.05; done
        echo "clients=$(tail -n +2 $D/clients | wc -l)"
        grep allocated_pages $D/vdrm-memory | tr ' ' =
    """)
    v = values(out)
    assert v["unknown_driver_nr"] == "22" and v["unknown_core_nr"] == "22"  # EINVAL
    assert v["short_get_param"] == "0"  # drm_ioctl zero-extends a short struct
    assert v["bad_struct_pointer"] == "14" and v["submit_bad_bo_handles"] == "14"  # EFAULT
    assert v["label_past_end"] == "14"
    assert v["unknown_handle_wait"] == "2"  # ENOENT
    assert v["still_serving"] == "0x7402"
    assert v["clients"] == "0" and v["allocated_pages"] == "0"


def test_nvtop_profiling_path_resolves() -> None:
    """The path nvtop derives from OF_FULLNAME, /sys/devices/platform/fde60000.gpu/profiling,
    is there; the device's subsystem link says platform."""
    out = run("""
        cat /sys/devices/platform/fde60000.gpu/profiling
        basename "$(readlink /sys/dev/char/226:128/device/subsystem)"
        grep OF_FULLNAME /sys/dev/char/226:128/device/uevent
    """)
    assert out.splitlines() == ["0", "platform", "OF_FULLNAME=/gpu@fde60000"]


def test_threads_share_the_fd(clients: dict[str, str]) -> None:
    """Four threads calling GET_PARAM on one fd concurrently are all answered."""
    for kind in ("libdrm", "static"):
        assert values(run(f"{clients[kind]} threads"))["threads_ok"] == "1"


def test_forked_child_inherits_the_client(clients: dict[str, str]) -> None:
    """A forked child's ioctls on the inherited fd act on the parent's client; its own open
    is a new client."""
    v = values(run(f"{clients['static']} fork"))
    assert v["child_status"] == "0" and v["own_open_status"] == "0"
    assert int(v["child_bo_offset"], 16) > 0


def test_sigkill_in_a_wait_leaks_nothing(clients: dict[str, str]) -> None:
    """A client blocked in WAIT_BO blocks nobody else; SIGKILLed there, its client goes at
    once, its BO's pages when the job holding them ends, and the daemon serves on."""
    out = run(f"""
        D=/sys/kernel/debug/dri/128
        clients() {{ tail -n +2 $D/clients | wc -l; }}
        {clients['static']} wait-forever > /tmp/vdrm-wait.$$ &
        victim=$!
        for i in $(seq 200); do grep -q waiting=1 /tmp/vdrm-wait.$$ && break; sleep 0.05; done
        sleep 0.3
        clients; grep allocated_pages $D/vdrm-memory
        {clients['static']} basic | grep prod_id  # served while the victim waits
        kill -9 $victim; wait $victim || true
        for i in $(seq 100); do [ "$(clients)" = 0 ] && break; sleep 0.05; done
        clients
        {clients['static']} basic | grep prod_id
        for i in $(seq 200); do grep -q 'allocated_pages 0' $D/vdrm-memory && break; sleep 0.05; done
        grep allocated_pages $D/vdrm-memory
        cat /tmp/vdrm-wait.$$; rm -f /tmp/vdrm-wait.$$
    """)
    lines = out.splitlines()
    assert lines[:3] == ["1", "allocated_pages 1", "prod_id=0x7402"]  # the blocked client and its BO
    assert lines[3:6] == ["0", "prod_id=0x7402", "allocated_pages 0"]
    assert "waiting=1" in lines and "woke=1" not in lines


def test_kcmp_and_statm_of_scenario_processes() -> None:
    """kcmp says a scenario process's dup'd fds are one file and its two opens are not, and
    its statm, io, cgroup and environ have their real formats."""
    pid = EMULATED + 5001
    v = values(run(f'"$PYTHON" {HERE / "kcmp_probe.py"} {pid} 3 4 5', scenario="dup-and-two-opens.toml"))
    assert v["kcmp 3 4"] == "0"
    assert v["kcmp 3 5"] in ("1", "2") and v["kcmp 4 5"] == v["kcmp 3 5"]
    assert v["kcmp 3 99"] == "-9"  # EBADF
    assert len(v["statm"].split()) == 7 and all(n.isdigit() for n in v["statm"].split())
    assert v["io"] == "rchar wchar syscr syscw read_bytes write_bytes cancelled_write_bytes"
    assert v["cgroup"].startswith("0::/")
    assert v["environ"].startswith("HOME=")
    resident = int(v["statm"].split()[1])  # pages, the same in status and stat
    assert v["vmrss"] == f"{resident * 4} kB" and v["rss_pages"] == str(resident)


def test_kcmp_of_real_processes_is_the_kernels() -> None:
    """For real processes kcmp stays the kernel's: a dup'd vdrm fd is the same file."""
    v = values(run('exec 3<>/dev/dri/renderD128 4>&3 5<>/dev/dri/renderD128; '
                   f'"$PYTHON" {HERE / "kcmp_probe.py"} $$ 3 4 5'))
    assert v["kcmp 3 4"] == "0" and v["kcmp 3 5"] in ("1", "2")


def test_fdinfo_and_its_size_show_a_binary_ioctl_once_it_returns() -> None:
    """A binary ioctl changes the fdinfo like a text request does: the kernel's cached size
    and pages are dropped before the ioctl returns to its caller."""
    v = values(run(f'"$PYTHON" {HERE / "fdinfo_after_ioctl.py"}'))
    assert v["rounds"] == "12" and v["stale"] == "0", v
