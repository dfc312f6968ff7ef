"""The request protocol: one ioctl per line, written to an open card or render file.

pyfuse3 has no ioctl, so a client writes a request line to its open DRM file and reads
one reply line back from the same file. This module is the pure protocol core, sans-I/O
like h11: it turns bytes into a call of an :class:`~vdrm.drm.ioctl.Ioctl` handler and the
result into reply bytes. It never touches FUSE, trio or a file descriptor; the Operations
adapter owns one :class:`RequestStream` and one :class:`ReplyQueue` per open file and
calls :func:`handle` for each line.

Requests::

    VERB key=value ...

* Tokens are separated by spaces or tabs. The verb is an ioctl name in any case
  (``create_bo`` is ``CREATE_BO``); keys are the lower-case argument names, each at most
  once, and every required one present. Omitted optional keys take their declared default.
* Values, by the argument's kind (:mod:`vdrm.drm.grammar`, shared with the daemon's options
  and the scenario loader): integers in decimal or ``0x`` hex, range-checked (``u32``,
  ``u64``, ``s64``); ``size`` as the kernel's ``memparse`` reads it (``0x`` hex, ``0`` octal,
  ``K`` .. ``E`` or ``KiB`` .. ``EiB``, powers of 1024; ``8MB`` is refused); ``flags`` as
  names or numbers joined by ``,`` or ``|`` (empty is 0); ``enum`` as a name or a number
  (flag and enum names in any case, numbers u32); ``duration`` in nanoseconds with an optional ``ns``/``us``/``ms``/``s``
  suffix (s64); ``list`` as u32 integers separated by ``,`` (empty is the empty list);
  ``str`` as written, with ``%XX`` escapes decoded (``%20`` a space, ``%25`` a percent).
* A line is at most :data:`MAX_LINE` bytes of UTF-8 text: no NUL or other control
  characters except tab, and a trailing ``\\r`` is ignored.
* ``HELP`` is answered here: ``HELP`` lists the verbs, ``HELP verb=NAME`` describes one,
  ``HELP verb=NAME arg=KEY`` one of its arguments (kind, default, names, syntax).

Replies are one ASCII line each, ``\\n``-terminated:

* ``ok key=value ...``: the handler's results in its order. Integers are decimal, or
  ``0x`` lower-case hex for keys in ``Ioctl.hex_results``; lists are comma-separated;
  strings are percent-encoded (space, ``%``, ``=``, and every byte outside printable
  ASCII), so a value never contains a space and :func:`parse_reply` can decode it. The one
  exception is ``args=`` in ``HELP verb=...``, which shows defaults as ``name:kind=default``
  (defaults percent-encoded, ``,`` included): split a token at its first ``=``.
* ``error ENAME message``: ``ENAME`` is the errno name; the message is free text (control
  and non-ASCII bytes percent-encoded). Every malformed request is ``EINVAL``; a
  :class:`~vdrm.errors.VdrmError` from a handler is its own errno. Any other exception is a
  vdrm bug: the reply is :data:`INTERNAL_ERROR` and the exception is handed back in
  :attr:`Reply.exception` for the I/O layer to log, as is a
  :class:`~vdrm.errors.KernelBug` (a WARN), whose reply keeps its message.
* A handler raising :class:`~vdrm.errors.WouldBlock` (not an error: a wait on the real
  clock) gets ``error EAGAIN ...`` with the exception in :attr:`Reply.exception`; the I/O
  layer does not send that reply but waits until ``until_ns`` and handles the same line
  again. The protocol itself never blocks.

Invariants: :func:`handle` never raises, and returns exactly one line starting with
``ok`` or ``error E``; a handler is called only with every declared argument present and
parsed; a reply queue holds at most its limit, or else only the reply being read, one
``ENOBUFS`` line and the newest reply.
"""

from __future__ import annotations

import difflib
import errno as _errno
import os
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from vdrm.drm import grammar
from vdrm.drm.ioctl import Arg, Ioctl, IoctlTable, Request, dispatch
from vdrm.drm.ioctl import build_table as _build_engine_table
from vdrm.errors import InvalidArgument, KernelBug, VdrmError, WouldBlock

