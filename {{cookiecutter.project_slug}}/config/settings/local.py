"""Settings for development on one machine: DEBUG on, localhost allowed, a local
secret key from ``.env`` (written at generation) or a fixed insecure fallback.

https://docs.djangoproject.com/en/5.2/topics/settings/
"""

from config.env import env_list, env_str

from .base import *  # noqa: F403 - the shared settings, changed below by name

# Dangerous: shows tracebacks and settings to anyone who can reach the server.
DEBUG = True

# An empty value (a .env copied from .env.example) falls back too.
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or "django-insecure-local-development-only"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# runserver may listen on any port: accept WebSockets from localhost pages on any.
WEBSOCKET_ALLOW_LOCALHOST = True
