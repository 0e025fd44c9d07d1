"""Token-bucket rate limits kept in memory, per client IP and per credential."""

from __future__ import annotations

import math
import threading
from typing import Final

__all__ = ["RateLimiter"]

_MAX_KEYS: Final = 100_000


class RateLimiter:
    """``allow(key, now)`` spends one token; returns 0 or the seconds to wait for the next."""

    def __init__(self, *, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> int:
        if self.rate <= 0:
            return 0
        with self._lock:
            tokens, stamp = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > _MAX_KEYS:
                self._evict(now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _evict(self, now: float) -> None:
        # Buckets that have refilled completely carry no information: drop them.
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
