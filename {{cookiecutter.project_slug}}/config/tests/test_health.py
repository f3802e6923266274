from unittest import mock

import pytest

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
