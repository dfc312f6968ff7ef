"""Tests for vdrm.fs.protocol: request parsing, replies, HELP, and per-client buffering."""

from __future__ import annotations

import ast
import errno
import inspect
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdrm.drm.device import Driver
from vdrm.drm.ioctl import CORE_IOCTLS, Arg, Ioctl
from vdrm.errors import (Busy, InvalidArgument, KernelBug, NoEntry, NoSpace, TimedOut, VdrmError,
                         WouldBlock)
from vdrm.fs import protocol
from vdrm.fs.protocol import (
    HELP,
    INTERNAL_ERROR,
    LINE_TOO_LONG,
    MAX_LINE,
    ReplyQueue,
    RequestStream,
    build_table,
    encode_value,
    format_error,
    format_ok,
    handle,
    parse,
    parse_reply,
)

FLAGS = {"NOEXEC": 1, "HEAP": 2}
MODES = {"IDLE": 0, "BUSY": 1, "Mixed_Case": 7}


class FakeFile:
    """Stands in for a DrmFile: records every handler call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []


def _recorder(name: str, results: Any = None):
    def handler(file: FakeFile, **kwargs: Any) -> Any:
        file.calls.append((name, kwargs))
        return dict(kwargs) if results is None else results
    return handler


def _raiser(exc: BaseException):
    def handler(file: FakeFile, **kwargs: Any) -> Any:
        raise exc
    return handler


ECHO_ARGS = (
    Arg("n32", "u32", "a u32", default=0),
    Arg("n64", "u64", "a u64", default=0),
    Arg("s", "s64", "an s64", default=0),
    Arg("size", "size", "a size", default=0),
    Arg("flags", "flags", "some flags", default=0, names=FLAGS),
    Arg("mode", "enum", "a mode", default=0, names=MODES),
    Arg("timeout", "duration", "a duration", default=0),
    Arg("handles", "list", "some handles", default=()),
    Arg("label", "str", "a label", default=""),
)

RESULTS = {"handle": 7, "neg": -5, "offset": 0x1000_0000, "low": -16, "list": [1, 2, 3],
           "hexlist": [255, 16], "yes": True, "text": "a b%c=d\ne\t\x7fé"}

FAKE_IOCTLS = (
    Ioctl("ECHO", ECHO_ARGS, _recorder("ECHO"), "Return every argument as parsed."),
    Ioctl("CREATE_BO", (Arg("size", "size", "bytes to allocate"),
                        Arg("flags", "flags", "BO flags", default=0, names=FLAGS),
                        Arg("pad", "u32", "must be 0", default=0)),
          _recorder("CREATE_BO", {"handle": 1, "offset": 0x10000}), "Create a buffer object.",
          hex_results=frozenset({"offset"})),
    Ioctl("NEED", (Arg("handle", "u32", "required"), Arg("bo_handles", "list", "required too")),
          _recorder("NEED", {}), "Two required arguments."),
    Ioctl("RESULTS", (), _recorder("RESULTS", RESULTS), "Every kind of result.",
          hex_results=frozenset({"offset", "low", "hexlist"})),
    Ioctl("NOARGS", (), _recorder("NOARGS", {}), "Takes nothing, returns nothing."),
)

FAILING_IOCTLS = (
    Ioctl("ENOENT", (), _raiser(NoEntry("no handle 5")), "Fails with ENOENT."),
    Ioctl("NOMSG", (), _raiser(Busy()), "Fails with EBUSY and no message."),
    Ioctl("MULTILINE", (), _raiser(InvalidArgument("line one\nline two\x00")), "A two-line message."),
    Ioctl("WARN", (), _raiser(KernelBug("refcount went negative")), "Hits a kernel WARN."),
    Ioctl("BUG", (), _raiser(RuntimeError("oops")), "A vdrm bug."),
    Ioctl("FLOAT", (), _recorder("FLOAT", {"x": 1.5}), "Returns a float."),
    Ioctl("NONE", (), lambda file: None, "Forgets to return."),
    Ioctl("BADKEY", (), _recorder("BADKEY", {"Bad Key": 1}), "Returns a bad key."),
    Ioctl("WRONGSIG", (), lambda file, extra: {}, "Handler signature does not match."),
    Ioctl("INTERRUPT", (), _raiser(KeyboardInterrupt()), "Raises a BaseException."),
)

TABLE = build_table(FAKE_IOCTLS, FAILING_IOCTLS)


def request(line: bytes | str, file: FakeFile | None = None) -> bytes:
    data = line.encode() if isinstance(line, str) else line
    return handle(TABLE, file if file is not None else FakeFile(), data).line


def args_of(line: str) -> dict[str, Any]:
    return parse(TABLE, line.encode()).args


def einval(line: bytes | str) -> str:
    reply = request(line)
    assert reply.startswith(b"error EINVAL "), reply
    return reply.decode()


# -- the module stays sans-I/O ---------------------------------------------------------


def test_protocol_imports_no_io_library():
    """protocol.py imports neither pyfuse3 nor trio nor any I/O layer."""
    tree = ast.parse(inspect.getsource(protocol))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"pyfuse3", "trio", "socket", "asyncio", "select"}


# -- integers ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("42", 42), ("007", 7), ("0x2a", 42), ("0X2A", 42), ("0xffffffff", 2**32 - 1),
    ("4294967295", 2**32 - 1),
])
def test_u32_accepts_decimal_and_hex(text, value):
    """A u32 is read in decimal (leading zeros are not octal) or 0x hex, in any case."""
    assert args_of(f"ECHO n32={text}")["n32"] == value


@pytest.mark.parametrize(("key", "text", "value"), [
    ("n64", "18446744073709551615", 2**64 - 1), ("n64", "0xFFFFFFFFFFFFFFFF", 2**64 - 1),
    ("s", "-9223372036854775808", -2**63), ("s", "9223372036854775807", 2**63 - 1),
    ("s", "-0x10", -16), ("s", "-1", -1),
])
def test_u64_and_s64_accept_their_whole_range(key, text, value):
    """u64 and s64 take every value of their C type, s64 with a minus sign."""
    assert args_of(f"ECHO {key}={text}")[key] == value


@pytest.mark.parametrize(("key", "text", "kind"), [
    ("n32", "4294967296", "u32"), ("n32", "-1", "u32"), ("n32", "0x100000000", "u32"),
    ("n64", "18446744073709551616", "u64"), ("n64", "-1", "u64"),
    ("s", "9223372036854775808", "s64"), ("s", "-9223372036854775809", "s64"),
    ("n32", "9" * 4000, "u32"),
])
def test_integers_out_of_range_are_einval(key, text, kind):
    """A number outside its kind's range is EINVAL naming the key and the range."""
    reply = einval(f"ECHO {key}={text}")
    assert f"out of range for {key} ({kind}: " in reply


