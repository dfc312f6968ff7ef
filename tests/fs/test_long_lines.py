"""Over-long request lines on the real mount: refused once, per line, without swallowing the next."""

from __future__ import annotations

from tests.fs.conftest import Daemon


def test_an_over_long_line_is_refused_without_swallowing_the_next(mnt: Daemon) -> None:
    """5000 bytes without a newline are one EINVAL; the VERSION written next is answered."""
    out = mnt.sh("""
        exec 3<>"$MNT/dev/dri/renderD128"
        printf 'A%.0s' {1..5000} >&3; read -r reply <&3; echo "$reply"
        echo VERSION >&3; read -r reply <&3; echo "$reply"
    """).stdout.splitlines()
    assert out[0].startswith("error EINVAL line"), out
    assert out[1].startswith("ok "), out
