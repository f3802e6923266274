"""Chat pages: the lobby (pick a room) and a room (the WebSocket client)."""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from chat import selectors
from chat.rooms import InvalidRoomName, validate_room_name


def lobby(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/lobby.html", {"rooms": selectors.room_list_recent()})


def room(request: HttpRequest, room_name: str) -> HttpResponse:
    try:
        validate_room_name(room_name)
    except InvalidRoomName as error:
        raise Http404(str(error)) from None
    if settings.CHAT_REQUIRE_LOGIN and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return render(request, "chat/room.html", {"room_name": room_name})
