"""config/asgi.py: the WebSocket stack is the real-time layer's, at the settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from config.asgi import application
from realtime.lifetime import WebSocketLifetimeMiddleware


def test_websockets_are_closed_at_the_setting():
    outer = application.application_mapping["websocket"]
    assert isinstance(outer, WebSocketLifetimeMiddleware)
    assert outer.max_age == settings.WEBSOCKET_MAX_AGE


def coroutines_awaited(coroutine: Any) -> list[str]:
    """The names of the coroutines a task's coroutine is awaiting, outermost first."""
    names = []
    while coroutine is not None and hasattr(coroutine, "cr_frame"):
        names.append(coroutine.__qualname__)
        coroutine = coroutine.cr_await
    return names


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_open_socket_keeps_no_coroutine_of_a_pass_through_middleware(
    channel_layer, make_communicator
):
    """Each coroutine an open socket awaits through is kept with its frame and its
    scope for as long as the socket lives (docs/benchmark.md, memory per idle
    socket); the middlewares that only decide and pass on keep none."""
    communicator = make_communicator("/ws/chat/lobby/")
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    held = coroutines_awaited(communicator.future.get_coro())
    await communicator.disconnect()
    assert "ChatConsumer" in held  # the walk reached the consumer
    assert not {
        "WebSocketLifetimeMiddleware.__call__",
        "TicketAuthMiddleware.__call__",
        "BaseMiddleware.__call__",
        "TrustedOriginValidator.__call__",
        "FanoutMixin.__call__",
    } & set(held)
