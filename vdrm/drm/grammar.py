"""The argument grammar: how a typed value is written as text, one parser per kind.

Every place that reads a number a person typed uses this module: the request protocol
(``CREATE_BO size=8M``), the daemon's options (``--ram 1G``), the scenario loader
(``size = "64M"``, ``at = "16ms"``, ``touch = ["heap+2M"]``) and the clock file. A size
is parsed by :func:`parse_size` and a duration by :func:`parse_duration`, nowhere else.

Kinds (the ``kind`` of an :class:`~vdrm.drm.ioctl.Arg`), each with one parser in
:data:`PARSERS`:

``u32`` / ``u64`` / ``s64``
    an integer in decimal or ``0x`` hex (a leading ``0`` is *not* octal: ``007`` is 7),
    optional ``-``, range-checked like the kernel struct field.
``size``
    the kernel's ``memparse()`` (``lib/cmdline.c``): an integer read like
    ``simple_strtoull(s, &end, 0)`` -- ``0x`` hex, a leading ``0`` octal, else decimal --
    then an optional suffix ``K``, ``M``, ``G``, ``T``, ``P`` or ``E`` in either case, each a
    power of 1024. vdrm also accepts the IEC spelling ``KiB`` .. ``EiB`` for the same
    values. Where vdrm is stricter than memparse, on purpose:

    * memparse stops at the first character it does not know and its callers mostly ignore
      the rest, so ``8MB`` is 8 MiB and ``8 M`` is 8 bytes there. vdrm refuses anything left
      over with an error naming it: ``8MB`` is EINVAL (is it SI 8*10^6 or 8 MiB? write
      ``8M`` or ``8MiB``), ``8B`` and ``8 M`` too; no whitespace anywhere.
    * memparse wraps silently past 2^64; vdrm refuses a value outside ``0..2^64-1``, and a
      ``-`` sign (memparse has none) reads as "out of range".
``flags``
    names joined by ``,`` or ``|`` (or numbers); empty is 0.
``enum``
    one name or a number.
``duration``
    nanoseconds: an integer (decimal or ``0x`` hex, optional ``-``) with an optional
    ``ns``, ``us``, ``ms`` or ``s`` unit in either case; s64. No fractions, no spaces.
``list``
    u32 integers separated by ``,``; empty is the empty list.
``str``
    text; the protocol decodes ``%XX`` escapes before this parser sees it.

Every parser raises :class:`~vdrm.errors.InvalidArgument` with a message that quotes the
text, names the key and says what would have been accepted. Parsers are pure functions of
the text (and the argument's names for flags and enums).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Protocol

from vdrm.errors import InvalidArgument


class ArgLike(Protocol):
    """What a parser needs of an argument: its name (for messages) and, for flags and
    enums, its names (``vdrm.drm.ioctl.Arg`` has both; the grammar depends on nothing)."""

    name: str
    names: Mapping[str, int]
    kind: str

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
S64_MIN = -(1 << 63)
S64_MAX = (1 << 63) - 1

RANGES: dict[str, tuple[int, int]] = {
    "u32": (0, U32_MAX), "u64": (0, U64_MAX), "s64": (S64_MIN, S64_MAX),
    "size": (0, U64_MAX), "duration": (S64_MIN, S64_MAX),
    "flags": (0, U32_MAX), "enum": (0, U32_MAX),
}

SYNTAX: dict[str, str] = {
    "u32": "an integer 0..4294967295, decimal or 0x hex",
    "u64": "an integer 0..18446744073709551615, decimal or 0x hex",
    "s64": "an integer -9223372036854775808..9223372036854775807, decimal or 0x hex",
    "size": "bytes as the kernel's memparse reads them: an integer (0x hex, 0 octal, else decimal) "
            "with an optional K, M, G, T, P or E suffix (or KiB .. EiB; powers of 1024)",
    "flags": "names (any case) or numbers joined by , or |; empty is 0",
    "enum": "a name (any case) or a number",
    "duration": "nanoseconds: an integer with an optional ns, us, ms or s suffix",
    "list": "integers (u32) separated by commas; empty for none",
    "str": "text as written; %XX is the byte XX (%20 a space, %25 a percent)",
}
"""One line per kind, for HELP and error messages."""

KINDS = tuple(SYNTAX)

_QUOTE_CHARS = 40
_NUMBER = re.compile(r"(-?)(0x[0-9a-f]+|[0-9]+)", re.ASCII | re.IGNORECASE)
_DURATION = re.compile(r"(-?)(0x[0-9a-f]+|[0-9]+)(ns|us|ms|s)?", re.ASCII | re.IGNORECASE)
_DURATION_NS = {None: 1, "ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_MEMPARSE_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_SUFFIXES = frozenset("kKmMgGtTpPeE")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_OCT_DIGITS = frozenset("01234567")
_DEC_DIGITS = frozenset("0123456789")


def quote(text: str) -> str:
    """``'text'`` for an error message, cut after 40 characters."""
    if len(text) > _QUOTE_CHARS:
        text = text[:_QUOTE_CHARS] + "..."
    return f"'{text}'"


def checked(value: int, text: str, key: str, kind: str) -> int:
    """``value`` if it fits ``kind``'s range, else InvalidArgument quoting ``text``."""
    lo, hi = RANGES[kind]
    if not lo <= value <= hi:
        raise InvalidArgument(f"{quote(text)} out of range for {key} ({kind}: {lo}..{hi})")
    return value