@pytest.mark.parametrize("text", ["", "12x", "0x", "1.5", "--1", "+1", "1_000", "1e3", "\u0663",
                                  "0b101", "0o7", "x12", "１２"])
def test_bad_integers_are_einval(text):
    """Anything but optional '-' and ASCII decimal or 0x hex digits is EINVAL for an integer."""
    reply = einval(f"ECHO n32={text}")
    assert "for n32" in reply


# -- sizes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("4096", 4096), ("0x1000", 4096), ("4K", 4096), ("4k", 4096), ("4KiB", 4096), ("4kib", 4096),
    ("2M", 2 << 20), ("2m", 2 << 20), ("2MiB", 2 << 20), ("1G", 1 << 30), ("1GiB", 1 << 30),
    ("0x10K", 16 << 10), ("0K", 0), ("16777215G", 16777215 << 30),
    ("4T", 4 << 40), ("1PiB", 1 << 50), ("1e", 1 << 60), ("010K", 8 << 10),
])
def test_size_suffixes_are_powers_of_1024(text, value):
    """A size is memparse's: a number (0x hex, 0 octal) with an optional K..E or KiB..EiB suffix."""
    assert args_of(f"ECHO size={text}")["size"] == value


@pytest.mark.parametrize("text", ["4KB", "4Z", "K", "4Ki", "4iB", "1.5M", "4\u212a", "08"])
def test_bad_sizes_are_einval(text):
    """Unknown suffixes (including SI 'KB' and the Kelvin sign) and fractions are EINVAL."""
    assert "for size" in einval(f"ECHO size={text}")


@pytest.mark.parametrize("text", ["17179869184G", "-4K", "-1"])
def test_sizes_out_of_u64_are_einval(text):
    """A size below 0 or above 2^64-1 after its suffix is EINVAL."""
    assert "out of range for size (size: 0..18446744073709551615)" in einval(f"ECHO size={text}")


# -- flags and enums -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("NOEXEC", 1), ("HEAP", 2), ("NOEXEC|HEAP", 3), ("noexec,heap", 3), ("Heap", 2),
    ("HEAP|HEAP", 2), ("3", 3), ("0x3", 3), ("NOEXEC|0x100", 0x101), ("", 0), ("0", 0),
])
def test_flags_join_names_and_numbers(text, value):
    """Flags are names in any case or numbers, joined by ',' or '|'; empty is 0."""
    assert args_of(f"ECHO flags={text}")["flags"] == value


def test_unknown_flag_names_the_known_ones():
    """An unknown flag name is EINVAL in exactly the issue's words."""
    assert request("CREATE_BO size=4K flags=FOO") == \
        b"error EINVAL unknown flag 'FOO' for flags (known: NOEXEC, HEAP)\n"


@pytest.mark.parametrize("text", ["NOEXEC||HEAP", "|HEAP", "HEAP,", "0x100000000", "-1", "HEAP+1"])
def test_bad_flags_are_einval(text):
    """Empty names, out-of-range numbers and stray characters in flags are EINVAL."""
    assert "for flags" in einval(f"ECHO flags={text}")


@pytest.mark.parametrize(("text", "value"), [
    ("IDLE", 0), ("busy", 1), ("Busy", 1), ("MIXED_CASE", 7), ("mixed_case", 7), ("7", 7), ("0x63", 99),
])
def test_enums_take_a_name_or_a_number(text, value):
    """An enum is one name in any case, or any u32 number (the handler judges unknown ones)."""
    assert args_of(f"ECHO mode={text}")["mode"] == value


@pytest.mark.parametrize("text", ["", "NOPE", "IDLE|BUSY", "IDLE,BUSY", "stra\u00dfe"])
def test_bad_enums_are_einval(text):
    """An unknown or combined enum name is EINVAL listing the known names."""
    assert "for mode (known: IDLE, BUSY, Mixed_Case)" in einval(f"ECHO mode={text}")


# -- durations ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("5", 5), ("5ns", 5), ("5us", 5_000), ("5ms", 5_000_000), ("5s", 5_000_000_000),
    ("5MS", 5_000_000), ("0x10us", 16_000), ("-1", -1), ("-2s", -2_000_000_000),
])
def test_durations_are_nanoseconds(text, value):
    """A duration is nanoseconds, or a number with an ns/us/ms/s suffix."""
    assert args_of(f"ECHO timeout={text}")["timeout"] == value


@pytest.mark.parametrize("text", ["5m", "5h", "1.5s", "s", "5sec"])
def test_bad_durations_are_einval(text):
    """Unknown units and fractions are EINVAL for a duration."""
    assert "for timeout" in einval(f"ECHO timeout={text}")


def test_durations_out_of_s64_are_einval():
    """A duration beyond s64 nanoseconds after its unit is EINVAL."""
    assert "out of range for timeout" in einval("ECHO timeout=9223372037s")


