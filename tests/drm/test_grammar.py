"""Tests for vdrm.drm.grammar: the one size parser (memparse), the one duration parser, kinds."""

from __future__ import annotations

import argparse
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdrm.drm import grammar
from vdrm.drm.grammar import memparse, parse_duration, parse_size, strtoull
from vdrm.errors import InvalidArgument
from vdrm.fs import daemon
from vdrm.scenario.load import ScenarioError, loads

# -- a reference model of lib/cmdline.c memparse, written from its rules ------------------


def _reference_memparse(text: str) -> tuple[int, int]:
    """simple_strtoull(base 0) then one optional K/M/G/T/P/E, as a character walk."""
    i, base = 0, 10
    if len(text) >= 3 and text[0] == "0" and text[1] in "xX" and text[2] in "0123456789abcdefABCDEF":
        base, i = 16, 2
    elif text[:1] == "0":
        base, i = 8, 1
    digits = "0123456789abcdef"[:base]
    value, start = 0, i
    while i < len(text) and text[i].lower() in digits:
        value = value * base + digits.index(text[i].lower())
        i += 1
    if i == start and base != 8:
        return 0, 0
    if i < len(text) and text[i] in "kKmMgGtTpPeE":
        value <<= 10 * ("kmgtpe".index(text[i].lower()) + 1)
        i += 1
    return value, i


_SIZE_TEXT = st.text(alphabet="0123456789xXabcdefABCDEFkKmMgGtTpPeEiB -.", max_size=12)


@given(_SIZE_TEXT)
def test_memparse_matches_the_reference_model(text):
    """memparse reads the same value and stops at the same character as the model of lib/cmdline.c."""
    assert memparse(text) == _reference_memparse(text)


@given(_SIZE_TEXT)
def test_parse_size_is_memparse_with_nothing_left_over(text):
    """parse_size accepts exactly what memparse consumes whole (plus an iB after a suffix), and nothing else."""
    value, end = _reference_memparse(text)
    rest = text[end:]
    iec = end > 0 and text[end - 1] in "kKmMgGtTpPeE" and rest.lower() == "ib"
    whole = end > 0 and (rest == "" or iec) and value <= grammar.U64_MAX
    if whole:
        assert parse_size(text) == value
    else:
        with pytest.raises(InvalidArgument):
            parse_size(text)


@given(st.integers(min_value=0, max_value=grammar.U64_MAX))
def test_every_u64_round_trips_in_decimal_and_hex(n):
    """Any u64 written in decimal or 0x hex parses back to itself."""
    assert parse_size(str(n)) == n
    assert parse_size(hex(n)) == n


@given(st.integers(min_value=0, max_value=1 << 20), st.sampled_from("KMGTPE"))
def test_suffixes_are_powers_of_1024_in_either_case_and_iec(n, suffix):
    """K..E multiply by 1024^1..6, lower case too, and KiB..EiB mean the same."""
    shift = 10 * ("KMGTPE".index(suffix) + 1)
    if n << shift > grammar.U64_MAX:
        with pytest.raises(InvalidArgument, match="out of range"):
            parse_size(f"{n}{suffix}")
        return
    assert parse_size(f"{n}{suffix}") == parse_size(f"{n}{suffix.lower()}") == n << shift
    assert parse_size(f"{n}{suffix}iB") == n << shift


def test_strtoull_base_zero_rules():
    """0x is hex only before a hex digit, a leading 0 is octal, '0x' alone reads as 0."""
    assert strtoull("0x10") == (16, 4)
    assert strtoull("010") == (8, 3)
    assert strtoull("0x") == (0, 1)
    assert strtoull("09") == (0, 1)
    assert strtoull("x") == (0, 0)


# -- the disputed inputs: one answer for the protocol, the daemon and the loader ----------

DISPUTED = [
    # text, value or None (an error), what the error says
    ("8MB", None, "'MB' is ambiguous"),
    ("0x800000", 8 << 20, None),
    ("8 M", None, "no spaces"),
    (" 8M ", None, "bad size"),
    ("0x10K", 16 << 10, None),
    ("8Mi", None, "'i' left over"),
    ("8iB", None, "'iB' left over"),
    ("8B", None, "without B"),
    ("8mb", None, "is ambiguous"),
    ("8MiB", 8 << 20, None),
    ("8KB", None, "is ambiguous"),
    ("010M", 8 << 20, None),
    ("08M", None, "octal"),
]


def _via_protocol(text):
    from vdrm.drm.ioctl import Arg
    from vdrm.fs.protocol import parse_value
    return parse_value(Arg("size", "size"), text)


def _via_daemon(text):
    return daemon.parse_size(text)




def _via_loader(text):
    spec = loads(f'[device]\nram = "{text}"\n', "<t>") if text != "" else None
    return spec.ram_size


@pytest.mark.parametrize(("text", "value", "words"), DISPUTED)
def test_the_disputed_sizes_mean_one_thing_everywhere(text, value, words):
    """The protocol, --ram and the scenario loader accept and refuse the same sizes, with the same words."""
    for parse, errors in ((_via_protocol, InvalidArgument), (_via_daemon, argparse.ArgumentTypeError),
                          (_via_loader, ScenarioError)):
        if value is None:
            with pytest.raises(errors, match=re.escape(words)):
                parse(text)
        elif parse is _via_loader and value < (16 << 20):
            with pytest.raises(ScenarioError, match="ram"):  # the loader's own minimum
                parse(text)
        else:
            assert parse(text) == value


def test_scenario_bo_offsets_use_the_same_parser():
    """A touch offset 'bo+0x200000' and 'bo+2M' are the same address; 'bo+2MB' is refused."""
    base = ('[device]\nkernel = "6.18"\n[[client]]\nid = "c"\n[[client.bo]]\nid = "b"\nsize = "8M"\n'
            'flags = ["HEAP", "NOEXEC"]\n[[job]]\nclient = "c"\nduration = "1ms"\nbos = ["b"]\n')
    a = loads(base + 'touch = ["b+0x200000"]\n')
    b = loads(base + 'touch = ["b+2M"]\n')
    assert a.jobs[0].touch == b.jobs[0].touch
    with pytest.raises(ScenarioError, match="ambiguous"):
        loads(base + 'touch = ["b+2MB"]\n')


# -- durations ---------------------------------------------------------------------------


@given(st.integers(min_value=-(10**9), max_value=10**9), st.sampled_from(["", "ns", "us", "ms", "s", "MS"]))
def test_durations_scale_by_their_unit(n, unit):
    """A duration is an integer times its unit (ns by default), units in either case."""
    scale = {"": 1, "ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}[unit.lower()]
    assert parse_duration(f"{n}{unit}") == n * scale


@pytest.mark.parametrize("text", ["1.5ms", "12 ms", "5m", "ms", "", "5sec"])
def test_bad_durations_are_refused_with_the_accepted_syntax(text):
    """Fractions, spaces and unknown units are EINVAL naming the accepted units."""
    with pytest.raises(InvalidArgument, match="ns, us, ms or s"):
        parse_duration(text)


def test_every_kind_has_one_parser_and_one_syntax_line():
    """The kind table is complete: a parser and a HELP line for every argument kind."""
    assert set(grammar.PARSERS) == set(grammar.SYNTAX) == set(grammar.KINDS)
