"""The last WebSocket route: refuses any path no app claims, at the handshake
(``config/routing.py`` ends with it)."""

from channels.generic.websocket import AsyncWebsocketConsumer

from realtime.closecodes import CLOSE_NOT_FOUND


class RefuseConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        # Closing before accept(): the client sees HTTP 403, and no traceback is logged.
        await self.close(code=CLOSE_NOT_FOUND)
