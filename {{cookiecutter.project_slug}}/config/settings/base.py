"""Settings shared by every environment; each value is read from the environment
where a deployment would change it, and defaults to embedded parts (SQLite, the
in-memory channel layer) so a fresh project runs with no services.

https://docs.djangoproject.com/en/5.2/ref/settings/
"""

from pathlib import Path

import dj_database_url

from config.channel_layers import channel_layers
from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}

# Dangerous: never True in production; local.py turns it on.
DEBUG = False

SECRET_KEY = env_str("DJANGO_SECRET_KEY")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")

INSTALLED_APPS = [
    # First, so that runserver serves the ASGI application (WebSockets included).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "accounts",
    "chat",
    "scaffold",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context_processors.project",
            ],
        },
    },
]

ASGI_APPLICATION = "config.asgi.application"

# SQLite in a file beside the code unless DATABASE_URL names another database.
# Connections are kept for CONN_MAX_AGE seconds and checked before reuse, so a
# connection the server dropped (restart, failover) is replaced, not reported.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DJANGO_CONN_MAX_AGE", default=60),
        conn_health_checks=True,
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The in-memory layer unless REDIS_URL is set; see config/channel_layers.py.
REDIS_URL = env_str("REDIS_URL")
CHANNEL_LAYERS = channel_layers(
    redis_url=REDIS_URL,
    kind="{{ cookiecutter.channel_layer }}",
    prefix=env_str("CHANNEL_LAYER_PREFIX", "asgi"),
    encryption_keys=env_list("CHANNEL_LAYER_ENCRYPTION_KEYS"),
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:lobby"
LOGOUT_REDIRECT_URL = "chat:lobby"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "{{ cookiecutter.timezone }}"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
}

# Seconds a ticket for a non-browser WebSocket client stays valid (single use).
WEBSOCKET_TICKET_TTL_SECONDS = 30

# The chat app's own settings.
# Refuse anonymous WebSockets and send anonymous visitors to log in.
CHAT_REQUIRE_LOGIN = env_bool("CHAT_REQUIRE_LOGIN", default=False)
# Longest message text, in characters; longer ones get an error frame.
CHAT_MESSAGE_MAX_LENGTH = 2000
# Largest WebSocket text frame the consumers parse, in bytes (the server's own frame
# limit is far higher); larger ones get an error frame and are not decoded.
CHAT_FRAME_MAX_BYTES = 16 * 1024
# Messages a member receives when joining a room, and at most per resync.
CHAT_HISTORY_LENGTH = 50
# Send every new message to the moderation worker (manage.py runworker chat-worker).
# The worker is another process, so this is on only when a Redis layer is configured.
CHAT_MODERATION_ENABLED = env_bool("CHAT_MODERATION_ENABLED", default=bool(REDIS_URL))
# Words that get a message hidden by the worker (whole words, any case).
CHAT_BLOCKED_WORDS = env_list("CHAT_BLOCKED_WORDS", "spam")
