"""Settings shared by every environment; each value is read from the environment
where a deployment would change it, and defaults to embedded parts (SQLite, the
in-memory channel layer) so a fresh project runs with no services.

https://docs.djangoproject.com/en/5.2/ref/settings/
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url

from config.env import env_bool, env_float, env_int, env_list, env_str
from realtime.channel_layers import channel_layers

BASE_DIR = Path(__file__).resolve().parent.parent.parent

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}

# Dangerous: never True in production; local.py turns it on.
DEBUG = False

SECRET_KEY = env_str("DJANGO_SECRET_KEY")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")

# The site's public origins (scheme://host[:port]), comma-separated in
# DJANGO_TRUSTED_ORIGINS: cross-origin form posts from them pass CSRF, and
# WebSockets must come from exactly one of them (realtime/origins.py).
TRUSTED_ORIGINS = env_list("DJANGO_TRUSTED_ORIGINS")
CSRF_TRUSTED_ORIGINS = TRUSTED_ORIGINS
# Also accept WebSockets from any port on localhost (development and tests only).
WEBSOCKET_ALLOW_LOCALHOST = False
# Seconds a WebSocket stays open at most (realtime/lifetime.py): less than the channel
# layer's GROUP_EXPIRY (realtime/channel_layers.py), after which a group forgets it.
WEBSOCKET_MAX_AGE = 12 * 60 * 60

INSTALLED_APPS = [
    # First, so that runserver serves the ASGI application (WebSockets included).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "accounts",
    "chat",
    # After the project's apps: a command of theirs replaces Channels' own of the same
    # name (the chat's runworker, chat/workers.py).
    "channels",
    "scaffold",
]

MIDDLEWARE = [
    # First: probes by address answer before the host check and the HTTPS redirect.
    "config.health.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 response.
    "axes.middleware.AxesMiddleware",
]
# The middleware above that only checks a request and sets headers: HTTP consumers
# (the chat's event stream) run it too (realtime/pagechecks.py).
HTTP_CONSUMER_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
]

# Scripts, styles and sockets from this site only; no inline script anywhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)

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
# Connections are kept (CONN_MAX_AGE) for the consumers' sake: their
# database_sync_to_async calls all run on one thread per process, so one kept
# connection serves every socket of the process, instead of a new connection per
# call (7.5 ms each on loopback, measured on a 2-core machine; a query on a kept
# one: 0.04 ms). CONN_HEALTH_CHECKS pings it (SELECT 1) before each call's first
# query and reconnects at once if the database dropped it (restart, failover,
# pg_terminate_backend), so the next message is stored, not answered with an error
# (chat/tests/test_faults.py). Django's docs advise against persistent connections
# under ASGI because each HTTP request runs on a thread of its own and cannot reuse
# one: requests open a connection each either way, which is then closed when the
# thread is collected rather than at the end of the request (300 requests in a row
# left 3-5 open). Not chosen: psycopg's pool (OPTIONS "pool", CONN_MAX_AGE = 0)
# waits 1 s, 2 s, 4 s... between the dead connections it finds after a failover, so
# queries stall and then fail; CONN_MAX_AGE = 0 pays the connection on every call.
# On PostgreSQL the chat's new messages take one more connection per process, on the
# event loop (realtime/pginserts.py), opened from this same entry.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DJANGO_CONN_MAX_AGE", default=60),
        conn_health_checks=True,
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The in-memory layer unless REDIS_URL is set; see realtime/channel_layers.py.
REDIS_URL = env_str("REDIS_URL")
CHANNEL_LAYERS = channel_layers(
    redis_url=REDIS_URL,
    kind="{{ cookiecutter.channel_layer }}",
    prefix=env_str("CHANNEL_LAYER_PREFIX", "asgi"),
    encryption_keys=env_list("CHANNEL_LAYER_ENCRYPTION_KEYS"),
    # Redis Sentinel (docs/scaling.md): the Sentinels to ask for the master, its name,
    # and the Sentinels' own password if they have one.
    sentinel_hosts=env_list("REDIS_SENTINEL_HOSTS"),
    sentinel_master=env_str("REDIS_SENTINEL_MASTER", "mymaster"),
    sentinel_password=env_str("REDIS_SENTINEL_PASSWORD"),
)

# The cache counts each user's open sockets across processes: in Redis (CACHE_REDIS_URL,
# by default REDIS_URL, under its own key prefix), else in this process's memory. With
# Sentinel, REDIS_URL's host is the master's name, which the cache cannot resolve: set
# CACHE_REDIS_URL to a Redis it can reach, or the cap is counted per process.
CACHE_REDIS_URL = env_str("CACHE_REDIS_URL", "" if env_list("REDIS_SENTINEL_HOSTS") else REDIS_URL)
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "cache"),
        }
        if CACHE_REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Failed logins are throttled on the admin's login and the site's alike by django-axes:
# maintained, supports Django 5.2, and hooks Django's authentication itself, so every
# form that calls authenticate(request=...) is covered and none needs changing. Its
# records live in the database, shared by every web process. Counted per username
# and address together: per username alone anyone could lock a user out, per address
# alone one guesser would lock out everyone behind the same NAT.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Wrong passwords in a row before that username is refused from that address (HTTP
# 429, the right password included) for LOGIN_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_COOLOFF_MINUTES", default=15))
AXES_RESET_ON_SUCCESS = True

LOGIN_URL = "login"
# The site's home page (config/urls.py): today the chat's lobby.
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

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
    "filters": {"redact_ticket": {"()": "realtime.logredact.RedactTicketFilter"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        # uvicorn logs each request's path with its query (HTTP on uvicorn.access,
        # WebSockets on uvicorn.error): a ticket's value there is redacted
        # (realtime/logredact.py). Configuring uvicorn.access drops its handler, so its
        # lines go up to uvicorn's own, once.
        "uvicorn.access": {"filters": ["redact_ticket"], "propagate": True},
        "uvicorn.error": {"filters": ["redact_ticket"]},
        # Every line once, through the root handler: Django's own console handler on
        # "django" (DEBUG only) would print each request runserver logs a second time.
        "django": {"handlers": [], "propagate": True},
        # daphne's start-up notices (HTTP/2 extras not installed, endpoints) need no action.
        "daphne": {"level": "WARNING"},
    },
}

# Seconds a ticket for a non-browser WebSocket client stays valid (single use).
WEBSOCKET_TICKET_TTL_SECONDS = 30

# The real-time layer's limits (realtime/frames.py, realtime/guards.py).
# Largest WebSocket text frame the consumers parse, in bytes (the server's own frame
# limit is far higher); larger ones get an error frame and are not decoded.
WEBSOCKET_FRAME_MAX_BYTES = 16 * 1024
# Per-connection rate limit: a steady rate of frames a second, bursts of up to
# WEBSOCKET_RATE_LIMIT_BURST; over it, error frames, and after
# WEBSOCKET_RATE_LIMIT_STRIKES refusals in a row the socket is closed (4429).
WEBSOCKET_RATE_LIMIT_PER_SECOND = env_float("WEBSOCKET_RATE_LIMIT_PER_SECOND", default=5.0)
WEBSOCKET_RATE_LIMIT_BURST = env_int("WEBSOCKET_RATE_LIMIT_BURST", default=20)
WEBSOCKET_RATE_LIMIT_STRIKES = 50
# Open sockets one signed-in user may hold at once (tabs, devices), across processes.
WEBSOCKET_MAX_SOCKETS_PER_USER = env_int("WEBSOCKET_MAX_SOCKETS_PER_USER", default=20)
# Open sockets one client address may hold at once, across processes (4409 past it);
# 0: no cap. High enough for many users behind one NAT; the benchmark, whose
# thousands of clients share loopback, turns it off. Behind a proxy, the address is
# the forwarded one (uvicorn --proxy-headers, as the Procfile runs it).
WEBSOCKET_MAX_SOCKETS_PER_ADDRESS = env_int("WEBSOCKET_MAX_SOCKETS_PER_ADDRESS", default=200)
# Seconds between an open socket's checks that its session still signs its user in
# (logout, password change, deactivation close it with 4001) and renewals of its
# socket-cap claims, which lapse after 4 checks: a killed process's sockets stop
# counting within 2 minutes (realtime/guards.py).
WEBSOCKET_SESSION_CHECK_SECONDS = env_float("WEBSOCKET_SESSION_CHECK_SECONDS", default=30.0)

# The example chat's own settings, to the end of the file (README: "Removing the
# example chat" deletes them).
# Refuse anonymous WebSockets and send anonymous visitors to log in.
CHAT_REQUIRE_LOGIN = env_bool("CHAT_REQUIRE_LOGIN", default=False)
# Longest message text, in characters; longer ones get an error frame.
CHAT_MESSAGE_MAX_LENGTH = 2000
# Messages a member receives when joining a room, and at most per resync.
CHAT_HISTORY_LENGTH = 50
# Largest history frame, in bytes of JSON: fewer messages (and "more": true) past it.
CHAT_HISTORY_MAX_BYTES = 64 * 1024
# History requests one socket may send a minute; past it, a rate_limited error frame.
CHAT_HISTORY_REQUESTS_PER_MINUTE = env_int("CHAT_HISTORY_REQUESTS_PER_MINUTE", default=30)
# Messages posted over HTTP (chat/views.py) a minute, per signed-in user and per client
# address, across processes (chat/limits.py); past it, HTTP 429. 0: no limit.
CHAT_HTTP_POSTS_PER_MINUTE = env_int("CHAT_HTTP_POSTS_PER_MINUTE", default=20)
# New rooms an hour, per signed-in user or (anonymous) per client address, across
# processes; past it, joining a room that does not exist yet is refused. 0: no limit.
CHAT_ROOMS_PER_HOUR = env_int("CHAT_ROOMS_PER_HOUR", default=20)
# The channel the moderation worker listens on (manage.py runworker chat-worker).
# Channels named like this are not prefixed by the Pub/Sub layer: projects sharing a
# Redis need different names.
CHAT_WORKER_CHANNEL = env_str("CHAT_WORKER_CHANNEL", "chat-worker")
# Send every new message to the moderation worker (manage.py runworker chat-worker).
# The worker is another process, so this is on only when a Redis layer is configured.
CHAT_MODERATION_ENABLED = env_bool("CHAT_MODERATION_ENABLED", default=bool(REDIS_URL))
# Words that get a message hidden by the worker (whole words, any case).
CHAT_BLOCKED_WORDS = env_list("CHAT_BLOCKED_WORDS", "spam")
