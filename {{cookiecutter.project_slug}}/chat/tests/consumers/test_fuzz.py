"""Property-based: hundreds of generated frames at every chat consumer, through the
communicator; none may raise, and a valid message afterwards must still arrive."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.asgi import application
from realtime.testing import ORIGIN, report_figure

TIMEOUT = 5
ROUTES = ["/ws/chat/fuzz/", "/ws/chat-sync/fuzz/", "/ws/rooms/"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
chat_like = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["message", "history", "join", "leave", "typing", "x"])
        | st.text(max_size=10)
        | json_values,
        "message": json_values | st.text(max_size=2100) | st.just("\\ud800") | st.just("a\\u0000b"),
        "after": json_values | st.integers(min_value=-5, max_value=2**64),
        "room": json_values | st.sampled_from(["fuzz", "a b", "x" * 70, "café"]),
    },
)
frames = st.one_of(
    st.text(max_size=300).map(lambda text: {"text": text}),
    st.binary(max_size=64).map(lambda data: {"bytes": data}),
    json_values.map(lambda value: {"text": json.dumps(value)}),
    chat_like.map(lambda value: {"text": json.dumps(value).replace("\\\\u", "\\u")}),
    st.just({"text": "[" * 5000 + "]" * 5000}),
    st.just({"text": json.dumps({"message": "x" * 20000})}),
)

TRIED = {"frames": 0, "examples": 0}


async def exercise(route: str, batch: list[dict]) -> None:
    channel_layers.backends.clear()
    communicator = WebsocketCommunicator(application, route, headers=[ORIGIN])
    try:
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        if route == "/ws/rooms/":
            await communicator.send_json_to({"action": "join", "room": "fuzz"})
        for frame in batch:
            # Raw ASGI messages: empty text frames too, which send_to() refuses to build.
            await communicator.send_input({"type": "websocket.receive", **frame})
        TRIED["frames"] += len(batch)
        if route == "/ws/rooms/":
            # A generated frame may have left the room: join it again (20 frames at
            # most cannot also fill the 20-room limit), then post the marker there.
            await communicator.send_json_to({"action": "join", "room": "fuzz"})
        marker = {"message": "still alive", "room": "fuzz", "action": "message"}
        await communicator.send_json_to(marker)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            # Raises if the consumer died on any frame above.
            frame = await communicator.receive_json_from(timeout=TIMEOUT)
            if frame.get("type") == "message" and frame.get("message") == "still alive":
                break
            assert frame.get("type") in {"history", "joined", "left", "message", "error", "typing"}
            assert asyncio.get_running_loop().time() < deadline
    finally:
        await communicator.disconnect()
        await get_channel_layer().flush()
        channel_layers.backends.clear()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", ROUTES)
@override_settings(WEBSOCKET_RATE_LIMIT_BURST=100_000)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(frames, min_size=5, max_size=20))
def test_no_frame_crashes_a_consumer(route, batch):
    TRIED["examples"] += 1
    asyncio.run(exercise(route, batch))


def test_report_fuzz_figures():
    # Runs after the fuzz tests in this module (pytest keeps file order).
    report_figure(
        f"fuzz: {TRIED['frames']} generated frames in {TRIED['examples']} examples "
        f"at {len(ROUTES)} consumers, 0 unhandled exceptions"
    )
    assert TRIED["frames"] >= 300 or TRIED["examples"] == 0