# -- lists ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("", []), ("1", [1]), ("1,2,0x3", [1, 2, 3]), ("0,0", [0, 0]), ("4294967295", [2**32 - 1]),
])
def test_lists_are_comma_separated_u32s(text, value):
    """A list is u32 integers separated by commas, and may be empty."""
    assert args_of(f"ECHO handles={text}")["handles"] == value


@pytest.mark.parametrize("text", ["1,,2", ",", "1,", ",1", "a", "1|2", "-1", "4294967296"])
def test_bad_lists_are_einval(text):
    """Empty elements, non-numbers and out-of-range elements are EINVAL for a list."""
    assert "for handles" in einval(f"ECHO handles={text}")


def test_list_default_is_a_fresh_list_each_call():
    """A handler that mutates its default list does not change the next call's default."""
    file = FakeFile()
    request("ECHO", file)
    file.calls[0][1]["handles"].append(99)
    request("ECHO", file)
    assert file.calls[1][1]["handles"] == []


# -- strings --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("hello", "hello"), ("a%20b", "a b"), ("100%25", "100%"), ("%3d", "="), ("x=y", "x=y"),
    ("caf%C3%A9", "caf\u00e9"), ("caf\u00e9", "caf\u00e9"), ("%0a%00", "\n\0"), ("", ""),
    ("%41%42C", "ABC"),
])
def test_strings_decode_percent_escapes(text, value):
    """A string is the value as written (split at the first '='), with %XX escapes decoded."""
    assert args_of(f"ECHO label={text}")["label"] == value


@pytest.mark.parametrize("text", ["%", "%2", "%zz", "a%g0", "%FF", "%C3"])
def test_bad_escapes_are_einval(text):
    """A '%' without two hex digits, or escapes that are not UTF-8, is EINVAL."""
    assert "for label" in einval(f"ECHO label={text}")


# -- the line as a whole ---------------------------------------------------------------


@pytest.mark.parametrize("verb", ["create_bo", "CREATE_BO", "Create_Bo", "cReAtE_bO"])
def test_verbs_are_case_insensitive(verb):
    """Any spelling of a verb's case calls the same ioctl."""
    assert request(f"{verb} size=4K") == b"ok handle=1 offset=0x10000\n"


def test_keys_are_lower_case():
    """An upper-case key is unknown, and the error lists the lower-case keys."""
    assert "unknown key 'SIZE' for CREATE_BO (known: size, flags, pad)" in einval("CREATE_BO SIZE=4K")


def test_handler_gets_every_declared_argument():
    """A handler is called once with every declared argument, defaults filled in, in order."""
    file = FakeFile()
    assert request("CREATE_BO size=2M", file) == b"ok handle=1 offset=0x10000\n"
    assert file.calls == [("CREATE_BO", {"size": 2 << 20, "flags": 0, "pad": 0})]
    assert list(file.calls[0][1]) == ["size", "flags", "pad"]


def test_spaces_tabs_and_line_endings_are_tolerated():
    """Runs of spaces and tabs separate tokens, and a trailing newline or CRLF is ignored."""
    file = FakeFile()
    for line in [b"  CREATE_BO \t size=4K\t\tflags=HEAP  ", b"CREATE_BO size=4K flags=HEAP\n",
                 b"CREATE_BO size=4K flags=HEAP\r\n", b"CREATE_BO flags=HEAP size=4K"]:
        assert handle(TABLE, file, line).line == b"ok handle=1 offset=0x10000\n"
    assert all(kwargs == {"size": 4096, "flags": 2, "pad": 0} for _, kwargs in file.calls)


def test_every_kind_in_one_request():
    """One request carrying every kind arrives at the handler as Python values."""
    line = ("echo n32=1 n64=0x10 s=-3 size=1M flags=noexec|heap mode=busy timeout=2ms "
            "handles=4,5 label=my%20bo")
    assert args_of(line) == {"n32": 1, "n64": 16, "s": -3, "size": 1 << 20, "flags": 3, "mode": 1,
                             "timeout": 2_000_000, "handles": [4, 5], "label": "my bo"}


@pytest.mark.parametrize(("line", "words"), [
    ("FROB", "unknown verb 'FROB' (HELP lists the verbs)"),
    ("CRATE_BO size=4K", "unknown verb 'CRATE_BO' (did you mean CREATE_BO? HELP lists the verbs)"),
    ("size=4K", "a request starts with a verb, not 'size=4K'"),
    ("123", "a request starts with a verb"),
    ("CREATE_BO", "CREATE_BO needs size= (HELP verb=CREATE_BO describes it)"),
    ("NEED", "NEED needs handle=, bo_handles="),
    ("CREATE_BO size=4K color=red", "unknown key 'color' for CREATE_BO (known: size, flags, pad)"),
    ("NOARGS x=1", "unknown key 'x' for NOARGS (NOARGS takes no arguments)"),
    ("CREATE_BO size=4K size=8K", "size= given twice"),
    ("CREATE_BO size=4K size=4K", "size= given twice"),
    ("CREATE_BO size", "'size' is not key=value"),
    ("CREATE_BO size=4K flags", "'flags' is not key=value"),
    ("CREATE_BO =4K", "unknown key ''"),
    ("CREATE_BO size=4K pad=0x1_0", "for pad"),
    ("", "empty request (HELP lists the verbs)"),
    ("   \t ", "empty request"),
    ("\r", "empty request"),
])
def test_malformed_requests_say_what_is_wrong(line, words):
    """Each malformed request is EINVAL with a message naming the problem, and calls nothing."""
    file = FakeFile()
    reply = request(line, file).decode()
    assert reply.startswith("error EINVAL ") and words in reply, reply
    assert file.calls == []


def test_line_of_max_line_bytes_is_accepted():
    """A request of exactly MAX_LINE bytes (plus its newline) is served."""
    line = "ECHO label=" + "x" * (MAX_LINE - len("ECHO label="))
    assert len(line) == MAX_LINE
    assert request(line + "\n").startswith(b"ok ")


