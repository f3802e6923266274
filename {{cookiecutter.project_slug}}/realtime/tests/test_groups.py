"""group_name: the one way to name a group, from checked parts only."""

from __future__ import annotations

import json

import pytest

from realtime.groups import InvalidGroupName, frame_event, group_name


def test_parts_are_joined_with_periods():
    assert group_name("chat", "room", "lobby") == "chat.room.lobby"
    assert group_name("notifications", "user", 7) == "notifications.user.7"


@pytest.mark.parametrize(
    "parts",
    [
        (),
        ("a.b",),  # a period would let two lists of parts make one name
        ("café",),  # \w matches it; channel layers do not
        ("",),
        ("x" * 100,),
        (True,),
        (None,),
        ("room", "with space"),
    ],
)
def test_anything_else_is_refused(parts):
    with pytest.raises(InvalidGroupName):
        group_name(*parts)


def test_a_frame_event_carries_its_frame_encoded_once():
    event = frame_event("tests.message", {"type": "message", "text": "héllo"}, sender="x")
    assert event == {
        "type": "tests.message",
        "frame": '{"type":"message","text":"héllo"}',
        "sender": "x",
    }
    assert json.loads(event["frame"])["text"] == "héllo"
