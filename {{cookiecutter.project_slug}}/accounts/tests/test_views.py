import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_signup_creates_the_user_and_logs_them_in(client):
    response = client.post(
        reverse("signup"),
        {
            "username": "ann",
            "password1": "a long passphrase 42",
            "password2": "a long passphrase 42",
        },
    )
    assert response.status_code == 302
    assert get_user_model().objects.filter(username="ann").exists()
    assert "ann" in client.get(reverse("chat:lobby")).content.decode()


def test_signup_shows_errors_and_creates_nothing(client):
    response = client.post(
        reverse("signup"), {"username": "ann", "password1": "x", "password2": "y"}
    )
    assert response.status_code == 200
    assert not get_user_model().objects.exists()


def test_login_and_logout_pages(client, make_user):
    make_user("ann", "a long passphrase 42")
    assert client.get(reverse("login")).status_code == 200
    response = client.post(
        reverse("login"), {"username": "ann", "password": "a long passphrase 42"}
    )
    assert response.status_code == 302
    assert client.post(reverse("logout")).status_code == 302
    assert "_auth_user_id" not in client.session