MAX_LINE = 4096  # bytes in one request, without its newline
BLOCK_BYTES = 4096  # a write without a newline of a multiple of this is a line that goes on
CHUNK_BYTES = 64 << 10  # ...and so is one this long (a FUSE chunk of an unaligned large write)
REPLY_QUEUE_BYTES = 1 << 20  # unread replies kept per open file

LINE_TOO_LONG = b"\0line too long"
"""What :meth:`RequestStream.feed` yields in place of an over-long line (NUL: never a request)."""

INTERNAL_ERROR = b"error EIO internal error (see the daemon log)\n"

U32_MAX = grammar.U32_MAX
U64_MAX = grammar.U64_MAX
S64_MIN = grammar.S64_MIN
S64_MAX = grammar.S64_MAX

_KIND_SYNTAX = grammar.SYNTAX

_VERB = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_KEY = re.compile(r"[a-z][a-z0-9_]*")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HEX = frozenset("0123456789abcdefABCDEF")



def _help_placeholder(file: Any, **kwargs: Any) -> dict[str, Any]:
    """HELP needs the table, so :func:`handle` answers it without calling this."""
    raise KernelBug("HELP reached its placeholder handler")


HELP = Ioctl(
    "HELP",
    (Arg("verb", "str", "the verb to describe; none lists the verbs", default=""),
     Arg("arg", "str", "one of the verb's arguments to describe", default="")),
    _help_placeholder,
    "List the verbs; with verb=NAME describe one; with verb=NAME arg=KEY describe one of its arguments.",
)
"""The one verb the protocol answers itself; a table may not declare it."""


# -- replies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """The answer to one request: the reply line, and the exception if vdrm has a bug."""

    line: bytes  # one line, b"\n"-terminated
    exception: BaseException | None = None  # internal errors, KernelBug, WouldBlock

    @property
    def ok(self) -> bool:
        return self.line.startswith(b"ok")


_UNSAFE: dict[frozenset[int], "re.Pattern[str]"] = {}  # safe set -> a character outside it


def _unsafe(safe: frozenset[int]) -> "re.Pattern[str]":
    pattern = _UNSAFE.get(safe)
    if pattern is None:
        allowed = "".join(re.escape(chr(b)) for b in sorted(safe) if b < 0x80)
        pattern = _UNSAFE[safe] = re.compile(f"[^{allowed}]" if allowed else "[\\s\\S]")
    return pattern


def _percent_encode(text: str, safe: frozenset[int]) -> str:
    if text.isascii() and _unsafe(safe).search(text) is None:  # the common case: nothing to escape
        return text
    data = text.encode("utf-8", "surrogatepass")
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in data)


_VALUE_SAFE = frozenset(range(0x21, 0x7F)) - {ord("%"), ord("=")}
_MESSAGE_SAFE = frozenset(range(0x20, 0x7F))
_DEFAULT_SAFE = _VALUE_SAFE - {ord(c) for c in ",()|:"}  # inside HELP's args=


_ENCODED: dict[str, str] = {}  # short string results seen before (names, dates, descs)
_ENCODED_MAX_LEN, _ENCODED_MAX_ENTRIES = 64, 4096  # bounded: labels are user data


def encode_value(text: str) -> str:
    """Percent-encode a string result so it is one space-free ASCII token."""
    done = _ENCODED.get(text)
    if done is not None:
        return done
    done = _percent_encode(text, _VALUE_SAFE)
    if len(text) <= _ENCODED_MAX_LEN and len(_ENCODED) < _ENCODED_MAX_ENTRIES:
        _ENCODED[text] = done
    return done


def _format_int(value: int, hex_: bool) -> str:
    if not hex_:
        return str(int(value))
    return f"-0x{-value:x}" if value < 0 else f"0x{value:x}"


class _Raw(str):
    """A value already made safe (HELP's ``args=`` keeps its ``=default``): sent as is."""


def _format_value(key: str, value: Any, hex_: bool) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, str):
        return encode_value(value)
    if isinstance(value, int):
        return _format_int(value, hex_)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return ",".join(_format_int(v, hex_) for v in value)
    raise TypeError(f"result {key!r} is a {type(value).__name__}, not an int, str or list of ints")


_GOOD_KEYS: set[str] = set()  # result keys already checked to be lower-case names