def test_line_over_max_line_is_einval():
    """A request of MAX_LINE + 1 bytes is EINVAL, and the reply quotes none of it."""
    line = "ECHO label=" + "x" * (MAX_LINE + 1 - len("ECHO label="))
    reply = einval(line)
    assert f"line is {MAX_LINE + 1} bytes, longer than {MAX_LINE}" in reply and len(reply) < 100


def test_stream_marker_for_long_lines_is_einval():
    """The RequestStream's over-long marker is answered with EINVAL."""
    assert f"line longer than {MAX_LINE} bytes" in einval(LINE_TOO_LONG)


@pytest.mark.parametrize(("data", "words"), [
    (b"VERSION\x00", "NUL byte at offset 7"),
    (b"\x00", "NUL byte at offset 0"),
    (b"ECHO label=a\x01b", "control character 0x01 at offset 12"),
    (b"ECHO\x1b[2J", "control character 0x1b"),
    (b"ECHO label=\x7f", "control character 0x7f"),
    (b"ECHO\nECHO", "control character 0x0a at offset 4"),
    (b"ECHO label=\xff", "byte 0xff at offset 11 is not UTF-8"),
    (b"\xc3\x28", "byte 0xc3 at offset 0 is not UTF-8"),
    (b"\x89PNG\r\n\x1a\n", "control character"),
    (b"ECHO label=\xed\xa0\x80", "not UTF-8"),
])
def test_binary_garbage_is_einval(data, words):
    """NUL bytes, control characters and invalid UTF-8 are EINVAL naming the byte's offset."""
    assert words in einval(data)


# -- errors from handlers ------------------------------------------------------------------


@pytest.mark.parametrize("exc", [NoEntry("gone"), Busy("in use"), TimedOut("too slow"),
                                 NoSpace("full"), InvalidArgument("bad pad")])
def test_vdrm_errors_reply_with_their_errno_name(exc):
    """A VdrmError from a handler is 'error ENAME message' with the exception's errno name."""
    table = build_table([Ioctl("FAIL", (), _raiser(exc), "Fails.")])
    reply = handle(table, FakeFile(), b"FAIL")
    assert reply.line == f"error {exc.errname} {exc}\n".encode()
    assert reply.exception is None and not reply.ok


def test_enoent_reply_line():
    """A NoEntry from a handler reads 'error ENOENT <message>'."""
    assert request("ENOENT") == b"error ENOENT no handle 5\n"


def test_error_without_message_uses_strerror():
    """A VdrmError without a message is explained by the errno's strerror."""
    assert request("NOMSG") == b"error EBUSY Device or resource busy\n"


def test_error_messages_stay_on_one_line():
    """Newlines and NULs in a handler's message are percent-encoded, keeping one line."""
    assert request("MULTILINE") == b"error EINVAL line one%0Aline two%00\n"


def test_error_with_unknown_errno_keeps_its_number():
    """A VdrmError whose errno has no name replies 'error E<number>'."""
    class Odd(VdrmError):
        errno = 4095
    table = build_table([Ioctl("ODD", (), _raiser(Odd("strange")), "Fails oddly.")])
    assert handle(table, FakeFile(), b"ODD").line == b"error E4095 strange\n"


def test_internal_errors_are_eio_and_handed_back():
    """A non-VdrmError from a handler replies EIO and hands the very exception back."""
    reply = handle(TABLE, FakeFile(), b"BUG")
    assert reply.line == INTERNAL_ERROR == b"error EIO internal error (see the daemon log)\n"
    assert isinstance(reply.exception, RuntimeError) and str(reply.exception) == "oops"


def test_kernel_bug_keeps_its_message_and_is_handed_back():
    """A KernelBug (a WARN) replies 'error EIO message' and hands the exception back to log."""
    reply = handle(TABLE, FakeFile(), b"WARN")
    assert reply.line == b"error EIO refcount went negative\n"
    assert isinstance(reply.exception, KernelBug)


@pytest.mark.parametrize("verb", ["FLOAT", "NONE", "BADKEY", "WRONGSIG"])
def test_handler_bugs_are_internal_errors(verb):
    """Unsendable results, a missing return or a wrong signature are internal errors, never lost."""
    reply = handle(TABLE, FakeFile(), verb.encode())
    assert reply.line == INTERNAL_ERROR and isinstance(reply.exception, TypeError)


def test_would_block_is_eagain_and_handed_back():
    """A handler's WouldBlock is not a bug: EAGAIN, with the exception for the I/O layer to wait on."""
    table = build_table([Ioctl("WAIT", (), _raiser(WouldBlock(123)), "Waits.")])
    reply = handle(table, FakeFile(), b"WAIT")
    assert reply.line == b"error EAGAIN would block until 123 ns\n"
    assert isinstance(reply.exception, WouldBlock) and reply.exception.until_ns == 123


def test_base_exceptions_are_not_swallowed():
    """A KeyboardInterrupt in a handler propagates instead of becoming a reply."""
    with pytest.raises(KeyboardInterrupt):
        handle(TABLE, FakeFile(), b"INTERRUPT")


def test_malformed_and_handler_errors_record_no_exception():
    """Only internal errors set Reply.exception; EINVAL and ENOENT replies leave it None."""
    for line in [b"", b"FROB", b"ENOENT", b"\xff"]:
        assert handle(TABLE, FakeFile(), line).exception is None


# -- results ----------------------------------------------------------------------------


def test_results_are_formatted_in_handler_order():
    """Results keep their order: decimal ints, lower-case 0x for hex keys, lists, escaped strings."""
    assert request("RESULTS") == (
        b"ok handle=7 neg=-5 offset=0x10000000 low=-0x10 list=1,2,3 hexlist=0xff,0x10 yes=1 "
        b"text=a%20b%25c%3Dd%0Ae%09%7F%C3%A9\n")


def test_no_results_is_a_bare_ok():
    """A handler returning an empty dict replies 'ok'."""
    assert request("NOARGS") == b"ok\n"


