import json

import pytest

from chat.protocol import PostMessage, RequestHistory, parse_client_frame
from realtime.frames import ClientError, encode

LIMITS = {"max_length": 10, "max_frame_bytes": 100}


def parse(text=None, data=None):
    return parse_client_frame(text, data, **LIMITS)


def test_tutorial_frame_posts_a_message():
    assert parse('{"message": " hi "}') == PostMessage(text="hi")


def test_history_request():
    assert parse('{"action": "history", "after": 5}') == RequestHistory(after=5)


@pytest.mark.parametrize(
    ("text", "data", "code"),
    [
        (None, b"\x00\x01", "binary_frame"),
        ("", None, "empty_frame"),
        ("{", None, "invalid_json"),
        ("[1, 2]", None, "not_an_object"),
        ('"hi"', None, "not_an_object"),
        ("{}", None, "missing_message"),
        ('{"message": 5}', None, "message_not_string"),
        ('{"message": null}', None, "message_not_string"),
        ('{"message": "   "}', None, "message_empty"),
        ('{"message": "' + "x" * 11 + '"}', None, "message_too_long"),
        ('{"message": "' + "x" * 200 + '"}', None, "frame_too_large"),
        ('{"action": "dance"}', None, "unknown_action"),
        ('{"action": "history", "after": -1}', None, "invalid_after"),
        ('{"action": "history", "after": "3"}', None, "invalid_after"),
        ('{"action": "history", "after": true}', None, "invalid_after"),
    ],
)
def test_bad_frames_raise_typed_errors(text, data, code):
    with pytest.raises(ClientError) as raised:
        parse(text, data)
    assert raised.value.code == code
    assert raised.value.message


def test_frame_limit_counts_utf8_bytes():
    # 30 characters, 120 bytes: over the 100-byte limit although short in characters.
    with pytest.raises(ClientError) as raised:
        parse(json.dumps({"message": "😀" * 30}, ensure_ascii=False))
    assert raised.value.code == "frame_too_large"


def test_encode_is_compact_json():
    assert encode({"type": "x", "message": "é"}) == '{"type":"x","message":"é"}'