def format_ok(results: Mapping[str, Any], hex_results: Iterable[str] = ()) -> bytes:
    """The ``ok`` line for a handler's results; TypeError if a result cannot be sent."""
    if type(results) is not dict and not isinstance(results, Mapping):
        raise TypeError(f"a handler returned a {type(results).__name__}, not a dict of results")
    hex_keys = hex_results if isinstance(hex_results, (frozenset, set)) else frozenset(hex_results)
    parts = ["ok"]
    for key, value in results.items():
        if key not in _GOOD_KEYS:
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise TypeError(f"result key {key!r} is not a lower-case name")
            if type(key) is str:
                _GOOD_KEYS.add(key)
        if type(value) is int and key not in hex_keys:
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={_format_value(key, value, key in hex_keys)}")
    return (" ".join(parts) + "\n").encode("ascii")


def format_error(errname: str, message: str) -> bytes:
    """The ``error ENAME message`` line; an empty message becomes the errno's strerror."""
    if not message:
        code = getattr(_errno, errname, None)
        message = os.strerror(code) if isinstance(code, int) else "error"
    text = _percent_encode(message, _MESSAGE_SAFE)
    name = _percent_encode(errname, _VALUE_SAFE)
    return f"error {name} {text}\n".encode("ascii")


def _error_reply(e: VdrmError) -> Reply:
    return Reply(format_error(e.errname, str(e)), e if isinstance(e, KernelBug) else None)


@dataclass(frozen=True)
class ParsedReply:
    """A reply line taken apart, for clients and tests: ``fields`` hold decoded strings."""

    errname: str | None  # None for ok
    message: str
    fields: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.errname is None


def parse_reply(line: bytes | str) -> ParsedReply:
    """Take a reply line apart (ValueError if it is not one :func:`handle` could produce).

    Values are decoded, except HELP's ``args``, kept as sent so it can be split at ``,``.
    """
    text = line.decode("ascii") if isinstance(line, (bytes, bytearray)) else line
    text = text.removesuffix("\n")
    if "\n" in text:
        raise ValueError("a reply is one line")
    head, _, rest = text.partition(" ")
    if head == "error":
        errname, _, message = rest.partition(" ")
        return ParsedReply(errname, message, {})
    if head != "ok":
        raise ValueError(f"a reply starts with 'ok' or 'error', not {head!r}")
    fields: dict[str, str] = {}
    for token in rest.split(" ") if rest else ():
        key, eq, value = token.partition("=")
        if not eq or key in fields:
            raise ValueError(f"bad reply token {token!r}")
        if key == "args":  # HELP's argument list: split at "," before decoding defaults
            fields[key] = value
            continue
        try:
            fields[key] = _percent_decode(value, key)
        except InvalidArgument as e:
            raise ValueError(str(e)) from None
    return ParsedReply(None, "", fields)


# -- parsing requests -----------------------------------------------------------------


_quote = grammar.quote


def _percent_decode(text: str, key: str) -> str:
    if "%" not in text:
        return text
    head, *rest = text.split("%")
    data = bytearray(head.encode())
    for part in rest:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            raise InvalidArgument(f"bad escape {_quote('%' + part[:2])} for {key} "
                                  "(%XX with two hex digits; %25 is a percent)")
        data.append(int(part[:2], 16))
        data += part[2:].encode()
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InvalidArgument(f"escapes in {_quote(text)} for {key} are not UTF-8") from None


def parse_value(arg: Arg, text: str) -> Any:
    """The Python value of ``text`` for ``arg``; :class:`InvalidArgument` says what is wrong.

    The protocol's own step is decoding ``%XX`` escapes in strings; every kind is then
    parsed by :mod:`vdrm.drm.grammar`, the parsers the daemon and the loader use too.
    """
    if arg.kind == "str":
        return _percent_decode(text, arg.name)
    return arg.parse(text)


def _default(arg: Arg) -> Any:
    """The declared default as the handler receives it (a fresh list for lists)."""
    return arg.default_value()


