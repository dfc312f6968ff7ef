"""Request lines for the fuzzer: grammar-aware ones from the ioctl table, and hostile bytes.

:func:`line` draws one request line (without its newline). Most are well-formed
requests of a random verb, with each argument drawn from its kind (:mod:`vdrm.drm.ioctl`)
so that handles, sizes and durations are often valid and sometimes at or past their
limits; the rest are mutations: unknown keys and verbs, wrong kinds, out-of-range
numbers, control characters, invalid UTF-8 and over-long lines. WAIT_BO deadlines are
absolute ``CLOCK_MONOTONIC`` times at most :data:`MAX_WAIT_NS` ahead, so that a fuzzer
can tell a hang (no reply within seconds) from a legitimate wait.
"""

from __future__ import annotations

import random
import time

from vdrm.drm.ioctl import CORE_IOCTLS, Arg, Ioctl
from vdrm.panfrost.ioctl import PANFROST_IOCTLS

MAX_WAIT_NS = 200_000_000
TABLE: dict[str, Ioctl] = {i.name: i for i in (*CORE_IOCTLS, *PANFROST_IOCTLS)}
# verbs a client sends often, so that objects exist for the others to use
_COMMON = ("CREATE_BO", "CREATE_BO", "SUBMIT", "SUBMIT", "WAIT_BO", "SET_LABEL_BO", "GEM_CLOSE",
           "MADVISE", "FAULT", "GET_PARAM", "MMAP_BO", "GET_BO_OFFSET", "VERSION")
_HOSTILE_NUMBERS = ("-1", "0", "4294967295", "4294967296", "18446744073709551615",
                    "18446744073709551616", "9223372036854775807", "-9223372036854775808",
                    "0x", "1e9", "٣", "²", "+5", " ", "")


def _value(rng: random.Random, arg: Arg) -> str:
    kind = arg.kind
    if rng.random() < 0.05:
        return rng.choice(_HOSTILE_NUMBERS)
    if arg.name in ("handle", "bo_handles"):
        if kind == "list":
            return ",".join(str(rng.randint(1, 12)) for _ in range(rng.randint(0, 3)))
        return str(rng.randint(0, 12))
    if arg.name == "timeout_ns":
        return str(0 if rng.random() < 0.3 else time.monotonic_ns() + rng.randint(0, MAX_WAIT_NS))
    if kind == "size":
        return rng.choice(("4K", "64K", "1M", "2M", "8M", "0", "1", "4097", "64M", "1G", "4G", "5000000000"))
    if kind == "duration":
        if rng.random() < 0.9:
            return rng.choice(("0", "1us", "1ms", "5ms", "20ms", "-5s", "-1"))
        return rng.choice(("100ms", "600ms", "1s", "9223372036854775807"))  # long ones time out
    if kind in ("flags", "enum") and arg.names:
        names = list(arg.names)
        if kind == "flags":
            return "|".join(rng.sample(names, rng.randint(0, min(2, len(names)))))
        return rng.choice(names + ["7", "3", "bogus"])
    if kind == "list":
        return ",".join(hex(rng.choice((0x1000, 0x2000000, 0x2200000, rng.getrandbits(40))))
                        for _ in range(rng.randint(0, 2)))
    if kind == "str":
        return rng.choice(("x", "frame%20buffer", "%ZZ", "%00", "ü", "a" * rng.randint(0, 5000)))
    if kind in ("u32", "u64", "s64"):
        return str(rng.choice((0, 1, 2, rng.getrandbits(8), rng.getrandbits(32))))
    return "0"


def well_formed(rng: random.Random) -> str:
    verb = rng.choice(_COMMON) if rng.random() < 0.7 else rng.choice(list(TABLE))
    ioctl = TABLE[verb]
    parts = [verb if rng.random() < 0.9 else verb.lower()]
    for arg in ioctl.args:
        if arg.required or rng.random() < 0.5:
            parts.append(f"{arg.name}={_value(rng, arg)}")
    if verb == "ADVANCE":  # the mount's clock is real: ADVANCE is EINVAL (or EACCES)
        pass
    return " ".join(parts)


def hostile(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.2:
        return well_formed(rng).encode() + b" " + rng.choice((b"x", b"=1", b"handle=1", b"zz=%"))
    if choice < 0.35:
        return rng.choice((b"", b" ", b"\t", b"HELP", b"help verb=SUBMIT", b"HELP verb=X arg=y"))
    if choice < 0.5:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 60))).replace(b"\n", b"")
    if choice < 0.6:
        return b"A" * rng.randint(4000, 9000)  # over the 4096-byte line limit
    if choice < 0.75:
        return b"SUBMIT engine=" + rng.choice((b"3", b"4294967295", b"-1", b"FRAGMENT"))
    return rng.choice(list(TABLE)).encode() + b" " + b" ".join(
        f"{rng.choice(('handle', 'size', 'flags', 'engine', 'duration', 'pad'))}={rng.choice(_HOSTILE_NUMBERS)}".encode()
        for _ in range(rng.randint(1, 4)))


def line(rng: random.Random) -> bytes:
    """One request line, without its newline (random bytes never contain one)."""
    return well_formed(rng).encode() if rng.random() < 0.75 else hostile(rng)