def test_parse_reply_decodes_what_format_ok_encodes():
    """parse_reply gives back the handler's string results exactly."""
    reply = parse_reply(request("RESULTS"))
    assert reply.ok and reply.fields["text"] == RESULTS["text"]
    assert reply.fields["offset"] == "0x10000000" and reply.fields["list"] == "1,2,3"


def test_parse_reply_reads_errors():
    """parse_reply splits an error line into its errno name and message."""
    reply = parse_reply(b"error ENOENT no handle 5\n")
    assert (reply.ok, reply.errname, reply.message, reply.fields) == (False, "ENOENT", "no handle 5", {})


@pytest.mark.parametrize("line", [b"maybe x=1\n", b"ok x\n", b"ok x=1 x=2\n", b"ok x=%zz\n", b"ok\nok\n"])
def test_parse_reply_rejects_non_replies(line):
    """parse_reply raises ValueError for a line handle could not have produced."""
    with pytest.raises(ValueError):
        parse_reply(line)


def test_format_error_and_format_ok_are_single_lines():
    """The reply formatters end with exactly one newline and encode everything else."""
    assert format_error("EINVAL", "a\nb") == b"error EINVAL a%0Ab\n"
    assert format_ok({"k": "x\ny"}) == b"ok k=x%0Ay\n"


@given(st.text())
def test_string_results_round_trip(text):
    """Any string result, percent-encoded into a reply, decodes back to itself."""
    token = encode_value(text)
    assert token.isascii() and " " not in token and "=" not in token and "\n" not in token
    assert parse_reply(format_ok({"s": text})).fields["s"] == text


@given(st.integers(min_value=-2**63, max_value=2**63 - 1), st.booleans())
def test_integer_results_parse_back_as_s64(value, hex_):
    """An integer result, decimal or hex, is a valid s64 request value of the same number."""
    token = parse_reply(format_ok({"v": value}, {"v"} if hex_ else ())).fields["v"]
    assert args_of(f"ECHO s={token}")["s"] == value


# -- HELP --------------------------------------------------------------------------------


def test_help_lists_the_verbs_in_table_order():
    """HELP answers one line listing every verb of the table, in declaration order."""
    assert request("HELP") == ("ok verbs=" + ",".join(TABLE) + "\n").encode()
    assert request("help") == request("HELP")


def test_help_describes_a_verb_as_in_the_issue():
    """HELP verb=CREATE_BO shows name:kind, flag names and defaults, and the encoded doc."""
    expected = (b"ok verb=CREATE_BO args=size:size,flags:flags(NOEXEC|HEAP)=0,pad:u32=0 "
                b"doc=Create%20a%20buffer%20object.\n")
    assert request("HELP verb=CREATE_BO") == expected
    assert request("help verb=create_bo") == expected


def test_help_describes_one_argument():
    """HELP verb=V arg=K gives the argument's kind, default, names with values, syntax and doc."""
    fields = parse_reply(request("HELP verb=CREATE_BO arg=flags")).fields
    assert fields == {"verb": "CREATE_BO", "arg": "flags", "kind": "flags", "required": "0",
                      "default": "0", "values": "NOEXEC:0x1,HEAP:0x2",
                      "syntax": "names (any case) or numbers joined by , or |; empty is 0",
                      "doc": "BO flags"}
    required = parse_reply(request("HELP verb=CREATE_BO arg=size")).fields
    assert required["required"] == "1" and "default" not in required
    assert parse_reply(request("HELP verb=ECHO arg=mode")).fields["values"] == "IDLE:0,BUSY:1,Mixed_Case:7"


def test_help_describes_itself():
    """HELP verb=HELP shows HELP's own arguments, so the arg= form can be discovered."""
    fields = parse_reply(request("HELP verb=HELP")).fields
    assert fields["args"] == "verb:str=,arg:str=" and "arg=KEY" in fields["doc"]


def test_help_shows_defaults_by_name():
    """Enum and flag defaults are shown by name, string defaults percent-encoded."""
    args = (Arg("mode", "enum", default=1, names=MODES), Arg("f", "flags", default=3, names=FLAGS),
            Arg("g", "flags", default=0x10, names=FLAGS), Arg("label", "str", default="a b"),
            Arg("ids", "list", default=(1, 2)), Arg("t", "duration", default="1ms"),
            Arg("csv", "str", default="a,b"))
    table = build_table([Ioctl("DEFAULTS", args, _recorder("DEFAULTS"), "Defaults.")])
    line = handle(table, FakeFile(), b"HELP verb=DEFAULTS").line
    assert line.startswith(b"ok verb=DEFAULTS args=mode:enum(IDLE|BUSY|Mixed_Case)=BUSY,"
                           b"f:flags(NOEXEC|HEAP)=NOEXEC|HEAP,g:flags(NOEXEC|HEAP)=0x10,"
                           b"label:str=a%20b,ids:list=1%2C2,t:duration=1000000,csv:str=a%2Cb ")
    file = FakeFile()
    handle(table, file, b"DEFAULTS")
    assert file.calls[0][1] == {"mode": 1, "f": 3, "g": 0x10, "label": "a b", "ids": [1, 2],
                                "t": 1_000_000, "csv": "a,b"}
    fields = parse_reply(handle(table, file, b"HELP verb=DEFAULTS arg=ids").line).fields
    assert fields["default"] == "1,2"


@pytest.mark.parametrize(("line", "words"), [
    ("HELP verb=FROB", "unknown verb 'FROB'"),
    ("HELP arg=size", "HELP arg= needs verb="),
    ("HELP verb=CREATE_BO arg=color", "unknown key 'color' for CREATE_BO (known: size, flags, pad)"),
    ("HELP verb=NOARGS arg=x", "(known: none)"),
    ("HELP topic=x", "unknown key 'topic' for HELP (known: verb, arg)"),
    ("HELP verb", "'verb' is not key=value"),
])
def test_help_errors_are_einval(line, words):
    """HELP with an unknown verb, argument or key is EINVAL saying which."""
    assert words in einval(line)


