"""The room group's channel-layer events, handled the same way by every async chat
consumer: ``"<app>.<event>"`` handled by ``<app>_<event>``. The frames were encoded
once by the sender, so each member forwards them as they are."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from chat.protocol import CLOSE_LOGGED_OUT


class RoomEventsMixin:
    # Provided by the consumer class the mixin is combined with.
    channel_name: str
    send: Callable[..., Awaitable[None]]
    close: Callable[..., Awaitable[None]]

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["frame"])

    async def chat_moderated(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["frame"])

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event["sender"] != self.channel_name:
            await self.send(text_data=event["frame"])

    async def chat_logout(self, event: dict[str, Any]) -> None:
        await self.close(code=CLOSE_LOGGED_OUT)
