"""Settings for production: every secret and host comes from the environment, and a
missing one stops start-up with a message naming it. HTTPS is assumed behind a
proxy that sets ``X-Forwarded-Proto`` (see docs/deploying.md).

https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
"""

from config.env import env_bool, env_int, env_list, env_required

from .base import *  # noqa: F403 - the shared settings, changed below by name
from .base import MIDDLEWARE

SECRET_KEY = env_required(
    "DJANGO_SECRET_KEY",
    'a long random string, e.g. from python -c "import secrets; print(secrets.token_urlsafe(50))"',
)

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS") or env_required(
    "DJANGO_ALLOWED_HOSTS", "the host names this site answers to, comma-separated"
).split(",")

# One list of public origins for CSRF and the WebSocket origin check; by default the
# https origin of each allowed host (wildcard hosts such as ".example.com" give none).
TRUSTED_ORIGINS = env_list("DJANGO_TRUSTED_ORIGINS") or [
    f"https://{host}" for host in ALLOWED_HOSTS if not host.startswith(".") and host != "*"
]
CSRF_TRUSTED_ORIGINS = TRUSTED_ORIGINS
WEBSOCKET_ALLOW_LOCALHOST = False

REDIS_URL = env_required(
    "REDIS_URL", "the channel layer's Redis, e.g. redis://:password@redis:6379/0"
)
{%- if cookiecutter.database == "postgresql" %}
DATABASE_URL = env_required(
    "DATABASE_URL", "the PostgreSQL database, e.g. postgres://user:password@db:5432/name"
)
{%- endif %}

# Dangerous: only behind a proxy that overwrites X-Forwarded-Proto on every request
# (the shipped nginx config does); otherwise clients could claim HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True

# WhiteNoise serves the collected static files itself where no proxy does
# (platforms run from the Procfile); behind nginx it is a harmless fallback.
MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
