"""The node's log lines: one event, one line, whatever a client or a peer put in it.

Messages carry client input (request paths, user agents, peers' refusals).  A
newline in it would start a forged line; an ANSI escape would rewrite the
operator's terminal.  The formatter escapes every control character in the
message, and indents every line of a traceback, so a line that starts at the
margin was written by the node.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Final, TextIO

__all__ = ["FORMAT", "EscapingFormatter", "configure_logging", "escape_controls"]

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# C0 controls (newline, carriage return, escape, ...), DEL, C1 controls (0x9b is a one-byte CSI),
# and the Unicode line and paragraph separators some viewers break lines at.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE: Final = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as ``\\xNN`` (``\\n`` becomes ``\\x0a``)."""
    return _CONTROL.sub(_escaped, text)


def _indented(text: str) -> str:
    """A traceback or stack: control characters escaped, every line indented (never at the margin)."""
    return "\n".join("    " + line for line in _CONTROL_BUT_NEWLINE.sub(_escaped, text).split("\n"))


class EscapingFormatter(logging.Formatter):
    """A formatter whose records never span lines a reader could take for the node's own."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return _indented(super().formatStack(stack_info))


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """The root logger writes escaped lines to ``stream`` (stderr); replaces any handler set before."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per gossip request is noise