def test_help_works_for_every_core_ioctl():
    """Every real DRM core ioctl is described by a HELP line that parse_reply can read."""
    table = build_table(CORE_IOCTLS)
    verbs = parse_reply(handle(table, None, b"HELP").line).fields["verbs"].split(",")
    assert verbs == [i.name for i in CORE_IOCTLS]
    for verb in verbs:
        fields = parse_reply(handle(table, None, f"HELP verb={verb}".encode()).line).fields
        assert fields["verb"] == verb
        for arg in table[verb].args:
            reply = handle(table, None, f"HELP verb={verb} arg={arg.name}".encode())
            assert parse_reply(reply.line).fields["kind"] == arg.kind


def test_core_set_client_name_reaches_the_file():
    """A real core ioctl runs through the protocol against a file-like object."""
    class NamedFile:
        name = None
        dev = type("Dev", (), {"driver": Driver()})()  # a driver with every release feature

        def set_client_name(self, name: str) -> None:
            self.name = name
    file = NamedFile()
    table = build_table(CORE_IOCTLS)
    assert handle(table, file, b"set_client_name name=my-app").line == b"ok\n"
    assert file.name == "my-app"


# -- building tables -----------------------------------------------------------------------


def test_build_table_merges_groups_in_order():
    """build_table keeps every group's ioctls, in the order given."""
    assert list(build_table(CORE_IOCTLS, FAKE_IOCTLS)) == \
        [i.name for i in CORE_IOCTLS] + [i.name for i in FAKE_IOCTLS]


def _noop(file: Any, **kwargs: Any) -> dict[str, Any]:
    return {}


@pytest.mark.parametrize(("ioctls", "words"), [
    ([Ioctl("A", (), _noop, ""), Ioctl("A", (), _noop, "")], "declared twice"),
    ([Ioctl("HELP", (), _noop, "")], "HELP"),
    ([Ioctl("lower", (), _noop, "")], "upper-case"),
    ([Ioctl("A", (Arg("Size", "u32"),), _noop, "")], "lower-case"),
    ([Ioctl("A", (Arg("x", "u32"), Arg("x", "u32")), _noop, "")], "unique"),
    ([Ioctl("A", (Arg("f", "flags", default=0),), _noop, "")], "needs unique names"),
    ([Ioctl("A", (Arg("f", "enum", default=0, names={"a": 0, "A": 1}),), _noop, "")], "unique names"),
    ([Ioctl("A", (Arg("f", "flags", default=0, names={"A B": 1}),), _noop, "")], "unique names"),
    ([Ioctl("A", (Arg("x", "size", default="4Q"),), _noop, "")], "bad default"),
    ([Ioctl("A", (Arg("x", "list", default=5),), _noop, "")], "bad default"),
    ([Ioctl("A", (Arg("x", "list", default=(1, "2")),), _noop, "")], "bad default"),
    ([Ioctl("A", (Arg("x", "u64", default=1.5),), _noop, "")], "bad default"),
    ([Ioctl("A", (Arg("x", "str", default=0),), _noop, "")], "bad default"),
    ([Ioctl("A", (Arg("f", "enum", default=0, names={"A": -1}),), _noop, "")], "must be u32"),
    ([Ioctl("A", (), _noop, "", hex_results=frozenset({"Off"}))], "hex result"),
])
def test_build_table_rejects_declarations_it_cannot_serve(ioctls, words):
    """build_table raises ValueError naming a declaration the protocol could not serve."""
    with pytest.raises(ValueError, match=words):
        build_table(ioctls)


def test_sentinel_defaults_reach_the_handler():
    """A default no user can type (engine=-1: derive it) is allowed, passed on and shown."""
    table = build_table([Ioctl("SUBMIT", (Arg("engine", "enum", default=-1, names={"JS0": 0, "JS1": 1}),
                                          Arg("label", "str", default="\0")),
                               _recorder("SUBMIT", {}), "Submit.")])
    file = FakeFile()
    assert handle(table, file, b"SUBMIT").ok
    assert file.calls == [("SUBMIT", {"engine": -1, "label": "\0"})]
    assert b"args=engine:enum(JS0|JS1)=-1,label:str=%00 " in handle(table, file, b"HELP verb=SUBMIT").line
    assert "out of range for engine" in handle(table, file, b"SUBMIT engine=-1").line.decode()


def test_help_verb_is_not_in_any_table():
    """HELP is the protocol's own declaration, answered without a table entry."""
    assert HELP.name == "HELP" and "HELP" not in TABLE


# -- the request stream -------------------------------------------------------------------


def test_stream_echo_sends_one_line_per_write():
    """A newline-terminated write is one request, without its newline."""
    stream = RequestStream()
    assert stream.feed(b"VERSION\n") == [b"VERSION"]
    assert stream.pending == 0


def test_stream_write_without_newline_is_a_request():
    """printf 'VERSION' (no newline) is a complete request."""
    assert RequestStream().feed(b"VERSION") == [b"VERSION"]


def test_stream_splits_multi_line_writes():
    """One write carrying several lines yields each, in order, empty ones included."""
    assert RequestStream().feed(b"A\nB\n\nC\n") == [b"A", b"B", b"", b"C"]


def test_stream_joins_a_line_cut_by_a_buffered_writer():
    """A write ending mid-line after a newline is completed by the next write."""
    stream = RequestStream()
    assert stream.feed(b"A\nGEM_CLOSE han") == [b"A"]
    assert stream.pending == len(b"GEM_CLOSE han")
    assert stream.feed(b"dle=1\nB\n") == [b"GEM_CLOSE handle=1", b"B"]
    assert stream.feed(b"A\nB") == [b"A"]
    assert stream.feed(b"C") == [b"BC"]


def test_stream_close_hands_back_an_unfinished_line():
    """close() returns a held tail as the last request and leaves the stream empty."""
    stream = RequestStream()
    stream.feed(b"A\nB")
    assert stream.close() == [b"B"]
    assert stream.close() == [] and stream.pending == 0


