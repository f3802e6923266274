"""Account pages: sign-up (log-in and log-out are Django's own views), and the
ticket endpoint for non-browser WebSocket clients."""

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.services import ticket_issue


def signup(request: HttpRequest) -> HttpResponse:
    form: UserCreationForm[User] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        # Named: with django-axes' backend first there are two, and this user was not
        # authenticated by either (the form just created them).
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/signup.html", {"form": form})


@require_POST
def ticket(request: HttpRequest) -> JsonResponse:
    """Issue a WebSocket ticket. POST only, CSRF-protected like every form, and only
    for a signed-in session."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "Log in first; tickets are for signed-in users."}, status=403)
    value, ttl = ticket_issue(user=request.user)
    return JsonResponse({"ticket": value, "expires_in": ttl}, status=201)
