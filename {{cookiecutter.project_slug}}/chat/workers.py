"""Background consumers, run off the request path by ``manage.py runworker``.

``ModerationConsumer`` listens on the ``chat-worker`` channel and hides messages that
contain a blocked word, telling the room. The work itself is in the database: every
new message waits there (``Message.moderated_at`` empty) until a worker has checked
it, and each check claims its rows so that no message is checked twice. The chat
consumer's message on the channel only wakes the worker up, so a job lost in the
layer (a worker killed, a message expired, Redis down while a message was posted)
loses nothing: the worker catches up from the database when it starts, on each
wake-up, every ``SWEEP_SECONDS``, and when the channel layer comes back.

``ModerationWorker`` is the worker ``manage.py runworker`` runs (the chat app's
``runworker`` command replaces Channels' own with it): Channels' worker, whose
listener ends, and with it the process, the first time the channel layer fails;
this one waits and tries again, logging one line when an outage starts and one
when it ends. A worker runs in its own process, so it needs a channel layer that
crosses processes (Redis): with the in-memory layer nothing would reach it, and
``CHAT_MODERATION_ENABLED`` is off by default then.
https://channels.readthedocs.io/en/stable/topics/worker.html
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.consumer import SyncConsumer
from channels.worker import Worker

from chat import services

logger = logging.getLogger(__name__)

# Seconds between two catch-ups when no wake-up comes.
SWEEP_SECONDS = 30.0
# Seconds between two tries to reach the channel layer during an outage: doubling
# from the first, up to the last.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0
# Seconds between the starts of two checks that wake-ups ask for. Every wake-up
# that arrives while one waits is merged into it (it starts later, so it sees their
# messages): a busy chat costs the worker a few checks a second, not one per message.
MODERATION_INTERVAL = services.WAKE_UP_INTERVAL
# What the worker hands the consumer to make it catch up.
CATCH_UP = {"type": "chat.catch_up"}
# The group the worker sends to, to learn whether the layer is back (nobody is in it).
PROBE_GROUP = "chat.worker-probe"


class ModerationConsumer(SyncConsumer):
    # No channel of its own: its jobs come through runworker's receive on chat-worker,
    # and a receive of its own would end the consumer (and its queued jobs) when
    # Redis fails. It tells rooms through get_channel_layer() (chat.services).
    channel_layer_alias = None

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

    # Channel-layer events: "chat.moderate" (a new message: a wake-up) is handled by
    # chat_moderate, "chat.catch_up" (from ModerationWorker) by chat_catch_up.
    def chat_moderate(self, event: dict[str, Any]) -> None:
        int(event["message_id"])  # a malformed job is logged by dispatch
        self.chat_catch_up(event)

    def chat_catch_up(self, event: dict[str, Any]) -> None:
        checked = services.messages_moderate_backlog()
        if checked:
            logger.debug("moderation: %d message(s) checked", checked)


class ModerationWorker(Worker):
    """Channels' worker that survives channel layer outages, and makes the moderation
    consumer catch up from the database at start, every ``SWEEP_SECONDS`` and after
    an outage, when it listens on the moderation channel."""

    layer_back: asyncio.Event | None = None
    wake_up_due: asyncio.TimerHandle | None = None
    last_wake_up = float("-inf")

    async def handle(self) -> None:
        self.loop = asyncio.get_running_loop()
        # channels-redis' Pub/Sub layer waits out an outage inside its receive and logs
        # a traceback every second meanwhile: the first becomes the outage's one line.
        quiet = PubSubOutageFilter(self)
        logging.getLogger("channels_redis.pubsub").addFilter(quiet)
        sweeping = asyncio.ensure_future(self.sweep())
        try:
            await super().handle()
        finally:
            sweeping.cancel()
            logging.getLogger("channels_redis.pubsub").removeFilter(quiet)

    async def sweep(self) -> None:
        while True:
            await self.catch_up()
            await asyncio.sleep(SWEEP_SECONDS)

    async def catch_up(self) -> None:
        """Have the moderation consumer check what waits in the database."""
        if services.WORKER_CHANNEL in self.channels:
            self.queue(services.WORKER_CHANNEL).put_nowait(dict(CATCH_UP))

    async def listener(self, channel: str) -> None:
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except Exception as error:  # noqa: BLE001 - any layer failure is waited out
                await self.outage(error).wait()
                continue
            if not message.get("type", None):
                logger.warning("message with no type on %s dropped: %r", channel, message)
                continue
            if channel == services.WORKER_CHANNEL and is_wake_up(message):
                self.wake_up(channel, message)
                continue
            self.queue(channel).put_nowait(message)

    def queue(self, channel: str) -> asyncio.Queue[dict[str, Any]]:
        """The input queue of the channel's consumer (unbounded: puts never wait)."""
        scope = {"type": "channel", "channel": channel}
        return self.get_or_create_application_instance(channel, scope)

    def wake_up(self, channel: str, message: dict[str, Any]) -> None:
        """Hand a wake-up to the consumer at most every ``MODERATION_INTERVAL``
        seconds; one that arrives while another waits is merged into it."""
        if self.wake_up_due is not None:
            return
        delay = max(0.0, self.last_wake_up + MODERATION_INTERVAL - self.loop.time())
        self.wake_up_due = self.loop.call_later(delay, self.hand_wake_up, channel, message)

    def hand_wake_up(self, channel: str, message: dict[str, Any]) -> None:
        self.wake_up_due = None
        self.last_wake_up = self.loop.time()
        self.queue(channel).put_nowait(message)

    def outage(self, error: BaseException) -> asyncio.Event:
        """The layer failed: the event set when it works again. The first failure of
        an outage logs it and starts trying the layer, with backoff."""
        if self.layer_back is None or self.layer_back.is_set():
            logger.warning(
                "channel layer unavailable (%s: %s); trying again until it is back",
                type(error).__name__,
                error,
            )
            self.layer_back = asyncio.Event()
            self.probing = asyncio.ensure_future(self.probe(self.layer_back))
        return self.layer_back

    async def probe(self, back: asyncio.Event) -> None:
        since = self.loop.time()
        delay = RETRY_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            try:
                # A group with no members: a round trip to Redis that leaves nothing.
                await self.channel_layer.group_send(PROBE_GROUP, {"type": "chat.probe"})
            # Still down, whatever the layer raised: wait longer, then try again.
            except Exception:  # noqa: BLE001, S112  # nosec B112
                continue
            logger.warning("channel layer back after %.1fs", self.loop.time() - since)
            back.set()
            await self.catch_up()  # what was posted meanwhile got no wake-up
            return


def is_wake_up(message: dict[str, Any]) -> bool:
    """A well-formed ``chat.moderate`` job; a malformed one goes to the consumer as
    it is, which logs it."""
    if message.get("type") != "chat.moderate":
        return False
    try:
        int(message["message_id"])
    except (KeyError, TypeError, ValueError):
        return False
    return True


class PubSubOutageFilter(logging.Filter):
    """Drops the Pub/Sub layer's traceback of each failed read, and tells the worker
    of the outage instead (which logs it once, and says when it ends)."""

    def __init__(self, worker: ModerationWorker) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Unexpected exception in receive task" or not record.exc_info:
            return True
        error = record.exc_info[1] or RuntimeError("receive failed")
        self.worker.loop.call_soon_threadsafe(self.worker.outage, error)
        return False
