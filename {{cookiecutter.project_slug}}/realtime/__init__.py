"""The project's real-time layer: the machinery any consumer builds on, apart from the
apps that use it. It imports Django, Channels, channels-redis and redis, and no app of
the project; apps import it (``config/asgi.py``, ``config/routing.py``, ``chat/``).

Public (import these; each module's docstring says how to use it):

- ``realtime.channel_layers``: ``channel_layers(...)``, the ``CHANNEL_LAYERS`` setting
  built from ``REDIS_URL``; ``realtime.layers``: the channel layer classes it names.
- ``realtime.origins.TrustedOriginValidator``: the exact WebSocket origin check.
- ``realtime.lifetime.WebSocketLifetimeMiddleware``: sockets closed at
  ``WEBSOCKET_MAX_AGE``.
- ``realtime.auth``: ``WebSocketAuthMiddlewareStack`` (session and user) and
  ``TicketAuthMiddleware(inner, redeem=...)`` (single-use tickets; the project
  supplies ``redeem``).
- Consumer building blocks, mixins put before the Channels base class in this order:
  ``realtime.faults.LayerFaultsMixin`` (4503 when Redis fails),
  ``realtime.fanout.FanoutMixin`` (a group's frames through one member per process)
  or ``realtime.guards.GuardsMixin`` (login required, per-user and per-address
  socket caps counted atomically across processes, the rate limit, the session
  re-checked every ``WEBSOCKET_SESSION_CHECK_SECONDS`` and the socket closed with
  4001 once it no longer signs its user in, groups always left; ``FanoutMixin`` is
  one),
  ``realtime.frames.JsonFramesMixin`` (frames parsed within limits, ``ClientError``
  as a typed error frame), ``realtime.dispatch.FastDispatchMixin`` (a cheaper
  dispatch loop).
- ``realtime.guards.SyncGuardsMixin``: the same guards for a synchronous
  ``WebsocketConsumer`` (before it in the bases; ``refused_at_handshake()``,
  ``join_group()`` and ``frame_allowed()`` called from its handlers), and
  ``realtime.guards.HttpGuards`` for a long-lived ``AsyncHttpConsumer`` response
  (``guards_refused()``, ``end_revoked()``); ``realtime.guards.socket_count(key)``
  with ``user_count_key``/``address_count_key``, the sockets counted now.
- ``realtime.frames``: ``ClientError``, ``parse_json_object``, ``error_frame``,
  ``encode``; ``realtime.ratelimit.TokenBucket``, the rate limit by itself.
- ``realtime.groups``: ``group_name(*parts)``, the one validated way to name a group,
  and ``frame_event(type, frame)`` for ``group_send``.
- ``realtime.closecodes``: ``register(code, name, meaning)``, the registry of close
  codes apps add theirs to, and the layer's own ``CLOSE_*`` codes.
- ``realtime.refuse.RefuseConsumer``: the last route, refusing unclaimed paths.
- ``realtime.wsprotocol.WebSocketProtocol``: uvicorn's WebSocket protocol with each
  socket's memory bounded (``--ws realtime.wsprotocol:WebSocketProtocol``, as every
  web command runs it), and the ``SEND_READY`` hint the fan-out writes by.
- ``realtime.waiters``: ``SocketQueue`` and ``SocketEvent``, asyncio's Queue and
  Event as one connection uses them, holding nothing while nobody waits (the
  protocol's receive queue and "writable" event).
- ``realtime.pginserts.PostgresInserts``: new rows of a model stored on PostgreSQL
  from the event loop, over the loop's own async connection, without the hop to
  the database thread (the chat's message writer stores its batches with it).
- ``realtime.batches.Batches`` with ``realtime.loops.PerLoop``: work handed in one
  item at a time and done many at a time, one batch under way per event loop (the
  chat's message writer and the Redis layer's group sends use it).
- ``realtime.testing``: the pytest plugin (``pytest_plugins = ["realtime.testing"]``):
  communicator and layer fixtures, and the services tier's server processes
  (``realtime.testing.servers``).

Internal: everything else in these modules (the fan-out's ``GroupFanout`` and module
state, ``guards.SocketClaims`` and its Redis scripts, the layers' helpers, and
``realtime.resp``, the Redis connection the layer's reader holds), which may change
without notice.

Not here: the chat's batched writer (``chat/writer.py``) stores the chat's messages
with its own model, on ``realtime.batches``; it is an example of using it.
"""