def _to_int(sign: str, digits: str) -> int:
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 10)
    return -value if sign else value


def parse_int(text: str, key: str = "value", kind: str = "u64") -> int:
    """An integer in decimal or ``0x`` hex, optional ``-``, within ``kind``'s range."""
    m = _NUMBER.fullmatch(text)
    if m is None:
        raise InvalidArgument(f"bad {kind} {quote(text)} for {key} (an integer, decimal or 0x hex)")
    return checked(_to_int(*m.groups()), text, key, kind)


# -- memparse -------------------------------------------------------------------------


def strtoull(text: str) -> tuple[int, int]:
    """``simple_strtoull(text, &end, 0)``: the value and how many characters it used.

    Base 0 as the kernel reads it: ``0x``/``0X`` followed by a hex digit is hex, another
    leading ``0`` is octal, anything else decimal. No digits gives ``(0, 0)``; ``0x``
    without a hex digit after it reads as the single digit ``0`` (``end`` after it).
    """
    if text[:2].lower() == "0x" and len(text) > 2 and text[2] in _HEX_DIGITS:
        base, start, digits = 16, 2, _HEX_DIGITS
    elif text[:1] == "0":
        base, start, digits = 8, 1, _OCT_DIGITS
    else:
        base, start, digits = 10, 0, _DEC_DIGITS
    end = start
    while end < len(text) and text[end] in digits:
        end += 1
    if end == start:
        return (0, 1) if base == 8 else (0, 0)
    return int(text[start:end], base), end


def memparse(text: str) -> tuple[int, int]:
    """The kernel's ``memparse(text, &end)``: the value (not wrapped) and ``end``.

    A pure model of ``lib/cmdline.c``: :func:`strtoull`, then one optional K/M/G/T/P/E
    (either case) multiplying by 1024^n. Unlike the kernel the value is not truncated to
    64 bits; :func:`parse_size` range-checks it.
    """
    value, end, _ = _memparse(text)
    return value, end


def _memparse(text: str) -> tuple[int, int, str]:
    value, end = strtoull(text)
    if end and end < len(text) and text[end] in _SUFFIXES:
        return value << _MEMPARSE_SHIFT[text[end].lower()], end + 1, text[end]
    return value, end, ""


