"""Two GPUs under ``mount.py --run``: libdrm sees both, and a raw-ioctl Panthor client works on renderD129.

``panthor_client.c`` declares Panthor's structs from the uAPI header itself, as a Vulkan
driver's kernel layer does, and is built statically here; Debian's ``drmdevice`` walks
``/dev/dri`` and sysfs through libdrm's ``drmGetDevices2``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.bridge.test_programs import run, values
from vdrm.bridge import seccomp

HERE = Path(__file__).resolve().parent
TWO_GPUS = ("--clock", "virtual", "--gpus", "panfrost,panthor")

pytestmark = pytest.mark.skipif(seccomp.supported() is not None, reason=str(seccomp.supported()))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: the README's test command installs it")
    base = tmp_path_factory.mktemp("panthor")
    base.chmod(0o755)
    out = base / "panthor-client"
    subprocess.run(["gcc", "-O1", "-Wall", "-static", "-o", str(out), str(HERE / "panthor_client.c")],
                   check=True, capture_output=True, text=True)
    return str(out)


def test_drmdevice_lists_both_gpus() -> None:
    """drmGetDevices2 reports two platform devices: the RK3568's Mali (card0, renderD128) and
    the RK3588's (card1, renderD129), each with its device-tree node and compatibles."""
    out = run("drmdevice", *TWO_GPUS)
    assert "--- Devices reported 2 ---" in out
    assert "nodes[0] /dev/dri/card0" in out and "nodes[2] /dev/dri/renderD128" in out
    assert "nodes[0] /dev/dri/card1" in out and "nodes[2] /dev/dri/renderD129" in out
    assert "fullname\t/gpu@fde60000" in out and "fullname\t/gpu@fb000000" in out
    assert "rockchip,rk3588-mali" in out and "arm,mali-valhall-csf" in out
    assert "--- Opening device node /dev/dri/renderD129 ---" in out


def test_raw_ioctl_client_queries_the_g610_on_render_d129(client: str) -> None:
    """DEV_QUERY GPU_INFO answers the G610 (arch 10), and a VM, a bound BO, a group, a job and a
    tiler heap show in the client's own fdinfo under drm-driver panthor; bad input gets EINVAL."""
    v = values(run(f"{client} /dev/dri/renderD129", *TWO_GPUS))
    assert (v["rdev"], v["driver"], v["version"]) == ("226:129", "panthor", "1.5.0")
    assert (v["gpu_info_size"], v["gpu_id"], v["arch_major"], v["shader_present"]) == ("104", "0xa8670000", "10",
                                                                                        "0x50005")
    assert (v["vm"], v["bo"], v["group"], v["heap"]) == ("1", "1", "1", "0x10000")
    assert v["zero_size"] == "-1 errno=22"
    assert v["drm-driver"] == "panthor" and v["drm-total-memory"] == "1 MiB"
    assert v["panthor-resident-memory"] == "2420 KiB"  # group 364 KiB + heap contexts 8 KiB + one 2 MiB chunk


def test_the_panfrost_client_still_works_beside_it(client: str) -> None:
    """The same program on renderD128 of the two-GPU machine meets Panfrost: DEV_QUERY is EINVAL there."""
    out = run(f"{client} /dev/dri/renderD128 || true", *TWO_GPUS)
    v = values(out)
    assert v["driver"] == "panfrost" and v["failed"] == "dev_query size errno=22"
