"""Background consumers, run off the request path by ``manage.py runworker``.

``ModerationConsumer`` listens on the ``chat-worker`` channel: the chat consumer
sends it a job for every new message, and it hides messages that contain a blocked
word, telling the room. A worker runs in its own process, so it needs a channel layer
that crosses processes (Redis): with the in-memory layer nothing would reach it, and
``CHAT_MODERATION_ENABLED`` is off by default then.
https://channels.readthedocs.io/en/stable/topics/worker.html
"""

from __future__ import annotations

import logging
from typing import Any

from channels.consumer import SyncConsumer

from chat import services

logger = logging.getLogger(__name__)


class ModerationConsumer(SyncConsumer):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # runworker hands over `send` as a functools.partial of a coroutine method,
        # which Python 3.11 does not see as async: async_to_sync would warn on every
        # job. A coroutine function around it says what it is.
        async def marked_send(message: dict[str, Any]) -> None:
            await send(message)

        await super().__call__(scope, receive, marked_send)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Run one job; one that cannot run (a type with no handler) is logged too. A
        consumer instance that raised would be dropped by runworker together with the
        jobs already queued for it (chat/tests/test_cross_process.py)."""
        try:
            await super().dispatch(message)
        except Exception:
            logger.exception("moderation job failed: %r", message)

    # Channel-layer events: "chat.moderate" is handled by chat_moderate.
    def chat_moderate(self, event: dict[str, Any]) -> None:
        try:
            services.message_moderate(message_id=int(event["message_id"]))
        except Exception:
            # One bad job must not stop the worker or lose the jobs queued after it.
            logger.exception("moderation job failed: %r", event)
