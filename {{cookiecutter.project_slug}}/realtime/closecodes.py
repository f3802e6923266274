"""WebSocket close codes: the registry every app adds its own to.

Codes 4000-4999 are the application's (RFC 6455, section 7.4.2). A close sent before
the handshake is accepted reaches the client as HTTP 403 instead, so a browser sees
the code only on a socket that was open. Each code is registered once, with a name
and what it tells the client; ``register`` refuses a code taken under another name,
so two apps cannot give one number two meanings::

    CLOSE_INVALID_ROOM = closecodes.register(4400, "invalid_room", "invalid room name")

The real-time layer's own codes are registered below; ``registered()`` lists them
all, the apps' included (for docs and tests).
https://www.rfc-editor.org/rfc/rfc6455#section-7.4.2
"""

from __future__ import annotations

from dataclasses import dataclass

APPLICATION_CODES = range(4000, 5000)


@dataclass(frozen=True)
class CloseCode:
    code: int
    name: str
    meaning: str


_REGISTRY: dict[int, CloseCode] = {}


def register(code: int, name: str, meaning: str) -> int:
    """Register an application close code and return it. Registering the same code
    under the same name again is a no-op (a module imported twice); under another
    name, or outside 4000-4999, it raises ValueError."""
    if code not in APPLICATION_CODES:
        raise ValueError(f"close code {code} is not an application code (4000-4999)")
    taken = _REGISTRY.get(code)
    if taken is not None and taken.name != name:
        raise ValueError(f"close code {code} is already registered as {taken.name!r}")
    _REGISTRY[code] = CloseCode(code, name, meaning)
    return code


def registered() -> list[CloseCode]:
    """Every registered code, in numeric order."""
    return [_REGISTRY[code] for code in sorted(_REGISTRY)]


# WebSocket's own "going away" (not an application code): the client may reconnect
# at once (realtime/lifetime.py).
CLOSE_GOING_AWAY = 1001

CLOSE_LOGGED_OUT = register(
    4001, "logged_out", "the session ended: logged out, password changed or user deactivated"
)
CLOSE_LOGIN_REQUIRED = register(4401, "login_required", "this socket needs a signed-in user")
CLOSE_BAD_TICKET = register(4403, "bad_ticket", "invalid, expired or reused ticket")
CLOSE_NOT_FOUND = register(4404, "not_found", "no consumer for this WebSocket path")
CLOSE_TOO_SLOW = register(
    4408, "too_slow", "the client did not take its group's messages in time: reconnect"
)
CLOSE_TOO_MANY_SOCKETS = register(
    4409, "too_many_sockets", "too many open sockets for this user or address"
)
CLOSE_RATE_LIMITED = register(4429, "rate_limited", "kept sending past the rate limit")
CLOSE_UNAVAILABLE = register(
    4503, "unavailable", "the channel layer (Redis) is unavailable: reconnect later"
)
