"""The permission matrix: two unprivileged users and root against the real mount, each row the kernel's answer.

Rows (vdrm.fs.permissions): card0 is root:video 0660 (udev), renderD128 0666; ADVANCE
only for the mount's owner and root; proc/<pid>/fdinfo/ only for the process's owner
and root (ptrace access, 5.14+); GEM_FLINK/GEM_OPEN (DRM_AUTH, not RENDER_ALLOW) refused
on renderD128 and for unauthenticated card0 clients. The users are uids 65534 and 65533
with no groups, and 65533 in the video group for the card0 rows.
"""

from __future__ import annotations

import grp
import os
import subprocess
from pathlib import Path

import pytest

from tests.fs.conftest import TIMEOUT, Daemon

ALICE, BOB = 65534, 65533

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="becoming other users needs root")


def video_gid() -> int:
    try:
        return grp.getgrnam("video").gr_gid
    except KeyError:
        return 0


def as_user(uid: int, script: str, mnt: Daemon, *, groups: tuple[int, ...] = ()) -> subprocess.CompletedProcess:
    """Run a bash script as ``uid`` (its gid the same, ``groups`` its supplementary groups)."""
    return subprocess.run(["bash", "-uo", "pipefail", "-c", script], env={"MNT": str(mnt.path), "PATH": os.environ["PATH"]},
                          text=True, capture_output=True, timeout=TIMEOUT, cwd="/",
                          user=uid or None, group=uid or None, extra_groups=list(groups) if uid else None)


def request(uid: int, mnt: Daemon, node: str, line: str, **kw) -> str:
    out = as_user(uid, f"""
        exec 3<>"$MNT/dev/dri/{node}" || {{ echo "open failed"; exit 0; }}
        echo '{line}' >&3; read -r reply <&3; echo "$reply"
    """, mnt, **kw)
    return out.stdout.strip() + out.stderr.strip()


@pytest.mark.parametrize(("who", "groups", "want"), [
    ("root", (), "ok"), ("alice", (), "denied"), ("bob", (), "denied"), ("bob", ("video",), "ok")])
def test_card0_is_root_video_0660(mnt: Daemon, who: str, groups: tuple[str, ...], want: str) -> None:
    """card0 opens for root and the video group only, as udev's 0660 root:video node does."""
    uid = {"root": 0, "alice": ALICE, "bob": BOB}[who]
    gids = tuple(video_gid() for _ in groups)
    reply = request(uid, mnt, "card0", "VERSION", groups=gids)
    if want == "ok":
        assert reply.startswith("ok "), reply
    else:
        assert "Permission denied" in reply and "open failed" in reply, reply
    st = os.stat(mnt.path / "dev/dri/card0")
    assert (oct(st.st_mode & 0o777), st.st_uid, st.st_gid) == (oct(0o660), 0, video_gid())


@pytest.mark.parametrize("uid", [0, ALICE, BOB])
def test_renderd128_is_open_to_everyone(mnt: Daemon, uid: int) -> None:
    """renderD128 is 0666: every user becomes a client."""
    assert request(uid, mnt, "renderD128", "VERSION").startswith("ok ")
    assert os.stat(mnt.path / "dev/dri/renderD128").st_mode & 0o777 == 0o666


@pytest.mark.parametrize(("uid", "want"), [(0, "EINVAL"), (ALICE, "EACCES"), (BOB, "EACCES")])
def test_advance_is_for_the_owner_and_root(mnt: Daemon, uid: int, want: str) -> None:
    """ADVANCE: another user gets EACCES; root (the owner here) passes the check (EINVAL: the clock is real)."""
    reply = request(uid, mnt, "renderD128", "ADVANCE by=1ms")
    assert reply.startswith(f"error {want} "), reply


@pytest.mark.parametrize(("reader", "want"), [(ALICE, "ok"), (BOB, "denied"), (0, "ok")])
def test_fdinfo_of_another_users_process_needs_ptrace_access(mnt: Daemon, reader: int, want: str) -> None:
    """alice's proc/<pid>/fdinfo/ lists for alice and root; bob gets EACCES for the listing and the file."""
    holder = subprocess.Popen(["bash", "-c", 'exec 3<>"$MNT/dev/dri/renderD128"; echo ready; read -r _'],
                              env={"MNT": str(mnt.path), "PATH": os.environ["PATH"]}, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, user=ALICE, group=ALICE,
                              extra_groups=[], cwd="/")
    try:
        assert holder.stdout.readline().strip() == "ready"
        pid = holder.pid
        out = as_user(reader, f'ls "$MNT/proc/{pid}/fdinfo/"; grep -c drm-client-id "$MNT/proc/{pid}/fdinfo/3"', mnt)
        if want == "ok":
            assert out.stdout.split() == ["3", "1"], out
        else:
            assert out.stdout == "" and out.stderr.count("Permission denied") == 2, out
        mode = os.stat(mnt.path / f"proc/{pid}/fdinfo").st_mode & 0o777
        assert mode == 0o555  # listed as procfs lists it; the check is ptrace's, not the mode's
    finally:
        holder.stdin.close()
        holder.wait(TIMEOUT)
        holder.stdout.close()


def test_the_readme_states_the_permission_model() -> None:
    """The README's permission section names each row of the matrix."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Permissions"):]
    for row in ("card0", "0660", "video", "renderD128", "0666", "ADVANCE", "fdinfo", "ptrace"):
        assert row in section, row


@pytest.mark.parametrize("uid", [0, ALICE, BOB])
@pytest.mark.parametrize("verb", ["GEM_FLINK handle=1", "GEM_OPEN name=1"])
def test_flink_and_open_are_refused_on_render_nodes(mnt: Daemon, uid: int, verb: str) -> None:
    """GEM_FLINK and GEM_OPEN are DRM_AUTH without RENDER_ALLOW: EACCES on renderD128 for everyone, root too."""
    out = as_user(uid, f"""
        exec 3<>"$MNT/dev/dri/renderD128"
        echo 'CREATE_BO size=4K' >&3; read -r reply <&3
        echo '{verb}' >&3; read -r reply <&3; echo "$reply"
    """, mnt)
    assert out.stdout.startswith("error EACCES "), out


@pytest.mark.parametrize(("who", "want"), [("root", "ok"), ("bob", "EACCES")])
def test_flink_needs_an_authenticated_card0_client(own_mount, who: str, want: str) -> None:  # type: ignore[no-untyped-def]
    """On card0 the master (first opener) may flink; a second, unauthenticated open may not, unless it is root (CAP_SYS_ADMIN)."""
    daemon = own_mount()
    uid = 0 if who == "root" else BOB
    out = as_user(uid, """
        exec 3<>"$MNT/dev/dri/card0"   # the master: authenticated
        exec 4<>"$MNT/dev/dri/card0"   # not master: authenticated only if root
        echo 'CREATE_BO size=4K' >&3; read -r reply <&3
        echo 'GEM_FLINK handle=1' >&3; read -r reply <&3; echo "$reply"
        echo 'CREATE_BO size=4K' >&4; read -r reply <&4
        echo 'GEM_FLINK handle=1' >&4; read -r reply <&4; echo "$reply"
    """, daemon, groups=(video_gid(),))
    master, second = out.stdout.splitlines()
    assert master.startswith("ok name="), out
    assert second.startswith("ok name=" if want == "ok" else "error EACCES "), out