def parse_size(text: str, key: str = "size") -> int:
    """A byte count with memparse's syntax, the whole text consumed (see the module doc)."""
    sign = text.startswith("-")
    body = text[1:] if sign else text
    value, end, unit = _memparse(body)
    if end == 0:
        raise InvalidArgument(f"bad size {quote(text)} for {key} "
                              "(an integer with an optional K, M, G, T, P or E suffix)")
    rest = body[end:]
    if rest and unit and rest.lower() == "ib":
        rest = ""  # IEC spelling of the same power of 1024
    if rest:
        raise InvalidArgument(_trailing_size_message(text, key, rest, unit))
    return checked(-value if sign else value, text, key, "size")


def _trailing_size_message(text: str, key: str, rest: str, unit: str) -> str:
    if unit and rest.lower() == "b":
        hint = (f"'{unit}{rest}' is ambiguous (SI would be powers of 1000): "
                f"write {unit} or {unit}iB for powers of 1024")
    elif not unit and rest.lower() == "b":
        hint = "bytes are a plain number, without B"
    elif rest[0].isspace():
        hint = "no spaces in a size"
    elif rest[0].isdigit():
        hint = f"{rest[0]} is not a digit here (a leading 0 makes the number octal)"
    else:
        hint = "an optional K, M, G, T, P or E suffix, or KiB .. EiB"
    return f"bad size {quote(text)} for {key}: {quote(rest)} left over ({hint})"


def parse_duration(text: str, key: str = "duration") -> int:
    """Nanoseconds: an integer with an optional ``ns``/``us``/``ms``/``s`` unit (s64)."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise InvalidArgument(f"bad duration {quote(text)} for {key} "
                              "(an integer with an optional ns, us, ms or s suffix)")
    sign, digits, unit = m.groups()
    ns = _to_int(sign, digits) * _DURATION_NS[unit.lower() if unit else None]
    return checked(ns, text, key, "duration")


# -- names ----------------------------------------------------------------------------


def _lookup_name(part: str, arg: ArgLike) -> int | None:
    """The value of a flag or enum name in any case, or of a number; None if neither."""
    if _NUMBER.fullmatch(part):
        return parse_int(part, arg.name, "u32")
    if part.isascii():
        for name, value in arg.names.items():
            if name.upper() == part.upper():
                return value
    return None


def _known(arg: ArgLike) -> str:
    return ", ".join(arg.names)


def parse_flags(text: str, arg: ArgLike) -> int:
    if not text:
        return 0
    value = 0
    for part in re.split(r"[,|]", text):
        if not part:
            raise InvalidArgument(f"empty flag name in {quote(text)} for {arg.name} "
                                  "(names joined by , or |)")
        bits = _lookup_name(part, arg)
        if bits is None:
            raise InvalidArgument(f"unknown flag {quote(part)} for {arg.name} (known: {_known(arg)})")
        value |= bits
    return value


def parse_enum(text: str, arg: ArgLike) -> int:
    value = _lookup_name(text, arg) if text else None
    if value is None:
        raise InvalidArgument(f"unknown value {quote(text)} for {arg.name} (known: {_known(arg)})")
    return value


def parse_list(text: str, key: str) -> list[int]:
    if not text:
        return []
    items = text.split(",")
    if "" in items:
        raise InvalidArgument(f"bad list {quote(text)} for {key} (integers separated by commas)")
    return [parse_int(item, key, "u32") for item in items]


PARSERS: Mapping[str, Callable[[str, ArgLike], Any]] = {
    "u32": lambda text, arg: parse_int(text, arg.name, "u32"),
    "u64": lambda text, arg: parse_int(text, arg.name, "u64"),
    "s64": lambda text, arg: parse_int(text, arg.name, "s64"),
    "size": lambda text, arg: parse_size(text, arg.name),
    "flags": parse_flags,
    "enum": parse_enum,
    "duration": lambda text, arg: parse_duration(text, arg.name),
    "list": lambda text, arg: parse_list(text, arg.name),
    "str": lambda text, arg: text,
}
"""kind -> parser(text, arg): the one table the protocol, HELP and the loader read."""


def parse_value(arg: ArgLike, text: str) -> Any:
    """The Python value of ``text`` for ``arg`` (``str``: as given, escapes already decoded)."""
    return PARSERS[arg.kind](text, arg)
