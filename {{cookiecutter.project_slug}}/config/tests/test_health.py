import socket
from unittest import mock

import pytest
from django.test import override_settings

from realtime.channel_layers import REDIS_BACKENDS, channel_layers
from realtime.testing.servers import AsgiServer, free_port, running, server_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "channel_layer": "ok"}


def test_readyz_reports_a_failed_channel_layer(client):
    with mock.patch("config.health.get_channel_layer", return_value=None):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["channel_layer"] == "fail"


def test_readyz_reports_a_failed_database(client):
    def broken():
        raise ConnectionError("database down")

    with mock.patch("config.health.check_database", side_effect=broken):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "fail"


# A Redis that is down, or that accepts connections and never answers: readiness says
# so within its check timeout, and the request does not hang (the test client would).


@pytest.fixture
def silent_redis_url():
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


@pytest.mark.parametrize("kind", sorted(REDIS_BACKENDS))
@pytest.mark.parametrize("redis", ["down", "silent"])
def test_readyz_reports_a_redis_that_is_down_or_silent(client, kind, redis, silent_redis_url):
    url = f"redis://127.0.0.1:{free_port()}/0" if redis == "down" else silent_redis_url
    with override_settings(CHANNEL_LAYERS=channel_layers(redis_url=url, kind=kind)):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "channel_layer": "fail"}


def test_a_real_server_reports_an_unreachable_database(tmp_path):
    """On the running server: alive (/healthz), not ready (/readyz) while its database
    does not answer."""
    nowhere = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"
    env = server_env(database_url=nowhere, redis_url="")
    with running(AsgiServer("web", env, tmp_path)) as (web,):
        assert web.get("/healthz") == (200, {"status": "ok"})
        status, body = web.get("/readyz")
    assert (status, body["checks"]) == (503, {"database": "fail", "channel_layer": "ok"})


# A load balancer probes by address, over plain HTTP: the probes answer whatever the
# Host, and every other path keeps the host check and the HTTPS redirect.
PRODUCTION_LIKE = {"ALLOWED_HOSTS": ["chat.example.com"], "SECURE_SSL_REDIRECT": True}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_a_request_by_address(client, path):
    with override_settings(**PRODUCTION_LIKE):
        response = client.get(path, headers={"host": "10.0.0.5:8000"})
    assert response.status_code == 200


def test_a_probe_by_head_answers_too(client):
    with override_settings(**PRODUCTION_LIKE):
        head = client.head("/healthz", headers={"host": "10.0.0.5"})
    assert head.status_code == 200


@pytest.mark.parametrize("path", ["/chat/", "/healthz/", "/healthzx", "/accounts/login/"])
def test_other_paths_keep_the_host_check(client, path):
    with override_settings(**PRODUCTION_LIKE):
        response = client.get(path, headers={"host": "10.0.0.5"})
    assert response.status_code == 400


def test_a_probe_by_name_over_plain_http_is_not_redirected(client):
    with override_settings(**PRODUCTION_LIKE):
        probe = client.get("/healthz", headers={"host": "chat.example.com"})
        page = client.get("/chat/", headers={"host": "chat.example.com"})
    assert probe.status_code == 200
    assert page.status_code == 301


def test_a_post_to_a_probe_path_goes_through_the_host_check(client):
    with override_settings(**PRODUCTION_LIKE):
        response = client.post("/healthz", headers={"host": "10.0.0.5"})
    assert response.status_code == 400


@pytest.mark.asyncio
async def test_probes_answer_by_address_on_the_asgi_application(async_client):
    with override_settings(**PRODUCTION_LIKE):
        response = await async_client.get("/healthz", headers={"host": "10.0.0.5"})
    assert response.status_code == 200