def test_stream_empty_write_yields_nothing():
    """A zero-byte write yields no request."""
    assert RequestStream().feed(b"") == []


def test_stream_keeps_carriage_returns_for_handle():
    """A CRLF line keeps its '\\r', which handle ignores."""
    lines = RequestStream().feed(b"HELP\r\n")
    assert lines == [b"HELP\r"] and handle(TABLE, None, lines[0]).ok


def test_stream_over_long_line_is_reported_once():
    """An over-long line in a write becomes one LINE_TOO_LONG; the lines around it survive."""
    stream = RequestStream(max_line=8)
    assert stream.feed(b"A\n" + b"x" * 9 + b"\nB\n") == [b"A", LINE_TOO_LONG, b"B"]
    assert stream.feed(b"x" * 8 + b"\n") == [b"x" * 8]
    assert stream.feed(b"y" * 100) == [LINE_TOO_LONG]  # a write without a newline ends its line
    assert stream.feed(b"C\n") == [b"C"]  # so the next line is not swallowed
    assert stream.feed(b"z" * 4096) == [LINE_TOO_LONG]  # a whole block: the line goes on
    assert stream.feed(b"more\n") == []
    assert stream.feed(b"D\n") == [b"D"]


def test_a_write_cut_into_fuse_chunks_is_one_over_long_line():
    """A 1 MiB write that FUSE delivers as 128 KiB WRITE requests gets exactly one LINE_TOO_LONG."""
    stream = RequestStream()
    data = b"x" * (1 << 20) + b"\n"
    chunks = [data[i:i + (128 << 10)] for i in range(0, len(data), 128 << 10)]
    assert [line for chunk in chunks for line in stream.feed(chunk)] == [LINE_TOO_LONG]
    assert stream.feed(b"VERSION\n") == [b"VERSION"]


def test_stream_over_long_tail_is_discarded_up_to_the_next_newline():
    """An over-long held tail is reported at once and its continuation is dropped silently."""
    stream = RequestStream(max_line=8)
    assert stream.feed(b"A\n" + b"x" * 9) == [b"A", LINE_TOO_LONG]
    assert stream.pending == 0
    assert stream.feed(b"x" * 50 + b"\nB\n") == [b"B"]
    assert stream.feed(b"A\n" + b"x" * 9) == [b"A", LINE_TOO_LONG]
    assert stream.feed(b"rest without newline") == []  # ends the discarded line
    assert stream.feed(b"C") == [b"C"]
    assert stream.feed(b"D\n") == [b"D"]


def test_stream_line_over_long_across_writes_is_reported():
    """A held tail that grows past the limit with the next write is one LINE_TOO_LONG."""
    stream = RequestStream(max_line=8)
    assert stream.feed(b"A\nxxxxx") == [b"A"]
    assert stream.feed(b"xxxx\nB\n") == [LINE_TOO_LONG, b"B"]


def test_stream_passes_binary_garbage_to_handle():
    """Binary garbage comes out as lines that handle answers with one error each."""
    garbage = bytes(range(256)) * 3
    stream = RequestStream()
    lines = stream.feed(garbage)
    assert len(lines) == garbage.count(b"\n")  # the tail after the last newline is held
    lines += stream.close()
    assert len(lines) == garbage.count(b"\n") + 1
    assert all(handle(TABLE, None, line).line.startswith(b"error EINVAL ") for line in lines)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_stream_bounds_what_it_holds(writes):
    """For any writes, lines are newline-free and at most max_line, and at most max_line is held."""
    stream = RequestStream(max_line=16)
    for data in writes:
        for line in stream.feed(data):
            assert line == LINE_TOO_LONG or (b"\n" not in line and len(line) <= 16)
        assert stream.pending <= 16


@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), min_size=1, max_size=30),
       st.data())
def test_stream_reassembles_lines_cut_anywhere_after_a_newline(lines, data):
    """A stream of lines cut into writes that each carry a newline yields exactly those lines."""
    payload = b"".join(line + b"\n" for line in lines)
    ends = [i + 1 for i, b in enumerate(payload) if b == ord("\n")]
    cuts = []
    for end, next_end in zip(ends, ends[1:]):
        if data.draw(st.booleans()):
            # cut after this line's newline and before the next one's
            cuts.append(data.draw(st.integers(min_value=end, max_value=next_end - 1)))
    stream, out, prev = RequestStream(max_line=64), [], 0
    for cut in [*cuts, len(payload)]:
        out += stream.feed(payload[prev:cut])
        prev = cut
    assert out == lines and stream.pending == 0


# -- the reply queue ---------------------------------------------------------------------


def test_reply_queue_reads_empty_as_eof():
    """An empty queue reads b'' at once and has nothing pending."""
    queue = ReplyQueue()
    assert queue.read(4096) == b"" and queue.pending_bytes == 0


def test_reply_queue_reads_one_reply_per_read():
    """A large read returns exactly one reply, the oldest first."""
    queue = ReplyQueue()
    queue.push(b"ok a=1\n")
    queue.push(b"ok b=2\n")
    assert queue.pending_bytes == 14
    assert queue.read(4096) == b"ok a=1\n"
    assert queue.read(4096) == b"ok b=2\n"
    assert queue.read(4096) == b""


def test_reply_queue_partial_reads():
    """Small reads take a reply piece by piece without crossing into the next one."""
    queue = ReplyQueue()
    queue.push(b"ok handle=1\n")
    queue.push(b"ok\n")
    assert queue.read(3) == b"ok "
    assert queue.read(100) == b"handle=1\n"
    assert queue.read(0) == b"" and queue.read(-1) == b""
    assert queue.read(1) == b"o" and queue.read(1) == b"k" and queue.read(1) == b"\n"
    assert queue.read(1) == b""


