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
    assert response["Location"] == reverse("home")
    assert "ann" in client.get(reverse("login")).content.decode()  # the header


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


def test_the_header_and_the_login_page_link_the_sign_up_page(client):
    signup = reverse("signup")
    login_page = client.get(reverse("login")).content.decode()
    assert f'<a class="signup-link" href="{signup}">Sign up</a>' in login_page
    assert f'No account yet? <a href="{signup}">Sign up</a>.' in login_page
    # Not on the sign-up page itself, and not for a signed-in user.
    assert 'class="signup-link"' not in client.get(signup).content.decode()


def test_a_signed_in_user_sees_no_sign_up_link(client, make_user):
    client.force_login(make_user("ann"))
    assert 'class="signup-link"' not in client.get(reverse("login")).content.decode()
