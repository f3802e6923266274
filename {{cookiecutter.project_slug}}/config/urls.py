"""HTTP routes: the home page, the chat pages, accounts, admin, and health checks.

https://docs.djangoproject.com/en/5.2/topics/http/urls/
"""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from config import health

urlpatterns = [
    # The home page: the example chat's lobby (README: "Removing the example chat").
    path("", RedirectView.as_view(pattern_name="chat:lobby", permanent=False), name="home"),
    path("chat/", include("chat.urls")),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
