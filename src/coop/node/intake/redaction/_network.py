"""Email addresses and IP addresses."""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from coop.node.intake.redaction._model import ASCII_DIGIT, PiiType, Span

__all__ = ["emails", "ipv4s", "ipv6s"]

# --- email -------------------------------------------------------------------

# Found from each "@": the domain forwards, the local part (at most 64
# characters, RFC 5321) backwards.
_EMAIL_ATOM: Final = r"[A-Za-z0-9!\#$%&'*+/=?^_`{|}~-]+"
_EMAIL_LOCAL: Final = re.compile(rf"(?<![\w.!\#$%&'*+/=?^`{{|}}~\]-]){_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*\Z")
_EMAIL_DOMAIN: Final = re.compile(
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![\w\[-]|\.[A-Za-z0-9\[])"
)


def emails(text: str, out: list[Span]) -> None:
    at = text.find("@")
    while at >= 0:
        domain = _EMAIL_DOMAIN.match(text, at)
        if domain is not None:
            local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
            if local is not None and domain.end() - local.start() <= 254:
                out.append((local.start(), domain.end(), PiiType.EMAIL))
        at = text.find("@", at + 1)


# --- IPv4 --------------------------------------------------------------------

_IPV4: Final = re.compile(r"(?<![\w\].])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w\[]|\.[0-9\[])")
# "version 2.10.4.1" is a version, not an address.  The cue must stand alone
# ("a@b.version" is not one) so that replacing a neighbour cannot remove it.
_VERSION_CUE: Final = re.compile(
    r"(?i)(?<![\w.@\[\]-])(?:version|ver|release|build|rev|revision|firmware|fw)"
    r"\.?[ \t]*[:\#]?[ \t]*\Z"
)


def _octets_valid(address: str) -> bool:
    """What ``ipaddress.IPv4Address`` checks of a dotted quad of 1-3 digit groups, without its cost:
    each octet 0-255 and no leading zeros."""
    return all(octet == "0" or (octet[0] != "0" and int(octet) <= 255) for octet in address.split("."))


def ipv4s(text: str, lo: int, hi: int, out: list[Span]) -> None:
    for m in _IPV4.finditer(text, lo, hi):
        if _octets_valid(m[0]) and not _VERSION_CUE.search(text, max(0, m.start() - 16), m.start()):
            out.append((m.start(), m.end(), PiiType.IPV4))


# --- IPv6 --------------------------------------------------------------------

# Two colons at most five characters apart open a candidate; ipaddress decides
# (times such as 12:30:45 and MAC addresses fail it: no "::", fewer than 8 groups).
_IPV6_GATE: Final = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6: Final = re.compile(
    r"""
    (?<![\w:.\]])
    [0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}
    (?:\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})?  # an embedded IPv4 tail: ::ffff:10.0.0.1
    (?![\w\[:]|\.[0-9A-Fa-f\[])  # only the whole run: a prefix could be valid alone
    """,
    re.VERBOSE,
)
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def ipv6s(text: str, out: list[Span]) -> None:
    pos = 0
    while gate := _IPV6_GATE.search(text, pos):
        start = gate.start()
        floor = max(0, start - 4)
        while start > floor and text[start - 1] in _HEX:
            start -= 1
        m = _IPV6.match(text, start)
        if m is None:
            pos = gate.start() + 1
            continue
        pos = m.end()
        candidate, end = m[0], m.end()
        if candidate.endswith(":") and not candidate.endswith("::"):
            candidate, end = candidate[:-1], end - 1  # a colon that ends a sentence
        # Hex words joined by "::" are C++ scopes ("cb::add"), not addresses.
        if candidate.count(":") < 7 and not ASCII_DIGIT.search(candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        out.append((start, end, PiiType.IPV6))
