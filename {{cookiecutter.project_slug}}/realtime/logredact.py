"""Tickets kept out of the server's access log.

uvicorn's access log (the ``uvicorn.access`` logger) writes each request's path with
its query string, so a ticket presented as ``?ticket=<ticket>`` (realtime/auth.py)
would be written to disk and to wherever logs are shipped. ``RedactTicketFilter``,
on that logger in ``LOGGING``, turns the value into ``[redacted]``; the rest of the
line is unchanged. Imports nothing but the standard library: ``LOGGING`` is
configured before Django's apps are loaded.
"""

from __future__ import annotations

import logging
import re

TICKET = re.compile(r"([?&]ticket=)[^&\s\"]*")


def redact(text: str) -> str:
    return TICKET.sub(r"\1[redacted]", text)


class RedactTicketFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True
