"""The chat app's consumers, one kind of Channels consumer per module.

- ``chat.ChatConsumer``: ``AsyncWebsocketConsumer``, the chat the pages use.
- ``sync_chat.SyncChatConsumer``: the same chat as a sync ``WebsocketConsumer``, the
  form of the Channels tutorial's part 2.
- ``rooms_json.RoomsJsonConsumer``: ``AsyncJsonWebsocketConsumer`` with typed actions
  (join, leave, message, typing) over one socket for many rooms.
- ``events.RoomEventsConsumer``: ``AsyncHttpConsumer`` streaming a room's new
  messages as server-sent events.
- The ``SyncConsumer`` that the worker runs is ``chat.workers.ModerationConsumer``.

Each is thin: parse, call ``chat.services`` or ``chat.selectors``, respond; the
machinery under them is the real-time layer's (``realtime/``).
https://channels.readthedocs.io/en/stable/topics/consumers.html
"""
