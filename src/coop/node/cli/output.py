"""What ``coop`` prints: escaped text, JSON, times, and progress on a terminal.

Light on purpose: click and the standard library only (plus :mod:`coop.node.errors`), so that
``coop --help`` starts fast; a command imports what it needs inside its function.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    pass

# What never reaches a terminal raw: C0 controls but newline and tab, DEL, C1 (0x9b is a CSI),
# the line and paragraph separators and the bidirectional overrides ("Trojan Source").
_UNPRINTABLE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class Printable(io.TextIOBase):
    """The command line's output: text a peer, a member or a proxy wrote (a peer's refusal in
    ``coop peers list``, a chat title, an error message) is shown, never obeyed by the terminal.

    Each such character is written as ``\\uXXXX``: readable, and inside ``--json`` output the
    same escape JSON itself uses, so the document still parses to the same value.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.raw_stream = stream
        self._released = False

    def write(self, text: str) -> int:
        self.raw_stream.write(_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
        return len(text)

    def flush(self) -> None:
        if not self._released:
            self.raw_stream.flush()

    def close(self) -> None:
        """Close this wrapper, not the stream under it: the wrapper holds no buffer of its own.

        ``IOBase.close`` (run again when the wrapper is collected) would flush the stream, which
        its owner may have closed by then (a test's captured output; the interpreter at exit):
        Python 3.13 reports that failure where 3.11 dropped it silently.
        """
        self._released = True
        super().close()

    def fileno(self) -> int:
        return self.raw_stream.fileno()

    def isatty(self) -> bool:
        return self.raw_stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.raw_stream.encoding


def print_json(value: object) -> None:
    import msgspec

    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


def when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Progress:
    """Progress lines on stderr, only when stderr is a terminal and neither --quiet nor --json.

    ``progress(line)`` prints a phase; ``progress.count(i, n, what)`` redraws one counter line.
    Pass ``progress.callback`` (None when silent) to long operations in other packages.
    """

    def __init__(self, *, quiet: bool = False, as_json: bool = False, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and not as_json and self._stream.isatty()
        self._open = False  # a counter line is on screen, not ended yet

    def __call__(self, line: str) -> None:
        if self.enabled:
            self._end_counter()
            self._stream.write(f"{line}\n")
            self._stream.flush()

    def count(self, done: int, total: int, what: str) -> None:
        if self.enabled:
            # \r redraws the line: written past the escaping of Printable (our own text only).
            raw = getattr(self._stream, "raw_stream", self._stream)
            raw.write(f"\r{what} {done}/{total}")
            raw.flush()
            self._open = done < total
            if not self._open:
                raw.write("\n")

    def _end_counter(self) -> None:
        if self._open:
            getattr(self._stream, "raw_stream", self._stream).write("\n")
            self._open = False

    @property
    def callback(self) -> Callable[[str], None] | None:
        return self if self.enabled else None
