import pytest

from chat.rooms import InvalidRoomName, room_group_name, user_group_name, validate_room_name


@pytest.mark.parametrize("name", ["lobby", "a", "Room_1-b", "x" * 64])
def test_valid_names_pass(name):
    assert validate_room_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 65, "café", "ünï", "a b", "a/b", "a.b", "١٢٣", "room\n", None]
)
def test_invalid_names_are_refused(name):
    with pytest.raises(InvalidRoomName):
        validate_room_name(name)


def test_group_names_are_ascii_and_short():
    name = room_group_name("x" * 64)
    assert name.isascii()
    assert len(name) < 100
    assert user_group_name(12) == "chat.user.12"


def test_group_name_refuses_raw_text():
    with pytest.raises(InvalidRoomName):
        room_group_name("no spaces")