def _decode_line(data: bytes) -> str:
    """The request text of one line, or InvalidArgument if it is not a text line."""
    if data == LINE_TOO_LONG:
        raise InvalidArgument(f"line longer than {MAX_LINE} bytes (discarded)")
    data = data.removesuffix(b"\n").removesuffix(b"\r")
    if len(data) > MAX_LINE:
        raise InvalidArgument(f"line is {len(data)} bytes, longer than {MAX_LINE}")
    m = _CONTROL.search(data)
    if m is not None:
        what = "NUL byte" if m.group() == b"\0" else f"control character 0x{m.group()[0]:02x}"
        raise InvalidArgument(f"{what} at offset {m.start()} (a request is one line of text)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"byte 0x{data[e.start]:02x} at offset {e.start} is not UTF-8 text") from None


def _find_verb(table: Mapping[str, Ioctl], token: str) -> Ioctl:
    if not _VERB.fullmatch(token):
        raise InvalidArgument(f"a request starts with a verb, not {_quote(token)} (HELP lists the verbs)")
    verb = token.upper()
    if verb == HELP.name:
        return HELP
    ioctl = table.get(verb)
    if ioctl is None:
        close = difflib.get_close_matches(verb, list(table), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise InvalidArgument(f"unknown verb {_quote(token)} ({hint}HELP lists the verbs)")
    return ioctl


def parse(table: Mapping[str, Ioctl], data: bytes) -> Request:
    """Parse one request line (without or with its newline) against ``table``.

    Raises :class:`~vdrm.errors.InvalidArgument` saying what is wrong.
    """
    tokens = _decode_line(bytes(data)).replace("\t", " ").split(" ")
    tokens = [t for t in tokens if t]
    if not tokens:
        raise InvalidArgument("empty request (HELP lists the verbs)")
    ioctl = _find_verb(table, tokens[0])
    args: dict[str, Any] = {}
    for token in tokens[1:]:
        key, eq, text = token.partition("=")
        if not eq:
            raise InvalidArgument(f"{_quote(token)} is not key=value")
        arg = ioctl.arg(key) if _KEY.fullmatch(key) else None
        if arg is None:
            known = ", ".join(a.name for a in ioctl.args)
            known = f"known: {known}" if known else f"{ioctl.name} takes no arguments"
            raise InvalidArgument(f"unknown key {_quote(key)} for {ioctl.name} ({known})")
        if key in args:
            raise InvalidArgument(f"{key}= given twice")
        args[key] = parse_value(arg, text)
    missing = [a.name for a in ioctl.args if a.required and a.name not in args]
    if missing:
        raise InvalidArgument(f"{ioctl.name} needs {', '.join(m + '=' for m in missing)} "
                              f"(HELP verb={ioctl.name} describes it)")
    for arg in ioctl.args:
        if arg.name not in args:
            args[arg.name] = _default(arg)
    return Request(ioctl, {a.name: args[a.name] for a in ioctl.args})


# -- the entry point -----------------------------------------------------------------


def handle(table: Mapping[str, Ioctl], file: Any, data: bytes) -> Reply:
    """Answer one request line for ``file``: parse it, call its handler, format the reply.

    Never raises (except BaseExceptions such as KeyboardInterrupt): a malformed line is
    ``error EINVAL``, a :class:`~vdrm.errors.VdrmError` its own errno, a
    :class:`~vdrm.errors.WouldBlock` ``EAGAIN`` to retry, anything else
    :data:`INTERNAL_ERROR`; the last two hand the exception back in :attr:`Reply.exception`.
    """
    try:
        request = parse(table, data)
        if request.ioctl is HELP:
            results = _help(table, **request.args)
        else:
            results = dispatch(file, request)
        return Reply(format_ok(results, request.ioctl.hex_results))
    except VdrmError as e:
        return _error_reply(e)
    except WouldBlock as e:
        return Reply(format_error("EAGAIN", str(e)), e)
    except Exception as e:
        return Reply(INTERNAL_ERROR, e)


# -- HELP -----------------------------------------------------------------------------


def _default_text(arg: Arg) -> str:
    value = _default(arg)
    if arg.kind == "str":
        return _percent_encode(value, _DEFAULT_SAFE)
    if arg.kind == "list":
        return "%2C".join(str(v) for v in value)
    if arg.kind == "enum":
        names = [n for n, v in arg.names.items() if v == value]
        return names[0] if names else str(value)
    if arg.kind == "flags" and value:
        names = [n for n, v in arg.names.items() if v and v & value == v]
        covered = 0
        for n in names:
            covered |= arg.names[n]
        return "|".join(names) if covered == value else f"0x{value:x}"
    return str(value)


def arg_spec(arg: Arg) -> str:
    """``name:kind``, the names of flags and enums, and ``=default`` if optional."""
    spec = f"{arg.name}:{arg.kind}"
    if arg.kind in ("flags", "enum"):
        spec += "(" + "|".join(arg.names) + ")"
    if not arg.required:
        spec += "=" + _default_text(arg)
    return spec


def _help(table: Mapping[str, Ioctl], verb: str, arg: str) -> dict[str, Any]:
    if not verb:
        if arg:
            raise InvalidArgument("HELP arg= needs verb=")
        return {"verbs": ",".join(table)}
    ioctl = _find_verb(table, verb)
    if not arg:
        results: dict[str, Any] = {"verb": ioctl.name,
                                   "args": _Raw(",".join(arg_spec(a) for a in ioctl.args)),
                                   "doc": ioctl.doc}
        if ioctl.number is not None:
            number = ioctl.number
            results["cmd"] = _Raw(f"0x{number.cmd:08x}")
            results["nr"] = _Raw(f"0x{number.nr:02x}")
            results["macro"] = number.macro
            results["flags"] = ioctl.flag_names
            if number.struct is not None:
                results["struct"] = number.struct.name
                results["size"] = number.size
                results["layout"] = number.struct.layout()
        if ioctl.since is not None:
            results["since"] = ioctl.since
        return results
    declared = ioctl.arg(arg)
    if declared is None:
        known = ", ".join(a.name for a in ioctl.args) or "none"
        raise InvalidArgument(f"unknown key {_quote(arg)} for {ioctl.name} (known: {known})")
    results: dict[str, Any] = {"verb": ioctl.name, "arg": declared.name, "kind": declared.kind,
                               "required": int(declared.required)}
    if not declared.required:
        results["default"] = _Raw(_default_text(declared))
    if declared.kind == "flags":
        results["values"] = ",".join(f"{n}:0x{v:x}" for n, v in declared.names.items())
    elif declared.kind == "enum":
        results["values"] = ",".join(f"{n}:{v}" for n, v in declared.names.items())
    results["syntax"] = _KIND_SYNTAX[declared.kind]
    results["doc"] = declared.doc
    return results


# -- building the table ----------------------------------------------------------------


def build_table(*ioctl_groups: Iterable[Ioctl]) -> IoctlTable:
    """Merge groups of ioctls (core, driver, vdrm's own) into one ``name -> Ioctl`` table.

    The engine's :func:`vdrm.drm.ioctl.build_table` checks every declaration (duplicate
    names or numbers, defaults of the wrong kind, struct fields without arguments ...);
    the protocol adds one rule: no ioctl may be named HELP, which it answers itself.
    Raises ValueError naming the declaration.
    """
    groups = [tuple(g) for g in ioctl_groups]
    for group in groups:
        for ioctl in group:
            if ioctl.name == HELP.name:
                raise ValueError("HELP is answered by the protocol itself")
    return _build_engine_table(*groups)


# -- per-client state ------------------------------------------------------------------


class RequestStream:
    """Cuts one client's writes into request lines.

    The rule, for what shell tools and stdio do:

    * every ``\\n`` ends a line, so one write may carry several requests;
    * a write without any ``\\n`` ends its line too, so ``printf 'VERSION'`` is a request,
      unless its length is a multiple of :data:`BLOCK_BYTES` (4 KiB) or at least
      :data:`CHUNK_BYTES` (64 KiB): stdio flushes such blocks and FUSE cuts a large
      ``write(2)`` into WRITE requests of up to 128 KiB, so such a write is the start of
      a line that goes on;
    * a write that carries a ``\\n`` but does not end with one was cut by a buffered writer
      (stdio flushes 4 KiB blocks, ``cat`` 128 KiB ones): its tail is held and the next
      write completes it. :meth:`close` hands back a tail nobody completed.

    A line longer than ``max_line`` is yielded once as :data:`LINE_TOO_LONG` (which
    :func:`handle` answers with EINVAL) and the rest of it is discarded up to where the
    line ends (a ``\\n``, or a write without one that is not a whole block), so
    ``printf 'A%.0s' {1..5000}`` is one EINVAL and the next line is answered. At most
    ``max_line`` bytes are ever held. One stream serves one writer: the I/O layer keeps a
    stream per writing thread where it can name it.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self._partial = b""
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes held for a line that a later write will complete."""
        return len(self._partial)

    @property
    def idle(self) -> bool:
        """Nothing held and nothing being discarded: a fresh stream would do the same."""
        return not self._partial and not self._discarding

    def feed(self, data: bytes) -> list[bytes]:
        """The complete request lines in ``data`` (without their newlines), oldest first."""
        lines: list[bytes] = []
        if not data:
            return lines
        *complete, tail = bytes(data).split(b"\n")
        for segment in complete:
            self._end_line(segment, lines)
        if not complete and (len(data) % BLOCK_BYTES == 0 or len(data) >= CHUNK_BYTES):
            self._hold(tail, lines)  # a stdio block or a FUSE chunk: the line goes on
        elif not complete:
            self._end_line(tail, lines)  # a write without a newline ends its line
        elif tail:
            self._hold(tail, lines)
        return lines

    def close(self) -> list[bytes]:
        """The held tail as a last line (the file is being released), and a fresh state."""
        lines = [self._partial] if self._partial else []
        self._partial = b""
        self._discarding = False
        return lines

    def _end_line(self, segment: bytes, lines: list[bytes]) -> None:
        if self._discarding:
            self._discarding = False
        elif len(self._partial) + len(segment) > self.max_line:
            lines.append(LINE_TOO_LONG)
        else:
            lines.append(self._partial + segment)
        self._partial = b""

    def _hold(self, tail: bytes, lines: list[bytes]) -> None:
        if self._discarding:
            return
        if len(self._partial) + len(tail) > self.max_line:
            lines.append(LINE_TOO_LONG)
            self._discarding = True
            self._partial = b""
        else:
            self._partial += tail


class ReplyQueue:
    """One client's unread replies, read back as a byte stream that never blocks.

    A read returns bytes of one reply at most, so a client reading with a large buffer
    gets exactly one reply and bash's ``read`` (which seeks back over what it read past
    the newline) never loses one; small reads take a reply piece by piece. An empty
    queue reads as ``b""``.

    When more than ``limit`` bytes wait, the oldest unread replies are dropped (never the
    one being read, nor the newest) and a single ``error ENOBUFS`` line counting them
    takes their place.
    """

    def __init__(self, limit: int = REPLY_QUEUE_BYTES):
        self.limit = limit
        self.dropped = 0  # replies dropped over the queue's life
        self._current = b""  # the reply being read
        self._offset = 0
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._unreported = 0  # dropped replies the next marker will count

    def _marker(self) -> bytes:
        n = self._unreported
        return (f"error ENOBUFS {n} unread repl{'y' if n == 1 else 'ies'} dropped: more than "
                f"{self.limit} bytes of replies were waiting\n").encode("ascii")

    @property
    def pending_replies(self) -> int:
        """Whole replies waiting, not counting one being read or an ENOBUFS line."""
        return len(self._queue)

    @property
    def pending_bytes(self) -> int:
        """Bytes a reader can still read (0: nothing to read, poll is not POLLIN)."""
        marker = len(self._marker()) if self._unreported else 0
        return len(self._current) - self._offset + marker + self._queued_bytes

    def push(self, line: bytes) -> None:
        """Queue one reply line, dropping the oldest unread ones if over the limit."""
        if not line:
            return
        self._queue.append(bytes(line))
        self._queued_bytes += len(line)
        while len(self._queue) > 1 and self.pending_bytes > self.limit:
            self._queued_bytes -= len(self._queue.popleft())
            self._unreported += 1
            self.dropped += 1

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the oldest reply; ``b""`` when nothing is queued."""
        if size <= 0:
            return b""
        if self._offset >= len(self._current):
            if self._unreported:
                self._current = self._marker()
                self._unreported = 0
            elif self._queue:
                self._current = self._queue.popleft()
                self._queued_bytes -= len(self._current)
            else:
                self._current = b""
                self._offset = 0
                return b""
            self._offset = 0
        chunk = self._current[self._offset:self._offset + size]
        self._offset += len(chunk)
        return chunk
