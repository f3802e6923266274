"""A token bucket: the per-connection message rate limit of ``GuardsMixin``.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second; each
message takes one. A client that types fast gets its burst; a flood runs dry. Not
django-ratelimit: it limits views by request and counts in the cache, one round trip
per request; a socket's frames are counted here, in memory, per connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()

    def allow(self) -> bool:
        """Take a token if there is one; False means the message is over the limit."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
