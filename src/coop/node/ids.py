"""Time-ordered record ids (UUID version 7, RFC 9562)."""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["uuid7"]


def uuid7(now_ns: int | None = None, rand: bytes | None = None) -> str:
    """A UUIDv7: 48 bits of Unix milliseconds, then 74 random bits; sorts by time."""
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    tail = int.from_bytes(os.urandom(10) if rand is None else rand, "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((tail >> 68) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # variant
    value |= tail & ((1 << 62) - 1)  # rand_b: 62 bits
    return str(uuid.UUID(int=value))
