from django.urls import include, path

from accounts import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("ticket/", views.ticket, name="websocket-ticket"),
    path("", include("django.contrib.auth.urls")),
]