def test_reply_queue_ignores_empty_pushes():
    """Pushing b'' queues nothing."""
    queue = ReplyQueue()
    queue.push(b"")
    assert queue.pending_bytes == 0 and queue.read(10) == b""


def test_reply_queue_drops_oldest_with_one_marker():
    """Over the limit, the oldest replies give way to one ENOBUFS line counting them."""
    queue = ReplyQueue(limit=200)
    for i in range(10):
        queue.push(f"ok n={i:02d}".ljust(29).encode() + b"\n")
        assert queue.pending_bytes <= 200
    replies = []
    while chunk := queue.read(4096):
        replies.append(chunk)
    assert replies[0].startswith(b"error ENOBUFS ") and replies[0].endswith(b"\n")
    dropped = int(replies[0].split()[2])
    assert dropped == queue.dropped and dropped + len(replies) - 1 == 10
    assert replies[-1].startswith(b"ok n=09")
    assert [int(r[5:7]) for r in replies[1:]] == list(range(dropped, 10))


def test_reply_queue_never_drops_the_reply_being_read():
    """A reply read halfway survives an overflow, and the marker follows it."""
    queue = ReplyQueue(limit=150)
    queue.push(b"ok first=" + b"1" * 40 + b"\n")
    assert queue.read(5) == b"ok fi"
    for _ in range(5):
        queue.push(b"ok next=" + b"2" * 40 + b"\n")
    assert queue.read(4096) == b"rst=" + b"1" * 40 + b"\n"
    assert queue.read(4096).startswith(b"error ENOBUFS ")
    assert queue.read(4096).startswith(b"ok next=")


def test_reply_queue_keeps_the_newest_even_if_too_big():
    """A single reply larger than the limit is still delivered whole."""
    queue = ReplyQueue(limit=10)
    queue.push(b"ok a=1\n")
    queue.push(b"ok big=" + b"x" * 50 + b"\n")
    assert queue.read(4096).startswith(b"error ENOBUFS 1 unread reply dropped")
    assert queue.read(4096) == b"ok big=" + b"x" * 50 + b"\n"


def test_reply_queue_new_overflow_after_marker_read_gets_a_new_marker():
    """Replies dropped after a marker was read are counted by a fresh marker."""
    queue = ReplyQueue(limit=60)
    for _ in range(3):
        queue.push(b"ok " + b"x" * 30 + b"\n")
    assert queue.read(4096).startswith(b"error ENOBUFS 2 unread replies dropped")
    for _ in range(3):
        queue.push(b"ok " + b"y" * 30 + b"\n")
    assert queue.read(4096).startswith(b"error ENOBUFS 3 unread replies dropped")
    assert queue.read(4096) == b"ok " + b"y" * 30 + b"\n"
    assert queue.read(4096) == b"" and queue.dropped == 5


@settings(max_examples=200)
@given(st.lists(st.one_of(st.binary(min_size=1, max_size=50).map(lambda b: ("push", b)),
                          st.integers(min_value=1, max_value=64).map(lambda n: ("read", n))),
                max_size=60))
def test_reply_queue_stays_within_its_limit(ops):
    """Whatever is pushed and read, at most the limit waits unless one newest reply alone exceeds it."""
    queue = ReplyQueue(limit=100)
    for op, arg in ops:
        if op == "push":
            queue.push(arg)
            assert queue.pending_bytes <= 100 or queue.pending_replies == 1
        else:
            assert len(queue.read(arg)) <= arg


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=20),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1))
def test_reply_queue_under_limit_delivers_every_byte(replies, sizes):
    """Below the limit, reads of any sizes deliver the pushed replies exactly, in order."""
    queue = ReplyQueue()
    for r in replies:
        queue.push(r)
    got, i = b"", 0
    while chunk := queue.read(sizes[i % len(sizes)]):
        got += chunk
        i += 1
    assert got == b"".join(replies) and queue.dropped == 0


# -- the properties that keep the daemon alive ----------------------------------------------


def _assert_one_reply_line(reply: protocol.Reply) -> None:
    line = reply.line
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b"ok") or line.startswith(b"error E")
    assert line.isascii()
    parse_reply(line)


@settings(max_examples=500)
@given(st.binary(max_size=MAX_LINE + 100))
def test_handle_answers_any_bytes_with_one_line(data):
    """For arbitrary bytes, handle never raises and returns one ok/error line."""
    _assert_one_reply_line(handle(TABLE, FakeFile(), data))


_VERBS = [*(v for v in TABLE if v != "INTERRUPT"), "HELP", "help", "create_bo", "FROB"]
_KEYS = [a.name for a in ECHO_ARGS] + ["pad", "verb", "arg", "bo_handles", "SIZE", "x", ""]
_VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "0x10", "4K", "2MiB", "NOEXEC|HEAP", "busy", "5ms", "1,2",
                     "", "%20", "%zz", "FOO", "18446744073709551616", "CREATE_BO", "size"]),
    st.text(max_size=12).filter(lambda s: " " not in s and "\t" not in s),
)
_TOKENS = st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(_KEYS), _VALUES),
                    st.sampled_from(_KEYS))


@settings(max_examples=500)
@given(st.sampled_from(_VERBS), st.lists(_TOKENS, max_size=6))
def test_handle_answers_any_well_shaped_request_with_one_line(verb, tokens):
    """For requests made of real verbs, keys and odd values, handle returns one ok/error line."""
    reply = handle(TABLE, FakeFile(), " ".join([verb, *tokens]).encode("utf-8", "surrogatepass"))
    if verb not in ("BUG", "FLOAT", "NONE", "BADKEY", "WRONGSIG", "WARN"):
        assert reply.exception is None
    _assert_one_reply_line(reply)


def test_every_errno_name_is_what_replies_use():
    """An error reply's name is errno.errorcode's name for the exception's errno."""
    assert NoEntry().errname == errno.errorcode[errno.ENOENT] == "ENOENT"
    assert request("ENOENT").split()[1] == b"ENOENT"
