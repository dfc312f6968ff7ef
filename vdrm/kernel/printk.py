"""The kernel log ring (``kernel/printk``), rendered the way ``dmesg`` prints it.

Each record is one ``printk``: a timestamp from the device clock, a level and a text that
may hold several lines. Rendering prefixes **every line** of a record with the record's
``[%5lu.%06lu] `` timestamp, as ``record_print_text()`` does for multi-line records; the
``dev_err`` device prefix (``panfrost fde60000.gpu: ``) appears only on the first line.

The rendered log only grows: :attr:`KernelLog.size` is the number of bytes ever written,
so a file whose ``st_size`` follows it can be followed with ``tail -f``. When the ring is
full the oldest records are dropped and :meth:`KernelLog.read` serves what is left.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vdrm.kernel.clock import Clock

# loglevels (include/linux/kern_levels.h)
KERN_ERR = 3
KERN_WARNING = 4
KERN_INFO = 6
KERN_DEBUG = 7

DEFAULT_RING_BYTES = 1 << 20  # CONFIG_LOG_BUF_SHIFT=20


@dataclass(frozen=True)
class LogRecord:
    """One printk: when, how loud, what (possibly several lines)."""

    ts_ns: int
    level: int
    text: str

    def render(self) -> str:
        secs, rem = divmod(self.ts_ns, 1_000_000_000)
        prefix = f"[{secs:5d}.{rem // 1000:06d}] "
        return "".join(prefix + line + "\n" for line in self.text.rstrip("\n").split("\n"))


class KernelLog:
    """A bounded ring of :class:`LogRecord` with a monotonically growing rendered size."""

    def __init__(self, clock: "Clock", *, ring_bytes: int = DEFAULT_RING_BYTES, console_level: int = KERN_INFO):
        self.clock = clock
        self.ring_bytes = ring_bytes
        self.console_level = console_level  # records above this level are not kept
        self._records: deque[tuple[int, LogRecord, bytes]] = deque()  # (start offset, record, rendered)
        self._start = 0  # byte offset of the oldest kept record
        self.size = 0  # bytes ever rendered
        self.tainted_warn = False  # TAINT_WARN: a WARN has fired (later blocks say "Tainted: G W")

    def printk(self, level: int, text: str) -> LogRecord | None:
        """Log ``text`` at ``level``; debug records are dropped unless the level allows."""
        if level > self.console_level:
            return None
        record = LogRecord(self.clock.now_ns(), level, text)
        data = record.render().encode()
        self._records.append((self.size, record, data))
        self.size += len(data)
        while self.size - self._start > self.ring_bytes and len(self._records) > 1:
            offset, _, old = self._records.popleft()
            self._start = offset + len(old)
        return record

    def records(self) -> list[LogRecord]:
        return [r for _, r, _ in self._records]

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)`` of the rendered log; dropped bytes read as nothing."""
        out = []
        end = offset + length
        for start, _, data in self._records:
            stop = start + len(data)
            if stop <= offset:
                continue
            if start >= end:
                break
            out.append(data[max(0, offset - start): end - start])
        return b"".join(out)

    def text(self) -> str:
        return b"".join(d for _, _, d in self._records).decode()
