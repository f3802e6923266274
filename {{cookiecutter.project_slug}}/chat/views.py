"""Chat pages: the lobby (pick a room) and a room (the WebSocket client), and a
plain HTTP endpoint that lists and posts messages through the same services the
consumer uses."""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from chat import limits, selectors, services
from chat.protocol import clean_message_text, message_frame
from chat.rooms import SESSION_LAST_ROOM, InvalidRoomName, validate_room_name
from realtime.frames import ClientError


def lobby(request: HttpRequest) -> HttpResponse:
    context = {
        "rooms": selectors.room_list_recent(),
        "last_room": request.session.get(SESSION_LAST_ROOM),
    }
    return render(request, "chat/lobby.html", context)


def room(request: HttpRequest, room_name: str) -> HttpResponse:
    try:
        validate_room_name(room_name)
    except InvalidRoomName as error:
        raise Http404(str(error)) from None
    if settings.CHAT_REQUIRE_LOGIN and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return render(request, "chat/room.html", {"room_name": room_name})


@require_http_methods(["GET", "POST"])
def messages(request: HttpRequest, room_name: str) -> JsonResponse:
    """GET: messages after ``?after=<id>`` (JSON). POST (form field ``message``, CSRF
    protected): store and deliver a message, as a WebSocket client would."""
    try:
        validate_room_name(room_name)
    except InvalidRoomName as error:
        return JsonResponse({"code": "invalid_room", "message": str(error)}, status=404)
    if settings.CHAT_REQUIRE_LOGIN and not request.user.is_authenticated:
        return JsonResponse({"code": "login_required", "message": "Log in first."}, status=403)
    if request.method == "POST":
        return _post_message(request, room_name)
    try:
        after = int(request.GET.get("after", "0"))
    except ValueError:
        after = -1
    if after < 0:
        return JsonResponse({"code": "invalid_after", "message": "Use ?after=<id>."}, status=400)
    room = selectors.room_get(name=room_name)
    found = (
        selectors.message_list_after(room=room, after_id=after, limit=settings.CHAT_HISTORY_LENGTH)
        if room
        else []
    )
    return JsonResponse({"messages": [message_frame(m, room_name) for m in found]})


def _post_message(request: HttpRequest, room_name: str) -> JsonResponse:
    address = request.META.get("REMOTE_ADDR")
    if not limits.http_post_allowed(user=request.user, address=address):
        return _too_many("rate_limited", "You are posting too fast; wait a minute.", 60)
    try:
        text = clean_message_text(
            request.POST.get("message", ""), max_length=settings.CHAT_MESSAGE_MAX_LENGTH
        )
    except ClientError as error:
        return JsonResponse({"code": error.code, "message": error.message}, status=400)
    try:
        limits.room_get_or_create_limited(name=room_name, user=request.user, address=address)
    except limits.RoomLimitReached:
        return _too_many("room_limit", "Too many new rooms; post in an existing one.", 3600)
    message = services.message_post(room_name=room_name, author=request.user, text=text)
    return JsonResponse(message_frame(message, room_name), status=201)


def _too_many(code: str, text: str, retry_after: int) -> JsonResponse:
    response = JsonResponse({"code": code, "message": text}, status=429)
    response["Retry-After"] = str(retry_after)
    return response
